"""Marlin printers on USB serial: the host streams the file itself (no OctoPrint in between).

MarlinDriver owns one port (pyserial-asyncio) found through its stable address (fabpanel.printers.serial_ports),
shakes hands (M110, M115 capabilities, M155 auto-report or M105 polling), streams jobs through MarlinLink, and
turns what the firmware says into PrinterReports, job ends and host actions for the fleet worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import serial

from fabpanel.core.marlin import (
    Action,
    Capability,
    ErrorKind,
    Event,
    FirmwareError,
    FirmwareInfo,
    Position,
    Reading,
    Start,
    TemperatureReport,
    Temperatures,
    merge_temperatures,
    strip_comment,
)
from fabpanel.core.printers import (
    ACTIVE_STATES,
    Capabilities,
    JobOutcome,
    PrinterConfig,
    PrinterReport,
    PrinterState,
    Temperature,
)
from fabpanel.printers import serial_ports
from fabpanel.printers.driver import CommandRefused, DriverListener, PrinterDriver, PrinterUnavailable
from fabpanel.printers.marlin_job import FileJob, ParkSettings, end_script, park_script, resume_script
from fabpanel.printers.marlin_link import MarlinLink, MarlinSettings
from fabpanel.printers.marlin_port import PortTransport, open_port, port_moved

log = logging.getLogger(__name__)


class MarlinDriver(PrinterDriver):
    kind = 'marlin'
    capabilities = Capabilities(temperature_autoreport=True, host_streaming=True)

    def __init__(
        self,
        config: PrinterConfig,
        listener: DriverListener,
        *,
        settings: MarlinSettings | None = None,
        park: ParkSettings | None = None,
    ) -> None:
        super().__init__(config, listener)
        self.settings = settings or MarlinSettings()
        self.park = park or ParkSettings()
        self.firmware_caps: dict[str, bool] = {}
        self.lines_streamed = 0  # file lines sent by the last job (the benchmark's count)
        self._link: MarlinLink | None = None
        self._closed = asyncio.Event()
        self._closed.set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._control = asyncio.Lock()  # pause / resume / cancel one at a time
        self._state = PrinterState.OFFLINE
        self._temps = Temperatures()
        self._firmware = self._message = self._tty = ''
        self._position: Position | None = None
        self._job: FileJob | None = None
        self._job_started = 0.0
        self._names: dict[str, str] = {}
        self._paused_at: Position | None = None
        self._pause_targets: tuple[float | None, float | None] = (None, None)
        self._printer_paused = False
        self._polling = False
        self._last_key: tuple[Any, ...] | None = None

    # ---- connection ---------------------------------------------------------------------------------------------
    async def connect(self) -> PrinterReport:
        if self._link is not None:
            return self._report()
        self._set_state(PrinterState.CONNECTING)
        try:
            self._tty = await serial_ports.resolve_async(self.config.address)
            port = await asyncio.to_thread(open_port, self._tty, self.config.baudrate)
        except PrinterUnavailable:
            self._set_state(PrinterState.OFFLINE)
            raise
        except (serial.SerialException, OSError) as exc:  # busy (another program has it), permissions
            self._set_state(PrinterState.OFFLINE)
            raise PrinterUnavailable(f'cannot open {self._tty}: {exc}') from exc
        loop = asyncio.get_running_loop()
        link = self._link = MarlinLink(self.settings, self._on_event, self._on_lost, self.listener.console)
        link.on_source_done = self._job_done
        self._closed.clear()
        PortTransport(loop, link, port)
        await asyncio.sleep(0)  # connection_made
        try:
            await self._handshake()
        except (TimeoutError, ConnectionError, PrinterUnavailable) as exc:
            await self.close()
            raise PrinterUnavailable(f'the printer on {self._tty} does not answer') from exc
        for job in (self._watchdog(), self._watch_port()):
            self._spawn(job)
        self._set_state(PrinterState.IDLE)
        return self._report()

    async def alive(self) -> bool:
        """Temperatures arrive every poll_s (auto-report or our M105) but only changes become reports: a printer
        idling at a steady temperature is quiet, and alive while its lines keep coming."""
        link = self._link
        return link is not None and link.loop.time() - link.heard_at < 3 * self.settings.poll_s + 1.0

    @classmethod
    async def wait_reachable(cls, config: PrinterConfig, poll_s: float) -> bool:
        """Unplugged (the by-id link or the serial number is gone): wait until it is plugged in again, however long
        that takes; a printer that is plugged in but did not answer waits out the worker's backoff instead."""
        if await serial_ports.current(config.address) is not None:
            return False
        await serial_ports.wait_present(config.address, interval=poll_s)
        return True

    async def _handshake(self) -> None:
        link = self._require_link()
        for _ in range(self.settings.handshake_attempts):
            link.reset_numbering()
            link.next_n = 0  # `N0 M110 N0*125`: the line OctoPrint and Pronterface open with
            try:
                await asyncio.wait_for(link.command('M110 N0'), self.settings.handshake_timeout_s)
                break
            except TimeoutError:
                continue  # booting after the port opened (Arduino auto-reset) or noise: say it again
        else:
            raise PrinterUnavailable('no answer to M110')
        self.firmware_caps.clear()
        await self._ask('M115')
        if self.firmware_caps.get('AUTOREPORT_TEMP'):
            await self._ask(f'M155 S{max(1, round(self.settings.poll_s))}')  # whole seconds only
        else:
            self._spawn(self._poll_temperatures())
        await self._ask('M105')

    async def _ask(self, cmd: str) -> list[str]:
        return await asyncio.wait_for(self._require_link().command(cmd), self.settings.handshake_timeout_s * 2)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        link = self._link
        if link is not None and link.transport is not None:
            link.transport.close()
            await self._closed.wait()
        elif link is not None:
            self._on_lost(None)

    def _on_lost(self, exc: Exception | None) -> None:
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        self._link = None
        if self._job is not None:
            self._end_job(JobOutcome.INTERRUPTED, 'the printer connection was lost')
        if exc is not None:
            log.warning('printer %s: connection lost (%s)', self.config.name, exc)
        self._set_state(PrinterState.OFFLINE)
        self._closed.set()

    async def _watchdog(self) -> None:
        period = min(1.0, self.settings.ok_timeout_s / 4)
        while (link := self._link) is not None:
            await asyncio.sleep(period)
            if not link.check_timeout():
                log.warning('printer %s stopped answering', self.config.name)
                await self.close()
                return
            if self._state in ACTIVE_STATES:
                self._publish()  # progress, at most once per period

    async def _watch_port(self) -> None:
        while self._link is not None:
            await asyncio.sleep(serial_ports.POLL_S)
            if await asyncio.to_thread(port_moved, self.config.address, self._tty):
                # the by-id link names another tty now (replugged, re-enumerated): that is where the printer is
                log.warning('printer %s: %s no longer leads to %s', self.config.name, self.config.address, self._tty)
                await self.close()
                return

    async def _poll_temperatures(self) -> None:
        if self._polling:
            return  # already polling (a second handshake after a firmware restart)
        self._polling = True
        try:
            await self._poll_loop()
        finally:
            self._polling = False

    async def _poll_loop(self) -> None:
        pending: asyncio.Future[list[str]] | None = None
        while (link := self._link) is not None:
            if pending is None or pending.done():
                pending = link.command('M105')
                pending.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
            await asyncio.sleep(self.settings.poll_s)

    # ---- jobs -----------------------------------------------------------------------------------------------------
    async def upload(self, local_path: Path, remote_name: str) -> str:
        if not await asyncio.to_thread(local_path.is_file):
            raise CommandRefused(f'{local_path.name} is not a file')
        self._names[str(local_path)] = remote_name
        return str(local_path)  # streamed from here: nothing to copy

    async def start(self, remote_name: str) -> None:
        link = self._require_link()
        if self._state is not PrinterState.IDLE:
            raise CommandRefused(f'the printer is {self._state.value}')
        job = FileJob(Path(remote_name), self._names.get(remote_name, Path(remote_name).name), link.kick)
        try:
            await job.open()
        except OSError as exc:
            raise CommandRefused(f'cannot read {job.name}') from exc
        self._job, self._job_started, self._printer_paused = job, time.monotonic(), False
        self._message = ''
        link.source, link.source_paused, link.job_offset = job, False, 0
        self._set_state(PrinterState.PRINTING)
        link.kick()

    def _job_done(self) -> None:
        self._publish()  # the last progress (100 %) before the job is gone from the reports
        self._end_job(JobOutcome.DONE, '')
        self._set_state(PrinterState.IDLE)

    def _end_job(self, outcome: JobOutcome, reason: str) -> None:
        job, self._job = self._job, None
        if job is None:
            return
        job.close()
        self.lines_streamed = job.lines_sent
        if self._link is not None:
            self._link.drop_source()
        log.info('printer %s: job %s ended %s %s', self.config.name, job.name, outcome.value, reason)
        self.listener.job_ended(outcome, reason)

    async def pause(self) -> None:
        async with self._control:
            if self._state is not PrinterState.PRINTING:
                raise CommandRefused(f'the printer is {self._state.value}')
            link = self._require_link()
            self._set_state(PrinterState.PAUSING)
            link.source_paused = True
            await self._drain(link)
            if self._job is None:
                return  # the last lines were already on their way: the job is done
            pos = await self._where()
            self._paused_at = pos
            self._pause_targets = (self._tool().target, self._temps.bed.target if self._temps.bed else None)
            await self._run(park_script(pos, self.park, self.config.build_volume_mm))
            self._set_state(PrinterState.PAUSED)

    async def _where(self) -> Position:
        self._position = None
        await self._run(['M400', 'M114'])  # M400: the planner is empty, so M114 tells where the nozzle is
        if self._position is None:
            raise CommandRefused('the printer did not report its position')
        return self._position

    async def resume(self) -> None:
        async with self._control:
            if self._state is not PrinterState.PAUSED or self._job is None:
                raise CommandRefused(f'the printer is {self._state.value}')
            link = self._require_link()
            self._set_state(PrinterState.PRINTING)
            if self._printer_paused:
                self._printer_paused = False
                await self._run(['M108'])  # the firmware paused itself (M600, runout): let it continue
            elif self._paused_at is not None:
                nozzle, bed = self._pause_targets
                await self._run(resume_script(self._paused_at, self._job, self.park, nozzle, bed))
            link.source_paused = False
            link.kick()

    async def cancel(self) -> None:
        async with self._control:
            if self._state not in ACTIVE_STATES or self._job is None:
                raise CommandRefused(f'the printer is {self._state.value}')
            link = self._require_link()
            self._set_state(PrinterState.CANCELLING)
            link.drop_source()
            await self._drain(link)
            await self._run(end_script(self.park, self.config.build_volume_mm))
            self._end_job(JobOutcome.CANCELLED, 'cancelled')
            self._set_state(PrinterState.IDLE)

    async def emergency_stop(self) -> None:
        link = self._require_link()
        link.write_now(b'M112\n')  # unnumbered, ahead of everything: Marlin's emergency parser acts on it at once
        self.listener.console('>', 'M112')
        link.drop_source()
        link.forget_inflight()
        self._end_job(JobOutcome.CANCELLED, 'emergency stop')
        self._message = 'emergency stop'
        self._set_state(PrinterState.ERROR)

    async def send_gcode(self, lines: Sequence[str]) -> list[str]:
        commands = [c for c in (strip_comment(line) for line in lines) if c]
        if any(c.upper().split()[0] == 'M112' for c in commands):
            await self.emergency_stop()
            return []
        answers = await self._run(commands)
        return [text for answer in answers for text in answer]

    async def _drain(self, link: MarlinLink) -> None:
        try:
            await link.drain()
        except ConnectionError as exc:
            raise PrinterUnavailable(str(exc)) from exc

    async def _run(self, commands: Sequence[str]) -> list[list[str]]:
        link = self._require_link()
        try:
            return list(await asyncio.gather(*(link.command(c) for c in commands)))
        except ConnectionError as exc:
            raise PrinterUnavailable(str(exc)) from exc

    # ---- what the firmware says -----------------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if isinstance(event, TemperatureReport):
            self._temps = merge_temperatures(self._temps, event.temperatures)
            self._publish()
        elif isinstance(event, Position):
            self._position = event
        elif isinstance(event, FirmwareError):
            self._on_error(event)
        elif isinstance(event, Action):
            self._on_action(event)
        elif isinstance(event, Capability):
            self.firmware_caps[event.name] = event.enabled
        elif isinstance(event, FirmwareInfo):
            self._firmware = event.name
        elif isinstance(event, Start) and self._state is not PrinterState.CONNECTING:
            self._on_restart()

    def _on_error(self, event: FirmwareError) -> None:
        if event.kind is not ErrorKind.FATAL:
            self._message = event.message
            self._publish()
            return
        if self._link is not None:
            self._link.drop_source()
            self._link.forget_inflight()
        if self._state is PrinterState.ERROR:
            return  # `Printer halted. kill() called!` after the reason: keep the reason
        log.error('printer %s: %s', self.config.name, event.message)
        self._end_job(JobOutcome.FAILED, event.message)
        self._message = event.message
        self._set_state(PrinterState.ERROR)

    def _on_action(self, event: Action) -> None:
        self.listener.action(event.name)
        state = self._state
        if event.name == 'pause' and state is PrinterState.PRINTING:
            self._spawn(self.pause())
        elif event.name == 'paused' and state is PrinterState.PRINTING and self._link is not None:
            self._printer_paused = True  # the firmware parks by itself (M600, filament runout)
            self._link.source_paused = True
            self._set_state(PrinterState.PAUSED)
        elif event.name in ('resume', 'resumed') and state is PrinterState.PAUSED:
            self._spawn(self.resume())
        elif event.name == 'cancel' and state in ACTIVE_STATES:
            self._spawn(self.cancel())
        elif event.name == 'disconnect':
            self._spawn(self.close())

    def _on_restart(self) -> None:
        """The firmware rebooted (reset button, brown-out): a streamed job cannot go on; shake hands again."""
        self._end_job(JobOutcome.FAILED, 'the printer restarted')
        if self._link is not None:
            self._link.forget_inflight()
        self._message = 'the printer restarted'
        self._set_state(PrinterState.CONNECTING)
        self._spawn(self._rehandshake())

    async def _rehandshake(self) -> None:
        try:
            await self._handshake()
        except (TimeoutError, ConnectionError, PrinterUnavailable):
            await self.close()
            return
        self._set_state(PrinterState.IDLE)

    # ---- reports --------------------------------------------------------------------------------------------------
    def _tool(self) -> Reading:
        return self._temps.tools[0] if self._temps.tools else Reading(actual=float('nan'))

    def _report(self) -> PrinterReport:
        t, tool = self._temps, self._tool()
        job, link = self._job, self._link
        return PrinterReport(
            state=self._state,
            nozzle=Temperature(actual=tool.actual, target=tool.target) if t.tools else Temperature(),
            bed=Temperature(actual=t.bed.actual, target=t.bed.target) if t.bed else Temperature(),
            chamber=Temperature(actual=t.chamber.actual, target=t.chamber.target) if t.chamber else None,
            job=None if job is None else job.progress(link.job_offset if link else 0, self._job_started),
            message=self._message,
            firmware=self._firmware,
            at=datetime.now(UTC),
        )

    def _publish(self) -> None:
        report = self._report()
        job = report.job
        key = (
            report.state,
            report.nozzle,
            report.bed,
            report.chamber,
            report.message,
            report.firmware,
            None if job is None else (job.file_name, round(job.fraction or 0.0, 3), job.layer),
        )
        if key != self._last_key:  # only changes (elapsed time alone is not one)
            self._last_key = key
            self.listener.report(report)

    def _set_state(self, state: PrinterState) -> None:
        if state is not self._state:
            log.info('printer %s: %s -> %s', self.config.name, self._state.value, state.value)
            self._state = state
        self._publish()

    # ---- helpers --------------------------------------------------------------------------------------------------
    def _require_link(self) -> MarlinLink:
        if self._link is None:
            raise PrinterUnavailable('the printer is not connected')
        return self._link

    def _spawn(self, job: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning('printer %s: %s', self.config.name, exc)
