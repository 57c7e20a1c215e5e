"""The OctoPrint driver against a real OctoPrint and its virtual printer: state, push, job control, faults."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from fabpanel.core.printers import Heater, JobOutcome, PrinterConfig, PrinterKind, PrinterState
from fabpanel.printers.driver import CommandRefused, PrinterUnavailable
from fabpanel.printers.octoprint import OctoPrintDriver

from .conftest import RecordingListener, trimmed_gcode
from .octoprint_server import OctoPrintServer

pytestmark = pytest.mark.octoprint

SAMPLES = Path(__file__).resolve().parents[3] / 'shared' / 'samples' / 'gcode'
SAMPLE = SAMPLES / 'prusaslicer-2.6.1_small-benchmark.gcode'
Driver = Callable[..., OctoPrintDriver]


@pytest.fixture
def ready(octoprint: OctoPrintServer) -> OctoPrintServer:
    """OctoPrint connected to its printer with no job running (an earlier test may have ended in an error)."""
    octoprint.wait_idle()
    return octoprint


@pytest.fixture
async def make_driver(ready: OctoPrintServer, listener: RecordingListener) -> AsyncIterator[Driver]:
    drivers: list[OctoPrintDriver] = []

    def make(cls: type[OctoPrintDriver] = OctoPrintDriver, api_key: str | None = None) -> OctoPrintDriver:
        config = PrinterConfig(
            id=1,
            name='octo',
            kind=PrinterKind.OCTOPRINT,
            address=ready.url,
            api_key=ready.api_key if api_key is None else api_key,
        )
        drivers.append(cls(config, listener))
        return drivers[-1]

    yield make
    for driver in drivers:
        await driver.close()


@pytest.fixture(scope='module')
def gcode(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SAMPLE.exists():
        pytest.fail(f'sample G-code missing: {SAMPLE}')
    return trimmed_gcode(SAMPLE, tmp_path_factory.mktemp('gcode') / 'small benchmark.gcode', 600, feedrate_percent=5)


async def start_print(driver: OctoPrintDriver, listener: RecordingListener, gcode: Path) -> None:
    remote = await driver.upload(gcode, 'test-print.gcode')
    await driver.start(remote)
    await listener.until(
        lambda: (
            listener.last.state == PrinterState.PRINTING and listener.last.job and (listener.last.job.fraction or 0) > 0
        ),
        what='printing with progress',
    )


async def test_connect_reports_idle_temperatures_and_console(
    make_driver: Driver, listener: RecordingListener, ready: OctoPrintServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    driver = make_driver()
    report = await driver.connect()
    assert report.state == PrinterState.IDLE
    assert report.firmware.startswith('OctoPrint 1.')
    assert report.at is not None and report.job is None
    await listener.until(lambda: listener.reports and listener.last.nozzle.actual is not None, what='temperatures')
    assert await driver.alive()  # OctoPrint keeps pushing: the worker's liveness check says so
    await driver.set_temperature(Heater.NOZZLE, 45)
    await listener.until(lambda: listener.last.nozzle.target == 45, what='nozzle target 45')
    await listener.until(lambda: (listener.last.nozzle.actual or 0) > 25, what='nozzle heating')
    await driver.set_temperature(Heater.NOZZLE, 0)
    await listener.until(lambda: listener.last.nozzle.target == 0, what='nozzle target 0')
    assert ('>', 'M104 S45') in listener.lines
    assert any(direction == '<' and line.startswith('ok') for direction, line in listener.lines)
    assert 'connected to OctoPrint' in caplog.text and ready.api_key not in caplog.text


async def test_connects_octoprint_to_its_printer(
    make_driver: Driver, listener: RecordingListener, ready: OctoPrintServer
) -> None:
    ready.request('POST', '/api/connection', {'command': 'disconnect'})
    await listener.until(
        lambda: (
            ready.get('/api/connection')['current']['state'] == 'Closed' or ready.get('/api/job')['state'] == 'Offline'
        ),
        what='OctoPrint disconnected',
    )
    report = await make_driver().connect()  # the virtual printer answers at once: may already be idle
    assert report.state in {PrinterState.OFFLINE, PrinterState.CONNECTING, PrinterState.IDLE}
    await listener.until(lambda: listener.reports and listener.last.state == PrinterState.IDLE, what='idle')


async def test_refused_api_key(make_driver: Driver) -> None:
    with pytest.raises(PrinterUnavailable, match='API key'):
        await make_driver(api_key='not-the-key').connect()


async def test_print_pause_resume_cancel(
    make_driver: Driver, listener: RecordingListener, gcode: Path, ready: OctoPrintServer
) -> None:
    driver = make_driver()
    await driver.connect()
    remote = await driver.upload(gcode, 'small benchmark')
    assert remote.endswith('.gcode')
    listed = ready.get('/api/files/local?recursive=true')['files']
    size = (await asyncio.to_thread(gcode.stat)).st_size
    assert any(f['path'] == remote and f['size'] == size for f in listed)
    with pytest.raises(CommandRefused):
        await driver.pause()  # nothing to pause yet
    await driver.start(remote)
    await listener.until(
        lambda: (
            listener.last.state == PrinterState.PRINTING and listener.last.job and (listener.last.job.fraction or 0) > 0
        ),
        what='printing with progress',
    )
    job = listener.last.job
    assert job is not None and job.file_name == remote and job.elapsed_s is not None
    await driver.pause()
    await listener.until(lambda: listener.last.state == PrinterState.PAUSED, what='paused')
    paused_at = listener.last.job.elapsed_s if listener.last.job else None
    await driver.resume()
    await listener.until(
        lambda: (
            listener.last.state == PrinterState.PRINTING
            and listener.last.job
            and (listener.last.job.elapsed_s or 0) > (paused_at or 0)
        ),
        what='printing again',
    )
    assert listener.actions == [] and listener.ended == []
    await driver.cancel()
    await listener.until(lambda: listener.ended, what='job ended')
    assert listener.ended == [(JobOutcome.CANCELLED, 'cancelled')]
    await listener.until(lambda: listener.last.state == PrinterState.IDLE and listener.last.job is None, what='idle')
    assert listener.actions == []


async def test_short_print_is_done(
    make_driver: Driver, listener: RecordingListener, gcode: Path, tmp_path: Path
) -> None:
    driver = make_driver()
    await driver.connect()
    await driver.start(
        await driver.upload(trimmed_gcode(SAMPLE, tmp_path / 'short.gcode', 250, feedrate_percent=25), 'short.gcode')
    )
    await listener.until(lambda: listener.ended, what='job ended')
    assert listener.ended == [(JobOutcome.DONE, '')]
    assert PrinterState.PRINTING in {r.state for r in listener.reports}


async def test_printer_side_pause(make_driver: Driver, listener: RecordingListener, gcode: Path) -> None:
    driver = make_driver()
    await driver.connect()
    await start_print(driver, listener, gcode)
    await driver.send_gcode(['!!DEBUG:action_pause'])  # the virtual printer answers `// action:pause`
    await listener.until(lambda: listener.last.state == PrinterState.PAUSED, what='paused by the printer')
    assert listener.actions == ['pause']
    await driver.cancel()
    await listener.until(lambda: listener.ended, what='job ended')
    assert listener.ended[0][0] == JobOutcome.CANCELLED


async def test_fatal_error_fails_the_job(make_driver: Driver, listener: RecordingListener, gcode: Path) -> None:
    driver = make_driver()
    await driver.connect()
    await start_print(driver, listener, gcode)
    await driver.send_gcode(['!!DEBUG:trigger_fatal_error_marlin'])  # thermal runaway, then kill()
    await listener.until(lambda: listener.ended, what='job ended')
    outcome, reason = listener.ended[0]
    assert outcome == JobOutcome.FAILED and 'Thermal Runaway' in reason
    await listener.until(lambda: listener.last.state == PrinterState.ERROR, what='error state')
    assert 'Thermal Runaway' in listener.last.message and listener.last.job is None


async def test_emergency_stop(make_driver: Driver, listener: RecordingListener, gcode: Path) -> None:
    driver = make_driver()
    await driver.connect()
    await start_print(driver, listener, gcode)
    await driver.emergency_stop()
    await listener.until(lambda: listener.ended and listener.last.state == PrinterState.ERROR, what='stopped')
    assert listener.ended[0][0] == JobOutcome.FAILED
    assert 'M112' in listener.last.message


class PollingOnly(OctoPrintDriver):
    """The push socket never works: the driver must carry on by polling."""

    poll_interval_s = 0.3

    async def _listen(self) -> None:
        raise aiohttp.ClientError('push socket disabled for this test')


async def test_polls_when_the_push_socket_is_down(
    make_driver: Driver, listener: RecordingListener, gcode: Path
) -> None:
    driver = make_driver(PollingOnly)
    await driver.connect()
    await start_print(driver, listener, gcode)
    await driver.pause()
    await listener.until(lambda: listener.last.state == PrinterState.PAUSED, what='paused (polled)')
    await driver.cancel()
    await listener.until(lambda: listener.ended, what='job ended (polled)')
    assert listener.ended == [(JobOutcome.CANCELLED, 'cancelled')]
    assert listener.last.nozzle.actual is not None


async def test_octoprint_going_away_closes_and_reconnects(
    make_driver: Driver, listener: RecordingListener, ready: OctoPrintServer
) -> None:
    driver = make_driver()
    await driver.connect()
    await asyncio.to_thread(ready.stop)
    try:
        await asyncio.wait_for(driver.wait_closed(), 20)
        with pytest.raises(PrinterUnavailable):
            await driver.connect()
    finally:
        await asyncio.to_thread(ready.start)
    await asyncio.to_thread(ready.wait_operational)
    report = await driver.connect()
    assert report.state == PrinterState.IDLE
