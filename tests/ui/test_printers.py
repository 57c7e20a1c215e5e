"""The printers pages in NiceGUI's simulated browser, against the real service, fleet and simulated printers:
who sees which controls, the admin's printer form, the staff console's safety refusals, the cancel confirmation,
a member's own job, and a printer that does not exist."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from nicegui.testing.user import User

from fabpanel.app import Panel
from fabpanel.core.printers import PrinterKind
from fabpanel.services.machines import Refused
from fabpanel.services.printers import PrinterForm

from ..conftest import make_settings, wait_for
from ..lab import ADMIN_USER, MEMBER_USER, create_lab
from .simulation import signed_in, simulated_panel

ADMIN, MAINTAINER, MEMBER = 3, 2, 1
HOSTILE = '<img src=x onerror=alert(1)>'


@pytest.fixture
async def lab(tmp_path: Path):
    url = f'sqlite:///{tmp_path}/fabpanel.db'
    await create_lab(url)
    async with simulated_panel(make_settings(tmp_path, url)) as (new_user, panel):
        yield new_user, panel


def sim_address(speed: float = 1.0) -> str:
    # simulated machines live per address for the whole process: a fresh one per test
    return f'sim://ui-{uuid.uuid4().hex[:8]}?speed={speed:g}&report=0.2'


async def add_printer(panel: Panel, name: str = 'Prusa MK4', speed: float = 1.0) -> int:
    printer_id = await panel.printers.create(
        ADMIN_USER, PrinterForm(name=name, kind=PrinterKind.SIMULATED, address=sim_address(speed))
    )
    await wait_for(
        lambda: panel.live.printers.get(printer_id) is not None and panel.live.printers[printer_id].state == 'idle',
        timeout=10,
    )
    return printer_id


def gcode(tmp_path: Path, minutes: int = 10) -> Path:
    path = tmp_path / f'benchy-{uuid.uuid4().hex[:6]}.gcode'
    path.write_text(f';TIME:{minutes * 60}\n;LAYER_COUNT:50\nM140 S60\nM104 S215\nG28\n' + 'G1 X10 Y10 E1\n' * 50)
    return path


async def start_printing(panel: Panel, printer_id: int, tmp_path: Path, member_id: int | None = None) -> int:
    """A job on the simulated printer: through the service as staff, or as a member's own job (the queue of a
    later issue starts those; here the fleet does it directly)."""
    if member_id is None:
        job_id = await panel.printers.start_file(ADMIN_USER, printer_id, gcode(tmp_path), 'benchy.gcode')
    else:
        job_id = await panel.fleet.start_job(printer_id, gcode(tmp_path), 'benchy.gcode', member_id)
    await wait_for(
        lambda: (
            panel.live.printers[printer_id].state == 'printing' and panel.live.printers[printer_id].job_id == job_id
        ),
        timeout=10,
    )
    return job_id


def set_value(user: User, marker: str, value: object) -> None:
    with user:
        for element in user.find(marker=marker).elements:
            element.value = value


async def test_member_sees_live_tiles_but_no_admin_or_staff_controls(lab, tmp_path: Path) -> None:  # noqa: ANN001
    new_user, panel = lab
    printer_id = await add_printer(panel, 'Prusa ' + HOSTILE)
    await start_printing(panel, printer_id, tmp_path)
    member = await signed_in(new_user, panel, MEMBER)
    await member.open('/printers')
    await member.should_see('Prusa ' + HOSTILE)  # as text
    await member.should_see('Printing')
    await member.should_see('benchy.gcode')
    await member.should_see('Anna')  # who started it: first name only
    await member.should_not_see(marker='add-printer')
    await member.should_not_see(marker=f'edit-printer-{printer_id}')
    await member.should_not_see(marker=f'delete-printer-{printer_id}')
    # the tile follows the printer without a reload: the nozzle heats towards 215 °C
    tile = member.find(marker=f'printer-tile-{printer_id}').elements.pop()
    first = tile.props['tile']['temps']
    await wait_for(lambda: tile.props['tile']['temps'] != first, timeout=10)
    assert 'Nozzle' in tile.props['tile']['temps'] and '/ 215 °C' in tile.props['tile']['temps']

    await member.open(f'/printers/{printer_id}')
    await member.should_see('Temperatures, last 30 minutes')
    for marker in ('console', 'emergency-stop', 'preheat-pla', 'cool-down', 'pause', 'cancel-job'):
        await member.should_not_see(marker=marker)
    await member.should_see('No controls for you right now', retries=3)
    # the server refuses what the page does not offer
    with pytest.raises(Refused) as refused:
        await panel.printers.pause(MEMBER_USER, printer_id)
    assert refused.value.code == 'not_your_job'


async def test_admin_adds_edits_and_deletes_a_simulated_printer(lab, tmp_path: Path) -> None:  # noqa: ANN001
    new_user, panel = lab
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open('/printers')
    await admin.should_see('No printers yet.')
    admin.find(marker='add-printer').click()
    await admin.should_see(marker='save-printer')
    set_value(admin, 'printer-max_nozzle_c', '900')
    set_value(admin, 'printer-build_x_mm', 'wide')
    set_value(admin, 'printer-kind', 'octoprint')
    admin.find(marker='save-printer').click()
    await admin.should_see('Enter a name.')
    await admin.should_see('A number from 100 to 500.')
    await admin.should_see('A number from 10 to 2000.')
    await admin.should_see('Enter the address of the printer.')
    # the service's own check: an address that does not fit the kind
    set_value(admin, 'printer-name', 'Voron')
    set_value(admin, 'printer-max_nozzle_c', '280')
    set_value(admin, 'printer-build_x_mm', '300')
    set_value(admin, 'printer-address', 'ftp://voron.local')
    admin.find(marker='save-printer').click()
    await admin.should_see('This address does not fit the kind of printer', retries=20)
    assert await panel.printers.list() == []
    set_value(admin, 'printer-kind', 'simulated')
    set_value(admin, 'printer-address', sim_address())
    set_value(admin, 'printer-api_key', 's3cret-key')
    admin.find(marker='save-printer').click()
    await admin.should_see('Printer added.', retries=50)
    assert len(panel.live.printers) == 1
    printer_id = next(iter(panel.live.printers))
    await admin.should_see(marker=f'printer-tile-{printer_id}')
    row = await panel.printers.get(printer_id)
    assert row is not None and row.max_nozzle_c == 280 and row.build_x_mm == 300 and row.has_secret

    # edit: the secret is never sent back; left empty it is kept
    admin.find(marker=f'edit-printer-{printer_id}').click()
    await admin.should_see('Edit the printer')
    await admin.should_see(marker='save-printer')
    with admin:
        [key] = admin.find(marker='printer-api_key').elements
        assert key.value == '' and 's3cret' not in str(key.props)
    set_value(admin, 'printer-name', 'Voron 2.4')
    admin.find(marker='save-printer').click()
    await admin.should_see('Saved.', retries=50)
    await wait_for(lambda: panel.live.printers[printer_id].name == 'Voron 2.4')
    await admin.should_see('Voron 2.4')
    row = await panel.printers.get(printer_id)
    assert row is not None and row.name == 'Voron 2.4' and row.has_secret

    # delete is refused while printing, with the reason shown; allowed once idle, after a confirmation
    await start_printing(panel, printer_id, tmp_path)
    admin.find(marker=f'delete-printer-{printer_id}').click()
    await admin.should_see('Delete Voron 2.4?')
    admin.find(marker='confirm').click()
    await admin.should_see('The printer is busy with a job', retries=50)
    assert await panel.printers.get(printer_id) is not None
    await panel.printers.cancel(ADMIN_USER, printer_id)
    await wait_for(
        lambda: panel.live.printers[printer_id].state == 'idle' and panel.fleet.current_job(printer_id) is None,
        timeout=10,
    )
    admin.find(marker=f'delete-printer-{printer_id}').click()
    await admin.should_see(marker='confirm')
    admin.find(marker='confirm').click()
    await admin.should_see('Printer deleted.', retries=50)
    await admin.should_see('No printers yet.')
    assert await panel.printers.get(printer_id) is None


async def test_a_bambu_printer_takes_a_certificate_fingerprint(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open('/printers')
    admin.find(marker='add-printer').click()
    await admin.should_see(marker='save-printer')
    await admin.should_not_see(marker='printer-tls_fingerprint')  # simulated printers have no certificate
    set_value(admin, 'printer-kind', 'bambu')
    await admin.should_see(marker='printer-tls_fingerprint')
    set_value(admin, 'printer-name', 'P1S')
    set_value(admin, 'printer-address', '127.0.0.1')  # nothing listens: the fleet keeps it offline
    set_value(admin, 'printer-serial_number', '01P00A391800123')
    set_value(admin, 'printer-api_key', '28473910')
    set_value(admin, 'printer-tls_fingerprint', 'AB:CD')
    admin.find(marker='save-printer').click()
    await admin.should_see("The certificate fingerprint is the printer certificate's SHA-256", retries=20)
    assert await panel.printers.list() == []
    set_value(admin, 'printer-tls_fingerprint', ':'.join(['AB'] * 32))
    admin.find(marker='save-printer').click()
    await admin.should_see('Printer added.', retries=50)
    [row] = await panel.printers.list()
    assert row.kind == 'bambu' and row.tls_fingerprint == 'ab' * 32
    admin.find(marker=f'edit-printer-{row.id}').click()
    await admin.should_see(marker='printer-tls_fingerprint')
    with admin:
        [field] = admin.find(marker='printer-tls_fingerprint').elements
        assert field.value == 'ab' * 32  # not a secret: shown so it can be compared with the printer's


async def test_staff_console_refuses_unsafe_lines_and_members_have_none(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    printer_id = await add_printer(panel)
    staff = await signed_in(new_user, panel, ADMIN)
    await staff.open(f'/printers/{printer_id}')
    await staff.should_see(marker='console')
    staff.find(marker='console-input').type('M104 S400')
    staff.find(marker='console-send').click()
    await staff.should_see('refused: Line 1: M104 asks for 400 °C', retries=20)
    set_value(staff, 'console-input', 'M105')  # the refused line stays in the input to be corrected
    staff.find(marker='console-send').click()
    await staff.should_see('> M105', retries=40)
    await staff.should_see('< ok T:', retries=40)

    # firmware-changing commands: a member gets no console, and the service refuses the line itself
    member = await signed_in(new_user, panel, MEMBER)
    await member.open(f'/printers/{printer_id}')
    await member.should_not_see(marker='console')
    with pytest.raises(Refused) as refused:
        await panel.printers.console(MEMBER_USER, printer_id, 'M500')
    assert refused.value.code == 'forbidden'


async def test_cancel_asks_for_confirmation_first(lab, tmp_path: Path) -> None:  # noqa: ANN001
    new_user, panel = lab
    printer_id = await add_printer(panel)
    job_id = await start_printing(panel, printer_id, tmp_path)
    staff = await signed_in(new_user, panel, ADMIN)
    await staff.open(f'/printers/{printer_id}')
    staff.find(marker='cancel-job').click()
    await staff.should_see('Cancel benchy.gcode?')
    staff.find(marker='cancel').click()  # the dialog's own "Cancel": nothing happens
    await staff.should_not_see('Cancel benchy.gcode?')
    assert panel.live.printers[printer_id].state == 'printing'
    staff.find(marker='cancel-job').click()
    await staff.should_see(marker='confirm')
    staff.find(marker='confirm').click()
    await wait_for(lambda: panel.fleet.current_job(printer_id) is None, timeout=10)
    jobs = await panel.printers.jobs(printer_id)
    assert [(j.id, j.outcome) for j in jobs] == [(job_id, 'cancelled')]
    await staff.should_see('Cancelled', retries=50)  # the recent jobs list follows


async def test_a_member_may_pause_and_cancel_her_own_job(lab, tmp_path: Path) -> None:  # noqa: ANN001
    new_user, panel = lab
    printer_id = await add_printer(panel)
    await start_printing(panel, printer_id, tmp_path, member_id=MEMBER)
    member = await signed_in(new_user, panel, MEMBER)
    await member.open(f'/printers/{printer_id}')
    await member.should_see('Giulia')
    await member.should_not_see(marker='emergency-stop')
    await member.should_not_see(marker='console')
    member.find(marker='pause').click()
    await wait_for(lambda: panel.live.printers[printer_id].state == 'paused', timeout=10)
    await member.should_see(marker='resume', retries=50)
    await member.should_not_see(marker='pause')


async def test_temperature_targets_are_limited_by_the_printer(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    printer_id = await add_printer(panel)
    staff = await signed_in(new_user, panel, ADMIN)
    await staff.open(f'/printers/{printer_id}')
    set_value(staff, 'target-nozzle', '300')
    staff.find(marker='set-targets').click()
    await staff.should_see('Nozzle: at most 260 °C on this printer.', retries=20)
    assert not panel.live.printers[printer_id].nozzle_target
    staff.find(marker='preheat-petg').click()
    await wait_for(
        lambda: (
            panel.live.printers[printer_id].nozzle_target == 240 and panel.live.printers[printer_id].bed_target == 80
        ),
        timeout=10,
    )
    staff.find(marker='cool-down').click()
    await wait_for(lambda: not panel.live.printers[printer_id].nozzle_target, timeout=10)


async def test_unknown_printer_shows_not_found(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    member = await signed_in(new_user, panel, MEMBER)
    await member.open('/printers/999')
    await member.should_see('There is no printer 999.')
    await member.should_see('All printers')
    anonymous = new_user()
    response = await anonymous.http_client.get('/printers', follow_redirects=False)
    assert response.status_code == 303 and response.headers['location'].startswith('/login')
