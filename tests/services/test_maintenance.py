"""Maintenance: plans with the hours used since their last intervention, interventions recorded by hand, plans kept
by admins; the boards and the dashboard follow every change (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from fabpanel.app import Panel
from fabpanel.core.protocol import Action, BoardMessage
from fabpanel.db.models import Intervention, Machine, MaintenancePlan, Use
from fabpanel.services.maintenance import (
    MaintenanceError,
    MaintenanceService,
    PlanInput,
    is_web_link,
    lcd_warning,
    validate_plan,
)

from ..conftest import make_settings
from ..lab import ADMIN_USER, GIULIA, LASER, MAINTAINER_USER, MARIO, MEMBER_USER, PRINTER, create_lab

ADMIN, MAINTAINER, MEMBER = ADMIN_USER, MAINTAINER_USER, MEMBER_USER
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _fresh_now() -> None:
    """Each test's own now: the module is imported long before its last test runs (boards go offline after 90 s)."""
    global NOW
    NOW = datetime.now(UTC).replace(microsecond=0)
intervention_t = Intervention.__table__
plan_t = MaintenancePlan.__table__
GOOD = PlanInput(machine_id=PRINTER, hours_between=50, description='Grease the rails', lcd_text='Grease rails',
                 instructions_url='https://wiki.example.org/prusa#rails')


@pytest.fixture
async def lab(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[MaintenanceService, Panel]]:
    await create_lab(database_url)
    panel = Panel(make_settings(tmp_path, database_url))
    await panel.start(gateway=False)
    try:
        yield MaintenanceService(panel.engine, panel.boards), panel
    finally:
        await panel.stop()


async def add_use(panel: Panel, machine_id: int, start: datetime, seconds: float) -> None:
    async with panel.engine.begin() as conn:
        await conn.execute(sa.insert(Use.__table__).values(
            machine_id=machine_id, member_id=2, card_uid=MARIO, start=start, last_seen=start,
            end=start + timedelta(seconds=seconds), duration_s=seconds))
    await panel.boards.reload_rules()


async def interventions(panel: Panel) -> list[sa.Row]:
    async with panel.engine.connect() as conn:
        return list(await conn.execute(sa.select(intervention_t).order_by(intervention_t.c.id)))


# ---- pure checks ---------------------------------------------------------------------------------------------------
def test_only_web_addresses_become_links() -> None:
    assert is_web_link('https://wiki.example.org/a?b=c') and is_web_link('HTTP://example.org')
    for bad in ('', 'javascript:alert(1)', 'data:text/html,<b>x</b>', 'ftp://example.org', 'https://',
                '//example.org', 'https://exa mple.org', 'https://example.org/\nx', 'wiki.example.org',
                'https://' + 'a' * 600 + '.org'):
        assert not is_web_link(bad), bad


def test_plan_validation_names_each_bad_field() -> None:
    clean, errors = validate_plan(replace(GOOD, description='  Grease  ', lcd_text=' Grease rails '), {PRINTER})
    assert errors == {} and clean.description == 'Grease' and clean.lcd_text == 'Grease rails'
    bad = PlanInput(machine_id=99, hours_between=0, description=' ', lcd_text='x' * 17,
                    instructions_url='javascript:alert(1)')
    assert validate_plan(bad, {PRINTER})[1] == {'machine': 'machine_required', 'hours': 'hours_positive',
                                                 'description': 'description_required', 'lcd': 'lcd_long',
                                                 'url': 'url_invalid'}
    for hours in (None, -1, float('nan'), float('inf'), 2e6):
        assert validate_plan(replace(GOOD, hours_between=hours), {PRINTER})[1] == {'hours': 'hours_positive'}
    assert validate_plan(replace(GOOD, description='d' * 201), {PRINTER})[1] == {'description': 'description_long'}
    assert validate_plan(replace(GOOD, lcd_text='x' * 16), {PRINTER})[1] == {}
    assert validate_plan(replace(GOOD, lcd_text='a\x00b'), {PRINTER})[1] == {'lcd': 'text_invalid'}
    assert lcd_warning('Düse') == 'lcd_not_ascii' and lcd_warning('Clean nozzle') is None


