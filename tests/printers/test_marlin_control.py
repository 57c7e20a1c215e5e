"""MarlinDriver control against the simulator process: host-side pause with park and resume, the printer's own
`//action:pause`, cancel with the end script, emergency stop, thermal runaway and a printer restart."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fabpanel.core.printers import JobOutcome, PrinterState
from fabpanel.printers.driver import CommandRefused
from tests.printers.conftest import RecordingListener
from tests.printers.marlin_fixtures import END, HANDSHAKE, PARK, SimFactory, driver_for, print_file, sim, until_recorded
from tests.printers.marlin_sim_io import executed, sample_gcode

__all__ = ['sim']  # the fixture

DWELL = 'G4 S2'  # a slow command mid-file, so a test can act while the job is surely running


def split_around_pause(ran: list[str], expected: list[str]) -> tuple[int, list[str]]:
    """Where the pause began (file lines before it) and the lines from the pause up to the file's rest."""
    body = ran[len(HANDSHAKE) :]
    k = body.index('M400')
    assert body[:k] == expected[:k]
    rest = len(expected) - k
    return k, body[k : len(body) - rest]


async def test_host_pause_parks_and_resume_returns(
    sim: SimFactory, listener: RecordingListener, tmp_path: Path
) -> None:
    printer = sim()
    expected = sample_gcode(tmp_path / 'part.gcode', 3000, {1500: DWELL})
    driver = driver_for(printer.link, listener)
    await driver.connect()
    try:
        await driver.start(await driver.upload(tmp_path / 'part.gcode', 'part.gcode'))
        await until_recorded(printer, DWELL)
        await driver.pause()
        assert listener.last.state is PrinterState.PAUSED
        with pytest.raises(CommandRefused):
            await driver.pause()
        await driver.resume()
        await listener.until(lambda: listener.ended, 30.0, 'the job to end')
        assert listener.ended == [(JobOutcome.DONE, '')]
        assert PrinterState.PAUSING in [r.state for r in listener.reports]
        ran = executed(printer.recorded())
        k, scripts = split_around_pause(ran, expected)
        assert ran[len(HANDSHAKE) + k + len(scripts) :] == expected[k:]  # the rest of the file, once
        x, y, z = where_paused(listener)
        assert scripts == [
            *PARK,
            f'G1 Z{z + 10:.3f} F600',
            'G1 X5 Y215 F6000',  # park: retract, lift, move away
            'M140 S50',
            'M109 S200',
            'M190 S50',  # resume: the job's temperatures back
            'G90',
            f'G1 X{x:.3f} Y{y:.3f} F6000',
            f'G1 Z{z:.3f} F600',  # above the part, down
            'G91',
            'G1 E2 F2400',
            'G90',
            'M82',  # unretract, the file's modes back
            'G1 F1800',
        ]  # and its feed rate
    finally:
        await driver.close()


def where_paused(listener: RecordingListener) -> tuple[float, float, float]:
    answers = [line for direction, line in listener.lines if direction == '<' and line.startswith('X:')]
    m = re.match(r'X:(\S+) Y:(\S+) Z:(\S+)', answers[-1])
    assert m is not None
    return float(m.group(1)), float(m.group(2)), float(m.group(3))


async def test_printer_asks_for_a_pause(sim: SimFactory, listener: RecordingListener, tmp_path: Path) -> None:
    printer = sim()
    # what a filament sensor or the printer's menu does with host action commands: `//action:pause`
    expected = sample_gcode(tmp_path / 'part.gcode', 3000, {1500: 'M118 A1 action:pause'})
    driver = driver_for(printer.link, listener)
    await driver.connect()
    try:
        await driver.start(await driver.upload(tmp_path / 'part.gcode', 'part.gcode'))
        await listener.until(lambda: listener.reports[-1].state is PrinterState.PAUSED, 15.0, 'the pause')
        assert listener.actions == ['pause']
        assert listener.last.job is not None and 0 < (listener.last.job.fraction or 0) < 1
        await driver.resume()
        await listener.until(lambda: listener.ended, 30.0, 'the job to end')
        assert listener.ended == [(JobOutcome.DONE, '')]
        ran = executed(printer.recorded())
        k, scripts = split_around_pause(ran, expected)
        # the lines already in the window when the printer asked still run, then the park
        assert 'M118 A1 action:pause' in expected[k - 8 : k] and scripts[: len(PARK)] == PARK
    finally:
        await driver.close()


