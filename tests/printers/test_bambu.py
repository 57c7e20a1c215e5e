"""The Bambu LAN driver against a real Mosquitto with a TLS listener, a fake printer client on it, and an
implicit-FTPS server that insists on TLS session reuse."""

from __future__ import annotations

import hashlib
import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fabpanel.core.printers import Heater, JobOutcome, PrinterConfig, PrinterKind, PrinterState
from fabpanel.printers.bambu import BambuDriver
from fabpanel.printers.bambu_ftps import ImplicitFtps
from fabpanel.printers.driver import CommandRefused, PrinterError, PrinterUnavailable

from .fakes.bambu import BambuBroker, FakeBambuPrinter, make_certificate
from .fakes.ftps import ImplicitFtpsServer
from .fakes.recorder import Recorder

pytestmark = pytest.mark.mosquitto

SERIAL = '01P00A391800123'
CODE = '28473910'


@pytest.fixture(scope='module')
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp('bambu-tls'), SERIAL)


@pytest.fixture
def broker(tmp_path: Path, certificate: tuple[Path, Path]) -> Iterator[BambuBroker]:
    broker = BambuBroker(tmp_path, *certificate, access_code=CODE)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def ftps(certificate: tuple[Path, Path]) -> Iterator[ImplicitFtpsServer]:
    server = ImplicitFtpsServer(*certificate, user='bblp', password=CODE)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def printer(broker: BambuBroker, ftps: ImplicitFtpsServer) -> AsyncIterator[FakeBambuPrinter]:
    fake = FakeBambuPrinter(broker, SERIAL, CODE, ftps)
    await fake.start()
    yield fake
    await fake.stop()


def make_driver(
    broker: BambuBroker, ftps: ImplicitFtpsServer, code: str = CODE, **tls: object
) -> tuple[BambuDriver, Recorder]:
    config = PrinterConfig(
        id=5, name='P1S', kind=PrinterKind.BAMBU, address='127.0.0.1', api_key=code, serial_number=SERIAL
    )
    recorder = Recorder()
    driver = BambuDriver(config, recorder, **tls)  # type: ignore[arg-type]
    driver.mqtt_port, driver.ftps_port = broker.port, ftps.port
    return driver, recorder


@pytest.fixture
async def connected(
    broker: BambuBroker, ftps: ImplicitFtpsServer, printer: FakeBambuPrinter
) -> AsyncIterator[tuple[BambuDriver, Recorder]]:
    driver, recorder = make_driver(broker, ftps)
    await driver.connect()
    yield driver, recorder
    await driver.close()


async def start_print(driver: BambuDriver, recorder: Recorder, tmp_path: Path) -> bytes:
    content = b'PK\x03\x04' + bytes(range(256)) * 2000  # a .3mf is a zip; any bytes do for the transfer
    local = tmp_path / 'upload.3mf'
    local.write_bytes(content)
    name = await driver.upload(local, 'plates/benchy.3mf')
    assert name == 'benchy.3mf'
    await driver.start(name)
    await recorder.wait_state(PrinterState.PRINTING)
    return content


async def test_connect_asks_for_everything_and_reports(
    connected: tuple[BambuDriver, Recorder], printer: FakeBambuPrinter
) -> None:
    driver, recorder = connected
    assert printer.requests[0]['pushing']['command'] == 'pushall'
    report = recorder.last
    assert report.state == PrinterState.IDLE and report.job is None
    assert report.nozzle.actual == pytest.approx(22.0) and report.bed.target == 0


