"""The simulated printer: heating curves, a job from a file, controls and injected faults."""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fabpanel.core.printers import Heater, JobOutcome, PrinterConfig, PrinterKind, PrinterReport, PrinterState
from fabpanel.printers.driver import CommandRefused, PrinterUnavailable
from fabpanel.printers.sim import SimHeater, SimulatedDriver, read_file, sim_printer


@dataclass
class Recorder:
    reports: list[PrinterReport] = field(default_factory=list)
    ended: list[tuple[JobOutcome, str]] = field(default_factory=list)

    def report(self, report: PrinterReport) -> None:
        self.reports.append(report)

    def job_ended(self, outcome: JobOutcome, reason: str) -> None:
        self.ended.append((outcome, reason))

    def action(self, name: str) -> None:
        pass

    def console(self, direction: str, line: str) -> None:
        pass

    async def until(self, predicate, timeout: float = 10.0) -> PrinterReport:  # noqa: ANN001, ASYNC109
        async with asyncio.timeout(timeout):
            while not (self.reports and predicate(self.reports[-1])):  # noqa: ASYNC110 - a test helper
                await asyncio.sleep(0.01)
        return self.reports[-1]


def address(**options: object) -> str:
    query = '&'.join(f'{k}={v}' for k, v in options.items())
    return f'sim://test-{uuid.uuid4().hex[:8]}?{query}'


def driver_for(addr: str) -> tuple[SimulatedDriver, Recorder]:
    recorder = Recorder()
    config = PrinterConfig(id=1, name='Sim', kind=PrinterKind.SIMULATED, address=addr)
    return SimulatedDriver(config, recorder), recorder


def gcode(tmp_path: Path, seconds: int = 120, layers: int = 10, nozzle: int = 210, bed: int = 55) -> Path:
    path = tmp_path / 'part.gcode'
    lines = [f';TIME:{seconds}', f';LAYER_COUNT:{layers}', f'M140 S{bed}', f'M104 S{nozzle}', 'G28']
    lines += [f'G1 X{i % 100} Y{i % 50} E0.1' for i in range(300)]
    path.write_text('\n'.join(lines) + '\n')
    return path


def run(heater: SimHeater, seconds: float, dt: float = 0.5) -> float:
    rng = random.Random(1)
    for _ in range(int(seconds / dt)):
        heater.step(dt, rng)
    return heater.actual


def test_heating_curves_are_realistic() -> None:
    nozzle = SimHeater(target=200)
    assert 110 < run(nozzle, 30) < 180  # well on its way after half a minute
    assert run(nozzle, 30) > 197  # about a minute to 200 °C
    assert 199 < run(nozzle, 120) < 201  # then held
    bed = SimHeater(t_max=120.0, tau_heat=175.0, tau_cool=300.0, target=60)
    assert 35 < run(bed, 45) < 55
    assert run(bed, 50) > 58  # about 90 s to 60 °C
    bed.target = 0
    after = run(bed, 300)
    assert 22 < after < 45  # cools slowly towards the room
    assert run(bed, 3000) < 23


def test_read_file_takes_the_slicer_estimate_and_temperatures(tmp_path: Path) -> None:
    info = read_file(gcode(tmp_path, seconds=3723, layers=42, nozzle=230, bed=80))
    assert (info.duration_s, info.layers, info.nozzle_c, info.bed_c) == (3723, 42, 230, 80)
    prusa = tmp_path / 'p.gcode'
    prusa.write_text('G28\n;LAYER_CHANGE\n;LAYER_CHANGE\n; estimated printing time (normal mode) = 1h 2m 3s\n')
    info = read_file(prusa)
    assert info.duration_s == 3723 and info.layers == 2 and info.nozzle_c == 215


async def test_a_job_heats_prints_and_ends(tmp_path: Path) -> None:
    driver, rec = driver_for(address(speed=120, report=0.02))
    first = await driver.connect()
    assert first.state == PrinterState.IDLE and first.nozzle.actual == pytest.approx(22, abs=1)
    name = await driver.upload(gcode(tmp_path, seconds=240, layers=10), 'job.gcode')
    await driver.start(name)
    heating = await rec.until(lambda r: r.state == PrinterState.PRINTING)
    assert heating.nozzle.target == 210 and heating.bed.target == 55 and heating.job.fraction == 0
    mid = await rec.until(lambda r: r.job is not None and 0.3 < r.job.fraction < 0.9)
    assert mid.nozzle.actual == pytest.approx(210, abs=2) and 1 <= mid.job.layer <= 10
    assert mid.job.remaining_s == pytest.approx(240 * (1 - mid.job.fraction) / 120, abs=0.2)  # real seconds
    end = await rec.until(lambda r: r.state == PrinterState.IDLE)
    assert rec.ended == [(JobOutcome.DONE, '')] and end.last_outcome == JobOutcome.DONE
    assert end.nozzle.target == 0 and end.job is None
    layers = [r.job.layer for r in rec.reports if r.job is not None]
    assert layers == sorted(layers) and layers[-1] == 10
    await driver.close()


