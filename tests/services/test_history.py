"""The usage history: filters, paging and totals; closing and deleting uses keep hour counters, maintenance hours
and the boards' memory consistent (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from io import BytesIO
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from fabpanel.app import Panel
from fabpanel.core.history import (
    CounterEffect,
    Preset,
    check_close_time,
    check_period,
    counter_after_close,
    counter_after_delete,
    period_bounds,
    preset_dates,
)
from fabpanel.core.protocol import Action, BoardMessage
from fabpanel.db.models import Machine, Member, Use
from fabpanel.services.history import HistoryError, HistoryService, UseFilter

from ..conftest import make_settings
from ..lab import ADMIN_USER, GIULIA, LASER, MAINTAINER_USER, MARIO, MEMBER_USER, PRINTER, create_lab

ADMIN, MAINTAINER, MEMBER = ADMIN_USER, MAINTAINER_USER, MEMBER_USER
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _fresh_now() -> None:
    """Each test's own now: the module is imported long before its last test runs (boards go offline after 90 s)."""
    global NOW
    NOW = datetime.now(UTC).replace(microsecond=0)
use_t = Use.__table__
machine_t = Machine.__table__


@pytest.fixture
async def lab(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[HistoryService, Panel]]:
    await create_lab(database_url)
    panel = Panel(make_settings(tmp_path, database_url))
    await panel.start(gateway=False)
    try:
        yield HistoryService(panel.engine, panel.boards), panel
    finally:
        await panel.stop()


async def add_use(panel: Panel, machine_id: int, member_id: int | None, uid: str, start: datetime,
                  seconds: float | None, unauthorized: bool = False) -> int:
    """A use straight into the database, with the hour counter moved as the board path moves it."""
    end = start + timedelta(seconds=seconds) if seconds is not None else None
    async with panel.engine.begin() as conn:
        result = await conn.execute(sa.insert(use_t).values(
            machine_id=machine_id, member_id=member_id, card_uid=uid, start=start, last_seen=end or start,
            end=end, duration_s=seconds, unauthorized=unauthorized))
        if seconds:
            await conn.execute(sa.update(machine_t).where(machine_t.c.id == machine_id)
                               .values(usage_seconds=machine_t.c.usage_seconds + seconds))
    return int(result.inserted_primary_key[0])


async def counter(panel: Panel, machine_id: int) -> float:
    async with panel.engine.connect() as conn:
        return float((await conn.execute(sa.select(machine_t.c.usage_seconds)
                                         .where(machine_t.c.id == machine_id))).scalar_one())


async def use_row(panel: Panel, use_id: int) -> sa.Row | None:
    async with panel.engine.connect() as conn:
        return (await conn.execute(sa.select(use_t).where(use_t.c.id == use_id))).first()


async def open_uses(panel: Panel, machine_id: int) -> list[sa.Row]:
    async with panel.engine.connect() as conn:
        return list(await conn.execute(sa.select(use_t).where(use_t.c.machine_id == machine_id,
                                                              use_t.c.end.is_(None))))


# ---- pure rules ----------------------------------------------------------------------------------------------------
def test_periods_and_presets() -> None:
    today = date(2026, 3, 10)
    assert preset_dates(Preset.TODAY, today) == (today, today)
    assert preset_dates(Preset.WEEK, today) == (date(2026, 3, 4), today)
    assert preset_dates(Preset.MONTH, today) == (date(2026, 2, 9), today)
    rome = timezone(timedelta(hours=1))
    start, until = period_bounds(date(2026, 3, 1), date(2026, 3, 1), rome)
    assert start == datetime(2026, 2, 28, 23, 0, tzinfo=UTC) and until == datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
    assert period_bounds(None, None, rome) == (None, None)
    assert check_period(date(2026, 3, 2), date(2026, 3, 1)) == 'period_reversed'
    assert check_period(date(2026, 3, 1), date(2026, 3, 1)) is None and check_period(None, date(2026, 1, 1)) is None