async def test_upload_start_progress_diffs_and_finish(
    connected: tuple[BambuDriver, Recorder], printer: FakeBambuPrinter, ftps: ImplicitFtpsServer, tmp_path: Path
) -> None:
    driver, recorder = connected
    content = await start_print(driver, recorder, tmp_path)
    assert ftps.files['benchy.3mf'] == content and ftps.refused_without_reuse == 0
    start = next(r['print'] for r in printer.requests if r.get('print', {}).get('command') == 'project_file')
    assert start['url'] == 'file:///sdcard/benchy.3mf' and start['param'] == 'Metadata/plate_1.gcode'
    await recorder.wait_for(lambda r: r.last.job is not None and (r.last.job.fraction or 0) >= 0.3, what='progress')
    job = recorder.last.job
    assert job is not None and job.file_name == 'benchy.3mf' and job.layer_count == 20 and (job.layer or 0) >= 1
    # diffs carry only the changed fields: the merged report still has every temperature
    await recorder.wait_for(lambda r: (r.last.nozzle.actual or 0) > 60, what='nozzle heating')
    assert recorder.last.nozzle.target == 220 and recorder.last.bed.target == 55
    assert await recorder.wait_ending() == (JobOutcome.DONE, '')
    assert recorder.last.state == PrinterState.IDLE
    assert (recorder.last.last_outcome, recorder.last.last_file) == (JobOutcome.DONE, 'benchy.3mf')


async def test_plain_gcode_starts_with_gcode_file(
    connected: tuple[BambuDriver, Recorder], printer: FakeBambuPrinter, tmp_path: Path
) -> None:
    driver, recorder = connected
    with pytest.raises(CommandRefused, match='missing.3mf not found'):
        await driver.start('missing.3mf')  # the printer's own refusal, answered to our sequence_id
    local = tmp_path / 'x.gcode'
    local.write_bytes(b'G28\n' * 1000)
    await driver.start(await driver.upload(local, 'fabpanel-0123.gcode'))
    await recorder.wait_state(PrinterState.PRINTING)
    assert printer.requests[-1]['print']['command'] == 'gcode_file'
    assert printer.requests[-1]['print']['param'] == '/sdcard/fabpanel-0123.gcode'
    assert recorder.last.job is not None and recorder.last.job.file_name == 'fabpanel-0123.gcode'


async def test_pause_resume_cancel(
    connected: tuple[BambuDriver, Recorder], printer: FakeBambuPrinter, tmp_path: Path
) -> None:
    printer.print_seconds = 60
    driver, recorder = connected
    await start_print(driver, recorder, tmp_path)
    await driver.pause()
    await recorder.wait_state(PrinterState.PAUSED)
    with pytest.raises(CommandRefused, match='not possible in state PAUSE'):
        await driver.pause()
    await driver.resume()
    await recorder.wait_state(PrinterState.PRINTING)
    await driver.cancel()
    assert await recorder.wait_ending() == (JobOutcome.CANCELLED, '')  # FAILED + 0300-400C is a cancel
    assert recorder.last.state == PrinterState.IDLE and recorder.last.message == ''


async def test_print_error_fails_job_with_code(
    connected: tuple[BambuDriver, Recorder], printer: FakeBambuPrinter, tmp_path: Path
) -> None:
    printer.print_seconds = 60
    driver, recorder = connected
    await start_print(driver, recorder, tmp_path)
    printer.fail(0x07008011)
    assert await recorder.wait_ending() == (JobOutcome.FAILED, 'print error 0700-8011')
    report = await recorder.wait_state(PrinterState.ERROR)
    assert report.message == 'print error 0700-8011'


async def test_emergency_stop_and_console(
    connected: tuple[BambuDriver, Recorder], printer: FakeBambuPrinter, tmp_path: Path
) -> None:
    printer.print_seconds = 60
    driver, recorder = connected
    await driver.set_temperature(Heater.BED, 45)
    await recorder.wait_for(lambda r: r.last.bed.target == 45, what='bed target')
    await start_print(driver, recorder, tmp_path)
    await driver.emergency_stop()
    assert (await recorder.wait_ending())[0] == JobOutcome.CANCELLED
    assert printer.gcode[-2:] == ['M104 S0', 'M140 S0']
    await recorder.wait_for(lambda r: r.last.nozzle.target == 0 and r.last.bed.target == 0, what='heaters off')
    assert ('>', 'M140 S45') in recorder.lines