# ---- plans ---------------------------------------------------------------------------------------------------------
async def test_plans_show_hours_since_the_last_intervention(lab) -> None:  # noqa: ANN001
    service, panel = lab
    await add_use(panel, LASER, NOW - timedelta(hours=2), 60)  # the laser's plan is every 0.01 h = 36 s
    await add_use(panel, PRINTER, NOW - timedelta(hours=5), 3 * 3600)
    rows, total = await service.plans(MAINTAINER)
    assert total == 2 and [p.id for p in rows] == [2, 1]  # what is due comes first
    laser, printer = rows
    assert laser.due and laser.machine_name == 'Laser' and laser.used_hours == pytest.approx(60 / 3600)
    assert not printer.due and printer.used_hours == pytest.approx(3) and printer.hours_left == pytest.approx(7)
    assert printer.last_intervention is None
    due, due_total = await service.plans(MAINTAINER, due_only=True)
    assert due_total == 1 and [p.id for p in due] == [2]
    assert [p.id for p in (await service.plans(ADMIN, machine_id=PRINTER))[0]] == [1]
    assert panel.live.machines[LASER].maintenance_due and panel.live.machines[LASER].maintenance_text == 'Clean lens'


async def test_members_see_no_maintenance(lab) -> None:  # noqa: ANN001
    service, _panel = lab
    for call in (service.plans(MEMBER), service.machines(MEMBER), service.interventions(MEMBER),
                 service.record_intervention(MEMBER, 1), service.export_interventions(MEMBER, ['a'], {}),
                 service.create_plan(MEMBER, GOOD), service.update_plan(MEMBER, 1, GOOD),
                 service.delete_plan(MEMBER, 1), service.interventions_of(MEMBER, 1)):
        with pytest.raises(MaintenanceError) as refused:
            await call
        assert refused.value.code == 'forbidden'


async def test_only_admins_keep_plans(lab) -> None:  # noqa: ANN001
    service, _panel = lab
    for call in (service.create_plan(MAINTAINER, GOOD), service.update_plan(MAINTAINER, 1, GOOD),
                 service.delete_plan(MAINTAINER, 1), service.interventions_of(MAINTAINER, 1)):
        with pytest.raises(MaintenanceError) as refused:
            await call
        assert refused.value.code == 'forbidden'
    assert (await service.plans(MAINTAINER))[1] == 2


async def test_a_new_plan_reaches_the_boards_and_the_dashboard(lab) -> None:  # noqa: ANN001
    service, panel = lab
    await add_use(panel, PRINTER, NOW - timedelta(hours=5), 3600)
    plan_id = await service.create_plan(ADMIN, replace(GOOD, hours_between=0.5, description='  Grease the rails '))
    async with panel.engine.connect() as conn:
        row = (await conn.execute(sa.select(plan_t).where(plan_t.c.id == plan_id))).one()
    assert (row.machine_id, row.hours_between, row.description, row.lcd_text, row.instructions_url) == (
        PRINTER, 0.5, 'Grease the rails', 'Grease rails', 'https://wiki.example.org/prusa#rails')
    tile = panel.live.machines[PRINTER]
    assert tile.maintenance_due and tile.maintenance_text == 'Grease rails'
    reply = await panel.boards.handle(BoardMessage(machine_id=PRINTER, action=Action.CHECKMACHINE), NOW)
    assert reply['maintenance'] is True and reply['description'] == 'Grease rails'

    await service.update_plan(ADMIN, plan_id, replace(GOOD, hours_between=100, lcd_text=''))
    assert not tile.maintenance_due
    removed = await service.delete_plan(ADMIN, plan_id)
    assert removed == 0 and [p.plan_id for p in panel.boards.plans[PRINTER]] == [1]


