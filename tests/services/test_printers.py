"""The printer service: admin changes, who may control a printer, and the safety checks on every command path
(SQLite; the first test on PostgreSQL too). Printers are simulated and driven by a real fleet."""

from __future__ import annotations

import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from fabpanel.core.printers import Heater, PrinterKind
from fabpanel.db.engine import create_engine
from fabpanel.live.state import LiveState
from fabpanel.printers.fleet import Fleet
from fabpanel.printers.sim import SimPrinter, sim_printer
from fabpanel.printers.worker import Timing
from fabpanel.services.machines import Refused
from fabpanel.services.printers import PrinterForm, PrinterService

from ..conftest import wait_for
from ..lab import ADMIN_USER, MAINTAINER_USER, MEMBER_USER, create_lab

ADMIN, MAINTAINER, MEMBER = ADMIN_USER, MAINTAINER_USER, MEMBER_USER
OTHER_MEMBER = replace(MEMBER_USER, member_id=5, first_name='Elsa')
FAST = Timing(backoff_initial=0.05, backoff_cap=0.2, stale_after=1, sample_every=0.2, flush_every=0.2, settle=0.2)


@dataclass
class Lab:
    service: PrinterService
    fleet: Fleet
    live: LiveState

    async def printer(self, **fields: object) -> tuple[int, SimPrinter]:
        """A connected simulated printer (added by the admin)."""
        address = f'sim://svc-{uuid.uuid4().hex[:8]}?speed=20&report=0.02'
        form = PrinterForm(name=f'P {uuid.uuid4().hex[:4]}', kind=PrinterKind.SIMULATED, address=address, **fields)  # type: ignore[arg-type]
        printer_id = await self.service.create(ADMIN, form)
        await wait_for(lambda: self.live.printers[printer_id].state == 'idle')
        return printer_id, sim_printer(address)


async def make_lab(url: str) -> AsyncIterator[Lab]:
    await create_lab(url)
    engine = create_engine(url)
    live = LiveState()
    fleet = Fleet(engine, live, timing=FAST)
    await fleet.start()
    try:
        yield Lab(PrinterService(engine, live, fleet), fleet, live)
    finally:
        await fleet.stop()
        await engine.dispose()


@pytest.fixture
async def lab(sqlite_url: str) -> AsyncIterator[Lab]:
    async for lab in make_lab(sqlite_url):
        yield lab


@pytest.fixture
async def any_lab(database_url: str) -> AsyncIterator[Lab]:
    async for lab in make_lab(database_url):
        yield lab


async def refused(coro, code: str, field: str | None = None) -> Refused:  # noqa: ANN001
    with pytest.raises(Refused) as e:
        await coro
    assert e.value.code == code, (e.value.code, e.value.info)
    if field is not None:
        assert e.value.field == field
    return e.value


def gcode(tmp_path: Path, *lines: str, name: str = 'part.gcode') -> Path:
    path = tmp_path / name
    path.write_text('\n'.join([';TIME:3600', 'G28', *lines, 'G1 X1 Y1 E1']) + '\n')
    return path


async def test_admin_adds_edits_and_removes_printers(any_lab: Lab) -> None:
    s = any_lab.service
    form = PrinterForm(
        name='  Octo  One ',
        kind='octoprint',
        address='http://10.0.0.5:5000',
        api_key='SECRET',
        materials='PLA, PETG ,',
        tags=['front', ' room '],
        max_nozzle_c=280,
    )
    await refused(s.create(MAINTAINER, form), 'forbidden')
    printer_id = await s.create(ADMIN, form)
    row = await s.get(printer_id)
    assert row is not None and (row.name, row.kind, row.has_secret, row.materials, row.tags) == (
        'Octo One',
        'octoprint',
        True,
        ('PLA', 'PETG'),
        ('front', 'room'),
    )
    assert not hasattr(row, 'api_key') and 'SECRET' not in repr(await s.list())  # never sent to pages
    assert any_lab.live.printers[printer_id].name == 'Octo One'  # the fleet knows it at once
    await refused(s.create(ADMIN, replace(form, name='octo one')), 'name_taken', 'name')
    await s.update(ADMIN, printer_id, replace(form, name='Octo 1', api_key=''))  # empty: keep the secret
    assert (await s.get(printer_id)).has_secret and any_lab.fleet.config(printer_id).api_key == 'SECRET'
    await s.update(ADMIN, printer_id, replace(form, name='Octo 1', api_key='', clear_api_key=True))
    assert not (await s.get(printer_id)).has_secret
    await s.delete(ADMIN, printer_id)
    assert await s.get(printer_id) is None and printer_id not in any_lab.live.printers
    assert await s.create(ADMIN, form)  # the name is free again


