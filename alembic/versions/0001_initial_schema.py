"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'machine_type',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('auto_logoff_minutes', sa.Integer(), nullable=False),
        sa.Column('grace_minutes', sa.Integer(), nullable=False),
        sa.Column('authorization_required', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    op.create_table(
        'role',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('may_use_all_machines', sa.Boolean(), nullable=False),
        sa.Column('may_maintain', sa.Boolean(), nullable=False),
        sa.Column('may_administer', sa.Boolean(), nullable=False),
        sa.Column('may_approve_prints', sa.Boolean(), nullable=False),
        sa.Column('is_default', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    op.create_table(
        'machine',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('type_id', sa.Integer(), nullable=False),
        sa.Column('blocked', sa.Boolean(), nullable=False),
        sa.Column('usage_seconds', sa.Float(), nullable=False),
        sa.Column('last_seen', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('deleted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ['type_id'],
            ['machine_type.id'],
        ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('machine', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_machine_type_id'), ['type_id'], unique=False)

    op.create_table(
        'member',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('first_name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('last_name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True),
        sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('role_id', sa.Integer(), nullable=False),
        sa.Column('disabled', sa.Boolean(), nullable=False),
        sa.Column('deleted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column('must_change_password', sa.Boolean(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ['role_id'],
            ['role.id'],
        ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('email'),
    )
    with op.batch_alter_table('member', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_member_role_id'), ['role_id'], unique=False)

    op.create_table(
        'authorization',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('member_id', sa.Integer(), nullable=False),
        sa.Column('machine_id', sa.Integer(), nullable=False),
        sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ['machine_id'],
            ['machine.id'],
        ),
        sa.ForeignKeyConstraint(
            ['member_id'],
            ['member.id'],
        ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('member_id', 'machine_id'),
    )
    with op.batch_alter_table('authorization', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_authorization_machine_id'), ['machine_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_authorization_member_id'), ['member_id'], unique=False)

    op.create_table(
        'board',
        sa.Column('machine_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('serial', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('ip', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('firmware', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column('heap', sa.Integer(), nullable=False),
        sa.Column('last_seen', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ['machine_id'],
            ['machine.id'],
        ),
        sa.PrimaryKeyConstraint('machine_id'),
    )
    op.create_table(
        'card',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('uid', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('member_id', sa.Integer(), nullable=False),
        sa.Column('label', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ['member_id'],
            ['member.id'],
        ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('uid'),
    )
    with op.batch_alter_table('card', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_card_member_id'), ['member_id'], unique=False)

    op.create_table(
        'maintenance_plan',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('machine_id', sa.Integer(), nullable=False),
        sa.Column('hours_between', sa.Float(), nullable=False),
        sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('lcd_text', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('instructions_url', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ['machine_id'],
            ['machine.id'],
        ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('maintenance_plan', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_maintenance_plan_machine_id'), ['machine_id'], unique=False)

    op.create_table(
        'unknown_card',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('uid', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('machine_id', sa.Integer(), nullable=False),
        sa.Column('first_seen', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('last_seen', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ['machine_id'],
            ['machine.id'],
        ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('uid', 'machine_id'),
    )
    with op.batch_alter_table('unknown_card', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_unknown_card_last_seen'), ['last_seen'], unique=False)
        batch_op.create_index(batch_op.f('ix_unknown_card_machine_id'), ['machine_id'], unique=False)

    op.create_table(
        'use',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('machine_id', sa.Integer(), nullable=False),
        sa.Column('member_id', sa.Integer(), nullable=True),
        sa.Column('card_uid', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('start', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('last_seen', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('end', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('duration_s', sa.Float(), nullable=True),
        sa.Column('replay', sa.Boolean(), nullable=False),
        sa.Column('unauthorized', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ['machine_id'],
            ['machine.id'],
        ),
        sa.ForeignKeyConstraint(
            ['member_id'],
            ['member.id'],
        ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('use', schema=None) as batch_op:
        batch_op.create_index('ix_use_machine_start', ['machine_id', 'start'], unique=False)
        batch_op.create_index(batch_op.f('ix_use_member_id'), ['member_id'], unique=False)
        batch_op.create_index(
            'ux_use_open_per_machine',
            ['machine_id'],
            unique=True,
            sqlite_where=sa.text('"end" IS NULL'),
            postgresql_where=sa.text('"end" IS NULL'),
        )

    op.create_table(
        'intervention',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('plan_id', sa.Integer(), nullable=False),
        sa.Column('machine_id', sa.Integer(), nullable=False),
        sa.Column('member_id', sa.Integer(), nullable=True),
        sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('replay', sa.Boolean(), nullable=False),
        sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ['machine_id'],
            ['machine.id'],
        ),
        sa.ForeignKeyConstraint(
            ['member_id'],
            ['member.id'],
        ),
        sa.ForeignKeyConstraint(
            ['plan_id'],
            ['maintenance_plan.id'],
        ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('intervention', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_intervention_machine_id'), ['machine_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_intervention_member_id'), ['member_id'], unique=False)
        batch_op.create_index('ix_intervention_plan_at', ['plan_id', 'at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('intervention', schema=None) as batch_op:
        batch_op.drop_index('ix_intervention_plan_at')
        batch_op.drop_index(batch_op.f('ix_intervention_member_id'))
        batch_op.drop_index(batch_op.f('ix_intervention_machine_id'))

    op.drop_table('intervention')
    with op.batch_alter_table('use', schema=None) as batch_op:
        batch_op.drop_index(
            'ux_use_open_per_machine', sqlite_where=sa.text('"end" IS NULL'), postgresql_where=sa.text('"end" IS NULL')
        )
        batch_op.drop_index(batch_op.f('ix_use_member_id'))
        batch_op.drop_index('ix_use_machine_start')

    op.drop_table('use')
    with op.batch_alter_table('unknown_card', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_unknown_card_machine_id'))
        batch_op.drop_index(batch_op.f('ix_unknown_card_last_seen'))

    op.drop_table('unknown_card')
    with op.batch_alter_table('maintenance_plan', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_maintenance_plan_machine_id'))

    op.drop_table('maintenance_plan')
    with op.batch_alter_table('card', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_card_member_id'))

    op.drop_table('card')
    op.drop_table('board')
    with op.batch_alter_table('authorization', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_authorization_member_id'))
        batch_op.drop_index(batch_op.f('ix_authorization_machine_id'))

    op.drop_table('authorization')
    with op.batch_alter_table('member', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_member_role_id'))

    op.drop_table('member')
    with op.batch_alter_table('machine', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_machine_type_id'))

    op.drop_table('machine')
    op.drop_table('role')
    op.drop_table('machine_type')