async def test_bad_plans_are_refused_field_by_field(lab) -> None:  # noqa: ANN001
    service, panel = lab
    async with panel.engine.begin() as conn:
        await conn.execute(sa.update(Machine.__table__).where(Machine.__table__.c.id == LASER)
                           .values(deleted_at=NOW))
    cases = [(replace(GOOD, lcd_text='Clean the nozzle!'), {'lcd': 'lcd_long'}),
             (replace(GOOD, instructions_url='javascript:alert(1)'), {'url': 'url_invalid'}),
             (replace(GOOD, hours_between=0), {'hours': 'hours_positive'}),
             (replace(GOOD, machine_id=LASER), {'machine': 'machine_required'}),  # deleted machine
             (replace(GOOD, description=''), {'description': 'description_required'})]
    for data, fields in cases:
        with pytest.raises(MaintenanceError) as refused:
            await service.create_plan(ADMIN, data)
        assert (refused.value.code, refused.value.fields) == ('invalid', fields)
        with pytest.raises(MaintenanceError) as refused:
            await service.update_plan(ADMIN, 1, data)
        assert refused.value.fields == fields
    async with panel.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(plan_t))).scalar_one() == 2
        assert (await conn.execute(sa.select(plan_t.c.description).where(plan_t.c.id == 1))).scalar_one() == \
            'Clean the nozzle'
    with pytest.raises(MaintenanceError) as missing:
        await service.update_plan(ADMIN, 999, GOOD)
    assert missing.value.code == 'not_found'


async def test_deleting_a_plan_takes_its_interventions(lab) -> None:  # noqa: ANN001
    service, panel = lab
    await service.record_intervention(MAINTAINER, 2, note='lens cleaned')
    await service.record_intervention(ADMIN, 2, at=NOW - timedelta(days=3))
    assert await service.interventions_of(ADMIN, 2) == 2
    with pytest.raises(MaintenanceError) as fixed:  # its interventions were done on the laser
        await service.update_plan(ADMIN, 2, replace(GOOD, machine_id=PRINTER))
    assert fixed.value.fields == {'machine': 'machine_fixed'}
    assert await service.delete_plan(ADMIN, 2) == 2
    assert await interventions(panel) == [] and LASER not in panel.boards.plans
    with pytest.raises(MaintenanceError) as gone:
        await service.delete_plan(ADMIN, 2)
    assert gone.value.code == 'not_found'


# ---- interventions -------------------------------------------------------------------------------------------------
async def test_an_intervention_by_hand_clears_what_is_due(lab) -> None:  # noqa: ANN001
    service, panel = lab
    await add_use(panel, LASER, NOW - timedelta(hours=2), 60)
    tile = panel.live.machines[LASER]
    assert tile.maintenance_due
    done: list[int] = []
    panel.live.events.maintenance_done.subscribe(done.append)
    await service.record_intervention(MAINTAINER, 2, note='  Lens cleaned <b>well</b>  ', now=NOW)
    [row] = await interventions(panel)
    assert (row.plan_id, row.machine_id, row.member_id, row.source, row.note, row.replay) == (
        2, LASER, 2, 'manual', 'Lens cleaned <b>well</b>', False)
    assert row.at == NOW and done == [LASER]
    assert not tile.maintenance_due and tile.maintenance_text == ''
    reply = await panel.boards.handle(BoardMessage(machine_id=LASER, action=Action.CHECKMACHINE), NOW)
    assert reply['maintenance'] is False
    [laser] = (await service.plans(MAINTAINER, machine_id=LASER))[0]
    assert laser.last_intervention == NOW and laser.used_hours == 0 and not laser.due


async def test_an_intervention_in_the_past_counts_the_uses_after_it(lab) -> None:  # noqa: ANN001
    service, panel = lab
    await add_use(panel, LASER, NOW - timedelta(days=2), 60)
    await add_use(panel, LASER, NOW - timedelta(hours=2), 50)
    await service.record_intervention(ADMIN, 2, at=NOW - timedelta(days=1))
    [laser] = (await service.plans(ADMIN, machine_id=LASER))[0]
    assert laser.used_hours == pytest.approx(50 / 3600) and laser.due  # 50 s > 36 s
    assert panel.live.machines[LASER].maintenance_due


