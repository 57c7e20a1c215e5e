"""A Bambu printer in the fleet, as an admin configures it: the pinned certificate fingerprint from the printer's
row reaches the driver (a wrong one never sends the access code), a .gcode.3mf starts as a project, and an idle
printer that reports nothing stays fresh without pushall floods while a silent one goes stale."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from fabpanel.printers.bambu import BambuDriver
from fabpanel.printers.job_store import printer_t
from fabpanel.printers.registry import DriverRegistry
from fabpanel.printers.worker import Timing

from ..conftest import wait_for
from .fakes.bambu import BambuBroker, FakeBambuPrinter
from .fakes.ftps import ImplicitFtpsServer
from .test_bambu import CODE, SERIAL, broker, certificate, ftps, printer
from .test_worker_integration import Fleetside, fleetside

__all__ = ['broker', 'certificate', 'ftps', 'printer']  # fixtures

pytestmark = pytest.mark.mosquitto

TIMING = Timing(stale_after=1.0, probe_after=0.3, probe_timeout=0.5, backoff_initial=0.2, backoff_cap=0.5)


def pinned(cert: Path, colons: bool = False) -> str:
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert.read_text())).hexdigest()
    return ':'.join(digest[i : i + 2] for i in range(0, 64, 2)).upper() if colons else digest


@pytest.fixture
async def bambu_fleet(
    sqlite_url: str, broker: BambuBroker, ftps: ImplicitFtpsServer
) -> AsyncIterator[tuple[Fleetside, type[BambuDriver]]]:
    class LocalBambu(BambuDriver):  # the test's broker and FTPS server stand where the printer's ports are
        mqtt_port, ftps_port = broker.port, ftps.port

    async with fleetside(sqlite_url, TIMING, DriverRegistry({'bambu': LocalBambu})) as side:
        yield side, LocalBambu


async def add_bambu(side: Fleetside, fingerprint: str) -> int:
    return await side.add(
        name='P1S', kind='bambu', address='127.0.0.1', api_key=CODE, serial_number=SERIAL, tls_fingerprint=fingerprint
    )


async def test_the_configured_fingerprint_is_pinned(
    bambu_fleet: tuple[Fleetside, type[BambuDriver]],
    broker: BambuBroker,
    printer: FakeBambuPrinter,
    certificate: tuple[Path, Path],
) -> None:
    side, _driver = bambu_fleet
    printer_id = await add_bambu(side, 'ab' * 32)
    await side.fleet.start()
    live = side.live.printers[printer_id]
    await wait_for(lambda: 'does not match the pinned fingerprint' in live.message, timeout=5)
    await asyncio.sleep(1.0)  # several attempts by now
    assert live.state == 'offline'
    log = (broker.workdir / 'mosquitto.log').read_text()
    assert 'as fabpanel-' not in log  # refused in the TLS handshake: no MQTT login, no access code sent
    async with side.engine.begin() as conn:
        await conn.execute(sa.update(printer_t).values(tls_fingerprint=pinned(certificate[0])))
    await side.fleet.reload()  # the fingerprint is a connection setting: the worker reconnects with it
    await wait_for(lambda: live.state == 'idle', timeout=10)


async def test_a_gcode_3mf_starts_as_a_project(
    bambu_fleet: tuple[Fleetside, type[BambuDriver]],
    printer: FakeBambuPrinter,
    certificate: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    side, _driver = bambu_fleet
    printer_id = await add_bambu(side, pinned(certificate[0]))
    await side.fleet.start()
    await wait_for(lambda: side.live.printers[printer_id].state == 'idle', timeout=10)
    local = tmp_path / 'upload-77.gcode.3mf'
    with zipfile.ZipFile(local, 'w') as archive:
        archive.writestr('Metadata/plate_1.gcode', 'G28\n')
    job_id = await side.fleet.start_job(printer_id, local, 'Benchy.gcode.3mf', None)
    start = next(
        r['print'] for r in printer.requests if r.get('print', {}).get('command') in ('project_file', 'gcode_file')
    )
    assert start['command'] == 'project_file' and start['param'] == 'Metadata/plate_1.gcode'
    assert start['url'].startswith('file:///sdcard/fabpanel-') and start['url'].endswith('.gcode.3mf')
    await wait_for(lambda: side.live.printers[printer_id].state == 'printing', timeout=5)

    async def state() -> str:
        return (await side.job(job_id)).state

    for _ in range(200):
        if await state() == 'done':
            break
        await asyncio.sleep(0.05)
    assert await state() == 'done'


async def test_an_idle_bambu_stays_fresh_a_silent_one_goes_stale(
    bambu_fleet: tuple[Fleetside, type[BambuDriver]], printer: FakeBambuPrinter
) -> None:
    side, driver_class = bambu_fleet
    printer_id = await add_bambu(side, '')
    await side.fleet.start()
    live = side.live.printers[printer_id]
    await wait_for(lambda: live.state == 'idle', timeout=10)
    await asyncio.sleep(2.5)  # the fake printer at ambient temperature pushes nothing
    assert not live.stale
    pushalls = [r for r in printer.requests if 'pushing' in r]
    assert len(pushalls) == 1  # the one at connect: quiet is not a reason to load the printer
    # the printer goes silent while its broker stays up: the keepalive cannot tell, a (rare) pushall can
    await printer.stop()
    driver_class.pushall_every_s, driver_class.first_report_s = 0.5, 0.5
    await wait_for(lambda: live.stale, timeout=4)
    assert live.state == 'idle'