def test_closing_and_deleting_move_the_counter() -> None:
    t0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert check_close_time(t0, t0 - timedelta(seconds=1), t0) == 'before_start'
    assert check_close_time(t0, t0 + timedelta(hours=1), t0) == 'in_future'
    assert check_close_time(t0, t0, t0) is None
    assert counter_after_close(3600, t0, t0 + timedelta(minutes=30)) == 5400
    assert counter_after_delete(5400, 1800) == 3600
    assert counter_after_delete(100, 1800) == 0  # never below 0
    assert counter_after_delete(100, None) == 100  # an open use was never counted
    effect = CounterEffect(machine_name='Prusa MK4', before_s=120.5 * 3600, after_s=118 * 3600)
    assert (effect.before_h, effect.after_h, effect.changes) == (120.5, 118.0, True)


# ---- reading -------------------------------------------------------------------------------------------------------
async def test_filters_paging_and_totals(lab) -> None:  # noqa: ANN001
    service, panel = lab
    for day in range(30):  # Giulia on the printer, an hour a day for 30 days
        await add_use(panel, PRINTER, 1, GIULIA, NOW - timedelta(days=day, hours=2), 3600)
    await add_use(panel, LASER, 2, MARIO, NOW - timedelta(hours=3), 1800, unauthorized=True)
    open_id = await add_use(panel, PRINTER, 2, MARIO, NOW - timedelta(minutes=30), None)

    everything = await service.uses(ADMIN, UseFilter())
    assert (everything.total, everything.open_count, round(everything.hours, 3)) == (32, 1, 30.5)
    assert len(everything.rows) == 25 and everything.rows[0].id == open_id and everything.rows[0].open
    second = await service.uses(ADMIN, UseFilter(), page=1)
    assert len(second.rows) == 7 and not {r.id for r in second.rows} & {r.id for r in everything.rows}

    giulia = await service.uses(ADMIN, UseFilter(member_id=1))
    assert giulia.total == 30 and {r.member_name for r in giulia.rows} == {'Giulia Rossi'}
    laser = await service.uses(ADMIN, UseFilter(machine_id=LASER))
    assert laser.total == 1 and laser.rows[0].unauthorized and laser.rows[0].card == '11…44'
    assert round(laser.hours, 3) == 0.5
    week = await service.uses(ADMIN, UseFilter(machine_id=PRINTER, start=NOW - timedelta(days=6, hours=3)))
    assert week.total == 8  # 7 days of Giulia and Mario's open use
    assert (await service.uses(ADMIN, UseFilter(open_only=True))).total == 1
    bounded = UseFilter(start=NOW - timedelta(days=2, hours=3), until=NOW - timedelta(days=1))
    assert (await service.uses(ADMIN, bounded)).total == 2


async def test_only_admins_reach_the_history(lab) -> None:  # noqa: ANN001
    service, panel = lab
    use_id = await add_use(panel, PRINTER, 1, GIULIA, NOW - timedelta(hours=1), None)
    for user in (MEMBER, MAINTAINER):
        for call in (service.uses(user, UseFilter()), service.members(user), service.machines(user),
                     service.export(user, UseFilter(), ['a']), service.close_effect(user, use_id),
                     service.delete_effect(user, use_id), service.close_use(user, use_id),
                     service.delete_use(user, use_id)):
            with pytest.raises(HistoryError) as refused:
                await call
            assert refused.value.code == 'forbidden'
    assert (await use_row(panel, use_id)).end is None


# ---- closing -------------------------------------------------------------------------------------------------------
async def test_closing_an_open_use_frees_the_machine_for_the_next_card(lab) -> None:  # noqa: ANN001
    service, panel = lab
    start = NOW - timedelta(hours=2)
    await panel.boards.handle(BoardMessage(machine_id=PRINTER, action=Action.STARTUSE, uid=GIULIA), start)
    seen = start + timedelta(seconds=7190)  # the board's last heartbeat, 10 s ago
    await panel.boards.handle(BoardMessage(machine_id=PRINTER, action=Action.INUSE, uid=GIULIA, duration=7190), seen)
    tile = panel.live.machines[PRINTER]
    assert tile.status == 'in_use' and tile.user_first_name == 'Giulia'
    [row] = await open_uses(panel, PRINTER)
    before = await counter(panel, PRINTER)

    effect, end = await service.close_effect(ADMIN, row.id)
    assert end == seen and effect.after_s - effect.before_s == pytest.approx(7190)
    done = await service.close_use(ADMIN, row.id)  # default: at the last sign of life
    assert done == effect
    closed = await use_row(panel, row.id)
    assert closed.end == seen and closed.duration_s == pytest.approx(7190)
    assert await counter(panel, PRINTER) == pytest.approx(before + 7190)
    # memory and the dashboard follow the database
    assert panel.boards.uses[PRINTER].open is None
    assert tile.user_first_name == '' and tile.in_use_since is None and tile.status == 'free'
    assert tile.usage_hours == pytest.approx((before + 7190) / 3600)

    # another card starts: one open use, Mario's; the closed one is left as the admin closed it
    reply = await panel.boards.handle(BoardMessage(machine_id=PRINTER, action=Action.STARTUSE, uid=MARIO), NOW)
    assert reply['request_ok'] is True
    assert [r.member_id for r in await open_uses(panel, PRINTER)] == [2]
    assert (await use_row(panel, row.id)).end == seen
    assert tile.user_first_name == 'Mario' and tile.status == 'in_use'
    assert await counter(panel, PRINTER) == pytest.approx(before + 7190)


