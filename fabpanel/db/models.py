"""Database tables (SQLModel). Times are timezone-aware UTC datetimes throughout."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Role(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80, unique=True)
    may_use_all_machines: bool = False
    may_maintain: bool = False
    may_administer: bool = False
    may_approve_prints: bool = False
    auto_approve_prints: bool = Field(default=False, sa_column_kwargs={'server_default': sa.false()})
    is_default: bool = False


class Member(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    first_name: str = Field(max_length=80)
    last_name: str = Field(default='', max_length=80)
    email: str | None = Field(default=None, max_length=254, unique=True)
    language: str = Field(default='', max_length=8)
    role_id: int = Field(foreign_key='role.id', index=True)
    disabled: bool = False
    deleted_at: datetime | None = None
    password_hash: str | None = Field(default=None, max_length=255)
    must_change_password: bool = False
    failed_signins: int = Field(default=0, sa_column_kwargs={'server_default': '0'})
    locked_until: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Card(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(max_length=32, unique=True)
    member_id: int = Field(foreign_key='member.id', index=True)
    label: str = Field(default='', max_length=80)
    created_at: datetime = Field(default_factory=utcnow)


class MachineType(SQLModel, table=True):
    __tablename__ = 'machine_type'
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80, unique=True)
    auto_logoff_minutes: int = 0
    grace_minutes: int = 2
    authorization_required: bool = True


class Machine(SQLModel, table=True):
    # the id is the board's machine id (1..65535), chosen by the admin, never generated
    id: int = Field(primary_key=True, sa_column_kwargs={'autoincrement': False})
    name: str = Field(max_length=80)
    type_id: int = Field(foreign_key='machine_type.id', index=True)
    blocked: bool = False
    usage_seconds: float = 0.0
    last_seen: datetime | None = None
    deleted_at: datetime | None = None


class Authorization(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint('member_id', 'machine_id'),)
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key='member.id', index=True)
    machine_id: int = Field(foreign_key='machine.id', index=True)
    expires_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class MaintenancePlan(SQLModel, table=True):
    __tablename__ = 'maintenance_plan'
    id: int | None = Field(default=None, primary_key=True)
    machine_id: int = Field(foreign_key='machine.id', index=True)
    hours_between: float
    description: str = Field(max_length=200)
    lcd_text: str = Field(default='', max_length=40)
    instructions_url: str = Field(default='', max_length=500)


class Intervention(SQLModel, table=True):
    __table_args__ = (sa.Index('ix_intervention_plan_at', 'plan_id', 'at'),)
    id: int | None = Field(default=None, primary_key=True)
    plan_id: int = Field(foreign_key='maintenance_plan.id')
    machine_id: int = Field(foreign_key='machine.id', index=True)
    member_id: int | None = Field(default=None, foreign_key='member.id', index=True)
    at: datetime
    source: str = Field(default='board', max_length=16)
    replay: bool = False
    note: str = Field(default='', max_length=500)


class Use(SQLModel, table=True):
    __table_args__ = (
        # at most one open use per machine: the database, not memory, keeps replays from opening a second one
        sa.Index('ux_use_open_per_machine', 'machine_id', unique=True,
                 sqlite_where=sa.text('"end" IS NULL'), postgresql_where=sa.text('"end" IS NULL')),
        sa.Index('ix_use_machine_start', 'machine_id', 'start'),
    )
    id: int | None = Field(default=None, primary_key=True)
    machine_id: int = Field(foreign_key='machine.id')
    member_id: int | None = Field(default=None, foreign_key='member.id', index=True)
    card_uid: str = Field(max_length=32)
    start: datetime
    last_seen: datetime
    end: datetime | None = None
    duration_s: float | None = None
    replay: bool = False
    unauthorized: bool = False


class UnknownCard(SQLModel, table=True):
    __tablename__ = 'unknown_card'
    __table_args__ = (sa.UniqueConstraint('uid', 'machine_id'),)
    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(max_length=32)
    machine_id: int = Field(foreign_key='machine.id', index=True)
    first_seen: datetime
    last_seen: datetime = Field(index=True)
    attempts: int = 1


class Board(SQLModel, table=True):
    machine_id: int = Field(foreign_key='machine.id', primary_key=True, sa_column_kwargs={'autoincrement': False})
    serial: str = Field(default='', max_length=32)
    ip: str = Field(default='', max_length=64)
    firmware: str = Field(default='', max_length=120)
    heap: int = 0
    last_seen: datetime


class LoginSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = 'login_session'
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    member_id: int = Field(foreign_key='member.id', index=True)
    created_at: datetime = Field(default_factory=utcnow)
    last_seen: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class PasswordReset(SQLModel, table=True):
    """A single-use, short-lived password reset link (stored as the SHA-256 of its token)."""

    __tablename__ = 'password_reset'
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    member_id: int = Field(foreign_key='member.id', index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None


class Printer(SQLModel, table=True):
    """A 3D printer the fleet drives. `api_key` is a credential the panel needs in clear (never shown on pages)."""

    __table_args__ = (
        # names are unique among printers in use; a removed printer keeps its name for its job history
        sa.Index('ux_printer_name_live', 'name', unique=True,
                 sqlite_where=sa.text('deleted_at IS NULL'), postgresql_where=sa.text('deleted_at IS NULL')),
    )
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80)
    kind: str = Field(max_length=16)  # a core.printers.PrinterKind value
    address: str = Field(default='', max_length=500)
    baudrate: int = 115200
    api_key: str = Field(default='', max_length=255)
    username: str = Field(default='', max_length=80)
    serial_number: str = Field(default='', max_length=64)
    tls_fingerprint: str = Field(default='', max_length=64)  # Bambu: SHA-256 of its certificate, hex
    max_nozzle_c: float = 260.0
    max_bed_c: float = 110.0
    max_chamber_c: float = 60.0
    nozzle_diameter_mm: float = 0.4
    build_x_mm: float = 220.0
    build_y_mm: float = 220.0
    build_z_mm: float = 250.0
    materials: str = Field(default='PLA,PETG', max_length=255)  # comma separated
    tags: str = Field(default='', max_length=255)  # comma separated
    enabled: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    deleted_at: datetime | None = None
    # the queue: after every job a person confirms the bed is clear; kept here so a restart still waits for them
    bed_clear: bool = Field(default=True, sa_column_kwargs={'server_default': sa.true()})
    auto_schedule: bool = Field(default=True, sa_column_kwargs={'server_default': sa.true()})
    # the spool in the printer: the one place that says where a spool is loaded (unique: one printer per spool)
    loaded_spool_id: int | None = Field(default=None, foreign_key='spool.id', unique=True, index=True)


class PrintJob(SQLModel, table=True):
    """One print on one printer, from start to its outcome. The queue (a later issue) adds its own columns."""

    __tablename__ = 'print_job'
    __table_args__ = (
        # at most one running job per printer: a reconnect or a replay can never record a second one
        sa.Index('ux_print_job_active_per_printer', 'printer_id', unique=True,
                 sqlite_where=sa.text("state IN ('printing', 'paused')"),
                 postgresql_where=sa.text("state IN ('printing', 'paused')")),
        sa.Index('ix_print_job_printer_started', 'printer_id', 'started_at'),
    )
    id: int | None = Field(default=None, primary_key=True)
    printer_id: int = Field(foreign_key='printer.id')
    member_id: int | None = Field(default=None, foreign_key='member.id', index=True)
    file_name: str = Field(default='', max_length=255)  # display only, never a path
    remote_name: str = Field(default='', max_length=500)  # what the printer knows it by
    state: str = Field(default='printing', max_length=16)  # 'printing', 'paused' or a JobOutcome value
    started_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str = Field(default='', max_length=500)
    started_outside: bool = False  # found running on connect (started at the printer or by another tool)
    host_streamed: bool = False  # the host sent every line: a lost connection or host restart ends it
    job_id: int | None = Field(default=None, foreign_key='job.id', index=True)  # None: started outside the queue
    grams_planned: float | None = None
    progress: float | None = None  # last known fraction 0..1 at the end: what a failed job took off the spool


class PrinterSample(SQLModel, table=True):
    """Temperatures and state during a job, downsampled (about one row per 30 s plus every state change)."""

    __tablename__ = 'printer_sample'
    __table_args__ = (sa.Index('ix_printer_sample_job_t', 'job_id', 't'),)
    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key='print_job.id')
    t: datetime
    nozzle: float | None = None
    nozzle_target: float | None = None
    bed: float | None = None
    bed_target: float | None = None
    state: str = Field(default='', max_length=16)


class Job(SQLModel, table=True):
    """A member's print request in the queue, from upload to its outcome. Each attempt on a printer is a PrintJob.

    status: submitted -> approved -> queued -> printing -> done / failed / cancelled (see services/queue.py).
    The figures below come from the file's metadata (None when the file did not say); `requirements` are what
    a printer must offer beyond them.
    """

    __table_args__ = (sa.Index('ix_job_status_priority_position', 'status', 'priority', 'position'),)
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key='member.id', index=True)
    file_name: str = Field(max_length=255)  # the member's name for it: display only, never a path
    stored_name: str = Field(max_length=80, unique=True)  # generated (uuid hex + suffix) under data_dir/jobs
    size_bytes: int = 0
    kind: str = Field(default='gcode', max_length=8)  # 'gcode' or '3mf'
    status: str = Field(default='submitted', max_length=16)
    priority: int = 0  # higher first
    position: int = 0  # order within one priority (staff reorder)
    printer_id: int | None = Field(default=None, foreign_key='printer.id', index=True)  # assigned or printed on
    # metadata
    slicer: str = Field(default='', max_length=80)
    estimated_s: int | None = None
    grams: float | None = None
    filament_mm: float | None = None
    material: str = Field(default='', max_length=32)
    nozzle_mm: float | None = None
    layer_count: int | None = None
    max_nozzle_c: float | None = None
    max_bed_c: float | None = None
    thumbnail: str = Field(default='', max_length=80)  # stored name of the extracted thumbnail, '' if none
    meta_json: str = Field(default='{}', sa_type=sa.Text)  # the rest (warnings, per-extruder figures) for pages
    # requirements
    min_x_mm: float | None = None
    min_y_mm: float | None = None
    min_z_mm: float | None = None
    tags: str = Field(default='', max_length=255)  # comma separated: the printer must have all of them
    # approval and outcome
    auto_approved: bool = False
    approved_by: int | None = Field(default=None, foreign_key='member.id')
    approved_at: datetime | None = None
    submitted_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str = Field(default='', max_length=500)


class BedCheck(SQLModel, table=True):
    """A person confirmed a printer's bed is clear after a job, and said how the job came out."""

    __tablename__ = 'bed_check'
    __table_args__ = (sa.Index('ix_bed_check_printer_at', 'printer_id', 'confirmed_at'),)
    id: int | None = Field(default=None, primary_key=True)
    printer_id: int = Field(foreign_key='printer.id')
    print_job_id: int | None = Field(default=None, foreign_key='print_job.id', index=True)
    confirmed_by: int | None = Field(default=None, foreign_key='member.id', index=True)
    confirmed_at: datetime = Field(default_factory=utcnow)
    outcome: str = Field(default='success', max_length=16)  # 'success' or 'failed'
    reason: str = Field(default='', max_length=500)


