"""The spool ledger: when a print job ends, one SpoolUsage row per (print job, spool) and the spool's remaining
grams go down in the same transaction. The row is inserted first (ON CONFLICT DO NOTHING on the unique
(print_job_id, spool_id)) and the spool updated only when the row is new, so a replayed, retried or concurrent
job end, or one settled again after a restart, never deducts twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fabpanel.core.printers import JobOutcome
from fabpanel.core.spools import Deduction, UsageFlag, job_deductions
from fabpanel.db.models import Job, Printer, PrintJob, Spool, SpoolUsage
from fabpanel.live.state import LiveState

log = logging.getLogger(__name__)
T = TypeVar('T')

printer_t: sa.Table = Printer.__table__  # type: ignore[attr-defined]
print_job_t: sa.Table = PrintJob.__table__  # type: ignore[attr-defined]
queue_job_t: sa.Table = Job.__table__  # type: ignore[attr-defined]
spool_t: sa.Table = Spool.__table__  # type: ignore[attr-defined]
usage_t: sa.Table = SpoolUsage.__table__  # type: ignore[attr-defined]

ACTIVE = ('printing', 'paused')
CATCH_UP = timedelta(hours=1)  # at start: jobs that ended this recently and were never settled (a crash between)
RETRIES = 5

# SpoolUsage.reason for each kind of row (<= 16 characters)
REASON_DONE, REASON_PARTIAL, REASON_WEIGH_IN = 'job', 'partial', 'weigh_in'
REASON_FLAGGED = {UsageFlag.PROGRESS_UNKNOWN: 'progress_unknown', UsageFlag.GRAMS_UNKNOWN: 'grams_unknown'}


@dataclass(kw_only=True, slots=True, frozen=True)
class Settled:
    deduction: Deduction
    new: bool  # False: this (job, spool) had been settled before; nothing changed


def usage_reason(outcome: JobOutcome, d: Deduction) -> str:
    if d.flag != UsageFlag.NONE:
        return REASON_FLAGGED[d.flag]
    return REASON_DONE if outcome == JobOutcome.DONE else REASON_PARTIAL


async def insert_usage_once(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """Insert one ledger row unless its (print job, spool) is there already; True when it was inserted."""
    insert = postgresql.insert if conn.dialect.name == 'postgresql' else sqlite.insert
    stmt = (
        insert(usage_t)
        .values(**values)
        .on_conflict_do_nothing(index_elements=['print_job_id', 'spool_id'])
        .returning(usage_t.c.id)
    )
    return (await conn.execute(stmt)).first() is not None


async def take_grams(conn: AsyncConnection, spool_id: int, grams: float) -> None:
    """Atomic in the database (no read-modify-write race); a spool never goes below empty."""
    left = spool_t.c.remaining_grams - grams
    await conn.execute(
        sa.update(spool_t).where(spool_t.c.id == spool_id).values(remaining_grams=sa.case((left < 0, 0.0), else_=left))
    )


async def settle_job(conn: AsyncConnection, print_job_id: int, now: datetime) -> list[Settled]:
    """Write what an ended job took off the spool loaded in its printer. Empty when the job is unknown, still
    running, or its printer has no spool loaded (nothing to deduct from)."""
    q = (
        sa.select(print_job_t, printer_t.c.loaded_spool_id, queue_job_t.c.grams.label('queue_grams'))
        .join(printer_t, printer_t.c.id == print_job_t.c.printer_id)
        .outerjoin(queue_job_t, queue_job_t.c.id == print_job_t.c.job_id)
        .where(print_job_t.c.id == print_job_id)
    )
    job = (await conn.execute(q)).first()
    if job is None or job.state in ACTIVE or job.loaded_spool_id is None:
        return []
    try:
        outcome = JobOutcome(job.state)
    except ValueError:
        log.warning('print job %d ended as %r: not a known outcome, nothing deducted', print_job_id, job.state)
        return []
    planned = job.grams_planned if job.grams_planned is not None else job.queue_grams
    out = []
    for d in job_deductions(outcome, {job.loaded_spool_id: planned}, job.progress):
        values = dict(
            print_job_id=print_job_id,
            spool_id=d.spool_id,
            member_id=job.member_id,
            grams=d.grams,
            reason=usage_reason(outcome, d),
            created_at=job.ended_at or now,
        )
        new = await insert_usage_once(conn, values)
        if new and d.grams:
            await take_grams(conn, d.spool_id, d.grams)
        out.append(Settled(deduction=d, new=new))
    return out


async def unsettled_jobs(conn: AsyncConnection, since: datetime, printer_id: int | None = None) -> list[int]:
    """Print jobs ended since `since` on a printer with a spool loaded that have no ledger row yet."""
    has_usage = sa.exists().where(usage_t.c.print_job_id == print_job_t.c.id)
    q = (
        sa.select(print_job_t.c.id)
        .join(printer_t, printer_t.c.id == print_job_t.c.printer_id)
        .where(
            print_job_t.c.state.not_in(ACTIVE),
            print_job_t.c.ended_at >= since,
            ~has_usage,
            printer_t.c.loaded_spool_id.is_not(None),
        )
        .order_by(print_job_t.c.ended_at, print_job_t.c.id)
    )
    if printer_id is not None:
        q = q.where(print_job_t.c.printer_id == printer_id)
    return list((await conn.execute(q)).scalars())


async def write_retrying(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work` in one transaction. SQLite refuses at once (no busy wait) a transaction that read and then
    writes after another writer committed in between: the whole transaction is run again."""
    for attempt in range(RETRIES):
        try:
            async with engine.begin() as conn:
                return await work(conn)
        except OperationalError as e:
            if attempt == RETRIES - 1 or 'locked' not in str(e):
                raise
            await asyncio.sleep(0.02 * (attempt + 1))
    raise AssertionError('unreachable')