@pytest.mark.parametrize(
    ('changes', 'code', 'field'),
    [
        ({'name': ' '}, 'name_required', 'name'),
        ({'kind': 'cnc'}, 'kind_required', 'kind'),
        ({'kind': 'octoprint', 'address': ''}, 'address_required', 'address'),
        ({'kind': 'octoprint', 'address': 'ftp://x'}, 'bad_address', 'address'),
        ({'kind': 'marlin', 'address': 'COM3'}, 'bad_address', 'address'),
        ({'kind': 'marlin', 'address': '/dev/serial/by-id/usb-x', 'baudrate': 1234}, 'bad_number', 'baudrate'),
        ({'kind': 'bambu', 'address': '10.0.0.9', 'api_key': 'code'}, 'bambu_needs_serial_and_code', 'serial_number'),
        ({'max_nozzle_c': 900}, 'bad_number', 'max_nozzle_c'),
        ({'max_bed_c': float('nan')}, 'bad_number', 'max_bed_c'),
        ({'nozzle_diameter_mm': None}, 'bad_number', 'nozzle_diameter_mm'),
        ({'tags': ['x' * 300]}, 'too_long', 'tags'),
        (
            {
                'kind': 'bambu',
                'address': '10.0.0.9',
                'api_key': 'code',
                'serial_number': '01P00A',
                'tls_fingerprint': 'ab' * 31,
            },
            'bad_fingerprint',
            'tls_fingerprint',
        ),
        (
            {
                'kind': 'bambu',
                'address': '10.0.0.9',
                'api_key': 'code',
                'serial_number': '01P00A',
                'tls_fingerprint': 'zz' * 32,
            },
            'bad_fingerprint',
            'tls_fingerprint',
        ),
    ],
)
async def test_the_form_is_checked(lab: Lab, changes: dict, code: str, field: str) -> None:
    form = replace(PrinterForm(name='Checked', kind='simulated'), **changes)
    await refused(lab.service.create(ADMIN, form), code, field)
    assert await lab.service.list() == []


async def test_who_may_control_a_printer(lab: Lab, tmp_path: Path) -> None:
    s = lab.service
    printer_id, sim = await lab.printer()
    for call in (
        s.set_temperature(MEMBER, printer_id, Heater.NOZZLE, 200),
        s.console(MEMBER, printer_id, 'M105'),
        s.start_file(MEMBER, printer_id, gcode(tmp_path), 'x'),
        s.emergency_stop(MEMBER, printer_id),
    ):
        await refused(call, 'forbidden')
    await refused(s.pause(MEMBER, printer_id), 'not_printing')
    # a member's own job (the queue starts these): she may pause, resume and cancel it, not stop the printer
    job_id = await lab.fleet.start_job(printer_id, gcode(tmp_path), 'mine.gcode', MEMBER.member_id)
    await wait_for(lambda: lab.live.printers[printer_id].state == 'printing')
    await refused(s.pause(OTHER_MEMBER, printer_id), 'not_your_job')
    await refused(s.resume(MEMBER, printer_id), 'not_paused')
    await s.pause(MEMBER, printer_id)
    await wait_for(lambda: lab.live.printers[printer_id].state == 'paused')
    await s.resume(MEMBER, printer_id)
    await wait_for(lambda: lab.live.printers[printer_id].state == 'printing')
    await refused(s.emergency_stop(MEMBER, printer_id), 'forbidden')
    await refused(s.delete(ADMIN, printer_id), 'printer_busy')
    ended: list[tuple] = []
    lab.live.events.job_ended.subscribe(ended.append)  # sent once the outcome is committed
    await s.cancel(MEMBER, printer_id)
    await wait_for(lambda: ended == [(printer_id, job_id, 'cancelled')])
    (job,) = await s.jobs(printer_id)
    assert (job.id, job.outcome, job.started_by, job.file_name) == (job_id, 'cancelled', 'Giulia', 'mine.gcode')
    assert job.duration_s is not None and job.duration_s >= 0
    # staff control any job; a maintainer counts as staff
    await s.start_file(MAINTAINER, printer_id, gcode(tmp_path), 'staff.gcode')
    await wait_for(lambda: lab.live.printers[printer_id].state == 'printing')
    await s.emergency_stop(MAINTAINER, printer_id)
    await wait_for(lambda: lab.live.printers[printer_id].state == 'error' and len(ended) == 2)
    assert [j.outcome for j in await s.jobs(printer_id)] == ['cancelled', 'cancelled']


async def test_temperatures_are_limited_per_printer(lab: Lab) -> None:
    s = lab.service
    printer_id, sim = await lab.printer(max_nozzle_c=240, max_bed_c=90)
    e = await refused(s.set_temperature(MAINTAINER, printer_id, Heater.NOZZLE, 241), 'too_hot', 'nozzle')
    assert e.info['max'] == '240'
    await refused(s.set_temperature(MAINTAINER, printer_id, Heater.BED, 95), 'too_hot', 'bed')
    await refused(s.set_temperature(MAINTAINER, printer_id, Heater.BED, float('nan')), 'bad_number', 'bed')
    assert sim.nozzle.target == 0 and sim.bed.target == 0  # nothing was sent
    await s.set_temperature(MAINTAINER, printer_id, Heater.NOZZLE, 240)
    await s.set_temperature(ADMIN, printer_id, Heater.BED, 90)
    assert (sim.nozzle.target, sim.bed.target) == (240, 90)


