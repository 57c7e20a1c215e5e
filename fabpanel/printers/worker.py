"""One worker per printer: owns its connection (reconnecting with backoff), settles what the printer reports
against the job the database holds on every (re)connect, turns reports into live state, and records jobs and
downsampled samples through short transactions on its own queue (never one write per report)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fabpanel.core.printers import ACTIVE_STATES, JobOutcome, PrinterConfig, PrinterReport, PrinterState
from fabpanel.live.state import LiveState

from . import job_store
from .driver import CommandRefused, PrinterDriver, PrinterUnavailable
from .job_store import ActiveJob
from .registry import DriverRegistry
from .worker_parts import DbQueue, LiveView, SampleBuffer

log = logging.getLogger(__name__)
T = TypeVar('T')


@dataclass(kw_only=True, slots=True)
class Timing:
    """How patient a worker is (seconds). Tests shorten them."""

    backoff_initial: float = 1.0
    backoff_cap: float = 30.0
    stable_after: float = 10.0  # a connection that lasted this long starts the backoff over
    connect_timeout: float = 30.0
    stale_after: float = 30.0  # connected but no report for this long: the tile shows the age
    sample_every: float = 30.0  # one stored sample per job this often, plus one per state change
    flush_every: float = 10.0  # samples are written in batches this often
    settle: float = 3.0  # an idle report waits this long for the driver's own job_ended before the worker decides
    start_grace: float = 60.0  # a job just started may show as idle this long before it counts as ended
    probe_after: float = 10.0  # no report for this long: ask the driver whether the printer is alive (then as often)
    probe_timeout: float = 5.0
    port_poll: float = 0.5  # how often an unplugged USB printer's link is looked for (one readlink)
    estop_window: float = 10.0  # a job ending this soon after our emergency stop ended by it, whatever the driver says


ESTOP_REASON = 'emergency stop'
# suffixes a printer goes by: Bambu starts a .3mf as a project, PrusaLink reads .bgcode as binary G-code
SUFFIXES = ('.gcode.3mf', '.3mf', '.bgcode', '.gcode')


def same_file(a: str, b: str) -> bool:
    def base(name: str) -> str:
        return PureWindowsPath(PurePosixPath(name).name).name.lower()

    return bool(a) and bool(b) and base(a) == base(b)


def remote_name_for(display_name: str, local_name: str = '') -> str:
    """A generated name (a member's file name never becomes a path on the printer) with the suffix of the display
    name, else of the local file: a .gcode.3mf stays a 3MF project, a .bgcode binary G-code."""
    for name in (display_name.lower(), local_name.lower()):
        suffix = next((s for s in SUFFIXES if name.endswith(s)), '')
        if suffix:
            break
    return f'fabpanel-{uuid.uuid4().hex[:12]}{suffix or ".gcode"}'


class PrinterWorker:
    """Implements DriverListener for the driver it owns."""

    def __init__(
        self,
        config: PrinterConfig,
        *,
        engine: AsyncEngine,
        live: LiveState,
        registry: DriverRegistry,
        job: ActiveJob | None = None,
        timing: Timing | None = None,
    ) -> None:
        self.config = config
        self.engine, self.live, self.registry = engine, live, registry
        self.timing = timing or Timing()
        self.job = job
        self.driver: PrinterDriver | None = None
        self.view = LiveView(live, config.id)
        self.printer = self.view.printer
        self.printer.name, self.printer.kind = config.name, config.kind.value
        self._lock = asyncio.Lock()  # one command at a time
        self.db = DbQueue(engine, f'printer {config.name}')
        self.samples = SampleBuffer(self.db, self.timing.sample_every)
        self._last_report = time.monotonic()
        self._state = PrinterState.OFFLINE
        self._settle: asyncio.TimerHandle | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._probe: asyncio.Task[None] | None = None
        self._probed_at = 0.0
        self._estop: tuple[float, ActiveJob | None] | None = None  # when we sent an emergency stop, and to which job
        self.view.show_job(job)

    # ---- life ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        name = f'printer-{self.config.id}'
        self._tasks = [
            asyncio.create_task(self._run(), name=name),
            asyncio.create_task(self._watch(), name=f'{name}-watch'),
        ]
        self.db.start()

    async def stop(self, reason: str = 'the panel stopped') -> None:
        """Close the connection; a host-streamed job ends with it. Pending records are written first."""
        for task in [*self._tasks, *([self._probe] if self._probe else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self.job is not None and self.job.host_streamed:
            self._end_job(JobOutcome.INTERRUPTED, reason)
        self.samples.flush()
        await self.db.stop()

    async def _run(self) -> None:
        t = self.timing
        delay, failures = t.backoff_initial, 0
        while True:
            driver: PrinterDriver | None = None
            try:
                if failures == 0:
                    self.view.update(state=PrinterState.CONNECTING.value)
                driver = self.registry.create(self.config, self)
                report = await asyncio.wait_for(driver.connect(), t.connect_timeout)
            except asyncio.CancelledError:
                await _close(driver)
                raise
            except Exception as e:  # noqa: BLE001 - whatever the driver raises, the worker retries
                await _close(driver)
                if failures == 0:
                    log.warning('printer %s is offline: %s', self.config.name, e)
                failures += 1
                self._offline(str(e) if isinstance(e, PrinterUnavailable) else '')
                delay = await self._pause(delay)
                continue
            if failures:
                log.info('printer %s is back online', self.config.name)
            connected_at, failures = time.monotonic(), 1  # a later failure is logged as the loss below
            self._connected(driver, report)
            try:
                await driver.wait_closed()
            finally:
                self.driver = None
                await _close(driver)
            log.warning('printer %s: the connection was lost', self.config.name)
            self._lost()
            if time.monotonic() - connected_at >= t.stable_after:
                delay = t.backoff_initial
            delay = await self._pause(delay)

    async def _pause(self, delay: float) -> float:
        """Wait before the next connection attempt; returns the delay after that one. An unplugged USB printer
        is tried the moment it is plugged in again; anything else waits out the backoff."""
        t = self.timing
        try:
            back = await self.registry.driver_class(self.config.kind).wait_reachable(self.config, t.port_poll)
        except PrinterUnavailable:  # no driver for this kind: connect() says so again after the backoff
            back = False
        if back:
            log.info('printer %s is plugged in again', self.config.name)
            return t.backoff_initial
        await asyncio.sleep(delay)
        return min(delay * 2, t.backoff_cap)

    def _connected(self, driver: PrinterDriver, report: PrinterReport) -> None:
        self._reconcile(report, host_streaming=driver.capabilities.host_streaming)
        self.driver = driver
        self.report(report)

    def _lost(self) -> None:
        if self.job is not None and self.job.host_streamed:
            self._end_job(JobOutcome.INTERRUPTED, 'the connection to the printer was lost')
        self._offline('')

    def _offline(self, message: str) -> None:
        self._state = PrinterState.OFFLINE
        self.view.offline(message)

    async def _watch(self) -> None:
        t = self.timing
        interval = min(1.0, t.stale_after / 4, t.probe_after / 2)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            silent, driver = now - self._last_report, self.driver
            if driver is not None and silent >= t.probe_after and now - self._probed_at >= t.probe_after:
                if self._probe is None or self._probe.done():
                    self._probed_at = now
                    self._probe = asyncio.create_task(self._ask_alive(driver), name=f'printer-{self.config.id}-probe')
            if driver is not None and silent > t.stale_after and not self.printer.stale:
                log.warning('printer %s: no report for %.0f s', self.config.name, silent)
                self.view.update(stale=True)
            if self.samples.age() >= t.flush_every:
                self.samples.flush()

    async def _ask_alive(self, driver: PrinterDriver) -> None:
        """Printers that report only changes are quiet while idle: the driver's cheap check tells a quiet printer
        from a silent link. Only an answer counts; a driver that cannot tell leaves the report's age to speak."""
        try:
            alive = await asyncio.wait_for(driver.alive(), self.timing.probe_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a failed check is a silent printer, nothing more
            log.debug('printer %s: liveness check failed: %s', self.config.name, e)
            alive = False
        if alive and self.driver is driver:
            self._last_report = time.monotonic()
            self.view.update_quiet(updated_at=datetime.now(UTC))  # what the tile shows is still what it says
            self.view.update(stale=False)

    # ---- commands ------------------------------------------------------------------------------------------

    async def emergency_stop(self) -> None:
        """Not queued behind other commands (a console M190 may wait minutes). Drivers end the stopped job in
        their own ways (cancelled, failed with M112's error, interrupted by the reset that follows): a job that
        ends within estop_window after it ends cancelled by the emergency stop."""
        driver = self.driver
        if driver is None:
            raise PrinterUnavailable(f'{self.config.name} is not connected')
        self._estop = (time.monotonic(), self.job)
        log.warning('printer %s: emergency stop', self.config.name)
        try:
            await driver.emergency_stop()
        except CommandRefused:
            self._estop = None  # the printer said no: whatever ends the job later is not our stop
            raise

    async def command(self, factory: Callable[[PrinterDriver], Awaitable[T]]) -> T:
        """Run one command on the connected driver; commands for one printer run one after another."""
        async with self._lock:
            driver = self.driver
            if driver is None:
                raise PrinterUnavailable(f'{self.config.name} is not connected')
            return await factory(driver)

    async def start_job(self, local_path: Path, display_name: str, member_id: int | None) -> int:
        async with self._lock:
            driver = self.driver
            if driver is None:
                raise PrinterUnavailable(f'{self.config.name} is not connected')
            if self.job is not None or self._state != PrinterState.IDLE:
                raise CommandRefused(f'{self.config.name} is {self._state.value}')
            remote = await driver.upload(local_path, remote_name_for(display_name, local_path.name))
            job = ActiveJob(
                member_id=member_id,
                file_name=display_name,
                remote_name=remote,
                started_at=datetime.now(UTC),
                host_streamed=driver.capabilities.host_streaming,
            )
            self.job = job
            try:
                job_id = await self.db.put(lambda conn: job_store.insert_job(conn, self.config.id, job))
            except Exception:
                self.job = None
                raise
            try:
                await driver.start(remote)
            except Exception as e:
                self._end_job(JobOutcome.FAILED, f'the printer did not start the job: {e}')
                raise
            self.view.show_job(job)
            self.live.events.job_started.emit((self.config.id, job_id))
            return job_id

    # ---- DriverListener ------------------------------------------------------------------------------------

    def report(self, report: PrinterReport) -> None:
        self._last_report = time.monotonic()
        state = report.state
        if state != self._state:
            log.info('printer %s: %s', self.config.name, state.value)
        self._state = state
        self._follow_job(report)
        self.view.apply(report, self.job)
        if self.job is not None:
            self.samples.add(self.job, self.printer, state.value)

    def job_ended(self, outcome: JobOutcome, reason: str) -> None:
        if self.job is None:
            log.debug('printer %s: end of a job it does not follow (%s)', self.config.name, outcome.value)
            return
        self._end_job(outcome, reason)

    def action(self, name: str) -> None:
        log.info('printer %s asks the host to %s', self.config.name, name)

    def console(self, direction: str, line: str) -> None:
        self.live.events.printer_console.emit((self.config.id, direction, line))

    # ---- jobs ----------------------------------------------------------------------------------------------

    def _reconcile(self, report: PrinterReport, *, host_streaming: bool) -> None:
        """What the printer says now against what the database says; runs on every (re)connect."""
        job, active = self.job, report.state in ACTIVE_STATES
        name = report.job.file_name if report.job else ''
        if job is not None:
            if active and not job.host_streamed and (not name or same_file(name, job.remote_name)):
                return  # still the job we know
            if job.host_streamed:
                self._end_job(JobOutcome.INTERRUPTED, 'the connection to the printer was lost while streaming')
            elif report.last_outcome is not None and (
                not report.last_file or same_file(report.last_file, job.remote_name)
            ):
                self._end_job(report.last_outcome, report.message if report.last_outcome == JobOutcome.FAILED else '')
            elif report.state == PrinterState.ERROR:
                self._end_job(JobOutcome.FAILED, report.message or 'the printer reports an error')
            else:
                self._end_job(JobOutcome.INTERRUPTED, 'the printer no longer reports this job')
        if active:
            self._record_outside(report)

    def _record_outside(self, report: PrinterReport) -> None:
        progress = report.job
        started = datetime.now(UTC)
        if progress is not None and progress.elapsed_s:
            started -= timedelta(seconds=progress.elapsed_s)
        name = progress.file_name if progress else ''
        job = ActiveJob(
            file_name=PurePosixPath(name).name or name,
            remote_name=name,
            started_at=started,
            started_outside=True,
            seen_active=True,
            state='paused' if report.state == PrinterState.PAUSED else 'printing',
        )
        self.job = job
        log.info('printer %s is printing a job started elsewhere: %s', self.config.name, name)
        done = self.db.put(lambda conn: job_store.insert_job(conn, self.config.id, job))
        done.add_done_callback(
            lambda f: (
                f.cancelled()
                or f.exception() is not None
                or self.live.events.job_started.emit((self.config.id, f.result()))
            )
        )
        self.view.show_job(job)

    def _follow_job(self, report: PrinterReport) -> None:
        job, state = self.job, report.state
        if state in ACTIVE_STATES:
            if job is None:
                self._record_outside(report)
                return
            job.seen_active = True
            wanted = (
                'paused'
                if state == PrinterState.PAUSED
                else 'printing'
                if state == PrinterState.PRINTING
                else job.state
            )
            if wanted != job.state and job.id is not None:
                job.state = wanted
                job_id = job.id
                self.db.put(lambda conn: job_store.set_job_state(conn, job_id, wanted))
        elif job is not None and state != PrinterState.OFFLINE and self._settle is None:
            self._settle = asyncio.get_running_loop().call_later(self.timing.settle, self._settle_job, job)

    def _settle_job(self, job: ActiveJob) -> None:
        """A job the printer no longer runs and the driver has not ended: decide from the printer's report."""
        self._settle = None
        if self.job is not job or self._state in ACTIVE_STATES or self._state == PrinterState.OFFLINE:
            return
        if not job.seen_active and datetime.now(UTC) - job.started_at < timedelta(seconds=self.timing.start_grace):
            self._settle = asyncio.get_running_loop().call_later(self.timing.settle, self._settle_job, job)
            return
        if self._state == PrinterState.ERROR:
            self._end_job(JobOutcome.FAILED, self.printer.message or 'the printer reports an error')
        elif self.printer.progress is not None and self.printer.progress >= 99.9:
            self._end_job(JobOutcome.DONE, '')
        else:
            self._end_job(JobOutcome.INTERRUPTED, 'the printer stopped without saying how the job ended')

    def _end_job(self, outcome: JobOutcome, reason: str) -> None:
        job, self.job = self.job, None
        if job is None:
            return
        if self._estop is not None and self._estop[1] is job:
            if time.monotonic() - self._estop[0] <= self.timing.estop_window:
                outcome, reason = JobOutcome.CANCELLED, ESTOP_REASON
            self._estop = None
        if self._settle is not None:
            self._settle.cancel()
            self._settle = None
        log.info('printer %s: job %s %s %s', self.config.name, job.id, outcome.value, reason)
        self.samples.add(job, self.printer, outcome.value, force=True)  # the last sample says how it ended
        self.samples.flush()
        at = datetime.now(UTC)

        async def write(conn: AsyncConnection) -> bool:
            return job.id is not None and await job_store.end_job(conn, job.id, outcome, reason, at)

        done = self.db.put(write)
        done.add_done_callback(
            lambda f: (
                f.cancelled()
                or f.exception() is not None
                or not f.result()
                or self.live.events.job_ended.emit((self.config.id, job.id, outcome.value))
            )
        )
        self.view.show_job(None)


async def _close(driver: PrinterDriver | None) -> None:
    if driver is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(driver.close(), 10)
