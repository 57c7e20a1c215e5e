"""The PrusaLink driver against a fake PrusaLink on loopback that really challenges with HTTP digest auth."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fabpanel.core.printers import Heater, JobOutcome, PrinterConfig, PrinterKind, PrinterState
from fabpanel.printers.driver import CommandRefused, PrinterUnavailable
from fabpanel.printers.prusalink import PrusaLinkDriver

from .fakes.prusalink import FakePrusaLink
from .fakes.recorder import Recorder

PASSWORD = 'pl-Secret-42'


class FastPrusaLinkDriver(PrusaLinkDriver):
    poll_interval = 0.1  # the real two seconds would make every test slow; the logic is the same


@pytest.fixture
async def prusalink() -> AsyncIterator[FakePrusaLink]:
    fake = FakePrusaLink(user='maker', password=PASSWORD)
    await fake.start()
    yield fake
    await fake.stop()


def make_driver(fake: FakePrusaLink, password: str = PASSWORD, user: str = '') -> tuple[PrusaLinkDriver, Recorder]:
    config = PrinterConfig(
        id=3, name='MK4', kind=PrinterKind.PRUSALINK, address=fake.url, api_key=password, username=user
    )
    recorder = Recorder()
    return FastPrusaLinkDriver(config, recorder), recorder


@pytest.fixture
async def connected(prusalink: FakePrusaLink) -> AsyncIterator[tuple[PrusaLinkDriver, Recorder]]:
    driver, recorder = make_driver(prusalink)
    await driver.connect()
    yield driver, recorder
    await driver.close()


async def start_print(driver: PrusaLinkDriver, recorder: Recorder, tmp_path: Path) -> None:
    local = tmp_path / 'part.gcode'
    local.write_bytes(b'G28\n' + b'G1 X10 Y10 E1\n' * 50000)
    name = await driver.upload(local, 'sub/dir/benchy.gcode')
    assert name == 'benchy.gcode'
    await driver.start(name)
    await recorder.wait_state(PrinterState.PRINTING)


async def test_connect_uses_digest_auth_and_reports(
    connected: tuple[PrusaLinkDriver, Recorder], prusalink: FakePrusaLink
) -> None:
    driver, recorder = connected
    report = recorder.last
    assert report.state == PrinterState.IDLE and report.job is None
    assert report.nozzle.actual == pytest.approx(22.0) and report.bed.target == 0.0
    assert report.firmware == 'PrusaLink 2.1.2 6.1.3+7898'
    # the fake challenged once, the middleware answered, later requests carry the digest up front
    assert prusalink.challenges == 1 and prusalink.rejected == 0
    assert prusalink.requests[:2] == ['GET /api/version', 'GET /api/v1/status']
    assert driver.capabilities.gcode is False and driver.capabilities.set_temperature is False


async def test_upload_start_progress_and_finish(
    connected: tuple[PrusaLinkDriver, Recorder], prusalink: FakePrusaLink, tmp_path: Path
) -> None:
    driver, recorder = connected
    prusalink.expire_nonces_before_upload()  # challenged: the streamed body must go again from its start
    await start_print(driver, recorder, tmp_path)
    assert prusalink.files['benchy.gcode'] == b'G28\n' + b'G1 X10 Y10 E1\n' * 50000
    assert prusalink.challenges == 2
    assert 'PUT /api/v1/files/usb/benchy.gcode' in prusalink.requests
    await recorder.wait_for(lambda r: r.last.job is not None and (r.last.job.fraction or 0) > 0.2, what='progress')
    job = recorder.last.job
    assert job is not None and job.file_name == 'benchy.gcode' and job.remaining_s is not None
    await recorder.wait_for(lambda r: (r.last.nozzle.actual or 0) > 40, what='heating')
    assert recorder.last.nozzle.target == 215.0
    assert await recorder.wait_ending() == (JobOutcome.DONE, '')
    assert recorder.last.state == PrinterState.IDLE and recorder.last.job is None


async def test_pause_resume_cancel(
    connected: tuple[PrusaLinkDriver, Recorder], prusalink: FakePrusaLink, tmp_path: Path
) -> None:
    prusalink.print_seconds = 60
    driver, recorder = connected
    await start_print(driver, recorder, tmp_path)
    await driver.pause()
    await recorder.wait_state(PrinterState.PAUSED)
    with pytest.raises(CommandRefused, match='409'):
        await driver.pause()  # PrusaLink answers 409 Conflict
    with pytest.raises(CommandRefused, match='409'):
        await driver.start('benchy.gcode')
    await driver.resume()
    await recorder.wait_state(PrinterState.PRINTING)
    await driver.cancel()
    assert await recorder.wait_ending() == (JobOutcome.CANCELLED, '')
    assert recorder.last.state == PrinterState.IDLE
    with pytest.raises(CommandRefused, match='no active job'):
        await driver.resume()


async def test_error_state_fails_job_with_reason(
    connected: tuple[PrusaLinkDriver, Recorder], prusalink: FakePrusaLink, tmp_path: Path
) -> None:
    prusalink.print_seconds = 60
    driver, recorder = connected
    await start_print(driver, recorder, tmp_path)
    prusalink.error('Thermal runaway detected on the hotend')
    assert await recorder.wait_ending() == (JobOutcome.FAILED, 'Thermal runaway detected on the hotend')
    assert recorder.last.state == PrinterState.ERROR and 'Thermal runaway' in recorder.last.message


async def test_emergency_stop_stops_job_and_console_is_refused(
    connected: tuple[PrusaLinkDriver, Recorder], prusalink: FakePrusaLink, tmp_path: Path
) -> None:
    prusalink.print_seconds = 60
    driver, recorder = connected
    with pytest.raises(CommandRefused, match='reset button'):
        await driver.emergency_stop()
    await start_print(driver, recorder, tmp_path)
    await driver.emergency_stop()
    assert await recorder.wait_ending() == (JobOutcome.CANCELLED, '')
    assert any(r.startswith('DELETE /api/v1/job/') for r in prusalink.requests)
    assert prusalink.nozzle[1] == 0.0
    with pytest.raises(CommandRefused, match='no G-code console'):
        await driver.send_gcode(['M104 S200'])
    with pytest.raises(CommandRefused, match='no G-code console'):
        await driver.set_temperature(Heater.NOZZLE, 200)


async def test_connection_lost_and_back(prusalink: FakePrusaLink, tmp_path: Path) -> None:
    prusalink.print_seconds = 60
    driver, recorder = make_driver(prusalink)
    await driver.connect()
    await start_print(driver, recorder, tmp_path)
    await prusalink.go_offline()
    await driver.wait_closed()  # three missed polls
    with pytest.raises(PrinterUnavailable, match='cannot reach PrusaLink'):
        await driver.connect()
    prusalink.state = 'FINISHED'  # the job finished while we could not see it
    await prusalink.come_back()
    report = await driver.connect()
    assert report.state == PrinterState.IDLE
    assert recorder.endings == [(JobOutcome.DONE, '')]
    assert (report.last_outcome, report.last_file) == (JobOutcome.DONE, 'benchy.gcode')
    await driver.close()
    await driver.close()


async def test_wrong_password_is_refused_clearly(prusalink: FakePrusaLink, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    driver, _ = make_driver(prusalink)
    await driver.connect()
    await driver.close()
    driver, _ = make_driver(prusalink, password='wrong-password')
    with pytest.raises(PrinterUnavailable, match='refused the user name or password') as caught:
        await driver.connect()
    assert 'wrong-password' not in str(caught.value)
    assert prusalink.rejected == 1  # the digest answer was checked and did not match
    driver, _ = make_driver(prusalink, user='admin')
    with pytest.raises(PrinterUnavailable, match='refused'):
        await driver.connect()
    assert PASSWORD not in caplog.text and 'wrong-password' not in caplog.text


async def test_alive_while_the_polls_are_answered(
    connected: tuple[PrusaLinkDriver, Recorder], prusalink: FakePrusaLink
) -> None:
    driver, _recorder = connected
    driver.poll_interval = 0.2
    assert await driver.alive()  # an idle printer reports nothing new, yet it answers every poll
    await prusalink.go_offline()
    deadline = asyncio.get_running_loop().time() + 5
    while await driver.alive():
        assert asyncio.get_running_loop().time() < deadline, 'still alive with PrusaLink gone'
        await asyncio.sleep(0.05)