async def test_printer_asks_to_cancel(sim: SimFactory, listener: RecordingListener, tmp_path: Path) -> None:
    printer = sim()
    sample_gcode(tmp_path / 'part.gcode', 3000, {1500: 'M118 A1 action:cancel'})  # "Cancel print" on the LCD
    driver = driver_for(printer.link, listener)
    await driver.connect()
    try:
        await print_file(driver, listener, tmp_path / 'part.gcode')
        assert listener.actions == ['cancel']
        assert listener.ended == [(JobOutcome.CANCELLED, 'cancelled')]
        assert executed(printer.recorded())[-len(END) :] == END
        assert listener.last.state is PrinterState.IDLE
    finally:
        await driver.close()


async def test_cancel_runs_the_safe_end_script(sim: SimFactory, listener: RecordingListener, tmp_path: Path) -> None:
    printer = sim()
    expected = sample_gcode(tmp_path / 'part.gcode', 3000, {1500: DWELL})
    driver = driver_for(printer.link, listener)
    await driver.connect()
    try:
        await driver.start(await driver.upload(tmp_path / 'part.gcode', 'part.gcode'))
        await until_recorded(printer, DWELL)
        await driver.cancel()
        assert listener.ended == [(JobOutcome.CANCELLED, 'cancelled')]
        assert listener.last.state is PrinterState.IDLE and listener.last.job is None
        ran = executed(printer.recorded())
        assert ran[-len(END) :] == END
        file_part = ran[len(HANDSHAKE) : -len(END)]
        assert file_part == expected[: len(file_part)] and len(file_part) < len(expected) - 1000
    finally:
        await driver.close()


async def test_emergency_stop_goes_out_at_once(sim: SimFactory, listener: RecordingListener, tmp_path: Path) -> None:
    printer = sim()
    sample_gcode(tmp_path / 'part.gcode', 3000, {1500: 'G4 S10'})
    driver = driver_for(printer.link, listener)
    await driver.connect()
    try:
        await driver.start(await driver.upload(tmp_path / 'part.gcode', 'part.gcode'))
        await until_recorded(printer, 'G4 S10')
        await driver.emergency_stop()  # the dwell still holds the queue: only the emergency parser sees it
        assert listener.ended == [(JobOutcome.CANCELLED, 'emergency stop')]
        assert listener.last.state is PrinterState.ERROR
        await until_recorded(printer, 'M112', within_s=2.0)
        await listener.until(lambda: ('<', 'Error:Printer halted. kill() called!') in listener.lines, 2.0, 'the kill')
        assert printer.recorded()[-2:] == ['G4 S10', 'M112']
    finally:
        await driver.close()


async def test_thermal_runaway_fails_the_job(sim: SimFactory, listener: RecordingListener, tmp_path: Path) -> None:
    printer = sim()
    sample_gcode(tmp_path / 'part.gcode', 3000, {1200: 'M118 SIM:thermal'})
    driver = driver_for(printer.link, listener)
    await driver.connect()
    try:
        await print_file(driver, listener, tmp_path / 'part.gcode')
        reason = 'Thermal Runaway, system stopped! Heater_ID: 0'
        assert listener.ended == [(JobOutcome.FAILED, reason)]
        assert listener.last.state is PrinterState.ERROR and listener.last.message == reason
        with pytest.raises(CommandRefused):
            await driver.start(str(tmp_path / 'part.gcode'))
    finally:
        await driver.close()


async def test_printer_restart_fails_the_job_and_shakes_hands_again(
    sim: SimFactory, listener: RecordingListener, tmp_path: Path
) -> None:
    printer = sim()
    sample_gcode(tmp_path / 'part.gcode', 1500, {800: 'M118 SIM:reset'})
    driver = driver_for(printer.link, listener)
    await driver.connect()
    try:
        await print_file(driver, listener, tmp_path / 'part.gcode')
        assert listener.ended == [(JobOutcome.FAILED, 'the printer restarted')]
        await listener.until(lambda: listener.last.state is PrinterState.IDLE, 10.0, 'the new handshake')
        assert executed(printer.recorded())[-len(HANDSHAKE) :] == HANDSHAKE
        sample_gcode(tmp_path / 'again.gcode', 300)
        await print_file(driver, listener, tmp_path / 'again.gcode')
        assert listener.ended[-1] == (JobOutcome.DONE, '')
    finally:
        await driver.close()
