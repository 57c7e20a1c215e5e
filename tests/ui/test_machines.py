"""The machines pages in NiceGUI's simulated browser: who sees them, the list, the form, block, delete and restore,
the per-machine page and remote start over a real broker to a simulated board."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from nicegui import ui

from fabpanel.boards.simulator import SimulatedBoard
from fabpanel.db.models import Board, Card, Machine, Member, Use

from ..conftest import make_settings, wait_for
from ..lab import ANNA, GIULIA, LASER, PRINTER, create_lab
from ..support import Mosquitto
from .simulation import signed_in, simulated_panel

HOSTILE = '<img src=x onerror=alert(1)>'
ADMIN, MEMBER, MAINTAINER = 3, 1, 2


@pytest.fixture
async def lab(tmp_path: Path):
    url = f'sqlite:///{tmp_path}/fabpanel.db'
    await create_lab(url)
    async with simulated_panel(make_settings(tmp_path, url)) as (new_user, panel):
        yield new_user, panel


async def machine_row(panel, machine_id: int):  # noqa: ANN001, ANN201
    async with panel.engine.connect() as conn:
        return (await conn.execute(sa.select(Machine.__table__).where(Machine.__table__.c.id == machine_id))).first()


async def eventually(check: Callable, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError('not in time')
        await asyncio.sleep(0.05)


def set_value(user, marker: str, value) -> None:  # noqa: ANN001
    with user:
        for element in user.find(marker=marker).elements:
            element.value = value


async def test_only_admins_reach_the_machine_pages(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    anonymous = new_user()
    response = await anonymous.http_client.get('/machines/1', follow_redirects=False)
    assert response.status_code == 303 and response.headers['location'].startswith('/login')
    for member_id in (MEMBER, MAINTAINER):
        user = await signed_in(new_user, panel, member_id)
        for path in ('/machines', '/machines/1', '/machines/999'):
            response = await user.http_client.get(path, follow_redirects=False)
            assert response.status_code == 303 and response.headers['location'] == '/forbidden', path
        await user.open('/')
        await user.should_not_see(marker='add-machine')
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open('/machines')
    await admin.should_see('Prusa MK4')
    await admin.should_see('Blocked CNC')


async def test_add_a_machine_with_checks_and_a_hostile_name(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    panel.live.unknown_boards[77] = datetime.now(UTC)  # a board the lab has not added yet
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open('/machines')
    admin.find(marker='add-unknown-77').click()
    await admin.should_see(marker='save-new-machine', retries=50)
    with admin:
        assert admin.find(marker='machine-id').elements.pop().value == '77'
    admin.find(marker='cancel').click()
    await admin.should_not_see(marker='save-new-machine', retries=50)
    admin.find(marker='add-machine').click()
    await admin.should_see(marker='save-new-machine', retries=50)
    admin.find(marker='machine-id').clear().type('seventy')
    admin.find(marker='machine-name').clear().type('Lathe')
    set_value(admin, 'machine-type', 1)
    admin.find(marker='save-new-machine').click()
    await admin.should_see('The machine number is a whole number from 1 to 65535', retries=50)
    admin.find(marker='machine-id').clear().type('1')
    admin.find(marker='save-new-machine').click()
    await admin.should_see('Number 1 is already the machine "Prusa MK4".', retries=50)
    admin.find(marker='machine-id').clear().type('70000')
    admin.find(marker='save-new-machine').click()
    await admin.should_see('The machine number is a whole number from 1 to 65535', retries=50)
    admin.find(marker='machine-id').clear().type('70')
    admin.find(marker='machine-name').clear()
    admin.find(marker='save-new-machine').click()
    await admin.should_see('Enter a name.', retries=50)
    # a long name is accepted, with what the 16-character display will show
    admin.find(marker='machine-name').clear().type(HOSTILE + ' lathe')
    await admin.should_see('The board display shows only 16 characters: "<img src=x onerr"', retries=20)
    admin.find(marker='save-new-machine').click()
    await eventually(lambda: machine_row(panel, 70))
    assert (await machine_row(panel, 70)).name == HOSTILE + ' lathe'
    await admin.should_see('Machine 70', retries=50)  # the new machine's page
    await admin.should_see(HOSTILE + ' lathe', retries=20)  # shown as text: a label, never HTML
    await admin.should_not_see(kind=ui.html)
    assert panel.live.machines[70].name == HOSTILE + ' lathe'  # the dashboard has it at once


async def test_list_searches_and_pages(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    async with panel.engine.begin() as conn:
        await conn.execute(sa.insert(Machine.__table__), [
            {'id': 100 + i, 'name': f'Sewing {i:02d}', 'type_id': 3, 'blocked': False, 'usage_seconds': 0.0}
            for i in range(30)])
    await panel.boards.reload_rules()
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open('/machines')
    await admin.should_see('Blocked CNC')
    await admin.should_not_see('Sewing 29')  # the 25 first by name on page 1
    await admin.should_see('Page 1 of 2')
    admin.find(marker='pager-next').click()
    await admin.should_see('Sewing 29', retries=50)
    admin.find(marker='search').clear().type('laser')
    await admin.should_not_see('Sewing 29', retries=50)
    await admin.should_see('Laser', retries=20)
    admin.find(marker='search').clear().type('nothing like this')
    await admin.should_see('No machine matches.', retries=50)


async def test_block_edit_delete_and_restore(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    async with panel.engine.begin() as conn:
        start = datetime.now(UTC) - timedelta(hours=3)
        await conn.execute(sa.insert(Use.__table__).values(machine_id=LASER, member_id=2, card_uid='11223344',
                                                           start=start, last_seen=start,
                                                           end=start + timedelta(hours=1), duration_s=3600.0))
        await conn.execute(sa.update(Machine.__table__).where(Machine.__table__.c.id == LASER).values(
            usage_seconds=5400.0))
    await panel.boards.reload_rules()
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open(f'/machines/{LASER}')
    await admin.should_see('1.5 h')  # the hour counter
    await admin.should_see('Mario Bianchi')  # a recent use
    await admin.should_see('Clean the lens')  # its plan
    await admin.should_see('Authorized members: 1')
    await admin.should_see('No board has announced itself for this machine yet.')

    admin.find(marker='block').click()
    await admin.should_see('Boards refuse every new start', retries=50)
    admin.find(marker='confirm').click()
    await eventually(lambda: panel.boards.rules.machines[LASER].blocked)
    await admin.should_see(marker='unblock', retries=50)
    assert panel.live.machines[LASER].status == 'blocked'
    admin.find(marker='unblock').click()
    await eventually(lambda: not panel.boards.rules.machines[LASER].blocked)

    admin.find(marker='machine-name').clear().type('CO2 laser, back room')
    await admin.should_see('The board display shows only 16 characters: "CO2 laser, back "', retries=20)
    admin.find(marker='save-machine').click()
    await eventually(lambda: panel.live.machines[LASER].name == 'CO2 laser, back room')
    await admin.should_see(marker='machine-name', retries=50)
    admin.find(marker='machine-name').clear()
    admin.find(marker='save-machine').click()
    await admin.should_see('Enter a name.', retries=50)

    admin.find(marker='delete-machine').click()
    await admin.should_see('Uses recorded: 1\nMaintenance plans: 1\nAuthorizations: 1', retries=50)
    admin.find(marker='cancel').click()
    await asyncio.sleep(0.2)
    assert LASER in panel.live.machines
    admin.find(marker='delete-machine').click()
    await admin.should_see(marker='confirm', retries=50)
    admin.find(marker='confirm').click()
    await eventually(lambda: LASER not in panel.live.machines)  # gone from the dashboard
    assert (await machine_row(panel, LASER)).deleted_at is not None

    await admin.open('/machines')
    await admin.should_not_see('CO2 laser, back room')
    admin.find(marker='show-deleted').click()
    await admin.should_see('CO2 laser, back room', retries=50)
    await admin.open(f'/machines/{LASER}')
    await admin.should_see('This machine was deleted on', retries=20)
    admin.find(marker='restore-machine').click()
    await eventually(lambda: LASER in panel.live.machines)
    assert panel.live.machines[LASER].usage_hours == 1.5


async def test_remote_start_needs_an_online_board_a_card_and_a_gateway(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open(f'/machines/{PRINTER}')
    await admin.should_see('Board offline: not heard in the last 90 seconds')
    assert not admin.find(marker='remote-start').elements.pop().enabled  # offline: the buttons are off
    assert not admin.find(marker='remote-stop').elements.pop().enabled
    panel.live.mark_seen(PRINTER, datetime.now(UTC))
    await admin.should_see('Board online', retries=20)
    admin.find(marker='remote-start').click()
    await admin.should_see('The board connection is not running', retries=50)  # this panel runs no gateway
    # with two cards the admin chooses which one the board should see
    async with panel.engine.begin() as conn:
        await conn.execute(sa.insert(Card.__table__).values(uid='a1a2a3a4', member_id=ADMIN, label='Spare',
                                                            created_at=datetime.now(UTC)))
    admin.notify.messages.clear()
    admin.find(marker='remote-start').click()
    await admin.should_see('Which of your cards should the board see?', retries=50)
    admin.find(marker='use-card').click()
    await admin.should_see('The board connection is not running', retries=50)
    async with panel.engine.begin() as conn:
        await conn.execute(sa.delete(Card.__table__).where(Card.__table__.c.member_id == ADMIN))
    admin.find(marker='remote-start').click()
    await admin.should_see('You have no card a board can read', retries=50)


async def test_board_details_are_shown(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    now = datetime.now(UTC)
    async with panel.engine.begin() as conn:
        await conn.execute(sa.insert(Board.__table__).values(machine_id=PRINTER, serial='abc123', ip='10.0.0.7',
                                                             firmware='1.2.3', heap=183204, last_seen=now))
    await panel.boards.reload_rules()
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open(f'/machines/{PRINTER}')
    for text in ('abc123', '10.0.0.7', '1.2.3', '183,204 B'):
        await admin.should_see(text)


async def test_remote_start_reaches_a_real_board(tmp_path: Path, mosquitto: Mosquitto) -> None:
    url = f'sqlite:///{tmp_path}/fabpanel.db'
    await create_lab(url)
    async with simulated_panel(make_settings(tmp_path, url, mosquitto.port), gateway=True) as (new_user, panel):
        await wait_for(lambda: panel.live.gateway.connected and not panel.gateway._draining, timeout=10)
        async with SimulatedBoard(PRINTER, '127.0.0.1', mosquitto.port) as board:
            assert (await board.checkmachine())['request_ok'] is True  # the board is heard: online
            await wait_for(lambda: panel.live.machines[PRINTER].online)
            admin = await signed_in(new_user, panel, ADMIN)
            await admin.open(f'/machines/{PRINTER}')
            await admin.should_see('Board online')
            admin.find(marker='remote-start').click()
            command = await asyncio.wait_for(board.commands.get(), timeout=5)
            assert command == {'request_type': 'start', 'uid': ANNA}
            await admin.should_see('Sent: the board checks your card and starts the machine.', retries=50)
            # the board does what the firmware does next: it checks the card and starts a use
            assert (await board.checkuser(command['uid']))['is_valid'] is True
            # Giulia taps in; the admin stops the machine remotely (after confirming)
            assert (await board.startuse(GIULIA))['request_ok'] is True
            await admin.should_see('Giulia', retries=50)
            admin.find(marker='remote-stop').click()
            await admin.should_see('Giulia is using it: their use ends now', retries=50)
            admin.find(marker='confirm').click()
            command = await asyncio.wait_for(board.commands.get(), timeout=5)
            assert command == {'request_type': 'stop', 'uid': ANNA}


async def test_actions_check_the_role_again(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open(f'/machines/{LASER}')
    await admin.should_see(marker='block')
    # Anna loses her admin role while the page is open: its buttons do nothing any more
    async with panel.engine.begin() as conn:
        await conn.execute(sa.update(Member.__table__).where(Member.__table__.c.id == ADMIN).values(role_id=1))
    admin.find(marker='block').click()
    await admin.should_see('Your session ended or your role no longer allows this', retries=50)
    admin.find(marker='delete-machine').click()
    await admin.should_see('Your session ended or your role no longer allows this', retries=50)
    await asyncio.sleep(0.2)
    assert not panel.boards.rules.machines[LASER].blocked and LASER in panel.live.machines
    response = await admin.http_client.get('/machines', follow_redirects=False)
    assert response.headers['location'] == '/forbidden'


@pytest.mark.browser
async def test_admin_pages_fit_a_phone_and_show_names_as_text(make_panel, browser, artifacts: Path) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    from .pages import open_page, overflowing_elements, screenshot

    long_hostile = HOSTILE + ' Laser cutter Trotec Speedy 400 flexx (back room, by the window)'
    panel = make_panel(extra_machines=[long_hostile, 'Ultimaker' + 'S' * 70],
                       first_names={1: '<b>Giu</b>' + 'lia' * 20})
    driver = browser(390, 844, mobile=True)
    panel.sign_in(driver)  # Anna, admin
    for path, name in (('/machines', 'machines'), ('/machines/100', 'machine'), ('/settings', 'settings'),
                       ('/authorizations?machine=1', 'authorizations'), ('/authorizations?member=1', 'member')):
        open_page(driver, panel.url + path)
        width, scroll_width = driver.execute_script('return [window.innerWidth, document.documentElement.scrollWidth]')
        assert scroll_width <= width, path
        assert overflowing_elements(driver) == [], path
        assert driver.find_elements(By.CSS_SELECTOR, 'img[src="x"], main b') == [], path
        screenshot(driver, artifacts / f'admin-{name}-phone.png')
    open_page(driver, panel.url + '/machines/100')
    assert long_hostile in driver.find_element(By.TAG_NAME, 'body').text
    desktop = browser(1280, 900)
    panel.sign_in(desktop)
    open_page(desktop, panel.url + f'/machines/{PRINTER}')
    assert overflowing_elements(desktop) == []
    screenshot(desktop, artifacts / 'admin-machine-desktop.png')
