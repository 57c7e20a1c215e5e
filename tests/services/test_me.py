"""A member's own view: cards, authorizations, what each machine still needs, uses and totals, language
(SQLite and PostgreSQL). Other members' data never comes back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from fabpanel.app import Panel
from fabpanel.db.models import Card, Member, Use
from fabpanel.services.me import Basis, MeError, MeService, Need, machine_needs, month_start

from ..conftest import make_settings
from ..lab import BLOCKED, DRILL, GIULIA, LASER, MARIO, PRINTER, create_lab

NOW = datetime.now(UTC)
GIULIA_ID, MARIO_ID, ANNA_ID, ELSA_ID = 1, 2, 3, 5


@pytest.fixture
async def lab(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[MeService, Panel]]:
    await create_lab(database_url)
    panel = Panel(make_settings(tmp_path, database_url))
    await panel.start(gateway=False)
    try:
        yield MeService(panel.engine, panel.live), panel
    finally:
        await panel.stop()


async def add_uses(panel: Panel, member_id: int, uid: str, machine_id: int, starts: list[datetime],
                   seconds: float = 600.0, open_last: bool = False) -> None:
    rows = []
    for i, start in enumerate(starts):
        is_open = open_last and i == len(starts) - 1
        rows.append({'machine_id': machine_id, 'member_id': member_id, 'card_uid': uid, 'start': start,
                     'last_seen': start, 'end': None if is_open else start + timedelta(seconds=seconds),
                     'duration_s': None if is_open else seconds, 'replay': False, 'unauthorized': False})
    async with panel.engine.begin() as conn:
        await conn.execute(sa.insert(Use.__table__), rows)


def in_this_month(i: int) -> datetime:
    """Distinct instants between the start of this month and now."""
    start = month_start(NOW)
    return start + (NOW - start) * (i + 1) / 100


@pytest.mark.parametrize(('kwargs', 'basis', 'needs'), [
    ({}, Basis.AUTHORIZED, ()),
    ({'authorized': False}, None, (Need.INTRODUCTION,)),
    ({'expires_at': NOW - timedelta(seconds=1)}, None, (Need.EXPIRED,)),
    ({'expires_at': NOW}, None, (Need.EXPIRED,)),  # like the board: an expiry at `now` has passed
    ({'expires_at': NOW + timedelta(days=1)}, Basis.AUTHORIZED, ()),
    ({'blocked': True}, Basis.AUTHORIZED, (Need.BLOCKED,)),
    ({'authorization_required': False, 'authorized': False}, Basis.FREE_TO_USE, ()),
    ({'authorization_required': False, 'authorized': False, 'blocked': True}, Basis.FREE_TO_USE, (Need.BLOCKED,)),
    ({'maintenance_due': True}, Basis.AUTHORIZED, (Need.MAINTENANCE,)),
    ({'may_use_all': True, 'authorized': False, 'blocked': True}, Basis.ALL_MACHINES, ()),
    ({'may_use_all': True, 'authorized': False, 'maintenance_due': True}, Basis.ALL_MACHINES, (Need.MAINTENANCE,)),
])
def test_machine_needs(kwargs: dict, basis: Basis | None, needs: tuple[Need, ...]) -> None:
    args = {'authorization_required': True, 'blocked': False, 'maintenance_due': False, 'may_use_all': False,
            'authorized': True, 'expires_at': None, 'now': NOW, **kwargs}
    assert machine_needs(**args) == (basis, needs)


async def test_what_each_machine_still_needs(lab: tuple[MeService, Panel]) -> None:
    service, panel = lab
    giulia = {n.machine_id: n for n in await service.needs(GIULIA_ID)}
    assert set(giulia) == {PRINTER, LASER, DRILL, BLOCKED}
    assert (giulia[PRINTER].basis, giulia[PRINTER].needs, giulia[PRINTER].ready) == (Basis.AUTHORIZED, (), True)
    assert giulia[LASER].needs == (Need.INTRODUCTION,) and not giulia[LASER].ready
    assert (giulia[DRILL].basis, giulia[DRILL].needs) == (Basis.FREE_TO_USE, ())
    assert giulia[BLOCKED].needs == (Need.BLOCKED, Need.INTRODUCTION)
    assert giulia[DRILL].type_name == 'Hand tool' and giulia[PRINTER].machine_name == 'Prusa MK4'

    elsa = {n.machine_id: n for n in await service.needs(ELSA_ID)}
    assert elsa[PRINTER].needs == (Need.EXPIRED,) and elsa[PRINTER].expires_at < NOW
    anna = {n.machine_id: n for n in await service.needs(ANNA_ID)}
    assert all(n.basis is Basis.ALL_MACHINES and n.ready for n in anna.values())

    # Mario's minute on the laser makes its 0.01 h plan due: everyone sees it
    await add_uses(panel, MARIO_ID, MARIO, LASER, [NOW - timedelta(hours=1)], seconds=60)
    await panel.boards.reload_rules()
    giulia = {n.machine_id: n for n in await service.needs(GIULIA_ID)}
    assert giulia[LASER].needs == (Need.INTRODUCTION, Need.MAINTENANCE)
    assert giulia[LASER].maintenance_text == 'Clean lens'
    mario = {n.machine_id: n for n in await service.needs(MARIO_ID)}
    assert mario[LASER].basis is Basis.AUTHORIZED and mario[LASER].needs == (Need.MAINTENANCE,)


async def test_only_own_cards_and_authorizations(lab: tuple[MeService, Panel]) -> None:
    service, panel = lab
    async with panel.engine.begin() as conn:
        await conn.execute(sa.insert(Card.__table__).values(uid='99aabb01', member_id=GIULIA_ID, label='Keyring',
                                                             created_at=datetime.now(UTC)))
    cards = await service.cards(GIULIA_ID)
    assert [c.uid for c in cards] == [GIULIA, '99aabb01']
    assert [c.shown for c in cards] == ['••••2c3d', '••••bb01'] and cards[1].label == 'Keyring'
    assert [c.uid for c in await service.cards(MARIO_ID)] == [MARIO]
    assert await service.has_card(GIULIA_ID) and not await service.has_card(999)

    assert [(a.machine_name, a.expired) for a in await service.authorizations(GIULIA_ID)] == [('Prusa MK4', False)]
    assert [(a.machine_name, a.expired) for a in await service.authorizations(ELSA_ID)] == [('Prusa MK4', True)]
    assert sorted(a.machine_id for a in await service.authorizations(MARIO_ID)) == [PRINTER, LASER]
    assert await service.authorizations(ANNA_ID) == []


async def test_uses_are_paged_newest_first_and_own_only(lab: tuple[MeService, Panel]) -> None:
    service, panel = lab
    await add_uses(panel, GIULIA_ID, GIULIA, PRINTER, [in_this_month(i) for i in range(29)] + [NOW],
                   open_last=True)
    await add_uses(panel, MARIO_ID, MARIO, LASER, [in_this_month(50 + i) for i in range(5)])
    first = await service.uses(GIULIA_ID, 1)
    assert (first.total, first.pages, first.page, len(first.rows)) == (30, 2, 1, 25)
    assert first.rows[0].end is None and first.rows[0].duration_s is None  # the open use comes first
    assert [u.start for u in first.rows] == sorted((u.start for u in first.rows), reverse=True)
    second = await service.uses(GIULIA_ID, 2)
    assert len(second.rows) == 5 and {u.id for u in first.rows}.isdisjoint(u.id for u in second.rows)
    assert (await service.uses(GIULIA_ID, 99)).page == 2 and (await service.uses(GIULIA_ID, -3)).page == 1
    assert {u.machine_name for u in first.rows + second.rows} == {'Prusa MK4'}  # none of Mario's laser uses
    nobody = await service.uses(ANNA_ID)
    assert (nobody.total, nobody.pages, nobody.rows) == (0, 1, [])


async def test_month_totals_count_closed_uses_of_this_month(lab: tuple[MeService, Panel]) -> None:
    service, panel = lab
    await add_uses(panel, GIULIA_ID, GIULIA, PRINTER, [in_this_month(1), in_this_month(2)], seconds=1800)
    await add_uses(panel, GIULIA_ID, GIULIA, DRILL, [in_this_month(3)], seconds=600)
    await add_uses(panel, GIULIA_ID, GIULIA, PRINTER, [month_start(NOW) - timedelta(days=1)], seconds=7200)
    await add_uses(panel, GIULIA_ID, GIULIA, DRILL, [NOW], open_last=True)
    await add_uses(panel, MARIO_ID, MARIO, PRINTER, [in_this_month(4)], seconds=5000)
    totals = await service.month_totals(GIULIA_ID, NOW)
    assert (totals.uses, totals.seconds) == (3, 4200.0)
    assert totals.by_machine == [('Prusa MK4', 3600.0), ('Drill press', 600.0)]
    assert (await service.month_totals(ANNA_ID, NOW)).uses == 0


def test_month_start_is_local_midnight_of_the_first() -> None:
    start = month_start(NOW).astimezone()
    assert (start.day, start.hour, start.minute) == (1, 0, 0) and month_start(NOW) <= NOW


async def test_language(lab: tuple[MeService, Panel]) -> None:
    service, panel = lab

    async def language() -> str:
        async with panel.engine.connect() as conn:
            return (await conn.execute(sa.select(Member.__table__.c.language).where(
                Member.__table__.c.id == GIULIA_ID))).scalar_one()

    await service.set_language(GIULIA_ID, 'it')
    assert await language() == 'it'
    await service.set_language(GIULIA_ID, '')
    assert await language() == ''
    for bad in ('de', 'IT', 'en-US', "it'; --"):
        with pytest.raises(MeError) as e:
            await service.set_language(GIULIA_ID, bad)
        assert e.value.code == 'bad_language'
    assert await language() == ''
