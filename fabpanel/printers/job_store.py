"""The fleet's reads and writes: printers as configs, running jobs, job outcomes and downsampled samples.
Each function takes a connection inside a short transaction the caller opens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fabpanel.core.printers import JobOutcome, PrinterConfig, PrinterKind, PrinterLimits
from fabpanel.db.loaders import aware
from fabpanel.db.models import Member, Printer, PrinterSample, PrintJob

printer_t: sa.Table = Printer.__table__  # type: ignore[attr-defined]
job_t: sa.Table = PrintJob.__table__  # type: ignore[attr-defined]
sample_t: sa.Table = PrinterSample.__table__  # type: ignore[attr-defined]
member_t: sa.Table = Member.__table__  # type: ignore[attr-defined]

ACTIVE = ('printing', 'paused')  # PrintJob.state while the job runs; afterwards a JobOutcome value


@dataclass(kw_only=True, slots=True)
class ActiveJob:
    """The job a worker follows. `id` is None until its row is written."""

    id: int | None = None
    member_id: int | None = None
    file_name: str = ''
    remote_name: str = ''
    started_at: datetime
    host_streamed: bool = False
    started_outside: bool = False
    started_by: str = ''  # first name, for the tile
    state: str = 'printing'
    seen_active: bool = False  # the printer has reported it running (not only our start command)


def split_words(text: str) -> tuple[str, ...]:
    return tuple(w for w in (part.strip() for part in (text or '').split(',')) if w)


def config_of(row: Any) -> PrinterConfig:
    return PrinterConfig(
        id=row.id,
        name=row.name,
        kind=PrinterKind(row.kind),
        address=row.address,
        baudrate=row.baudrate,
        api_key=row.api_key,
        username=row.username,
        serial_number=row.serial_number,
        tls_fingerprint=row.tls_fingerprint,
        limits=PrinterLimits(max_nozzle_c=row.max_nozzle_c, max_bed_c=row.max_bed_c, max_chamber_c=row.max_chamber_c),
        nozzle_diameter_mm=row.nozzle_diameter_mm,
        build_volume_mm=(row.build_x_mm, row.build_y_mm, row.build_z_mm),
        materials=split_words(row.materials),
        tags=split_words(row.tags),
    )


async def load_printers(conn: AsyncConnection) -> list[tuple[PrinterConfig, bool]]:
    """(config, enabled) of every printer not deleted, by name."""
    rows = await conn.execute(sa.select(printer_t).where(printer_t.c.deleted_at.is_(None)).order_by(printer_t.c.name))
    return [(config_of(row), row.enabled) for row in rows]


async def active_jobs(conn: AsyncConnection) -> dict[int, ActiveJob]:
    q = (
        sa.select(job_t, member_t.c.first_name)
        .outerjoin(member_t, member_t.c.id == job_t.c.member_id)
        .where(job_t.c.state.in_(ACTIVE))
    )
    return {
        row.printer_id: ActiveJob(
            id=row.id,
            member_id=row.member_id,
            file_name=row.file_name,
            remote_name=row.remote_name,
            started_at=aware(row.started_at) or aware(row.ended_at),
            host_streamed=row.host_streamed,
            started_outside=row.started_outside,
            started_by=row.first_name or '',
            state=row.state,
        )
        for row in await conn.execute(q)
    }


async def interrupt_host_streamed(conn: AsyncConnection, now: datetime, reason: str) -> list[tuple[int, int]]:
    """Host-streamed jobs still running in the database: the host went away mid-print, so they are over
    (never restarted). Returns (printer id, job id) of each."""
    rows = (
        await conn.execute(
            sa.select(job_t.c.id, job_t.c.printer_id).where(job_t.c.state.in_(ACTIVE), job_t.c.host_streamed.is_(True))
        )
    ).all()
    if rows:
        await conn.execute(
            sa.update(job_t)
            .where(job_t.c.id.in_([r.id for r in rows]))
            .values(state=JobOutcome.INTERRUPTED.value, ended_at=now, reason=reason)
        )
    return [(r.printer_id, r.id) for r in rows]


async def insert_job(conn: AsyncConnection, printer_id: int, job: ActiveJob) -> int:
    if job.member_id is not None:
        name = (await conn.execute(sa.select(member_t.c.first_name).where(member_t.c.id == job.member_id))).scalar()
        job.started_by = name or ''
    result = await conn.execute(
        sa.insert(job_t)
        .values(
            printer_id=printer_id,
            member_id=job.member_id,
            file_name=job.file_name[:255],
            remote_name=job.remote_name[:500],
            state=job.state,
            started_at=job.started_at,
            reason='',
            started_outside=job.started_outside,
            host_streamed=job.host_streamed,
        )
        .returning(job_t.c.id)
    )
    job.id = int(result.scalar_one())
    return job.id


async def set_job_state(conn: AsyncConnection, job_id: int, state: str) -> None:
    await conn.execute(sa.update(job_t).where(job_t.c.id == job_id, job_t.c.state.in_(ACTIVE)).values(state=state))


async def end_job(conn: AsyncConnection, job_id: int, outcome: JobOutcome, reason: str, at: datetime) -> bool:
    """Record how the job ended; False when it had already ended (a second report of the same end)."""
    result = await conn.execute(
        sa.update(job_t)
        .where(job_t.c.id == job_id, job_t.c.state.in_(ACTIVE))
        .values(state=outcome.value, ended_at=at, reason=reason[:500])
    )
    return bool(result.rowcount)


async def insert_samples(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(sa.insert(sample_t), list(rows))
