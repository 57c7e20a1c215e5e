"""printers: the fleet, print jobs and their downsampled temperature samples

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'printer',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column('baudrate', sa.Integer(), nullable=False),
        sa.Column('api_key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('serial_number', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('tls_fingerprint', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('max_nozzle_c', sa.Float(), nullable=False),
        sa.Column('max_bed_c', sa.Float(), nullable=False),
        sa.Column('max_chamber_c', sa.Float(), nullable=False),
        sa.Column('nozzle_diameter_mm', sa.Float(), nullable=False),
        sa.Column('build_x_mm', sa.Float(), nullable=False),
        sa.Column('build_y_mm', sa.Float(), nullable=False),
        sa.Column('build_z_mm', sa.Float(), nullable=False),
        sa.Column('materials', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('tags', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('deleted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('printer', schema=None) as batch_op:
        batch_op.create_index(
            'ux_printer_name_live',
            ['name'],
            unique=True,
            sqlite_where=sa.text('deleted_at IS NULL'),
            postgresql_where=sa.text('deleted_at IS NULL'),
        )

    op.create_table(
        'print_job',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('printer_id', sa.Integer(), nullable=False),
        sa.Column('member_id', sa.Integer(), nullable=True),
        sa.Column('file_name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('remote_name', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('ended_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column('started_outside', sa.Boolean(), nullable=False),
        sa.Column('host_streamed', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ['member_id'],
            ['member.id'],
        ),
        sa.ForeignKeyConstraint(
            ['printer_id'],
            ['printer.id'],
        ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('print_job', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_print_job_member_id'), ['member_id'], unique=False)
        batch_op.create_index('ix_print_job_printer_started', ['printer_id', 'started_at'], unique=False)
        batch_op.create_index(
            'ux_print_job_active_per_printer',
            ['printer_id'],
            unique=True,
            sqlite_where=sa.text("state IN ('printing', 'paused')"),
            postgresql_where=sa.text("state IN ('printing', 'paused')"),
        )

    op.create_table(
        'printer_sample',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.Integer(), nullable=False),
        sa.Column('t', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('nozzle', sa.Float(), nullable=True),
        sa.Column('nozzle_target', sa.Float(), nullable=True),
        sa.Column('bed', sa.Float(), nullable=True),
        sa.Column('bed_target', sa.Float(), nullable=True),
        sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ['job_id'],
            ['print_job.id'],
        ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('printer_sample', schema=None) as batch_op:
        batch_op.create_index('ix_printer_sample_job_t', ['job_id', 't'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('printer_sample', schema=None) as batch_op:
        batch_op.drop_index('ix_printer_sample_job_t')

    op.drop_table('printer_sample')
    with op.batch_alter_table('print_job', schema=None) as batch_op:
        batch_op.drop_index(
            'ux_print_job_active_per_printer',
            sqlite_where=sa.text("state IN ('printing', 'paused')"),
            postgresql_where=sa.text("state IN ('printing', 'paused')"),
        )
        batch_op.drop_index('ix_print_job_printer_started')
        batch_op.drop_index(batch_op.f('ix_print_job_member_id'))

    op.drop_table('print_job')
    with op.batch_alter_table('printer', schema=None) as batch_op:
        batch_op.drop_index(
            'ux_printer_name_live',
            sqlite_where=sa.text('deleted_at IS NULL'),
            postgresql_where=sa.text('deleted_at IS NULL'),
        )

    op.drop_table('printer')