async def test_the_same_card_starting_again_opens_a_new_use(lab) -> None:  # noqa: ANN001
    service, panel = lab
    start = NOW - timedelta(seconds=30)
    await panel.boards.handle(BoardMessage(machine_id=PRINTER, action=Action.STARTUSE, uid=GIULIA), start)
    [row] = await open_uses(panel, PRINTER)
    await service.close_use(ADMIN, row.id, start + timedelta(seconds=20))
    assert (await use_row(panel, row.id)).duration_s == pytest.approx(20)
    assert panel.live.machines[PRINTER].status == 'free'
    # memory would treat a startuse of the card it still thought open as a duplicate and write nothing
    await panel.boards.handle(BoardMessage(machine_id=PRINTER, action=Action.STARTUSE, uid=GIULIA), NOW)
    [again] = await open_uses(panel, PRINTER)
    assert again.id != row.id and again.member_id == 1
    assert panel.live.machines[PRINTER].status == 'in_use'


async def test_closing_refuses_bad_times_and_closed_uses(lab) -> None:  # noqa: ANN001
    service, panel = lab
    open_id = await add_use(panel, PRINTER, 1, GIULIA, NOW - timedelta(hours=1), None)
    closed_id = await add_use(panel, LASER, 2, MARIO, NOW - timedelta(hours=3), 60)
    cases = [(open_id, NOW - timedelta(hours=2), 'before_start'), (open_id, NOW + timedelta(hours=1), 'in_future'),
             (closed_id, None, 'already_closed'), (999_999, None, 'not_found')]
    for use_id, end, code in cases:
        for call in (service.close_effect(ADMIN, use_id, end), service.close_use(ADMIN, use_id, end)):
            with pytest.raises(HistoryError) as refused:
                await call
            assert refused.value.code == code
    assert (await use_row(panel, open_id)).end is None
    assert await counter(panel, PRINTER) == 0 and await counter(panel, LASER) == 60


async def test_a_chosen_end_sets_the_duration(lab) -> None:  # noqa: ANN001
    service, panel = lab
    start = NOW - timedelta(hours=3)
    use_id = await add_use(panel, PRINTER, 1, GIULIA, start, None)
    effect, _end = await service.close_effect(ADMIN, use_id, start + timedelta(hours=2, minutes=30))
    assert (effect.before_h, effect.after_h) == (0, 2.5)
    await service.close_use(ADMIN, use_id, start + timedelta(hours=2, minutes=30))
    assert await counter(panel, PRINTER) == pytest.approx(9000)
    assert panel.live.machines[PRINTER].usage_hours == pytest.approx(2.5)


# ---- deleting ------------------------------------------------------------------------------------------------------
async def test_deleting_a_closed_use_takes_its_hours_off(lab) -> None:  # noqa: ANN001
    service, panel = lab
    keep = await add_use(panel, PRINTER, 1, GIULIA, NOW - timedelta(hours=5), 3600)
    wrong = await add_use(panel, PRINTER, 1, GIULIA, NOW - timedelta(hours=3), 9000)
    effect = await service.delete_effect(ADMIN, wrong)
    assert (effect.machine_name, effect.before_h, effect.after_h) == ('Prusa MK4', 3.5, 1.0)
    assert await service.delete_use(ADMIN, wrong) == effect
    assert await use_row(panel, wrong) is None and await use_row(panel, keep) is not None
    assert await counter(panel, PRINTER) == pytest.approx(3600)
    assert panel.live.machines[PRINTER].usage_hours == pytest.approx(1.0)
    with pytest.raises(HistoryError) as gone:
        await service.delete_use(ADMIN, wrong)
    assert gone.value.code == 'not_found'