class SpoolLedger:
    """Subscribes to `job_ended` and settles each ended job once. One transaction per job."""

    def __init__(self, engine: AsyncEngine, live: LiveState) -> None:
        self.engine, self.live = engine, live
        self._pending: set[asyncio.Task[Any]] = set()

    def attach(self) -> None:
        self.live.events.job_ended.subscribe(self._job_ended)

    def detach(self) -> None:
        self.live.events.job_ended.unsubscribe(self._job_ended)

    async def start(self) -> None:
        """Settle jobs whose end was recorded but whose event was lost (the panel stopped in between)."""
        self.attach()
        await self.catch_up(datetime.now(UTC) - CATCH_UP)

    async def stop(self) -> None:
        await asyncio.sleep(0)  # job ends the fleet reported while stopping are delivered first
        await self.settle_pending()
        self.detach()

    async def settle_pending(self) -> None:
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def _job_ended(self, arg: tuple[int, int, str]) -> None:
        task = asyncio.ensure_future(self.settle(arg[1]))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def catch_up(self, since: datetime) -> int:
        async with self.engine.connect() as conn:
            jobs = await unsettled_jobs(conn, since)
        for job_id in jobs:
            log.warning('print job %d ended while the ledger was away: settling it now', job_id)
            await self.settle(job_id)
        return len(jobs)

    async def settle(self, print_job_id: int) -> list[Settled]:
        try:
            settled = await write_retrying(self.engine, lambda conn: settle_job(conn, print_job_id, datetime.now(UTC)))
        except Exception:
            # the job stays unsettled; the next start's catch-up (or the next spool swap) settles it
            log.exception('print job %d: the spool ledger could not be written', print_job_id)
            return []
        for s in settled:
            if s.new:
                log.info(
                    'print job %d took %.1f g off spool %d%s',
                    print_job_id,
                    s.deduction.grams,
                    s.deduction.spool_id,
                    f' ({s.deduction.flag.value})' if s.deduction.flag else '',
                )
                self.live.events.spool_changed.emit(s.deduction.spool_id)
        return settled