async def test_connection_lost_and_back(
    broker: BambuBroker, ftps: ImplicitFtpsServer, printer: FakeBambuPrinter, tmp_path: Path
) -> None:
    printer.print_seconds = 60
    driver, recorder = make_driver(broker, ftps)
    await driver.connect()
    await start_print(driver, recorder, tmp_path)
    broker.stop()
    await driver.wait_closed()
    with pytest.raises(PrinterUnavailable, match='cannot reach the printer'):
        await driver.connect()
    printer.state.update(gcode_state='FINISH', mc_percent=100)  # it finished while nobody could see it
    broker.start()
    report = await driver.connect()
    assert report.state == PrinterState.IDLE
    assert recorder.endings == [(JobOutcome.DONE, '')]
    await driver.close()
    await driver.close()


async def test_wrong_access_code(
    broker: BambuBroker,
    ftps: ImplicitFtpsServer,
    printer: FakeBambuPrinter,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger='mqtt')  # aiomqtt keeps paho's logger at WARNING otherwise
    driver, _ = make_driver(broker, ftps)
    await driver.connect()
    await driver.close()
    driver, _ = make_driver(broker, ftps, code='00000000')
    with pytest.raises(PrinterUnavailable, match='refused the access code') as caught:
        await driver.connect()
    assert '00000000' not in str(caught.value)
    local = tmp_path / 'a.3mf'
    local.write_bytes(b'x')
    with pytest.raises(PrinterUnavailable, match=r'refused the access code \(FTPS\)'):
        await driver.upload(local, 'a.3mf')
    assert ftps.failed_logins == 1
    assert 'Sending CONNECT' in caplog.text  # paho's own debug lines were captured ...
    assert CODE not in caplog.text and '00000000' not in caplog.text  # ... and carry no access code


async def test_certificate_checks(
    broker: BambuBroker,
    ftps: ImplicitFtpsServer,
    printer: FakeBambuPrinter,
    certificate: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    cert = certificate[0]
    fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert.read_text())).hexdigest()
    for tls in ({'ca_file': cert}, {'fingerprint': ':'.join(fingerprint[i : i + 2] for i in range(0, 64, 2))}):
        driver, _ = make_driver(broker, ftps, **tls)
        assert (await driver.connect()).state == PrinterState.IDLE
        local = tmp_path / 'b.3mf'
        local.write_bytes(b'y' * 1000)
        assert await driver.upload(local, 'b.3mf') == 'b.3mf'
        await driver.close()
    logins = (broker.workdir / 'mosquitto.log').read_text().count('as fabpanel-5-')
    passwords = ftps.passwords_received
    driver, _ = make_driver(broker, ftps, fingerprint='ab' * 32)
    with pytest.raises(PrinterUnavailable, match='does not match the pinned fingerprint'):
        await driver.connect()
    with pytest.raises(PrinterUnavailable, match='does not match the pinned fingerprint'):
        await driver.upload(local, 'b.3mf')
    # checked in the TLS handshake: the access code never reached the impostor, neither over MQTT nor FTPS
    assert (broker.workdir / 'mosquitto.log').read_text().count('as fabpanel-5-') == logins == 2
    assert ftps.passwords_received == passwords == 2
    driver, _ = make_driver(broker, ftps, ca_file=cert)
    driver.config.serial_number = '01P00A000000999'
    with pytest.raises(PrinterUnavailable, match=f'certificate is for printer {SERIAL}'):
        await driver.connect()


async def test_ftps_without_session_reuse_is_refused(
    broker: BambuBroker, ftps: ImplicitFtpsServer, tmp_path: Path
) -> None:
    """Proves the fake enforces what the printers require, so the upload test above means something."""

    class NoReuse(ImplicitFtps):
        reuse_session = False

    driver, _ = make_driver(broker, ftps)
    driver.ftps_class = NoReuse
    local = tmp_path / 'c.3mf'
    local.write_bytes(b'z' * 100000)
    with pytest.raises(PrinterError, match='522'):
        await driver.upload(local, 'c.3mf')
    assert ftps.refused_without_reuse == 1 and 'c.3mf' not in ftps.files