async def test_interventions_are_refused_in_the_future_or_with_long_notes(lab) -> None:  # noqa: ANN001
    service, panel = lab
    cases = [({'at': NOW + timedelta(hours=1)}, {'at': 'in_future'}),
             ({'at': datetime(2026, 1, 1)}, {'at': 'time_invalid'}),  # noqa: DTZ001 - a naive time on purpose
             ({'note': 'n' * 501}, {'note': 'note_long'})]
    for kwargs, fields in cases:
        with pytest.raises(MaintenanceError) as refused:
            await service.record_intervention(MAINTAINER, 2, now=NOW, **kwargs)
        assert refused.value.fields == fields
    with pytest.raises(MaintenanceError) as missing:
        await service.record_intervention(MAINTAINER, 999)
    assert missing.value.code == 'not_found'
    assert await interventions(panel) == []


async def test_intervention_history_per_plan_and_machine(lab) -> None:  # noqa: ANN001
    service, panel = lab
    await panel.boards.handle(BoardMessage(machine_id=LASER, action=Action.CHECKMACHINE), NOW)
    await add_use(panel, LASER, NOW - timedelta(hours=2), 60)
    await panel.boards.handle(BoardMessage(machine_id=LASER, action=Action.MAINTENANCE, uid=MARIO), NOW)
    for day in range(1, 28):
        await service.record_intervention(ADMIN, 1, at=NOW - timedelta(days=day), note=f'day {day}')
    rows, total = await service.interventions(MAINTAINER)
    assert total == 28 and len(rows) == 25 and rows[0].source == 'board' and rows[0].member_name == 'Mario Bianchi'
    laser, laser_total = await service.interventions(MAINTAINER, machine_id=LASER)
    assert laser_total == 1 and laser[0].plan_description == 'Clean the lens'
    printer, printer_total = await service.interventions(MAINTAINER, plan_id=1, page=1)
    assert printer_total == 27 and [r.note for r in printer] == ['day 26', 'day 27']
    assert {r.member_name for r in printer} == {'Anna Verdi'} and {r.source for r in printer} == {'manual'}

    await service.record_intervention(ADMIN, 1, note='=cmd|"/c calc"!A1')
    data = await service.export_interventions(MAINTAINER, ['Date', 'Machine', 'Plan', 'Member', 'Source', 'Note'],
                                              {'manual': 'by hand', 'board': 'board'}, plan_id=1)
    sheet = list(load_workbook(BytesIO(data)).active.iter_rows(values_only=True))
    assert len(sheet) == 1 + 28 and {r[1] for r in sheet[1:]} == {'Prusa MK4'}
    assert sheet[1][4] == 'by hand' and sheet[1][5] == '\'=cmd|"/c calc"!A1'


async def test_board_interventions_are_still_recognised_after_a_manual_one(lab) -> None:  # noqa: ANN001
    service, panel = lab
    await panel.boards.handle(BoardMessage(machine_id=LASER, action=Action.CHECKMACHINE), NOW)
    await add_use(panel, LASER, NOW - timedelta(hours=3), 60)
    await service.record_intervention(MAINTAINER, 2, at=NOW - timedelta(hours=4))  # before the use: still due
    assert panel.live.machines[LASER].maintenance_due
    reply = await panel.boards.handle(BoardMessage(machine_id=LASER, action=Action.MAINTENANCE, uid=MARIO), NOW)
    assert reply['request_ok'] is True and not panel.live.machines[LASER].maintenance_due
    assert [r.source for r in await interventions(panel)] == ['manual', 'board']
    # a plain member's card on the board records nothing
    reply = await panel.boards.handle(BoardMessage(machine_id=LASER, action=Action.MAINTENANCE, uid=GIULIA), NOW)
    assert reply['request_ok'] is False and len(await interventions(panel)) == 2
