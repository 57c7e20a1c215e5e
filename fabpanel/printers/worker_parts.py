"""The pieces a printer worker is built from: its ordered database queue, the live printer it keeps up to date,
and the buffer that downsamples a job's temperatures before they are written in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fabpanel.core.printers import ACTIVE_STATES, PrinterReport, PrinterState
from fabpanel.live.printers import PrinterLive, Sample, TemperatureHistory
from fabpanel.live.state import LiveState

from . import job_store
from .job_store import ActiveJob

log = logging.getLogger(__name__)
DbOp = Callable[[AsyncConnection], Awaitable[Any]]
ETA_JITTER_S = 5.0  # a new ETA closer than this to the shown one is not worth a tile update


class DbQueue:
    """Writes in order (a job's row before its samples), each in its own short transaction, off the hot path."""

    def __init__(self, engine: AsyncEngine, name: str) -> None:
        self.engine, self.name = engine, name
        self._queue: asyncio.Queue[tuple[DbOp, asyncio.Future[Any]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._write(), name=f'{self.name}-db')

    def put(self, op: DbOp) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future))
        return future

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Write what is queued (waiting at most `timeout`), then stop."""
        if self._task is None:
            return
        done = self.put(_nothing)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(done), timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _write(self) -> None:
        while True:
            op, future = await self._queue.get()
            try:
                async with self.engine.begin() as conn:
                    result = await op(conn)
            except asyncio.CancelledError:
                future.cancel()
                raise
            except Exception as e:  # noqa: BLE001 - one failed write must not stop the printer's records
                log.exception('%s: a database write failed', self.name)
                if not future.done():
                    future.set_exception(e)
                    future.exception()  # retrieved: callers that wait get it, nobody is warned twice
            else:
                if not future.done():
                    future.set_result(result)


async def _nothing(_conn: AsyncConnection) -> None:
    return None


class LiveView:
    """The printer's bindable live object: only changed attributes are set (each one reaches the browsers), and
    a change a tile shows sends printer_changed. Temperatures change with every report: bound, no event."""

    def __init__(self, live: LiveState, printer_id: int) -> None:
        self.live, self.id = live, printer_id
        self.printer: PrinterLive = live.printers.setdefault(printer_id, PrinterLive(id=printer_id))
        self.history: TemperatureHistory = live.temperatures.setdefault(printer_id, TemperatureHistory())

    def update(self, **values: Any) -> bool:
        changed = self.update_quiet(**values)
        if changed:
            self.live.events.printer_changed.emit(self.id)
        return changed

    def update_quiet(self, **values: Any) -> bool:
        changed = False
        for key, value in values.items():
            if getattr(self.printer, key) != value:
                setattr(self.printer, key, value)
                changed = True
        return changed

    def show_job(self, job: ActiveJob | None) -> None:
        if job is None:
            self.update(
                job_id=None,
                file_name='',
                printing_since=None,
                started_by='',
                progress=None,
                eta=None,
                layer=None,
                layer_count=None,
            )
        else:
            self.update(
                job_id=job.id, file_name=job.file_name, printing_since=job.started_at, started_by=job.started_by
            )

    def offline(self, message: str) -> None:
        """The last good reading stays, marked stale (pages show its age)."""
        self.update(state=PrinterState.OFFLINE.value, stale=True, **({'message': message} if message else {}))

    def apply(self, r: PrinterReport, job: ActiveJob | None) -> None:
        at = r.at or datetime.now(UTC)
        values: dict[str, Any] = {'state': r.state.value, 'message': r.message, 'stale': False}
        progress = r.job if r.state in ACTIVE_STATES else None
        if progress is not None:
            values.update(
                progress=None if progress.fraction is None else round(progress.fraction * 100, 1),
                layer=progress.layer,
                layer_count=progress.layer_count,
            )
            if progress.remaining_s is not None:
                eta, old = at + timedelta(seconds=progress.remaining_s), self.printer.eta
                if old is None or abs((eta - old).total_seconds()) > ETA_JITTER_S:
                    values['eta'] = eta
            if job is not None:
                values.update(job_id=job.id, file_name=job.file_name)
        self.update_quiet(
            nozzle_actual=r.nozzle.actual,
            nozzle_target=r.nozzle.target,
            bed_actual=r.bed.actual,
            bed_target=r.bed.target,
            updated_at=at,
        )
        self.update(**values)
        sample = Sample(
            t=time.time(),
            nozzle=r.nozzle.actual,
            nozzle_target=r.nozzle.target,
            bed=r.bed.actual,
            bed_target=r.bed.target,
        )
        if self.history.add(sample):
            self.live.events.printer_sample.emit((self.id, sample))


class SampleBuffer:
    """A job's temperatures and state, kept about once per `every` seconds plus at each state change, and
    written in batches (never one row per report)."""

    def __init__(self, db: DbQueue, every: float) -> None:
        self.db, self.every = db, every
        self._rows: list[tuple[ActiveJob, dict[str, Any]]] = []
        self._last: tuple[float, str] = (0.0, '')
        self._oldest = 0.0

    def add(self, job: ActiveJob, p: PrinterLive, state: str, *, force: bool = False) -> None:
        now = time.monotonic()
        last_t, last_state = self._last
        if not force and state == last_state and now - last_t < self.every:
            return
        self._last = (now, state)
        if not self._rows:
            self._oldest = now
        self._rows.append(
            (
                job,
                {
                    't': datetime.now(UTC),
                    'state': state,
                    'nozzle': p.nozzle_actual,
                    'nozzle_target': p.nozzle_target,
                    'bed': p.bed_actual,
                    'bed_target': p.bed_target,
                },
            )
        )

    def age(self) -> float:
        return time.monotonic() - self._oldest if self._rows else 0.0

    def flush(self) -> None:
        pending, self._rows = self._rows, []
        if pending:

            async def write(conn: AsyncConnection) -> None:
                rows = [row | {'job_id': job.id} for job, row in pending if job.id is not None]
                await job_store.insert_samples(conn, rows)

            self.db.put(write)
