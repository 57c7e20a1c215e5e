"""Machines: add, edit, block, soft delete and restore, history and remote start/stop checks (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from fabpanel.app import Panel
from fabpanel.core.protocol import Action, BoardMessage
from fabpanel.core.remote import Refusal, RemoteRefused
from fabpanel.db.models import Card, Machine, Use
from fabpanel.services.machines import MachineService, Refused, lcd_preview, parse_int

from ..conftest import make_settings
from ..lab import ADMIN_USER, ANNA, BLOCKED, DRILL, GIULIA, LASER, MEMBER_USER, PRINTER, create_lab

ADMIN, MEMBER = ADMIN_USER, MEMBER_USER
NOW = datetime.now(UTC)


class FakeGateway:
    def __init__(self, ok: bool = True) -> None:
        self.sent: list[tuple[int, str, str]] = []
        self.ok = ok

    async def send_command(self, machine_id: int, request_type: str, uid: str) -> bool:
        self.sent.append((machine_id, request_type, uid))
        return self.ok


@pytest.fixture
async def lab(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[MachineService, Panel, FakeGateway]]:
    await create_lab(database_url)
    panel = Panel(make_settings(tmp_path, database_url))
    await panel.start(gateway=False)
    gateway = FakeGateway()
    try:
        yield MachineService(panel.engine, panel.boards, panel.live, lambda: gateway), panel, gateway
    finally:
        await panel.stop()


def test_lcd_preview_and_numbers() -> None:
    assert lcd_preview('Prusa MK4') is None
    assert lcd_preview('Laser cutter in the back room') == 'Laser cutter in '
    assert lcd_preview('x' * 16) is None
    assert parse_int(' 12 ') == 12 and parse_int('1.5') is None and parse_int('abc') is None
    assert parse_int(12.0) == 12 and parse_int(12.5) is None and parse_int(None) is None


async def test_add_machine_checks_id_name_and_type(lab) -> None:  # noqa: ANN001
    service, panel, _gw = lab
    for bad_id in (None, 0, -1, 65536):
        with pytest.raises(Refused) as e:
            await service.create(ADMIN, bad_id, 'Lathe', 1)
        assert e.value.code == 'bad_machine_id' and e.value.field == 'id'
    with pytest.raises(Refused) as e:
        await service.create(ADMIN, PRINTER, 'Another', 1)
    assert e.value.code == 'machine_id_taken' and e.value.info['name'] == 'Prusa MK4'
    with pytest.raises(Refused) as e:
        await service.create(ADMIN, 10, '   ', 1)
    assert e.value.code == 'name_required'
    with pytest.raises(Refused) as e:
        await service.create(ADMIN, 10, 'x' * 81, 1)
    assert e.value.code == 'name_too_long'
    with pytest.raises(Refused) as e:
        await service.create(ADMIN, 10, 'Lathe', 99)
    assert e.value.code == 'type_required'
    with pytest.raises(Refused) as e:
        await service.create(MEMBER, 10, 'Lathe', 1)
    assert e.value.code == 'forbidden'
    assert 10 not in panel.live.machines

    assert await service.create(ADMIN, 65535, '  Big\nlathe  ', 2, blocked=True) == 65535
    # the board decision and the dashboard follow at once
    assert panel.boards.rules.machines[65535].blocked is True
    assert panel.live.machines[65535].name == 'Big lathe' and panel.live.machines[65535].type_name == 'Laser cutter'


async def test_edit_and_block(lab) -> None:  # noqa: ANN001
    service, panel, _gw = lab
    await service.update(ADMIN, LASER, 'CO2 laser', 1)
    row = await service.get(LASER)
    assert row is not None and row.name == 'CO2 laser' and row.type_name == '3D printer'
    assert panel.live.machines[LASER].name == 'CO2 laser'
    await service.set_blocked(ADMIN, LASER, True)
    assert panel.boards.rules.machines[LASER].blocked and panel.live.machines[LASER].status == 'blocked'
    reply = await panel.boards.handle(BoardMessage(machine_id=LASER, action=Action.CHECKMACHINE), NOW)
    assert reply['allowed'] is False
    await service.set_blocked(ADMIN, LASER, False)
    assert not panel.boards.rules.machines[LASER].blocked
    with pytest.raises(Refused):
        await service.set_blocked(MEMBER, LASER, True)
    with pytest.raises(Refused) as e:
        await service.update(ADMIN, 999, 'Ghost', 1)
    assert e.value.code == 'machine_unknown'


async def test_soft_delete_counts_and_restore(lab) -> None:  # noqa: ANN001
    service, panel, _gw = lab
    async with panel.engine.begin() as conn:
        start = NOW - timedelta(hours=1)
        await conn.execute(sa.insert(Use.__table__).values(machine_id=PRINTER, member_id=1, card_uid=GIULIA,
                                                           start=start, last_seen=start, end=NOW, duration_s=3600.0))
    deps = await service.dependents(PRINTER)
    assert (deps.uses, deps.plans, deps.authorizations, deps.in_use) == (1, 1, 4, False)
    with pytest.raises(Refused):
        await service.delete(MEMBER, PRINTER)
    await service.delete(ADMIN, PRINTER)
    assert PRINTER not in panel.live.machines  # gone from the dashboard
    reply = await panel.boards.handle(BoardMessage(machine_id=PRINTER, action=Action.CHECKMACHINE), NOW)
    assert reply == {'request_ok': False, 'message': 'Invalid machine ID'}
    assert [m.id for m in (await service.list()).rows] == [BLOCKED, DRILL, LASER]
    assert [m.id for m in (await service.list(deleted=True)).rows] == [PRINTER]
    # its id cannot be taken by a new machine: it can be restored with its history
    with pytest.raises(Refused) as e:
        await service.create(ADMIN, PRINTER, 'New printer', 1)
    assert e.value.code == 'machine_deleted'
    await service.restore(ADMIN, PRINTER)
    assert PRINTER in panel.live.machines and (await service.dependents(PRINTER)).authorizations == 4
    assert panel.live.machines[PRINTER].usage_hours == 0  # the counter is the machine's column, unchanged


async def test_list_search_and_pages(lab) -> None:  # noqa: ANN001
    service, panel, _gw = lab
    async with panel.engine.begin() as conn:
        await conn.execute(sa.insert(Machine.__table__), [
            {'id': 100 + i, 'name': f'Sewing {i:02d}', 'type_id': 3, 'blocked': False, 'usage_seconds': 0.0}
            for i in range(30)])
    page = await service.list('sewing', page=0, size=25)
    assert page.total == 30 and len(page.rows) == 25 and page.pages == 2
    page = await service.list('SEWING', page=5, size=25)  # past the end: the last page
    assert page.page == 1 and [m.name for m in page.rows] == [f'Sewing {i:02d}' for i in range(25, 30)]
    assert [m.id for m in (await service.list('2')).rows][:1] == [LASER]  # an id finds its machine
    assert (await service.list('laser cut')).total == 1  # by type name: the laser
    assert (await service.list('100%')).total == 0  # % is taken literally


async def test_uses_plans_and_authorized(lab) -> None:  # noqa: ANN001
    service, panel, _gw = lab
    async with panel.engine.begin() as conn:
        for i in range(30):
            start = NOW - timedelta(hours=30 - i)
            await conn.execute(sa.insert(Use.__table__).values(
                machine_id=PRINTER, member_id=None if i == 29 else 1, card_uid=GIULIA, start=start, last_seen=start,
                end=start + timedelta(minutes=30), duration_s=1800.0, unauthorized=i == 29))
    page = await service.uses(PRINTER, page=0, size=25)
    assert page.total == 30 and page.rows[0].unauthorized and page.rows[0].member_name == ''
    assert page.rows[1].member_name == 'Giulia Rossi' and page.rows[0].start > page.rows[1].start
    assert len((await service.uses(PRINTER, page=1, size=25)).rows) == 5
    plans = await service.plans(PRINTER)
    assert [p.description for p in plans] == ['Clean the nozzle'] and plans[0].used_seconds == 30 * 1800
    summary = await service.authorized(PRINTER)
    assert summary.total == 4 and summary.names[0] == 'Dino Neri'


async def test_remote_start_rules(lab) -> None:  # noqa: ANN001
    service, panel, gateway = lab
    with pytest.raises(RemoteRefused) as e:
        await service.remote(ADMIN, PRINTER, 'start')
    assert e.value.code is Refusal.OFFLINE  # never heard
    panel.live.mark_seen(PRINTER, datetime.now(UTC))
    with pytest.raises(RemoteRefused) as e:
        await service.remote(MEMBER, PRINTER, 'start')
    assert e.value.code is Refusal.NOT_ADMIN
    assert await service.remote(ADMIN, PRINTER, 'start') == ANNA
    assert gateway.sent == [(PRINTER, 'start', ANNA)]
    with pytest.raises(RemoteRefused) as e:
        await service.remote(ADMIN, PRINTER, 'reboot')
    assert e.value.code is Refusal.BAD_COMMAND

    # several cards: the admin says which; a card of someone else is refused
    async with panel.engine.begin() as conn:
        await conn.execute(sa.insert(Card.__table__).values(uid='a1a2a3a4', member_id=3, label='Spare', created_at=NOW))
        await conn.execute(sa.insert(Card.__table__).values(uid='12', member_id=3, label='Old', created_at=NOW))
    assert [c.uid for c in await service.cards_of(3)] == [ANNA, 'a1a2a3a4']  # '12' can never reach a board
    with pytest.raises(RemoteRefused) as e:
        await service.remote(ADMIN, PRINTER, 'stop')
    assert e.value.code is Refusal.CHOOSE_CARD
    with pytest.raises(RemoteRefused) as e:
        await service.remote(ADMIN, PRINTER, 'stop', uid=GIULIA)
    assert e.value.code is Refusal.NOT_YOUR_CARD
    assert await service.remote(ADMIN, PRINTER, 'stop', uid='A1A2A3A4') == 'a1a2a3a4'
    assert gateway.sent[-1] == (PRINTER, 'stop', 'a1a2a3a4')

    # a board gone quiet, an unknown machine, a gateway that is not running or cannot publish
    panel.live.sweep_offline(datetime.now(UTC) + timedelta(seconds=91))
    with pytest.raises(RemoteRefused) as e:
        await service.remote(ADMIN, PRINTER, 'start', uid=ANNA)
    assert e.value.code is Refusal.OFFLINE
    with pytest.raises(RemoteRefused) as e:
        await service.remote(ADMIN, 999, 'start', uid=ANNA)
    assert e.value.code is Refusal.UNKNOWN_MACHINE
    panel.live.mark_seen(PRINTER, datetime.now(UTC))
    offline_gateway = MachineService(panel.engine, panel.boards, panel.live, lambda: None)
    with pytest.raises(Refused) as e2:
        await offline_gateway.remote(ADMIN, PRINTER, 'start', uid=ANNA)
    assert e2.value.code == 'no_gateway'
    gateway.ok = False
    with pytest.raises(Refused) as e2:
        await service.remote(ADMIN, PRINTER, 'start', uid=ANNA)
    assert e2.value.code == 'not_sent'


async def test_remote_needs_a_card_and_an_active_member(lab) -> None:  # noqa: ANN001
    service, panel, gateway = lab
    panel.live.mark_seen(LASER, datetime.now(UTC))
    async with panel.engine.begin() as conn:
        await conn.execute(sa.delete(Card.__table__).where(Card.__table__.c.member_id == 3))
    with pytest.raises(RemoteRefused) as e:
        await service.remote(ADMIN, LASER, 'start')
    assert e.value.code is Refusal.NO_CARD
    disabled_admin = replace(ADMIN, member_id=4)  # Dino: disabled, with a card
    with pytest.raises(RemoteRefused) as e:
        await service.remote(disabled_admin, LASER, 'start')
    assert e.value.code is Refusal.MEMBER_INACTIVE
    assert gateway.sent == []