class Vendor(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80, unique=True)
    created_at: datetime = Field(default_factory=utcnow)


class Filament(SQLModel, table=True):
    """A product: one vendor's material in one colour. Spools are physical rolls of it."""

    __table_args__ = (sa.UniqueConstraint('vendor_id', 'name'),)
    id: int | None = Field(default=None, primary_key=True)
    vendor_id: int = Field(foreign_key='vendor.id', index=True)
    name: str = Field(max_length=80)
    material: str = Field(max_length=32)  # 'PLA', 'PETG', ... (upper case; matched against printers)
    colour_hex: str = Field(default='', max_length=9)  # '#RRGGBB' or '#RRGGBBAA', '' unknown
    diameter_mm: float = 1.75
    density_g_cm3: float = 1.24
    price_per_kg: float | None = None
    low_stock_grams: float = 0.0  # 0: no alert
    created_at: datetime = Field(default_factory=utcnow)


class Spool(SQLModel, table=True):
    """A roll of filament. Where it is loaded is `Printer.loaded_spool_id`; `location` is its shelf otherwise."""

    id: int | None = Field(default=None, primary_key=True)
    filament_id: int = Field(foreign_key='filament.id', index=True)
    code: str = Field(max_length=16, unique=True)  # random short token printed on the QR label
    initial_grams: float
    remaining_grams: float
    empty_spool_grams: float = 0.0
    lot: str = Field(default='', max_length=80)
    location: str = Field(default='', max_length=80)  # shelf text
    archived: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class SpoolUsage(SQLModel, table=True):
    """The ledger: grams taken off (or, negative, put back on) a spool. One row per (print job, spool): replays,
    restarts and retries of a job's end can never deduct twice. Weigh-in corrections have no print job."""

    __tablename__ = 'spool_usage'
    __table_args__ = (
        sa.UniqueConstraint('print_job_id', 'spool_id'),
        sa.Index('ix_spool_usage_created', 'created_at'),
    )
    id: int | None = Field(default=None, primary_key=True)
    print_job_id: int | None = Field(default=None, foreign_key='print_job.id')
    spool_id: int = Field(foreign_key='spool.id', index=True)
    member_id: int | None = Field(default=None, foreign_key='member.id', index=True)  # who printed or weighed
    grams: float
    reason: str = Field(default='job', max_length=16)  # 'job' (done), 'partial' (failed/cancelled), 'weigh_in'
    created_at: datetime = Field(default_factory=utcnow)
