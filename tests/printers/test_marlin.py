"""MarlinDriver against the Marlin simulator in another process on a real pty: handshake, streaming with line
numbers and checksums (checked by the simulator), resends, checksum errors, a lost ok, busy, polling."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fabpanel.core.printers import JobOutcome, PrinterState
from tests.printers.conftest import RecordingListener
from tests.printers.marlin_fixtures import FAST, HANDSHAKE, SimFactory, driver_for, print_file, sim
from tests.printers.marlin_sim_io import executed, sample_gcode

__all__ = ['sim']  # the fixture


async def test_handshake_reports_firmware_capabilities_and_temperatures(
    sim: SimFactory, listener: RecordingListener
) -> None:
    printer = sim()
    driver = driver_for(printer.link, listener)
    report = await driver.connect()
    try:
        assert report.state is PrinterState.IDLE
        assert report.firmware == 'Marlin 2.1.2.1 (fabpanel sim)'
        assert report.nozzle.actual == pytest.approx(22.0) and report.bed.target == 0.0
        assert driver.firmware_caps['AUTOREPORT_TEMP'] and driver.firmware_caps['EMERGENCY_PARSER']
        assert printer.recorded() == HANDSHAKE  # numbered and checksummed: --strict notes anything else with '!'
        await driver.send_gcode(['M104 S200 ; preheat'])
        # the auto-report (M155), not polling, brings the heating curve in
        await listener.until(lambda: (listener.last.nozzle.actual or 0) > 150, 6.0, 'the nozzle to heat')
        assert listener.last.nozzle.target == 200.0
        assert executed(printer.recorded()) == [*HANDSHAKE, 'M104 S200']
    finally:
        await driver.close()
    assert listener.last.state is PrinterState.OFFLINE


async def test_polls_m105_when_the_firmware_cannot_autoreport(sim: SimFactory, listener: RecordingListener) -> None:
    printer = sim(extra=('--no-autoreport',))
    driver = driver_for(printer.link, listener)
    await driver.connect()
    try:
        assert not driver.firmware_caps['AUTOREPORT_TEMP']
        await listener.until(lambda: printer.recorded().count('M105') >= 4, 5.0, 'temperature polls')
        assert 'M155 S1' not in printer.recorded()
    finally:
        await driver.close()


async def test_streams_a_real_file_every_line_once_in_order(
    sim: SimFactory, listener: RecordingListener, tmp_path: Path
) -> None:
    printer = sim()
    expected = sample_gcode(tmp_path / 'part.gcode', 3000)
    driver = driver_for(printer.link, listener)
    await driver.connect()
    try:
        await print_file(driver, listener, tmp_path / 'part.gcode')
        assert listener.ended == [(JobOutcome.DONE, '')]
        # the Cura start script heats and homes (M190, M109, G28 hold the queue): the window never overflows
        # the simulated 128-byte RX buffer, and every checksum and line number was right
        assert [line for line in printer.recorded() if line.startswith('!')] == []
        assert executed(printer.recorded()) == HANDSHAKE + expected
        fractions = [r.job.fraction for r in listener.reports if r.job is not None]
        assert fractions == sorted(fractions)
        assert fractions[-1] == 1.0
        assert any(r.job.layer for r in listener.reports if r.job is not None)
        assert listener.last.state is PrinterState.IDLE and listener.last.job is None
    finally:
        await driver.close()


async def test_injected_resends_and_checksum_errors_lose_and_double_nothing(
    sim: SimFactory, listener: RecordingListener, tmp_path: Path
) -> None:
    # in-band faults at three places, one by line number (line 300 counted from the handshake's M110 N0)
    printer = sim('checksum@300')
    expected = sample_gcode(
        tmp_path / 'part.gcode', 1500, {100: 'M118 SIM:resend', 400: 'M118 SIM:checksum', 401: 'M118 SIM:resend'}
    )
    driver = driver_for(printer.link, listener)
    await driver.connect()
    try:
        await print_file(driver, listener, tmp_path / 'part.gcode')
        assert listener.ended == [(JobOutcome.DONE, '')]
        recorded = printer.recorded()
        assert sorted(line.split()[0] for line in recorded if line.startswith('#')) == [
            '#checksum',
            '#checksum',
            '#resend',
            '#resend',
        ]
        assert executed(recorded) == HANDSHAKE + expected
        assert [line for line in recorded if line.startswith('!')] == []  # no error the host caused itself
    finally:
        await driver.close()


async def test_a_lost_ok_times_out_and_recovers(sim: SimFactory, listener: RecordingListener, tmp_path: Path) -> None:
    printer = sim()
    expected = sample_gcode(tmp_path / 'part.gcode', 400, {200: 'M118 SIM:dropok', 399: 'M118 SIM:dropok'})
    driver = driver_for(printer.link, listener)
    await driver.connect()
    try:
        await print_file(driver, listener, tmp_path / 'part.gcode')
        assert listener.ended == [(JobOutcome.DONE, '')]
        # the probe after the timeout is a numbered M105; the firmware's ok says nothing was lost
        assert executed(printer.recorded(), skip=('M105',)) == HANDSHAKE[:3] + [c for c in expected if c != 'M105']
        assert ('!', 'no answer from the printer') in listener.lines
    finally:
        await driver.close()


async def test_busy_keeps_a_slow_command_from_timing_out(
    sim: SimFactory, listener: RecordingListener, tmp_path: Path
) -> None:
    printer = sim()
    expected = sample_gcode(tmp_path / 'part.gcode', 300, {150: 'M118 SIM:busy', 151: 'G4 S2'})
    driver = driver_for(printer.link, listener)  # ok timeout 1 s; the busy line holds 1.5 s, the G4 2 s
    await driver.connect()
    try:
        await print_file(driver, listener, tmp_path / 'part.gcode')
        assert listener.ended == [(JobOutcome.DONE, '')]
        assert ('<', 'echo:busy: processing') in listener.lines
        assert ('!', 'no answer from the printer') not in listener.lines
        assert executed(printer.recorded()) == HANDSHAKE + expected
    finally:
        await driver.close()


async def test_console_commands_answer_while_printing(
    sim: SimFactory, listener: RecordingListener, tmp_path: Path
) -> None:
    printer = sim()
    sample_gcode(tmp_path / 'part.gcode', 3000)
    driver = driver_for(printer.link, listener)
    await driver.connect()
    try:
        await driver.start(await driver.upload(tmp_path / 'part.gcode', 'part.gcode'))
        answer = await driver.send_gcode(['M114'])
        assert answer[0].startswith('X:') and answer[-1] == 'ok'
        await listener.until(lambda: listener.ended, 30.0, 'the job to end')
        assert listener.ended == [(JobOutcome.DONE, '')]
        assert 'M114' in executed(printer.recorded())
    finally:
        await driver.close()


async def test_many_scattered_line_errors_still_give_every_line_once(
    sim: SimFactory, listener: RecordingListener, tmp_path: Path
) -> None:
    faults = [f'{"checksum" if i % 2 else "resend"}@{n}' for i, n in enumerate(range(40, 2900, 97))]
    printer = sim(*faults)
    expected = sample_gcode(tmp_path / 'part.gcode', 3000)
    driver = driver_for(printer.link, listener)
    await driver.connect()
    try:
        await print_file(driver, listener, tmp_path / 'part.gcode')
        assert listener.ended == [(JobOutcome.DONE, '')]
        recorded = printer.recorded()
        assert len([line for line in recorded if line.startswith('#')]) == len(faults)
        assert executed(recorded) == HANDSHAKE + expected
        assert [line for line in recorded if line.startswith('!')] == []
    finally:
        await driver.close()


async def test_the_simulator_catches_a_window_larger_than_the_rx_buffer(
    sim: SimFactory, listener: RecordingListener, tmp_path: Path
) -> None:
    # the check that keeps the default window honest can fail: 600 bytes in flight overflow Marlin's 128
    printer = sim()
    sample_gcode(tmp_path / 'part.gcode', 400)
    unsafe = dataclasses.replace(FAST, window_bytes=600, window_lines=40)
    driver = driver_for(printer.link, listener, unsafe)
    await driver.connect()
    try:
        await print_file(driver, listener, tmp_path / 'part.gcode')
        assert any(line.startswith('!overflow') for line in printer.recorded())
    finally:
        await driver.close()
