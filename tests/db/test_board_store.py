"""The board path's writes and the loaders that rebuild memory from them, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from fabpanel.core.uses import ClosedUse, CloseOpen, InsertClosed, OpenNew, OpenUse, TouchOpen
from fabpanel.db import board_store, loaders
from fabpanel.db.engine import create_engine
from fabpanel.db.models import Card, Machine, Use

from ..lab import GIULIA, LASER, MARIO, PRINTER, UNKNOWN, create_lab

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    await create_lab(database_url)
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def usage(engine: AsyncEngine, machine_id: int) -> float:
    async with engine.connect() as conn:
        t = Machine.__table__
        return float((await conn.execute(sa.select(t.c.usage_seconds).where(t.c.id == machine_id))).scalar_one())


async def test_use_effects_write_a_session_and_the_hour_counter(engine: AsyncEngine) -> None:
    o = OpenUse(card_uid=GIULIA, member_id=1, start=at(0), last_seen=at(0))
    closed = ClosedUse(card_uid=GIULIA, member_id=1, start=at(0), end=at(90))
    async with engine.begin() as conn:
        assert await board_store.apply_use_effects(conn, PRINTER, [OpenNew(use=o)]) == 0
        assert await board_store.apply_use_effects(conn, PRINTER, [TouchOpen(last_seen=at(30))]) == 0
        assert await board_store.apply_use_effects(conn, PRINTER, [CloseOpen(use=closed)]) == 90
        # memory said a use was open but the database has none: nothing written, the counter does not move
        assert await board_store.apply_use_effects(conn, PRINTER, [CloseOpen(use=closed)]) == 0
        extra = ClosedUse(card_uid=MARIO, member_id=2, start=at(100), end=at(110), replay=True, unauthorized=True)
        assert await board_store.apply_use_effects(conn, PRINTER, [InsertClosed(use=extra)]) == 10
    assert await usage(engine, PRINTER) == 100
    async with engine.connect() as conn:
        rows = list(await conn.execute(sa.select(Use.__table__).order_by(Use.__table__.c.id)))
    assert [(r.card_uid, r.start, r.end, r.duration_s, r.replay, r.unauthorized) for r in rows] == [
        (GIULIA, at(0), at(90), 90.0, False, False), (MARIO, at(100), at(110), 10.0, True, True)]


async def test_the_database_refuses_a_second_open_use(engine: AsyncEngine) -> None:
    o = OpenUse(card_uid=GIULIA, member_id=1, start=at(0), last_seen=at(0))
    async with engine.begin() as conn:
        await board_store.apply_use_effects(conn, PRINTER, [OpenNew(use=o)])
        await board_store.apply_use_effects(conn, LASER, [OpenNew(use=o)])  # another machine is fine
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await board_store.apply_use_effects(conn, PRINTER, [OpenNew(use=o)])


async def test_memory_is_rebuilt_from_the_database(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for i in range(20):
            c = ClosedUse(card_uid=GIULIA, member_id=1, start=at(i * 100), end=at(i * 100 + 10 + i))
            await board_store.apply_use_effects(conn, PRINTER, [InsertClosed(use=c)])
        await board_store.apply_use_effects(conn, PRINTER, [OpenNew(use=OpenUse(
            card_uid=MARIO, member_id=2, start=at(5000), last_seen=at(5030), unauthorized=True))])
        await conn.execute(sa.update(Card.__table__).where(Card.__table__.c.uid == MARIO).values(uid='AABB0011'))
    async with engine.connect() as conn:
        uses = await loaders.load_machine_uses(conn)
        rules = await loaders.load_access_rules(conn)
        plans = await loaders.load_plans(conn)
        laser_only = await loaders.load_plans(conn, LASER)
    state = uses[PRINTER]
    assert state.open == OpenUse(card_uid=MARIO, member_id=2, start=at(5000), last_seen=at(5030), unauthorized=True)
    assert state.last_start == {MARIO: at(5000)}
    assert 0 < len(state.recent) <= 16 and state.recent[-1].duration_s == 29  # newest last
    assert [c.end for c in state.recent] == sorted(c.end for c in state.recent)
    assert rules.cards['aabb0011'] == 2  # stored upper case by old data, compared in lower case (rule 13.2)
    assert plans[PRINTER][0].used_seconds == sum(10 + i for i in range(20))
    assert list(laser_only) == [LASER]


async def test_unknown_cards_and_boards_are_upserted(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await board_store.record_unknown_card(conn, UNKNOWN, PRINTER, at(0))
        await board_store.record_unknown_card(conn, UNKNOWN, PRINTER, at(5))
        await board_store.record_board(conn, PRINTER, serial='a', ip='1', firmware='f', heap=1, now=at(0))
        await board_store.record_board(conn, PRINTER, serial='b', ip='2', firmware='g', heap=2**31 - 1, now=at(9))
    async with engine.connect() as conn:
        (card,) = await conn.execute(sa.text('SELECT uid, attempts FROM unknown_card'))
        (board,) = await loaders.load_boards(conn)
    assert tuple(card) == (UNKNOWN, 2)
    assert (board.serial, board.ip, board.heap, board.last_seen) == ('b', '2', 2**31 - 1, at(9))
