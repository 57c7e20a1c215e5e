"""The maintenance page in NiceGUI's simulated browser: maintainers record interventions, admins keep plans,
members see nothing; what is due follows on the page and on the dashboard; export of interventions."""

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

from fabpanel.app import Panel
from fabpanel.db.models import Intervention, MaintenancePlan, Member, Use

from ..conftest import make_settings
from ..lab import LASER, MARIO, PRINTER, create_lab
from .simulation import signed_in, simulated_panel

HOSTILE = '<img src=x onerror=alert(1)>'
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _fresh_now() -> None:
    """Each test's own now: the module is imported long before its last test runs (boards go offline after 90 s)."""
    global NOW
    NOW = datetime.now(UTC).replace(microsecond=0)
plan_t = MaintenancePlan.__table__
intervention_t = Intervention.__table__


@pytest.fixture
async def lab(tmp_path: Path):
    url = f'sqlite:///{tmp_path}/fabpanel.db'
    await create_lab(url)
    async with simulated_panel(make_settings(tmp_path, url)) as (new_user, panel):
        # the laser's plan (every 0.01 h) is due after one minute of use; the printer has 2 of its 10 h
        await add_use(panel, LASER, NOW - timedelta(hours=3), 60)
        await add_use(panel, PRINTER, NOW - timedelta(hours=5), 7200)
        yield new_user, panel


async def add_use(panel: Panel, machine_id: int, start: datetime, seconds: float) -> None:
    async with panel.engine.begin() as conn:
        await conn.execute(sa.insert(Use.__table__).values(
            machine_id=machine_id, member_id=2, card_uid=MARIO, start=start, last_seen=start,
            end=start + timedelta(seconds=seconds), duration_s=seconds))
    await panel.boards.reload_rules()


async def eventually(check: Callable[[], Awaitable[bool]], what: str = '') -> None:
    for _ in range(100):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f'not in time: {what}')


async def interventions(panel: Panel) -> list[Any]:
    async with panel.engine.connect() as conn:
        return list(await conn.execute(sa.select(intervention_t).order_by(intervention_t.c.id)))


async def plans(panel: Panel) -> list[Any]:
    async with panel.engine.connect() as conn:
        return list(await conn.execute(sa.select(plan_t).order_by(plan_t.c.id)))


async def open_as(new_user: Callable[[], User], panel: Panel, member_id: int) -> User:
    user = await signed_in(new_user, panel, member_id)
    await user.open('/maintenance')
    await user.should_see('Interventions', retries=50)
    return user


def choose(user: User, marker: str, value: object) -> None:
    for element in user.find(marker=marker).elements:
        with user:
            element.value = value


def due_flag(user: User, plan_id: int) -> str:
    """The plan card's data-due, '' while the list is being rebuilt."""
    cards = [e for e in user.current_layout.descendants() if f'plan-{plan_id}' in e._markers]
    return ','.join(str(e.props['data-due']) for e in cards)


def links(user: User) -> list[str]:
    return [str(e.props.get('href', '')) for e in user.current_layout.descendants() if isinstance(e, ui.link)]


def tile_status(user: User, machine_id: int) -> str:
    [tile] = [e for e in user.find(kind=ui.card).elements if str(e.props.get('data-machine')) == str(machine_id)]
    return str(tile.props['data-status'])