async def test_the_counter_never_goes_below_zero(lab) -> None:  # noqa: ANN001
    service, panel = lab
    use_id = await add_use(panel, LASER, 2, MARIO, NOW - timedelta(hours=3), 7200)
    async with panel.engine.begin() as conn:  # e.g. a counter reset on a machine imported with old uses
        await conn.execute(sa.update(machine_t).where(machine_t.c.id == LASER).values(usage_seconds=600))
    effect = await service.delete_use(ADMIN, use_id)
    assert (effect.before_s, effect.after_s) == (600, 0)
    assert await counter(panel, LASER) == 0


async def test_deleting_an_open_use_frees_the_machine_and_keeps_the_counter(lab) -> None:  # noqa: ANN001
    service, panel = lab
    await add_use(panel, PRINTER, 1, GIULIA, NOW - timedelta(hours=9), 3600)
    await panel.boards.handle(BoardMessage(machine_id=PRINTER, action=Action.STARTUSE, uid=GIULIA), NOW)
    [row] = await open_uses(panel, PRINTER)
    effect = await service.delete_effect(ADMIN, row.id)
    assert effect.before_s == effect.after_s == 3600 and not effect.changes
    await service.delete_use(ADMIN, row.id)
    assert await open_uses(panel, PRINTER) == [] and panel.boards.uses[PRINTER].open is None
    assert panel.live.machines[PRINTER].status == 'free' and await counter(panel, PRINTER) == 3600
    reply = await panel.boards.handle(BoardMessage(machine_id=PRINTER, action=Action.STARTUSE, uid=MARIO), NOW)
    assert reply['request_ok'] is True and [r.member_id for r in await open_uses(panel, PRINTER)] == [2]


async def test_maintenance_hours_follow_closed_and_deleted_uses(lab) -> None:  # noqa: ANN001
    service, panel = lab
    use_id = await add_use(panel, PRINTER, 1, GIULIA, NOW - timedelta(hours=20), None)
    await panel.boards.reload_rules()
    [plan] = panel.boards.plans[PRINTER]
    assert plan.used_seconds == 0 and not panel.live.machines[PRINTER].maintenance_due
    await service.close_use(ADMIN, use_id, NOW - timedelta(hours=9))  # 11 h: over the plan's 10 h
    [plan] = panel.boards.plans[PRINTER]
    assert plan.used_seconds == pytest.approx(11 * 3600) and plan.due
    assert panel.live.machines[PRINTER].maintenance_due
    await service.delete_use(ADMIN, use_id)
    [plan] = panel.boards.plans[PRINTER]
    assert plan.used_seconds == 0 and not panel.live.machines[PRINTER].maintenance_due


# ---- export --------------------------------------------------------------------------------------------------------
async def test_export_holds_the_filtered_uses_as_text(lab) -> None:  # noqa: ANN001
    service, panel = lab
    async with panel.engine.begin() as conn:
        await conn.execute(sa.update(Member.__table__).where(Member.__table__.c.id == 1)
                           .values(first_name='=HYPERLINK("http://evil.example","x")'))
    for day in range(30):
        await add_use(panel, PRINTER, 1, GIULIA, NOW - timedelta(days=day, hours=1), 600)
    await add_use(panel, LASER, 2, MARIO, NOW - timedelta(hours=2), 60)
    headers = ['Start', 'End', 'Machine', 'Member', 'Card', 'Hours', 'Open', 'Unauthorized', 'Late']
    data = await service.export(ADMIN, UseFilter(machine_id=PRINTER), headers, yes='yes')
    sheet = load_workbook(BytesIO(data)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == headers and len(rows) == 31  # every matching use, not only the first page
    assert {r[2] for r in rows[1:]} == {'Prusa MK4'}
    assert rows[1][3].startswith("'=HYPERLINK")  # stored as text, never run as a formula
    assert rows[1][5] == pytest.approx(600 / 3600, abs=0.001) and rows[1][6] in (None, '')
