"""The usage history page in NiceGUI's simulated browser: admins only; filters, totals, open uses; closing and
deleting a wrong record with its effect on the hour counter said first; the dashboard follows; export."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from nicegui import ui
from nicegui.testing.user import User
from openpyxl import load_workbook
from selenium.webdriver.common.by import By

from fabpanel.app import Panel
from fabpanel.core.protocol import Action, BoardMessage
from fabpanel.db.models import Machine, Member, Use

from ..conftest import make_settings
from ..lab import GIULIA, LASER, MARIO, PRINTER, create_lab
from .simulation import signed_in, simulated_panel

HOSTILE = '<img src=x onerror=alert(1)>'
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _fresh_now() -> None:
    """Each test's own now: the module is imported long before its last test runs (boards go offline after 90 s)."""
    global NOW
    NOW = datetime.now(UTC).replace(microsecond=0)
use_t = Use.__table__
machine_t = Machine.__table__


@pytest.fixture
async def lab(tmp_path: Path):
    url = f'sqlite:///{tmp_path}/fabpanel.db'
    await create_lab(url)
    async with simulated_panel(make_settings(tmp_path, url)) as (new_user, panel):
        yield new_user, panel


async def eventually(check: Callable[[], Awaitable[bool]], what: str = '') -> None:
    """Handlers run in the background: poll for their effect."""
    for _ in range(100):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f'not in time: {what}')


async def add_use(panel: Panel, machine_id: int, member_id: int | None, uid: str, start: datetime,
                  seconds: float | None, unauthorized: bool = False) -> int:
    end = start + timedelta(seconds=seconds) if seconds is not None else None
    async with panel.engine.begin() as conn:
        result = await conn.execute(sa.insert(use_t).values(
            machine_id=machine_id, member_id=member_id, card_uid=uid, start=start, last_seen=end or start, end=end,
            duration_s=seconds, unauthorized=unauthorized))
        if seconds:
            await conn.execute(sa.update(machine_t).where(machine_t.c.id == machine_id)
                               .values(usage_seconds=machine_t.c.usage_seconds + seconds))
    await panel.boards.reload_rules()
    return int(result.inserted_primary_key[0])


async def use_row(panel: Panel, use_id: int) -> Any:
    async with panel.engine.connect() as conn:
        return (await conn.execute(sa.select(use_t).where(use_t.c.id == use_id))).first()


async def counter(panel: Panel, machine_id: int) -> float:
    async with panel.engine.connect() as conn:
        return float((await conn.execute(sa.select(machine_t.c.usage_seconds)
                                         .where(machine_t.c.id == machine_id))).scalar_one())


async def admin(new_user: Callable[[], User], panel: Panel, path: str = '/history') -> User:
    user = await signed_in(new_user, panel, 3)  # Anna, staff
    await user.open(path)
    return user


def choose(user: User, marker: str, value: object) -> None:
    """Pick a value in a select (or set an input) the way the browser would report it."""
    for element in user.find(marker=marker).elements:
        with user:
            element.value = value


def text_of(user: User, marker: str) -> str:
    [element] = user.find(marker=marker).elements
    return element.text


def links(user: User) -> list[str]:
    return [str(e.props.get('href', '')) for e in user.current_layout.descendants() if isinstance(e, ui.link)]


def tile_status(user: User, machine_id: int) -> str:
    [tile] = [e for e in user.find(kind=ui.card).elements if str(e.props.get('data-machine')) == str(machine_id)]
    return str(tile.props['data-status'])


