"""A simulated printer for `--demo` and the tests: first-order heaters, a job that runs for the time the slicer
estimated, pause/resume/cancel/e-stop, and faults to inject (thermal runaway, a lost connection, refused
connects, silence). The machine (`SimPrinter`) outlives its connections, as a real printer does: a network
printer goes on printing while the host is away; a host-streamed one stops when the stream does.

Address: `sim://<name>?speed=20&report=0.5&streaming=1` (speed: simulated seconds per real second; report:
real seconds between reports; streaming: behave like a USB printer the host streams to)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fabpanel.core.printers import (
    Capabilities,
    Heater,
    JobOutcome,
    JobProgress,
    PrinterConfig,
    PrinterReport,
    PrinterState,
    Temperature,
)

from .driver import CommandRefused, DriverListener, PrinterDriver, PrinterUnavailable
from .sim_model import FIRMWARE_MAX_C, SimFile, SimHeater, SimJob, read_file

__all__ = ['SimFile', 'SimHeater', 'SimPrinter', 'SimulatedDriver', 'read_file', 'sim_printer']


class SimPrinter:
    """The simulated machine. Time runs `speed` times faster than real time and is integrated when asked."""

    def __init__(
        self,
        name: str,
        *,
        speed: float = 1.0,
        report_every: float = 1.0,
        streaming: bool = False,
        seed: int | None = None,
    ) -> None:
        self.name = name
        self.speed = speed
        self.report_every = report_every
        self.streaming = streaming
        self.rng = random.Random(seed)
        self.nozzle = SimHeater()
        self.bed = SimHeater(t_max=120.0, tau_heat=175.0, tau_cool=300.0)
        self.state = PrinterState.IDLE
        self.job: SimJob | None = None
        self.files: dict[str, SimFile] = {}
        self.message = ''
        self.last_outcome: JobOutcome | None = None
        self.last_file = ''
        self.refuse_connect = False
        self.silent = False  # connected but sending no reports (a hung link)
        # how an emergency stop ends the job, as drivers differ: Marlin says cancelled, OctoPrint fails the job with
        # M112's error a moment later; None: the printer says nothing (the job just stops)
        self.estop_ending: tuple[JobOutcome, str] | None = (JobOutcome.CANCELLED, 'emergency stop')
        self.estop_delay = 0.0  # real seconds before that ending is told
        self.driver: SimulatedDriver | None = None
        self._last = time.monotonic()

    # ---- physics ---------------------------------------------------------------------------------------------

    def advance(self) -> None:
        now = time.monotonic()
        dt, self._last = (now - self._last) * self.speed, now
        step = max(1.0, dt / 2000)  # long absences are integrated in at most a few thousand steps
        while dt > 0:
            self._step(min(step, dt))
            dt -= step

    def _step(self, dt: float) -> None:
        self.nozzle.step(dt, self.rng)
        self.bed.step(dt, self.rng)
        job = self.job
        if job is None or self.state != PrinterState.PRINTING:
            return
        if job.printed_s == 0 and not (self.nozzle.near_target() and self.bed.near_target()):
            return  # still heating up
        job.printed_s += dt
        if job.printed_s >= job.file.duration_s:
            self.end_job(JobOutcome.DONE, '')

    # ---- what a person or the host does -----------------------------------------------------------------------

    def start(self, name: str, file: SimFile) -> None:
        if self.state != PrinterState.IDLE:
            raise CommandRefused(f'the printer is {self.state.value}')
        self.job = SimJob(name=name, file=file)
        self.nozzle.target, self.bed.target = file.nozzle_c, file.bed_c
        self.state, self.message = PrinterState.PRINTING, ''

    def start_outside(self, name: str, duration_s: float = 600.0, layers: int = 20) -> None:
        """Someone starts a job at the printer itself (its own screen, another tool)."""
        self.start(name, SimFile(lines=0, duration_s=duration_s, layers=layers))

    def end_job(self, outcome: JobOutcome, reason: str) -> None:
        job, self.job = self.job, None
        self.nozzle.target = self.bed.target = 0.0
        if self.state != PrinterState.ERROR:
            self.state = PrinterState.IDLE
        if job is not None:
            self.last_outcome, self.last_file = outcome, job.name
            if self.driver is not None:
                self.driver.listener.job_ended(outcome, reason)

    def set_target(self, heater: Heater, target: float) -> None:
        if target > FIRMWARE_MAX_C.get(heater, 0.0):
            raise CommandRefused(f'{heater.value} {target:g} °C is above the firmware maximum')
        if heater == Heater.NOZZLE:
            self.nozzle.target = target
        elif heater == Heater.BED:
            self.bed.target = target

    # ---- faults ----------------------------------------------------------------------------------------------

    def thermal_runaway(self) -> None:
        self.advance()
        self.nozzle.heating = False
        self.state, self.message = PrinterState.ERROR, 'Thermal Runaway, system stopped! Heater_ID: 0'
        self.end_job(JobOutcome.FAILED, self.message)
        self._push()

    def disconnect(self) -> None:
        """The cable is pulled (or the network drops). A host-streamed job stops with the stream."""
        driver = self.driver
        if driver is not None:
            driver.lost()

    def reset(self) -> None:
        """What a reconnect with a board reset (or a power cycle) does after an error."""
        self.nozzle.heating = True
        if self.state == PrinterState.ERROR:
            self.state, self.message = PrinterState.IDLE, ''

    # ---- reports ---------------------------------------------------------------------------------------------

    def report(self) -> PrinterReport:
        progress = None
        if self.job is not None:
            job = self.job
            fraction = min(1.0, job.printed_s / job.file.duration_s)
            progress = JobProgress(
                file_name=job.name,
                fraction=fraction,
                elapsed_s=time.monotonic() - job.started,
                remaining_s=(job.file.duration_s - job.printed_s) / self.speed,
                layer=min(job.file.layers, 1 + int(fraction * job.file.layers)),
                layer_count=job.file.layers,
            )
        return PrinterReport(
            state=self.state,
            job=progress,
            message=self.message,
            firmware='fabpanel-sim 1.0',
            nozzle=Temperature(actual=round(self.nozzle.actual, 2), target=self.nozzle.target),
            bed=Temperature(actual=round(self.bed.actual, 2), target=self.bed.target),
            last_outcome=self.last_outcome,
            last_file=self.last_file,
            at=datetime.now(UTC),
        )

    def _push(self) -> None:
        if self.driver is not None and not self.silent:
            self.driver.listener.report(self.report())


_WORLD: dict[str, SimPrinter] = {}


def sim_printer(address: str) -> SimPrinter:
    """The simulated machine at `address`, made on first use (so it outlives its drivers)."""
    printer = _WORLD.get(address)
    if printer is None:
        parts = urlsplit(address)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        printer = SimPrinter(
            parts.netloc or parts.path or address,
            speed=float(options.get('speed', 1.0)),
            report_every=float(options.get('report', 1.0)),
            streaming=options.get('streaming', '0') in ('1', 'true', 'yes'),
        )
        _WORLD[address] = printer
    return printer


class SimulatedDriver(PrinterDriver):
    kind = 'simulated'
    capabilities = Capabilities(temperature_autoreport=True)

    def __init__(self, config: PrinterConfig, listener: DriverListener) -> None:
        super().__init__(config, listener)
        self.printer = sim_printer(config.address or f'sim://printer-{config.id}')
        if self.printer.streaming:
            self.capabilities = replace(self.capabilities, host_streaming=True)
        self._closed = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None

    async def connect(self) -> PrinterReport:
        p = self.printer
        await asyncio.sleep(0)
        if p.refuse_connect:
            raise PrinterUnavailable(f'{p.name}: connection refused')
        if p.driver is not None and p.driver is not self:
            p.driver.lost()  # one host at a time, as with a serial port
        p.advance()
        p.reset()
        p.driver = self
        self._ticker = asyncio.create_task(self._tick(), name=f'sim-{p.name}')
        return p.report()

    def lost(self) -> None:
        p = self.printer
        if p.driver is self:
            p.driver = None
            if p.streaming and p.job is not None:
                p.advance()
                p.end_job(JobOutcome.INTERRUPTED, 'the host stopped streaming')
        if self._ticker is not None:
            self._ticker.cancel()
        self._closed.set()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.printer.report_every)
            self.printer.advance()
            self.printer._push()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        self.lost()
        if self._ticker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker

    def _connected(self) -> SimPrinter:
        if self._closed.is_set():
            raise PrinterUnavailable(f'{self.printer.name}: not connected')
        self.printer.advance()
        return self.printer

    async def upload(self, local_path: Path, remote_name: str) -> str:
        p = self._connected()
        info = await asyncio.to_thread(read_file, local_path)
        name = str(local_path) if p.streaming else remote_name
        p.files[name] = info
        return name

    async def start(self, remote_name: str) -> None:
        p = self._connected()
        if remote_name not in p.files:
            raise CommandRefused(f'no file {remote_name!r} on the printer')
        p.start(remote_name, p.files[remote_name])
        p._push()

    async def pause(self) -> None:
        await self._switch(PrinterState.PRINTING, PrinterState.PAUSED)

    async def resume(self) -> None:
        await self._switch(PrinterState.PAUSED, PrinterState.PRINTING)

    async def _switch(self, expected: PrinterState, to: PrinterState) -> None:
        p = self._connected()
        if p.state != expected:
            raise CommandRefused(f'the printer is {p.state.value}')
        p.state = to
        p._push()

    async def cancel(self) -> None:
        p = self._connected()
        if p.job is None:
            raise CommandRefused('no job to cancel')
        p.end_job(JobOutcome.CANCELLED, 'cancelled')
        p._push()

    async def emergency_stop(self) -> None:
        p = self._connected()
        p.state, p.message = PrinterState.ERROR, 'Printer halted: emergency stop'
        ending = p.estop_ending
        if ending is None:
            p.job = None  # stopped without a word about the job
            p.nozzle.target = p.bed.target = 0.0
        elif p.estop_delay > 0:
            asyncio.get_running_loop().call_later(p.estop_delay, lambda: p.job is not None and p.end_job(*ending))
        else:
            p.end_job(*ending)
        p._push()

    async def send_gcode(self, lines: Sequence[str]) -> list[str]:
        p = self._connected()
        answers = []
        for line in lines:
            answers.append(self._gcode(p, line.split(';', 1)[0].strip().upper()))
        p._push()
        return answers

    def _gcode(self, p: SimPrinter, line: str) -> str:
        heaters = {'M104': Heater.NOZZLE, 'M109': Heater.NOZZLE, 'M140': Heater.BED, 'M190': Heater.BED}
        command = line.split(' ', 1)[0]
        if command in heaters:
            m = re.search(r'S(-?\d+(?:\.\d+)?)', line)
            try:
                p.set_target(heaters[command], float(m.group(1)) if m else 0.0)
            except CommandRefused as e:
                return f'Error:{e}'
        elif command == 'M105':
            return f'ok T:{p.nozzle.actual:.2f} /{p.nozzle.target:.2f} B:{p.bed.actual:.2f} /{p.bed.target:.2f}'
        elif command == 'M112':
            p.state, p.message = PrinterState.ERROR, 'Printer halted: emergency stop'
            p.end_job(JobOutcome.CANCELLED, 'emergency stop')
        return 'ok'
