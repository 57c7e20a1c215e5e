"""The Moonraker driver against a fake Moonraker speaking JSON-RPC over a real websocket on loopback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fabpanel.core.printers import Heater, JobOutcome, PrinterConfig, PrinterKind, PrinterState
from fabpanel.printers.driver import CommandRefused, PrinterError, PrinterUnavailable
from fabpanel.printers.moonraker import MoonrakerDriver

from .fakes.moonraker import FakeMoonraker
from .fakes.moonraker_server import MoonrakerServer, start_moonraker
from .fakes.recorder import Recorder

API_KEY = 'moonraker-test-key'


@pytest.fixture
async def moonraker() -> AsyncIterator[FakeMoonraker]:
    fake = FakeMoonraker(api_key=API_KEY)
    await fake.start()
    yield fake
    await fake.stop()


def make_driver(fake: FakeMoonraker, api_key: str = API_KEY) -> tuple[MoonrakerDriver, Recorder]:
    config = PrinterConfig(id=7, name='Voron', kind=PrinterKind.MOONRAKER, address=fake.url, api_key=api_key)
    recorder = Recorder()
    return MoonrakerDriver(config, recorder), recorder


@pytest.fixture
async def connected(moonraker: FakeMoonraker) -> AsyncIterator[tuple[MoonrakerDriver, Recorder]]:
    driver, recorder = make_driver(moonraker)
    await driver.connect()
    yield driver, recorder
    await driver.close()


async def start_print(driver: MoonrakerDriver, recorder: Recorder, tmp_path: Path) -> None:
    local = tmp_path / 'local.gcode'
    local.write_bytes(b'G28\n' + b'G1 X10 Y10 E1\n' * 20000)
    name = await driver.upload(local, '../../etc/benchy.gcode')
    assert name == 'benchy.gcode'  # only a plain name reaches the printer
    await driver.start(name)
    await recorder.wait_state(PrinterState.PRINTING)


async def test_connect_reports_idle_printer_with_temperatures(connected: tuple[MoonrakerDriver, Recorder]) -> None:
    driver, recorder = connected
    report = recorder.last
    assert report.state == PrinterState.IDLE
    assert report.nozzle.actual == pytest.approx(22.0) and report.nozzle.target == 0.0
    assert report.bed.actual == pytest.approx(22.0)
    assert report.firmware.startswith('Klipper')
    assert report.job is None


async def test_upload_start_progress_temperatures_and_done(
    connected: tuple[MoonrakerDriver, Recorder], moonraker: FakeMoonraker, tmp_path: Path
) -> None:
    driver, recorder = connected
    await start_print(driver, recorder, tmp_path)
    assert len(moonraker.files['benchy.gcode']) == 4 + 14 * 20000
    await recorder.wait_for(lambda r: r.last.job is not None and (r.last.job.fraction or 0) > 0.2, what='progress')
    report = recorder.last
    assert report.job is not None and report.job.file_name == 'benchy.gcode'
    assert report.job.layer_count == 20 and report.job.layer is not None and report.job.layer >= 1
    assert report.job.elapsed_s and report.job.remaining_s is not None
    assert report.nozzle.target == 210.0 and report.nozzle.actual is not None and report.nozzle.actual > 30
    assert await recorder.wait_ending() == (JobOutcome.DONE, '')
    assert recorder.last.state == PrinterState.IDLE and recorder.last.job is None
    assert (recorder.last.last_outcome, recorder.last.last_file) == (JobOutcome.DONE, 'benchy.gcode')
    # only diffs were pushed, yet the merged picture is complete
    assert recorder.last.bed.actual is not None


async def test_pause_resume_cancel(
    connected: tuple[MoonrakerDriver, Recorder], moonraker: FakeMoonraker, tmp_path: Path
) -> None:
    moonraker.print_seconds = 60
    driver, recorder = connected
    await start_print(driver, recorder, tmp_path)
    await driver.pause()
    await recorder.wait_state(PrinterState.PAUSED)
    assert any(r.state == PrinterState.PAUSING for r in recorder.reports)
    with pytest.raises(CommandRefused, match='already in progress'):
        await driver.start('benchy.gcode')
    await driver.resume()
    await recorder.wait_state(PrinterState.PRINTING)
    await driver.cancel()
    assert await recorder.wait_ending() == (JobOutcome.CANCELLED, '')
    assert recorder.last.state == PrinterState.IDLE
    with pytest.raises(CommandRefused, match='not paused'):
        await driver.resume()
    assert moonraker.calls.count('printer.print.pause') == 1


async def test_print_error_ends_job_as_failed_with_reason(
    connected: tuple[MoonrakerDriver, Recorder], moonraker: FakeMoonraker, tmp_path: Path
) -> None:
    moonraker.print_seconds = 60
    driver, recorder = connected
    await start_print(driver, recorder, tmp_path)
    moonraker.fail('Move out of range: 0.000 -12.000 0.300')
    outcome, reason = await recorder.wait_ending()
    assert outcome == JobOutcome.FAILED and 'Move out of range' in reason
    assert recorder.last.state == PrinterState.IDLE and 'Move out of range' in recorder.last.message


async def test_klippy_shutdown_fails_job_and_recovers(
    connected: tuple[MoonrakerDriver, Recorder], moonraker: FakeMoonraker, tmp_path: Path
) -> None:
    moonraker.print_seconds = 60
    driver, recorder = connected
    await start_print(driver, recorder, tmp_path)
    await moonraker.shutdown("MCU 'mcu' shutdown: Timer too close")
    report = await recorder.wait_state(PrinterState.ERROR)
    assert 'Timer too close' in report.message
    assert recorder.endings == [(JobOutcome.FAILED, "MCU 'mcu' shutdown: Timer too close")]
    await moonraker.restart_klippy()
    await recorder.wait_state(PrinterState.IDLE)
    assert len(recorder.endings) == 1  # the restart does not end the job a second time


async def test_emergency_stop_shuts_klipper_down(
    connected: tuple[MoonrakerDriver, Recorder], moonraker: FakeMoonraker, tmp_path: Path
) -> None:
    moonraker.print_seconds = 60
    driver, recorder = connected
    await start_print(driver, recorder, tmp_path)
    await driver.emergency_stop()
    report = await recorder.wait_state(PrinterState.ERROR)
    assert 'printer.emergency_stop' in moonraker.calls and 'webhooks request' in report.message
    assert (await recorder.wait_ending())[0] == JobOutcome.FAILED


async def test_gcode_console_and_preheat(connected: tuple[MoonrakerDriver, Recorder], moonraker: FakeMoonraker) -> None:
    driver, recorder = connected
    replies = await driver.send_gcode(['M115'])
    assert replies == ['FIRMWARE_NAME:Klipper FIRMWARE_VERSION:v0.12.0-fake']
    assert ('>', 'M115') in recorder.lines and ('<', replies[0]) in recorder.lines
    await driver.set_temperature(Heater.BED, 55)
    await recorder.wait_for(lambda r: r.last.bed.target == 55.0, what='bed target')
    with pytest.raises(CommandRefused, match='Unknown command'):
        await driver.send_gcode(['FOO_BAR'])


async def test_connection_lost_then_reconnect_announces_job_that_ended_meanwhile(
    moonraker: FakeMoonraker, tmp_path: Path
) -> None:
    moonraker.print_seconds = 60
    driver, recorder = make_driver(moonraker)
    await driver.connect()
    await start_print(driver, recorder, tmp_path)
    moonraker.drop()
    await driver.wait_closed()
    moonraker.status['print_stats']['state'] = 'cancelled'  # someone cancelled on the printer's screen
    report = await driver.connect()
    assert report.state == PrinterState.IDLE
    assert recorder.endings == [(JobOutcome.CANCELLED, '')]
    await recorder.wait_for(lambda r: r.last.nozzle.actual is not None, what='temperatures after reconnect')
    await driver.close()
    await driver.wait_closed()  # returns at once after close
    await driver.close()  # twice is fine


async def test_klipper_still_starting_then_ready(moonraker: FakeMoonraker) -> None:
    moonraker.klippy_state = 'startup'
    driver, recorder = make_driver(moonraker)
    report = await driver.connect()
    assert report.state == PrinterState.CONNECTING and report.message == 'Klipper is starting'
    await moonraker.restart_klippy()
    await recorder.wait_state(PrinterState.IDLE)
    assert recorder.last.nozzle.actual is not None and recorder.endings == []
    await driver.close()


async def test_wrong_api_key_and_unreachable(moonraker: FakeMoonraker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    driver, _ = make_driver(moonraker)
    await driver.connect()
    await driver.close()
    driver, _ = make_driver(moonraker, api_key='wrong')
    with pytest.raises(PrinterUnavailable, match='refused the API key') as caught:
        await driver.connect()
    assert 'wrong' not in str(caught.value)
    driver, _ = make_driver(moonraker, api_key='')  # no key at all: the websocket opens, every method is refused
    with pytest.raises(PrinterUnavailable, match='refused the API key'):
        await driver.connect()
    await moonraker.stop()
    driver, _ = make_driver(moonraker)
    with pytest.raises(PrinterUnavailable, match='cannot reach Moonraker'):
        await driver.connect()
    assert API_KEY not in caplog.text  # never logged, not even at debug level by the libraries


@pytest.fixture(scope='module')
def real_moonraker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MoonrakerServer]:
    server = start_moonraker(tmp_path_factory.mktemp('moonraker'))
    yield server
    server.stop()


async def test_real_moonraker_without_klipper(real_moonraker: MoonrakerServer, tmp_path: Path) -> None:
    """The real server checks the key, answers identify and server.info, and takes the upload as documented."""
    config = PrinterConfig(
        id=8, name='real', kind=PrinterKind.MOONRAKER, address=real_moonraker.url, api_key=real_moonraker.api_key
    )
    recorder = Recorder()
    driver = MoonrakerDriver(config, recorder)
    report = await driver.connect()
    assert report.state == PrinterState.CONNECTING and report.message == 'Klipper is not connected'
    local = tmp_path / 'cube.gcode'
    local.write_bytes(b'G28\nG1 Z5\n' * 1000)
    assert await driver.upload(local, 'cube.gcode') == 'cube.gcode'
    assert (real_moonraker.datapath / 'gcodes' / 'cube.gcode').read_bytes() == local.read_bytes()
    with pytest.raises(PrinterError):
        await driver.start('cube.gcode')  # no Klipper to print with
    await driver.close()
    for key in ('0' * 32, ''):
        config.api_key = key
        with pytest.raises(PrinterUnavailable, match='refused the API key'):
            await MoonrakerDriver(config, Recorder()).connect()