async def test_the_console_is_checked(lab: Lab) -> None:
    s = lab.service
    printer_id, sim = await lab.printer(max_nozzle_c=250)
    e = await refused(s.console(ADMIN, printer_id, 'm104s300'), 'gcode_refused')
    assert e.info['line'] == 1 and e.info['check'] == 'too_hot' and '250' in e.info['reason']
    await refused(s.console(ADMIN, printer_id, 'SET_HEATER_TEMPERATURE HEATER=extruder TARGET=260'), 'gcode_refused')
    await refused(s.console(ADMIN, printer_id, 'M105\nM104 S300'), 'one_line')
    await refused(s.console(ADMIN, printer_id, 'M117 ' + 'x' * 300), 'line_too_long')
    assert sim.nozzle.target == 0
    assert (await s.console(ADMIN, printer_id, 'M105'))[0].startswith('ok T:')
    assert await s.console(MAINTAINER, printer_id, 'M500') == ['ok']  # firmware commands: staff only, staff here
    assert await s.console(ADMIN, printer_id, '  ') == []


async def test_files_are_scanned_before_a_print(lab: Lab, tmp_path: Path) -> None:
    s = lab.service
    printer_id, sim = await lab.printer(max_bed_c=100)
    e = await refused(
        s.start_file(ADMIN, printer_id, gcode(tmp_path, 'M104 S200', 'M140 S120'), 'hot.gcode'), 'gcode_refused'
    )
    assert (e.info['line'], e.info['check'], e.info['value'], e.info['limit']) == (4, 'too_hot', 120, 100)
    firmware = gcode(tmp_path, 'M92 E400', name='calibrate.gcode')
    e = await refused(s.start_file(ADMIN, printer_id, firmware, 'calibrate.gcode'), 'gcode_refused')
    assert e.info['check'] == 'staff_only'
    await refused(
        s.start_file(
            replace(ADMIN, may_maintain=False, may_administer=False), printer_id, firmware, 'c', maintenance=True
        ),
        'forbidden',
    )
    (tmp_path / 'x.bgcode').write_bytes(b'GCDE\x01\x00\x00\x00')
    await refused(s.start_file(ADMIN, printer_id, tmp_path / 'x.bgcode', 'x.bgcode'), 'binary_gcode')
    with zipfile.ZipFile(tmp_path / 'plate.3mf', 'w') as z:
        z.writestr('Metadata/plate_1.gcode', 'G28\nM190 S130\n')
    e = await refused(s.start_file(ADMIN, printer_id, tmp_path / 'plate.3mf', 'plate.3mf'), 'gcode_refused')
    assert e.info['line'] == 2
    await refused(s.start_file(ADMIN, printer_id, tmp_path / 'absent.gcode', 'a'), 'file_missing')
    assert sim.job is None and await s.jobs(printer_id) == []  # nothing reached the printer
    job_id = await s.start_file(MAINTAINER, printer_id, firmware, 'calibrate.gcode', maintenance=True)
    await wait_for(lambda: lab.live.printers[printer_id].job_id == job_id)
    await refused(s.start_file(ADMIN, printer_id, gcode(tmp_path), 'second.gcode'), 'printer_busy')


async def test_unknown_and_offline_printers(lab: Lab) -> None:
    s = lab.service
    await refused(s.console(ADMIN, 999, 'M105'), 'printer_unknown')
    await refused(s.update(ADMIN, 999, PrinterForm(name='x')), 'printer_unknown')
    printer_id, sim = await lab.printer()
    sim.refuse_connect = True
    sim.disconnect()
    await wait_for(lambda: lab.live.printers[printer_id].state == 'offline')
    await refused(s.set_temperature(ADMIN, printer_id, Heater.NOZZLE, 100), 'not_connected')


async def test_a_bambu_certificate_fingerprint_is_kept_in_one_form_and_pins_the_connection(lab: Lab) -> None:
    digest = 'a1b2c3d4' * 8
    with_colons = ':'.join(digest[i : i + 2] for i in range(0, 64, 2)).upper()  # as openssl prints it
    form = PrinterForm(
        name='X1C',
        kind='bambu',
        address='10.0.0.9',
        api_key='12345678',
        serial_number='00M09A',
        tls_fingerprint=f' {with_colons} ',
    )
    printer_id = await lab.service.create(ADMIN, form)
    assert (await lab.service.get(printer_id)).tls_fingerprint == digest
    assert lab.fleet.config(printer_id).tls_fingerprint == digest
    driver = lab.fleet.registry.create(lab.fleet.config(printer_id), lab.fleet.workers[printer_id])
    assert driver.trust.fingerprint == digest  # what the TLS handshake checks (see tests/printers/test_bambu_fleet.py)
    await lab.service.update(ADMIN, printer_id, replace(form, tls_fingerprint=''))
    assert lab.fleet.config(printer_id).tls_fingerprint == ''
    # other kinds have no certificate to pin: nothing is stored for them
    other = await lab.service.create(ADMIN, PrinterForm(name='Sim', kind='simulated', tls_fingerprint=digest))
    assert (await lab.service.get(other)).tls_fingerprint == ''
