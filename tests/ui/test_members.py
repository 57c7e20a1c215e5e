"""The members pages in NiceGUI's simulated browser: who may see and do what, forms, cards, export."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from io import BytesIO
from pathlib import Path

import pytest
import sqlalchemy as sa
from nicegui import ui
from nicegui.testing.user import User
from openpyxl import load_workbook

from fabpanel.app import Panel
from fabpanel.db.models import Card, Member
from fabpanel.services.auth import hash_password

from ..conftest import make_settings
from ..lab import GIULIA, MARIO, create_lab
from ..support import SmtpSink
from .simulation import signed_in, simulated_panel

HOSTILE = '<img src=x onerror=alert(1)>'
member_t = Member.__table__
card_t = Card.__table__


@pytest.fixture
async def lab(tmp_path: Path, smtp: SmtpSink):
    url = f'sqlite:///{tmp_path}/fabpanel.db'
    await create_lab(url)
    async with simulated_panel(make_settings(tmp_path, url, smtp_port=smtp.port)) as (new_user, panel):
        yield new_user, panel


async def eventually(check: Callable[[], Awaitable[bool]], what: str = '') -> None:
    """Handlers run in the background: poll the database for their effect."""
    for _ in range(100):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f'not in time: {what}')


async def member(panel: Panel, member_id: int) -> sa.Row:
    async with panel.engine.connect() as conn:
        return (await conn.execute(sa.select(member_t).where(member_t.c.id == member_id))).one()


async def cards_of(panel: Panel, member_id: int) -> list[str]:
    async with panel.engine.connect() as conn:
        return [r.uid for r in await conn.execute(sa.select(card_t.c.uid).where(
            card_t.c.member_id == member_id).order_by(card_t.c.id))]


async def admin(new_user: Callable[[], User], panel: Panel, path: str) -> User:
    user = await signed_in(new_user, panel, 3)  # Anna, staff
    await user.open(path)
    return user


async def test_members_and_maintainers_cannot_reach_the_pages(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    for member_id in (1, 2):  # a plain member, a maintainer
        user = await signed_in(new_user, panel, member_id)
        for path in ('/members', '/members/new', '/members/1', '/members/2?x=1', '/members/enrol'):
            response = await user.http_client.get(path, follow_redirects=False)
            assert (response.status_code, response.headers['location']) == (303, '/forbidden'), path
        await user.open('/')
        await user.should_not_see(marker='/members')  # no menu entry either
    anonymous = new_user()
    response = await anonymous.http_client.get('/members/1', follow_redirects=False)
    assert response.headers['location'].startswith('/login?next=')


async def test_list_search_filter_and_pages(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = await admin(new_user, panel, '/members')
    await user.should_see('Giulia', retries=50)
    await user.should_see('Dino')
    await user.should_see(GIULIA)
    await user.should_see('Found: 6')  # the lab's five and the first admin made at start
    user.find(marker='search').type('0a:1b')  # part of a card id
    await user.should_see('Found: 1', retries=50)
    await user.should_not_see('Mario')
    user.find(marker='search').clear().type('bianchi')
    await user.should_see('Mario', retries=50)
    await user.should_not_see('Giulia')
    user.find(marker='search').clear()
    user.find(marker='status-filter').elements.pop().value = 'disabled'
    await user.should_see('Found: 1', retries=50)
    await user.should_see('Dino')
    user.find(marker='status-filter').elements.pop().value = ''
    user.find(marker='card-filter').elements.pop().value = 'no'
    await user.should_see('Admin', retries=50)
    await user.should_not_see('Giulia')
    user.find(marker='card-filter').elements.pop().value = ''

    async with panel.engine.begin() as conn:
        await conn.execute(sa.insert(member_t), [{'first_name': f'Zed{i:02}', 'last_name': 'Zeta', 'role_id': 1}
                                                 for i in range(30)])
    user.find(marker='search').type('zeta')
    await user.should_see('Page 1 of 2', retries=50)
    await user.should_see('Zed00')
    await user.should_not_see('Zed25')
    user.find(marker='next-page').click()
    await user.should_see('Page 2 of 2', retries=50)
    await user.should_see('Zed29')
    await user.should_not_see('Zed00')


async def test_export_is_what_the_screen_filters_without_secrets(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    async with panel.engine.begin() as conn:
        await conn.execute(sa.update(member_t).values(password_hash=hash_password('correct horse battery')))
    user = await admin(new_user, panel, '/members')
    await user.should_see('Giulia', retries=50)
    user.find(marker='search').type('rossi')
    await user.should_see('Found: 1', retries=50)
    user.find(marker='export').click()
    response = await user.download.next(timeout=5)
    rows = list(load_workbook(BytesIO(response.content)).active.iter_rows(values_only=True))
    assert rows[0][:4] == ('Id', 'First name', 'Last name', 'E-mail')
    assert [r[1] for r in rows[1:]] == ['Giulia']
    assert GIULIA in rows[1][7] and 'argon2' not in repr(rows)


async def test_create_a_member_rejects_bad_values_and_shows_hostile_names_as_text(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = await admin(new_user, panel, '/members/new?card=C0:FF:EE:99')
    await user.should_see('Create member', retries=50)
    user.find(marker='email').type('not an address')
    user.find(marker='save').click()
    await user.should_see('This field is required.', retries=50)  # the first name, next to it
    user.find(marker='first_name').type(HOSTILE)
    user.find(marker='save').click()
    await user.should_see('This is not an e-mail address.', retries=50)
    user.find(marker='email').clear().type('Giulia@Example.org')
    user.find(marker='save').click()
    await user.should_see('Another member already uses this e-mail address.', retries=50)
    user.find(marker='email').clear().type('new@example.org')
    user.find(marker='card').clear().type(MARIO)
    user.find(marker='save').click()
    await user.should_see('This card is already in use by Mario Bianchi.', retries=50)
    user.find(marker='card').clear().type('C0:FF:EE:99')
    user.find(marker='save').click()
    await user.should_see('Member since', retries=50)
    await user.should_see(HOSTILE)
    assert any(isinstance(e, ui.label) for e in user.find(HOSTILE).elements)
    async with panel.engine.connect() as conn:
        new = (await conn.execute(sa.select(member_t).where(member_t.c.email == 'new@example.org'))).one()
    assert new.first_name == HOSTILE and await cards_of(panel, new.id) == ['c0ffee99']
    page = await user.http_client.get(f'/members/{new.id}')
    assert '<img src=x' not in page.text  # never raw HTML, not even inside the page's data
    await user.open('/members')
    await user.should_see(HOSTILE, retries=50)


async def test_edit_details_and_cards(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = await admin(new_user, panel, '/members/1')
    await user.should_see('Member since', retries=50)
    user.find(marker='first_name').clear()
    user.find(marker='save').click()
    await user.should_see('This field is required.', retries=50)
    user.find(marker='first_name').type('Giulia Maria')
    user.find(marker='save').click()
    await eventually(lambda: _first_name_is(panel, 1, 'Giulia Maria'), 'renamed')
    await user.should_see(marker='member-name', content='Giulia Maria Rossi', retries=50)  # the page shows it anew

    user.find(marker='new-card').type('zz')
    user.find(marker='add-card').click()
    await user.should_see('A card id is 1 to 32 hexadecimal characters', retries=50)
    user.find(marker='new-card').clear().type(MARIO)
    user.find(marker='add-card').click()
    await user.should_see('This card is already in use by Mario Bianchi.', retries=50)
    user.find(marker='new-card').clear().type('ABC')  # an old short id: kept, flagged, not padded
    user.find(marker='new-card-label').type('old tag')
    user.find(marker='add-card').click()
    await user.should_see('cannot match a board', retries=50)
    assert await cards_of(panel, 1) == [GIULIA, 'abc']

    user.find(marker='revoke-1').click()  # the lab's first card is Giulia's
    await user.should_see('stops working on every machine', retries=50)
    user.find(marker='confirm').click()
    await eventually(lambda: _cards_are(panel, 1, ['abc']), 'revoked')
    await user.should_not_see(GIULIA, retries=50)


async def _first_name_is(panel: Panel, member_id: int, name: str) -> bool:
    return (await member(panel, member_id)).first_name == name


async def _cards_are(panel: Panel, member_id: int, uids: list[str]) -> bool:
    return await cards_of(panel, member_id) == uids


async def test_disable_enable_delete_and_password_link(lab, smtp: SmtpSink) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = await admin(new_user, panel, '/members/2')
    await user.should_see('Member since', retries=50)
    user.find(marker='send-link').click()
    await user.should_see('A link to choose a password was sent', retries=50)
    await panel.auth.settle()
    assert [m['To'] for m in smtp.messages] == ['mario@example.org']

    user.find(marker='disable').click()
    await user.should_see('they can no longer sign in', retries=50)
    user.find(marker='cancel').click()
    await asyncio.sleep(0.2)
    assert not (await member(panel, 2)).disabled
    user.find(marker='disable').click()
    await user.should_see('they can no longer sign in', retries=50)
    user.find(marker='confirm').click()
    await eventually(lambda: _disabled(panel, 2, True), 'disabled')
    await user.should_see(marker='enable', retries=50)
    user.find(marker='enable').click()
    await eventually(lambda: _disabled(panel, 2, False), 'enabled')

    await user.should_see(marker='disable', retries=50)
    user.find(marker='delete').click()
    await user.should_see('This cannot be undone.', retries=50)
    user.find(marker='confirm').click()
    await eventually(lambda: _deleted(panel, 2), 'deleted')
    assert await cards_of(panel, 2) == [] and (await member(panel, 2)).email is None
    await user.open('/members/2')
    await user.should_see('Their usage history is kept.', retries=50)
    await user.should_not_see(marker='delete')

    own = await admin(new_user, panel, '/members/3')  # Anna on her own page
    await own.should_see('Member since', retries=50)
    own.find(marker='delete').click()
    await own.should_see('This cannot be undone.', retries=50)
    own.find(marker='confirm').click()
    await own.should_see('You cannot disable or delete your own account.', retries=50)
    assert (await member(panel, 3)).deleted_at is None


async def _disabled(panel: Panel, member_id: int, value: bool) -> bool:
    return (await member(panel, member_id)).disabled is value


async def _deleted(panel: Panel, member_id: int) -> bool:
    return (await member(panel, member_id)).deleted_at is not None


async def test_an_admin_whose_role_is_taken_away_cannot_act_from_an_open_page(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = await admin(new_user, panel, '/members/1')
    await user.should_see('Member since', retries=50)
    async with panel.engine.begin() as conn:
        await conn.execute(sa.update(member_t).where(member_t.c.id == 3).values(role_id=1))
    user.find(marker='delete').click()
    await user.should_see('This cannot be undone.', retries=50)
    user.find(marker='confirm').click()
    await user.should_see('Your role does not allow this.', retries=50)
    user.find(marker='new-card').type('beef0042')
    user.find(marker='add-card').click()
    await asyncio.sleep(0.3)
    assert (await member(panel, 1)).deleted_at is None and await cards_of(panel, 1) == [GIULIA]


@pytest.mark.browser
async def test_pages_fit_a_phone_and_show_hostile_names_as_text(make_panel, browser, artifacts: Path) -> None:  # noqa: ANN001
    from fabpanel.boards.simulator import SimulatedBoard

    from .pages import open_page, overflowing_elements, screenshot, wait

    long_hostile = HOSTILE + ' Maximiliana' + 'X' * 60
    panel = make_panel(first_names={1: long_hostile})
    async with SimulatedBoard(1, '127.0.0.1', panel.mqtt_port) as board:
        await board.checkuser('f00dcafe')  # an unknown card for the new-cards page
    driver = browser(390, 844, mobile=True)
    panel.sign_in(driver)  # Anna, staff
    for path, name in (('/members', 'members'), ('/members/1', 'member'), ('/members/new', 'member-new'),
                       ('/members/enrol', 'enrol')):
        open_page(driver, panel.url + path)
        wait(driver, lambda: 'fabpanel' in driver.title, 5, path)
        if path in ('/members', '/members/1'):
            wait(driver, lambda: long_hostile in driver.find_element('tag name', 'body').text, 5, f'{path} name')
            assert driver.execute_script('return document.querySelectorAll("img[src=x]").length') == 0
        if path == '/members/enrol':
            wait(driver, lambda: 'f00dcafe' in driver.find_element('tag name', 'body').text, 5, 'sighting')
        width, scroll = driver.execute_script('return [window.innerWidth, document.documentElement.scrollWidth]')
        assert scroll <= width, path
        assert overflowing_elements(driver) == [], path
        screenshot(driver, artifacts / f'{name}-phone.png')
    desktop = browser(1280, 800)
    panel.sign_in(desktop)
    open_page(desktop, panel.url + '/members')
    wait(desktop, lambda: 'Mario Bianchi' in desktop.find_element('tag name', 'body').text, 5, 'desktop list')
    assert overflowing_elements(desktop) == []
    screenshot(desktop, artifacts / 'members-desktop.png')