async def test_pause_resume_cancel_and_emergency_stop(tmp_path: Path) -> None:
    driver, rec = driver_for(address(speed=50, report=0.02))
    await driver.connect()
    with pytest.raises(CommandRefused):
        await driver.pause()
    await driver.start(await driver.upload(gcode(tmp_path, seconds=10_000), 'x.gcode'))
    await driver.pause()
    paused = await rec.until(lambda r: r.state == PrinterState.PAUSED)
    await asyncio.sleep(0.1)
    assert rec.reports[-1].job.fraction == paused.job.fraction  # nothing moves while paused
    await driver.resume()
    await rec.until(lambda r: r.state == PrinterState.PRINTING)
    await driver.cancel()
    await rec.until(lambda r: r.state == PrinterState.IDLE)
    assert rec.ended == [(JobOutcome.CANCELLED, 'cancelled')]
    await driver.start(await driver.upload(gcode(tmp_path), 'y.gcode'))
    await driver.emergency_stop()
    stopped = await rec.until(lambda r: r.state == PrinterState.ERROR)
    assert rec.ended[-1] == (JobOutcome.CANCELLED, 'emergency stop') and 'emergency' in stopped.message
    await driver.close()


async def test_console_and_temperatures() -> None:
    driver, rec = driver_for(address(speed=60, report=0.02))
    await driver.connect()
    await driver.set_temperature(Heater.NOZZLE, 200)
    assert (await driver.send_gcode(['M140 S60 ; bed']))[0] == 'ok'
    hot = await rec.until(lambda r: r.nozzle.actual > 199 and r.bed.actual > 59, timeout=10)
    assert hot.nozzle.target == 200 and hot.bed.target == 60
    assert (await driver.send_gcode(['M105']))[0].startswith('ok T:')
    assert (await driver.send_gcode(['M104 S400']))[0].startswith('Error:')  # the firmware's own maximum
    await driver.close()


async def test_thermal_runaway_fails_the_job(tmp_path: Path) -> None:
    addr = address(speed=50, report=0.02)
    driver, rec = driver_for(addr)
    await driver.connect()
    await driver.start(await driver.upload(gcode(tmp_path, seconds=10_000), 'x.gcode'))
    sim_printer(addr).thermal_runaway()
    report = await rec.until(lambda r: r.state == PrinterState.ERROR)
    assert rec.ended == [(JobOutcome.FAILED, 'Thermal Runaway, system stopped! Heater_ID: 0')]
    assert 'Thermal Runaway' in report.message and report.job is None
    with pytest.raises(CommandRefused):
        await driver.start('x.gcode')
    await driver.close()


async def test_disconnect_and_refused_connect(tmp_path: Path) -> None:
    addr = address(speed=50, report=0.02)
    driver, rec = driver_for(addr)
    await driver.connect()
    await driver.start(await driver.upload(gcode(tmp_path, seconds=10_000), 'net.gcode'))
    sim_printer(addr).disconnect()
    await asyncio.wait_for(driver.wait_closed(), 1)
    with pytest.raises(PrinterUnavailable):
        await driver.pause()
    sim_printer(addr).refuse_connect = True
    again, rec2 = driver_for(addr)
    with pytest.raises(PrinterUnavailable):
        await again.connect()
    sim_printer(addr).refuse_connect = False
    report = await again.connect()  # a network printer printed on while the host was away
    assert report.state == PrinterState.PRINTING and report.job.file_name == 'net.gcode'
    await again.close()
    await driver.close()


async def test_a_streamed_job_stops_with_the_stream(tmp_path: Path) -> None:
    addr = address(speed=50, report=0.02, streaming=1)
    driver, rec = driver_for(addr)
    assert driver.capabilities.host_streaming and not SimulatedDriver.capabilities.host_streaming
    await driver.connect()
    path = gcode(tmp_path, seconds=10_000)
    assert await driver.upload(path, 'ignored.gcode') == str(path)  # host-streamed: the local file
    await driver.start(str(path))
    sim_printer(addr).disconnect()
    again, _rec = driver_for(addr)
    report = await again.connect()
    assert report.state == PrinterState.IDLE and report.last_outcome == JobOutcome.INTERRUPTED
    await again.close()