async def test_members_cannot_reach_maintenance(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = await signed_in(new_user, panel, 1)
    response = await user.http_client.get('/maintenance', follow_redirects=False)
    assert (response.status_code, response.headers['location']) == (303, '/forbidden')
    await user.open('/')
    await user.should_see('Machines', retries=50)
    assert '/maintenance' not in links(user)  # no menu entry either
    anonymous = new_user()
    response = await anonymous.http_client.get('/maintenance', follow_redirects=False)
    assert response.headers['location'].startswith('/login?next=')


async def test_maintainers_see_what_is_due_but_keep_no_plans(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = await open_as(new_user, panel, 2)  # Mario, maintainer
    assert '/maintenance' in links(user)  # the menu entry
    with user.scope(marker='plan-2'):
        await user.should_see('Due')
        await user.should_see('Clean the lens')
        await user.should_see('No intervention yet')
    with user.scope(marker='plan-1'):
        await user.should_see('8.0 h left')
        await user.should_see('Every 10.0 h · 2.0 h used since the last intervention')
        await user.should_not_see('Due')
    [laser] = user.find(marker='plan-2').elements
    assert laser.props['data-due'] == 'true'
    for marker in ('new-plan', 'edit-1', 'delete-plan-1'):
        await user.should_not_see(marker=marker)
    user.find(marker='due-only').click()
    await user.should_not_see(marker='plan-1', retries=50)
    await user.should_see(marker='plan-2')
    choose(user, 'machine', PRINTER)
    await user.should_see('Nothing is due.', retries=50)


async def test_an_intervention_by_hand_clears_the_dashboard(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    watcher = await signed_in(new_user, panel, 1)
    await watcher.open('/')
    await watcher.should_see('Clean lens', retries=50)
    assert tile_status(watcher, LASER) == 'maintenance'
    user = await open_as(new_user, panel, 2)
    user.find(marker='record-2').click()
    await user.should_see(marker='note', retries=50)
    choose(user, 'at', (NOW + timedelta(days=1)).astimezone().strftime('%Y-%m-%dT%H:%M'))
    user.find(marker='record-save').click()
    await user.should_see('The time cannot be in the future.', retries=50)
    assert await interventions(panel) == []
    choose(user, 'at', NOW.astimezone().strftime('%Y-%m-%dT%H:%M'))
    user.find(marker='note').type(HOSTILE)
    user.find(marker='record-save').click()
    await eventually(lambda: _count(panel, 1), 'intervention recorded')
    [row] = await interventions(panel)
    assert (row.plan_id, row.machine_id, row.member_id, row.source, row.note) == (2, LASER, 2, 'manual', HOSTILE)
    await user.should_see('Intervention recorded.', retries=50)
    await eventually(lambda: _true(due_flag(user, 2) == 'false'), 'the plan is no longer due')
    with user.scope(marker='plan-2'):
        await user.should_not_see('Due')
        await user.should_see('Last intervention')
    await user.should_see(HOSTILE)  # the note, as text, in the list of interventions
    await user.should_see('By hand')
    assert not [e for e in user.current_layout.descendants() if isinstance(e, ui.html | ui.markdown)]
    await eventually(lambda: _true(tile_status(watcher, LASER) == 'offline'), 'dashboard tile no longer due')
    await watcher.should_not_see('Clean lens', retries=50)


async def _count(panel: Panel, n: int) -> bool:
    return len(await interventions(panel)) == n


async def _true(value: bool) -> bool:
    return value


async def test_history_per_plan_and_export(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    from fabpanel.services.maintenance import MaintenanceService

    service = MaintenanceService(panel.engine, panel.boards)
    admin_user = await panel.auth.user(3)
    for day in range(1, 4):
        await service.record_intervention(admin_user, 1, at=NOW - timedelta(days=day), note=f'printer {day}')
    await service.record_intervention(admin_user, 2, note='=HYPERLINK("http://evil.example")')
    user = await open_as(new_user, panel, 2)
    await user.should_see('printer 3', retries=50)
    user.find(marker='history-2').click()
    await user.should_see('Plan: Laser · Clean the lens', retries=50)
    await user.should_not_see('printer 1', retries=50)
    user.find(marker='export').click()
    response = await user.download.next(timeout=5)
    rows = list(load_workbook(BytesIO(response.content)).active.iter_rows(values_only=True))
    assert rows[0] == ('Date', 'Machine', 'Plan', 'Member', 'Source', 'Note')
    assert len(rows) == 2 and rows[1][1:5] == ('Laser', 'Clean the lens', 'Anna Verdi', 'By hand')
    assert rows[1][5].startswith("'=HYPERLINK")
    user.find(marker='all-plans').click()
    await user.should_see('printer 1', retries=50)
    choose(user, 'log-machine', PRINTER)
    await user.should_not_see(marker='intervention-4', retries=50)
    await user.should_see('printer 2')


async def test_admins_create_plans_and_bad_values_are_refused(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    watcher = await signed_in(new_user, panel, 1)
    await watcher.open('/')
    await watcher.should_see('Prusa MK4', retries=50)
    user = await open_as(new_user, panel, 3)  # Anna, staff
    user.find(marker='new-plan').click()
    await user.should_see(marker='plan-save', retries=50)
    user.find(marker='plan-save').click()
    await user.should_see('Choose a machine.', retries=50)
    await user.should_see('Enter a number of hours greater than 0.')
    await user.should_see('Describe what has to be done.')
    choose(user, 'plan-machine', PRINTER)
    user.find(marker='plan-hours').type('0')
    user.find(marker='plan-description').type(HOSTILE)
    user.find(marker='plan-lcd').type('Grease the rails!')  # 17 characters
    await user.should_see('17 characters: the board shows only 16.', retries=50)
    user.find(marker='plan-url').type('javascript:alert(1)')
    user.find(marker='plan-save').click()
    await user.should_see('At most 16 characters: that is all the board can show.', retries=50)
    await user.should_see('Enter a web address starting with http:// or https://, or nothing.')
    await user.should_see('Enter a number of hours greater than 0.')
    assert len(await plans(panel)) == 2
    choose(user, 'plan-hours', 1.5)
    choose(user, 'plan-lcd', 'Grease rails')
    choose(user, 'plan-url', 'https://wiki.example.org/prusa')
    user.find(marker='plan-save').click()
    await eventually(lambda: _plans(panel, 3), 'plan created')
    new = (await plans(panel))[-1]
    assert (new.machine_id, new.hours_between, new.description, new.lcd_text, new.instructions_url) == (
        PRINTER, 1.5, HOSTILE, 'Grease rails', 'https://wiki.example.org/prusa')
    await eventually(lambda: _true(due_flag(user, new.id) == 'true'), 'the new plan is due')  # 2 h used, every 1.5
    with user.scope(marker=f'plan-{new.id}'):
        await user.should_see(HOSTILE)  # shown as text
    [link] = user.find(marker=f'instructions-{new.id}').elements
    assert link.props['href'] == 'https://wiki.example.org/prusa'
    # the dashboard follows: the printer now has maintenance due
    await eventually(lambda: _true(tile_status(watcher, PRINTER) == 'maintenance'), 'tile shows maintenance')
    await watcher.should_see('Grease rails', retries=50)


async def _plans(panel: Panel, n: int) -> bool:
    return len(await plans(panel)) == n


async def test_only_web_addresses_become_links(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    async with panel.engine.begin() as conn:  # e.g. imported from an older system
        await conn.execute(sa.update(plan_t).where(plan_t.c.id == 1).values(instructions_url='javascript:alert(1)'))
        await conn.execute(sa.update(plan_t).where(plan_t.c.id == 2).values(instructions_url='http://wiki/lens'))
    user = await open_as(new_user, panel, 2)
    await user.should_see(marker='instructions-2')
    await user.should_not_see(marker='instructions-1')
    targets = links(user)
    assert 'http://wiki/lens' in targets and not [t for t in targets if 'javascript' in t]


async def test_admins_edit_and_delete_plans_with_the_consequence_said(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    from fabpanel.services.maintenance import MaintenanceService

    await MaintenanceService(panel.engine, panel.boards).record_intervention(await panel.auth.user(2), 2)
    user = await open_as(new_user, panel, 3)
    user.find(marker='edit-1').click()
    await user.should_see(marker='plan-save', retries=50)
    choose(user, 'plan-hours', 1.0)
    user.find(marker='plan-save').click()
    await user.should_see('Plan saved.', retries=50)
    assert (await plans(panel))[0].hours_between == 1.0
    await eventually(lambda: _true(due_flag(user, 1) == 'true'), 'the printer plan is due')

    user.find(marker='delete-plan-2').click()
    await user.should_see('Its recorded intervention is deleted with it.', retries=50)
    user.find(marker='cancel').click()
    await asyncio.sleep(0.2)
    assert len(await plans(panel)) == 2
    user.find(marker='delete-plan-2').click()
    await user.should_see('Delete the plan "Clean the lens" of Laser?', retries=50)
    user.find(marker='confirm').click()
    await eventually(lambda: _plans(panel, 1), 'plan deleted')
    assert await interventions(panel) == []
    await user.should_not_see(marker='plan-2', retries=50)
    assert not panel.live.machines[LASER].maintenance_due


async def test_a_role_taken_away_stops_the_open_page(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = await open_as(new_user, panel, 2)
    async with panel.engine.begin() as conn:  # Mario is no longer a maintainer
        await conn.execute(sa.update(Member.__table__).where(Member.__table__.c.id == 2).values(role_id=1))
    user.find(marker='record-2').click()
    await user.should_see(marker='record-save', retries=50)
    user.find(marker='record-save').click()
    await user.should_see('Your role does not allow this.', retries=50)
    assert await interventions(panel) == []


@pytest.mark.browser
async def test_maintenance_fits_a_phone(make_panel: Callable[..., Any], browser: Callable[..., Any],
                                        artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    from fabpanel.db.engine import create_engine

    from .pages import open_page, overflowing_elements, screenshot, wait

    panel = make_panel(extra_machines=['Laser cutter Trotec Speedy 400 flexx (back room, by the window)'])
    engine = create_engine(panel.env['FABPANEL_DATABASE__URL'])
    try:
        async with engine.begin() as conn:
            result = await conn.execute(sa.insert(plan_t).values(
                machine_id=100, hours_between=250, description='Clean the lens and mirrors; ' + 'x' * 120 + HOSTILE,
                lcd_text='Clean optics', instructions_url='https://wiki.example.org/' + 'long/' * 30))
            await conn.execute(sa.insert(intervention_t).values(
                plan_id=result.inserted_primary_key[0], machine_id=100, member_id=2, at=NOW, source='manual',
                note='Replaced the ' + 'y' * 150 + ' lens ' + HOSTILE))
    finally:
        await engine.dispose()
    driver = browser(390, 844, mobile=True)
    panel.sign_in(driver, member_id=2)  # Mario, maintainer
    open_page(driver, panel.url + '/maintenance')
    wait(driver, lambda: 'Clean optics' in driver.page_source, 5, 'the plans are listed')
    width, scroll_width = driver.execute_script('return [window.innerWidth, document.documentElement.scrollWidth]')
    assert (width, scroll_width <= width) == (390, True)
    assert overflowing_elements(driver) == []
    assert driver.find_elements(By.CSS_SELECTOR, 'img[src="x"]') == []
    screenshot(driver, artifacts / 'maintenance-phone.png')
    driver.execute_script('window.scrollTo(0, document.body.scrollHeight)')
    screenshot(driver, artifacts / 'maintenance-phone-bottom.png')
