"""queue and spools: jobs, bed checks, vendors, filaments, spools and the usage ledger; printer and role flags

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'vendor',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    op.create_table(
        'filament',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('vendor_id', sa.Integer(), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('material', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('colour_hex', sqlmodel.sql.sqltypes.AutoString(length=9), nullable=False),
        sa.Column('diameter_mm', sa.Float(), nullable=False),
        sa.Column('density_g_cm3', sa.Float(), nullable=False),
        sa.Column('price_per_kg', sa.Float(), nullable=True),
        sa.Column('low_stock_grams', sa.Float(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ['vendor_id'],
            ['vendor.id'],
        ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('vendor_id', 'name'),
    )
    with op.batch_alter_table('filament', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_filament_vendor_id'), ['vendor_id'], unique=False)

    op.create_table(
        'spool',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('filament_id', sa.Integer(), nullable=False),
        sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('initial_grams', sa.Float(), nullable=False),
        sa.Column('remaining_grams', sa.Float(), nullable=False),
        sa.Column('empty_spool_grams', sa.Float(), nullable=False),
        sa.Column('lot', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('location', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('archived', sa.Boolean(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ['filament_id'],
            ['filament.id'],
        ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('code'),
    )
    with op.batch_alter_table('spool', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_spool_filament_id'), ['filament_id'], unique=False)

    op.create_table(
        'job',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('member_id', sa.Integer(), nullable=False),
        sa.Column('file_name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('stored_name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('size_bytes', sa.Integer(), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('priority', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('printer_id', sa.Integer(), nullable=True),
        sa.Column('slicer', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('estimated_s', sa.Integer(), nullable=True),
        sa.Column('grams', sa.Float(), nullable=True),
        sa.Column('filament_mm', sa.Float(), nullable=True),
        sa.Column('material', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('nozzle_mm', sa.Float(), nullable=True),
        sa.Column('layer_count', sa.Integer(), nullable=True),
        sa.Column('max_nozzle_c', sa.Float(), nullable=True),
        sa.Column('max_bed_c', sa.Float(), nullable=True),
        sa.Column('thumbnail', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('meta_json', sa.Text(), nullable=False),
        sa.Column('min_x_mm', sa.Float(), nullable=True),
        sa.Column('min_y_mm', sa.Float(), nullable=True),
        sa.Column('min_z_mm', sa.Float(), nullable=True),
        sa.Column('tags', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('auto_approved', sa.Boolean(), nullable=False),
        sa.Column('approved_by', sa.Integer(), nullable=True),
        sa.Column('approved_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('submitted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('ended_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ['approved_by'],
            ['member.id'],
        ),
        sa.ForeignKeyConstraint(
            ['member_id'],
            ['member.id'],
        ),
        sa.ForeignKeyConstraint(
            ['printer_id'],
            ['printer.id'],
        ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('stored_name'),
    )
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_member_id'), ['member_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_job_printer_id'), ['printer_id'], unique=False)
        batch_op.create_index('ix_job_status_priority_position', ['status', 'priority', 'position'], unique=False)

    op.create_table(
        'bed_check',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('printer_id', sa.Integer(), nullable=False),
        sa.Column('print_job_id', sa.Integer(), nullable=True),
        sa.Column('confirmed_by', sa.Integer(), nullable=True),
        sa.Column('confirmed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ['confirmed_by'],
            ['member.id'],
        ),
        sa.ForeignKeyConstraint(
            ['print_job_id'],
            ['print_job.id'],
        ),
        sa.ForeignKeyConstraint(
            ['printer_id'],
            ['printer.id'],
        ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('bed_check', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bed_check_confirmed_by'), ['confirmed_by'], unique=False)
        batch_op.create_index(batch_op.f('ix_bed_check_print_job_id'), ['print_job_id'], unique=False)
        batch_op.create_index('ix_bed_check_printer_at', ['printer_id', 'confirmed_at'], unique=False)

    op.create_table(
        'spool_usage',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('print_job_id', sa.Integer(), nullable=True),
        sa.Column('spool_id', sa.Integer(), nullable=False),
        sa.Column('member_id', sa.Integer(), nullable=True),
        sa.Column('grams', sa.Float(), nullable=False),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ['member_id'],
            ['member.id'],
        ),
        sa.ForeignKeyConstraint(
            ['print_job_id'],
            ['print_job.id'],
        ),
        sa.ForeignKeyConstraint(
            ['spool_id'],
            ['spool.id'],
        ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('print_job_id', 'spool_id'),
    )
    with op.batch_alter_table('spool_usage', schema=None) as batch_op:
        batch_op.create_index('ix_spool_usage_created', ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_spool_usage_member_id'), ['member_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_spool_usage_spool_id'), ['spool_id'], unique=False)

    with op.batch_alter_table('print_job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('job_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('grams_planned', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('progress', sa.Float(), nullable=True))
        batch_op.create_index(batch_op.f('ix_print_job_job_id'), ['job_id'], unique=False)
        batch_op.create_foreign_key('fk_print_job_job_id_job', 'job', ['job_id'], ['id'])

    with op.batch_alter_table('printer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bed_clear', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('auto_schedule', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('loaded_spool_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_printer_loaded_spool_id'), ['loaded_spool_id'], unique=True)
        batch_op.create_foreign_key('fk_printer_loaded_spool_id_spool', 'spool', ['loaded_spool_id'], ['id'])

    with op.batch_alter_table('role', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auto_approve_prints', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('role', schema=None) as batch_op:
        batch_op.drop_column('auto_approve_prints')

    with op.batch_alter_table('printer', schema=None) as batch_op:
        batch_op.drop_constraint('fk_printer_loaded_spool_id_spool', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_printer_loaded_spool_id'))
        batch_op.drop_column('loaded_spool_id')
        batch_op.drop_column('auto_schedule')
        batch_op.drop_column('bed_clear')

    with op.batch_alter_table('print_job', schema=None) as batch_op:
        batch_op.drop_constraint('fk_print_job_job_id_job', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_print_job_job_id'))
        batch_op.drop_column('progress')
        batch_op.drop_column('grams_planned')
        batch_op.drop_column('job_id')

    with op.batch_alter_table('spool_usage', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spool_usage_spool_id'))
        batch_op.drop_index(batch_op.f('ix_spool_usage_member_id'))
        batch_op.drop_index('ix_spool_usage_created')

    op.drop_table('spool_usage')
    with op.batch_alter_table('bed_check', schema=None) as batch_op:
        batch_op.drop_index('ix_bed_check_printer_at')
        batch_op.drop_index(batch_op.f('ix_bed_check_print_job_id'))
        batch_op.drop_index(batch_op.f('ix_bed_check_confirmed_by'))

    op.drop_table('bed_check')
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index('ix_job_status_priority_position')
        batch_op.drop_index(batch_op.f('ix_job_printer_id'))
        batch_op.drop_index(batch_op.f('ix_job_member_id'))

    op.drop_table('job')
    with op.batch_alter_table('spool', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spool_filament_id'))

    op.drop_table('spool')
    with op.batch_alter_table('filament', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_filament_vendor_id'))

    op.drop_table('filament')
    op.drop_table('vendor')