async def test_only_admins_reach_the_history(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    for member_id in (1, 2):  # a plain member, a maintainer
        user = await signed_in(new_user, panel, member_id)
        response = await user.http_client.get('/history', follow_redirects=False)
        assert (response.status_code, response.headers['location']) == (303, '/forbidden')
        await user.open('/')
        await user.should_see('Machines', retries=50)
        assert '/history' not in links(user)  # no menu entry either
    anonymous = new_user()
    response = await anonymous.http_client.get('/history', follow_redirects=False)
    assert response.headers['location'].startswith('/login?next=')
    user = await admin(new_user, panel)
    await user.should_see('Usage history', retries=50)
    await user.should_see('0 uses', retries=50)
    assert '/history' in links(user)


async def test_filters_totals_pages_and_open_uses(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    for day in range(30):
        await add_use(panel, PRINTER, 1, GIULIA, NOW - timedelta(days=day, minutes=90), 3600)
    await add_use(panel, LASER, None, 'f00dcafe', NOW - timedelta(hours=5), 1800, unauthorized=True)
    open_id = await add_use(panel, PRINTER, 2, MARIO, NOW - timedelta(minutes=20), None)
    user = await admin(new_user, panel)
    await user.should_see('32 uses · 30.5 h · 1 open', retries=50)
    await user.should_see('Page 1 of 2')
    with user.scope(marker=f'use-{open_id}'):  # the open use comes first, highlighted
        await user.should_see('Open')
        await user.should_see('Mario Bianchi')
    [card] = user.find(marker=f'use-{open_id}').elements
    assert card.props['data-open'] == 'true'
    await user.should_see(marker='unauthorized-badge')
    await user.should_see('Unknown card f0…fe')  # never the whole card id
    user.find(marker='next').click()
    await user.should_see('Page 2 of 2', retries=50)

    choose(user, 'machine', LASER)
    await user.should_see('1 use · 0.5 h · 0 open', retries=50)
    await user.should_see('Page 1 of 1')
    choose(user, 'machine', None)
    choose(user, 'member', 1)
    await user.should_see('30 uses · 30.0 h · 0 open', retries=50)
    user.find(marker='preset-7d').click()
    await user.should_see('7 uses · 7.0 h · 0 open', retries=50)
    user.find(marker='preset-today').click()
    await eventually(lambda: _async(text_of(user, 'totals') in ('1 use · 1.0 h · 0 open',
                                                               '2 uses · 2.0 h · 0 open')), 'today only')
    choose(user, 'member', None)
    choose(user, 'from', '')
    choose(user, 'to', '')
    user.find(marker='open-only').click()
    await user.should_see('1 use · 0.0 h · 1 open', retries=50)
    choose(user, 'from', '2026-03-10')
    choose(user, 'to', '2026-03-01')
    await user.should_see('The period ends before it starts.', retries=50)


async def _async(value: bool) -> bool:
    return value


async def test_closing_an_open_use_says_the_effect_and_frees_the_machine(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    await add_use(panel, PRINTER, 1, GIULIA, NOW - timedelta(days=2), 4 * 3600)
    start = NOW - timedelta(seconds=5405)
    await panel.boards.handle(BoardMessage(machine_id=PRINTER, action=Action.STARTUSE, uid=GIULIA), start)
    await panel.boards.handle(BoardMessage(machine_id=PRINTER, action=Action.INUSE, uid=GIULIA, duration=5400),
                              NOW - timedelta(seconds=5))  # heard from 5 s ago, after 1.5 h
    async with panel.engine.connect() as conn:
        open_id = (await conn.execute(sa.select(use_t.c.id).where(use_t.c.end.is_(None)))).scalar_one()
    watcher = await signed_in(new_user, panel, 1)  # Giulia watches the dashboard
    await watcher.open('/')
    await watcher.should_see('Giulia', retries=50)
    assert tile_status(watcher, PRINTER) == 'in_use'

    user = await admin(new_user, panel)
    user.find(marker=f'close-{open_id}').click()
    await user.should_see("Prusa MK4's hour counter goes from 4.0 h to 5.5 h.", retries=50)
    user.find(marker='close-confirm').click()
    await eventually(lambda: _closed(panel, open_id), 'use closed')
    row = await use_row(panel, open_id)
    assert row.duration_s == pytest.approx(5400)
    assert await counter(panel, PRINTER) == pytest.approx(4 * 3600 + 5400)
    await user.should_see("Closed. Prusa MK4's hour counter goes from 4.0 h to 5.5 h.", retries=50)
    await user.should_see('2 uses · 5.5 h · 0 open', retries=50)
    # the dashboard shows the machine free without a reload, and the next card can start
    await eventually(lambda: _async(tile_status(watcher, PRINTER) == 'free'), 'tile free')
    reply = await panel.boards.handle(BoardMessage(machine_id=PRINTER, action=Action.STARTUSE, uid=MARIO), NOW)
    assert reply['request_ok'] is True
    await eventually(lambda: _async(tile_status(watcher, PRINTER) == 'in_use'), 'tile in use again')
    await watcher.should_see('Mario', retries=50)
    async with panel.engine.connect() as conn:
        opened = list(await conn.execute(sa.select(use_t.c.member_id).where(use_t.c.end.is_(None))))
    assert [r.member_id for r in opened] == [2]


async def _closed(panel: Panel, use_id: int) -> bool:
    row = await use_row(panel, use_id)
    return row is not None and row.end is not None


async def test_closing_refuses_times_before_the_start_or_in_the_future(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    start = NOW - timedelta(hours=2)
    open_id = await add_use(panel, PRINTER, 1, GIULIA, start, None)
    user = await admin(new_user, panel)
    user.find(marker=f'close-{open_id}').click()
    await user.should_see(marker='close-at', retries=50)
    local = start.astimezone()
    choose(user, 'close-at', (local - timedelta(hours=1)).strftime('%Y-%m-%dT%H:%M'))
    await user.should_see('The end cannot be before the start.', retries=50)
    [ok] = user.find(marker='close-confirm').elements
    assert not ok.enabled
    choose(user, 'close-at', (NOW + timedelta(days=1)).astimezone().strftime('%Y-%m-%dT%H:%M'))
    await user.should_see('The time cannot be in the future.', retries=50)
    choose(user, 'close-at', (local + timedelta(minutes=30)).strftime('%Y-%m-%dT%H:%M'))
    await user.should_see("Prusa MK4's hour counter goes from 0.0 h to 0.5 h.", retries=50)
    assert ok.enabled
    user.find(marker='cancel').click()
    await asyncio.sleep(0.2)
    assert (await use_row(panel, open_id)).end is None  # cancelled: nothing changed
    user.find(marker=f'close-{open_id}').click()
    await user.should_see(marker='close-at', retries=50)
    choose(user, 'close-at', (local + timedelta(minutes=30)).strftime('%Y-%m-%dT%H:%M'))
    await user.should_see("goes from 0.0 h to 0.5 h.", retries=50)
    user.find(marker='close-confirm').click()
    await eventually(lambda: _closed(panel, open_id), 'use closed at the chosen time')
    assert (await use_row(panel, open_id)).duration_s == pytest.approx(1800, abs=60)


async def test_deleting_a_wrong_record_says_the_effect_first(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    keep = await add_use(panel, PRINTER, 1, GIULIA, NOW - timedelta(hours=6), 3600)
    wrong = await add_use(panel, PRINTER, 1, GIULIA, NOW - timedelta(hours=4), 9000)
    user = await admin(new_user, panel)
    user.find(marker=f'delete-{wrong}').click()
    await user.should_see("Prusa MK4's hour counter goes from 3.5 h to 1.0 h.", retries=50)
    user.find(marker='cancel').click()
    await asyncio.sleep(0.2)
    assert await use_row(panel, wrong) is not None and await counter(panel, PRINTER) == 3600 + 9000
    user.find(marker=f'delete-{wrong}').click()
    await user.should_see("Prusa MK4's hour counter goes from 3.5 h to 1.0 h.", retries=50)
    user.find(marker='confirm').click()
    await eventually(lambda: _gone(panel, wrong), 'use deleted')
    assert await counter(panel, PRINTER) == 3600 and await use_row(panel, keep) is not None
    assert panel.live.machines[PRINTER].usage_hours == pytest.approx(1.0)
    await user.should_see('1 use · 1.0 h · 0 open', retries=50)


async def _gone(panel: Panel, use_id: int) -> bool:
    return await use_row(panel, use_id) is None


async def test_a_role_taken_away_stops_the_open_page(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    use_id = await add_use(panel, PRINTER, 1, GIULIA, NOW - timedelta(hours=3), 3600)
    user = await admin(new_user, panel)
    await user.should_see(marker=f'delete-{use_id}', retries=50)
    async with panel.engine.begin() as conn:  # Anna is no longer staff
        await conn.execute(sa.update(Member.__table__).where(Member.__table__.c.id == 3).values(role_id=1))
    user.find(marker=f'delete-{use_id}').click()
    await user.should_see('Your role does not allow this.', retries=50)
    await user.should_not_see(marker='confirm')
    assert await use_row(panel, use_id) is not None
    user.find(marker='export').click()
    with pytest.raises(TimeoutError):
        await user.download.next(timeout=0.5)


async def test_hostile_names_are_shown_as_text(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    async with panel.engine.begin() as conn:
        await conn.execute(sa.update(Member.__table__).where(Member.__table__.c.id == 1).values(first_name=HOSTILE))
        await conn.execute(sa.update(machine_t).where(machine_t.c.id == PRINTER).values(name=HOSTILE + 'M'))
    await add_use(panel, PRINTER, 1, GIULIA, NOW - timedelta(hours=3), 3600)
    user = await admin(new_user, panel)
    await user.should_see(f'{HOSTILE} Rossi', retries=50)
    labels = [e for e in user.find(kind=ui.label).elements if e.text == f'{HOSTILE}M']
    assert labels  # the machine's name, as text
    assert not [e for e in user.current_layout.descendants() if isinstance(e, ui.html | ui.markdown)]


async def test_export_holds_the_uses_as_filtered(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    for hours in range(3, 33):
        await add_use(panel, PRINTER, 1, GIULIA, NOW - timedelta(hours=hours), 600)
    await add_use(panel, LASER, 2, MARIO, NOW - timedelta(hours=2), 60)
    user = await admin(new_user, panel)
    choose(user, 'machine', PRINTER)
    await user.should_see('30 uses', retries=50)
    user.find(marker='export').click()
    response = await user.download.next(timeout=5)
    rows = list(load_workbook(BytesIO(response.content)).active.iter_rows(values_only=True))
    assert rows[0][:4] == ('Start', 'End', 'Machine', 'Member')
    assert len(rows) == 31 and {r[2] for r in rows[1:]} == {'Prusa MK4'}  # all pages, only the filter


@pytest.mark.browser
async def test_history_fits_a_phone(make_panel: Callable[..., Any], browser: Callable[..., Any],
                                    artifacts: Path) -> None:
    from fabpanel.db.engine import create_engine

    from .pages import open_page, overflowing_elements, screenshot, wait

    panel = make_panel(extra_machines=['Laser cutter Trotec Speedy 400 flexx (back room, by the window)'],
                       first_names={1: 'Maximiliana Wilhelmina Benedetta ' + HOSTILE})
    engine = create_engine(panel.env['FABPANEL_DATABASE__URL'])
    try:
        async with engine.begin() as conn:
            for hours in range(1, 8):
                start = NOW - timedelta(hours=hours * 3)
                await conn.execute(sa.insert(use_t).values(
                    machine_id=100, member_id=1, card_uid=GIULIA, start=start, last_seen=start,
                    end=start + timedelta(minutes=45), duration_s=2700.0, unauthorized=hours == 2))
            await conn.execute(sa.insert(use_t).values(machine_id=PRINTER, member_id=1, card_uid=GIULIA,
                                                       start=NOW - timedelta(minutes=5), last_seen=NOW))
    finally:
        await engine.dispose()
    driver = browser(390, 844, mobile=True)
    panel.sign_in(driver)
    open_page(driver, panel.url + '/history')
    wait(driver, lambda: '8 uses' in driver.page_source, 5, 'the uses are listed')
    width, scroll_width = driver.execute_script('return [window.innerWidth, document.documentElement.scrollWidth]')
    assert (width, scroll_width <= width) == (390, True)
    assert overflowing_elements(driver) == []
    assert driver.find_elements(By.CSS_SELECTOR, 'img[src="x"]') == []
    screenshot(driver, artifacts / 'history-phone.png')
