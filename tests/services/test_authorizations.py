"""Authorizations: bulk grants and renewals, expiry days, revocation, the lists and their export filters, and the
board decision following every change (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from fabpanel.app import Panel
from fabpanel.core.access import Verdict, decide_card
from fabpanel.db.models import Machine, Member
from fabpanel.services.authorizations import (
    AuthorizationService,
    expiry_for_day,
    is_expired,
    last_valid_day,
    parse_day,
)
from fabpanel.services.machines import Refused

from ..conftest import make_settings
from ..lab import DRILL, EXPIRED, GIULIA, LASER, PRINTER, create_lab
from .test_machines import ADMIN, MEMBER

ROME = timezone(timedelta(hours=2))


@pytest.fixture
async def lab(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[AuthorizationService, Panel]]:
    await create_lab(database_url)
    panel = Panel(make_settings(tmp_path, database_url))
    await panel.start(gateway=False)
    try:
        yield AuthorizationService(panel.engine, panel.boards), panel
    finally:
        await panel.stop()


def test_expiry_days() -> None:
    ends = expiry_for_day(date(2026, 6, 30), ROME)
    assert ends == datetime(2026, 6, 30, 22, 0, tzinfo=UTC)  # when 1 July begins in Rome
    assert last_valid_day(ends, ROME) == date(2026, 6, 30)
    assert not is_expired(ends, ends - timedelta(seconds=1)) and is_expired(ends, ends) and not is_expired(None, ends)
    assert parse_day(' 2026-06-30 ') == date(2026, 6, 30) and parse_day('') is None
    for bad in ('30/06/2026', '2026-02-30', 'tomorrow'):
        with pytest.raises(Refused) as e:
            parse_day(bad)
        assert (e.value.code, e.value.field) == ('bad_date', 'expiry')


async def test_lists_mark_expired_and_filter(lab) -> None:  # noqa: ANN001
    service, _panel = lab
    now = datetime.now(UTC)
    page = await service.list(now, machine_id=PRINTER)
    assert [(r.member_name, r.expired) for r in page.rows] == [
        ('Dino Neri', False), ('Elsa Gialli', True), ('Giulia Rossi', False), ('Mario Bianchi', False)]
    assert page.rows[0].member_disabled
    assert [r.member_name for r in (await service.list(now, machine_id=PRINTER, status='expired')).rows] == [
        'Elsa Gialli']
    assert (await service.list(now, machine_id=PRINTER, status='active')).total == 3
    assert [r.member_name for r in (await service.list(now, machine_id=PRINTER, search='ROSSI')).rows] == [
        'Giulia Rossi']
    assert (await service.list(now, machine_id=PRINTER, search='mario@example')).total == 1
    mario = await service.list(now, member_id=2)
    assert [r.machine_name for r in mario.rows] == ['Laser', 'Prusa MK4']
    assert [r.machine_name for r in (await service.list(now, member_id=2, search='las')).rows] == ['Laser']
    rows = await service.export_rows(now, machine_id=PRINTER, status='active', search='i')
    assert [r.member_name for r in rows] == ['Dino Neri', 'Giulia Rossi', 'Mario Bianchi']


async def test_bulk_grant_renews_and_the_board_follows(lab) -> None:  # noqa: ANN001
    service, panel = lab
    now = datetime.now(UTC)
    assert decide_card(panel.boards.rules, GIULIA, LASER, now).verdict is Verdict.NOT_AUTHORIZED
    assert decide_card(panel.boards.rules, EXPIRED, PRINTER, now).verdict is Verdict.EXPIRED
    until = (now + timedelta(days=30)).date()
    granted = await service.grant(ADMIN, [1, 5], [LASER], until, now=now)
    assert (granted.added, granted.renewed) == (2, 0)
    assert decide_card(panel.boards.rules, GIULIA, LASER, now).verdict is Verdict.ALLOWED
    # renewing Elsa's expired one (and adding nothing twice)
    granted = await service.grant(ADMIN, [5, 5], [PRINTER, LASER], None, now=now)
    assert (granted.added, granted.renewed) == (0, 2)
    assert decide_card(panel.boards.rules, EXPIRED, PRINTER, now).verdict is Verdict.ALLOWED
    page = await service.list(now, machine_id=LASER)
    elsa = next(r for r in page.rows if r.member_id == 5)
    assert elsa.expires_at is None and not elsa.expired

    with pytest.raises(Refused) as e:
        await service.grant(ADMIN, [], [LASER])
    assert e.value.code == 'choose_members'
    with pytest.raises(Refused) as e:
        await service.grant(ADMIN, [1], [])
    assert e.value.code == 'choose_machines'
    with pytest.raises(Refused) as e:
        await service.grant(ADMIN, [1, 99], [LASER])
    assert e.value.code == 'member_unknown' and e.value.info['ids'] == [99]
    with pytest.raises(Refused) as e:
        await service.grant(ADMIN, [1], [LASER], (now - timedelta(days=2)).date(), now=now)
    assert e.value.code == 'expiry_past'
    with pytest.raises(Refused) as e:
        await service.grant(MEMBER, [1], [DRILL])
    assert e.value.code == 'forbidden'


async def test_deleted_members_and_machines_are_left_out(lab) -> None:  # noqa: ANN001
    service, panel = lab
    now = datetime.now(UTC)
    async with panel.engine.begin() as conn:
        await conn.execute(sa.update(Member.__table__).where(Member.__table__.c.id == 4).values(deleted_at=now))
        await conn.execute(sa.update(Machine.__table__).where(Machine.__table__.c.id == LASER).values(deleted_at=now))
    assert (await service.list(now, machine_id=PRINTER)).total == 3
    assert [r.machine_id for r in (await service.list(now, member_id=2)).rows] == [PRINTER]
    assert 4 not in [m for m, _n in await service.members()] and LASER not in [m for m, _n in await service.machines()]
    with pytest.raises(Refused) as e:
        await service.grant(ADMIN, [1], [LASER])
    assert e.value.code == 'machine_unknown'


async def test_expiry_and_revoke(lab) -> None:  # noqa: ANN001
    service, panel = lab
    now = datetime.now(UTC)
    tomorrow = (now + timedelta(days=1)).date()
    await service.set_expiry(ADMIN, 1, PRINTER, tomorrow, now=now)
    row = next(r for r in (await service.list(now, machine_id=PRINTER)).rows if r.member_id == 1)
    assert row.expires_at is not None and last_valid_day(row.expires_at) == tomorrow
    later = row.expires_at + timedelta(seconds=1)
    assert decide_card(panel.boards.rules, GIULIA, PRINTER, later).verdict is Verdict.EXPIRED
    await service.set_expiry(ADMIN, 1, PRINTER, None)
    assert decide_card(panel.boards.rules, GIULIA, PRINTER, later).verdict is Verdict.ALLOWED
    with pytest.raises(Refused) as e:
        await service.set_expiry(ADMIN, 1, LASER, None)
    assert e.value.code == 'authorization_unknown'
    with pytest.raises(Refused):
        await service.revoke(MEMBER, 1, PRINTER)
    await service.revoke(ADMIN, 1, PRINTER)
    assert decide_card(panel.boards.rules, GIULIA, PRINTER, now).verdict is Verdict.NOT_AUTHORIZED
    with pytest.raises(Refused) as e:
        await service.revoke(ADMIN, 1, PRINTER)
    assert e.value.code == 'authorization_unknown'
