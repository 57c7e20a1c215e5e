"""The writes and reads of the board gateway, as SQLAlchemy Core statements (the hot path skips the ORM)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from fabpanel.core.uses import CloseOpen, Effect, InsertClosed, OpenNew, TouchOpen

from .models import Board, Intervention, Machine, UnknownCard, Use

use_t = Use.__table__
machine_t = Machine.__table__
unknown_t = UnknownCard.__table__
board_t = Board.__table__
intervention_t = Intervention.__table__


def _insert(conn: AsyncConnection, table: sa.Table):  # noqa: ANN202 - dialect-specific Insert
    return (pg_insert if conn.dialect.name == 'postgresql' else sqlite_insert)(table)


def _open_row(machine_id: int) -> sa.ColumnElement[bool]:
    return sa.and_(use_t.c.machine_id == machine_id, use_t.c.end.is_(None))


async def apply_use_effects(conn: AsyncConnection, machine_id: int, effects: Iterable[Effect]) -> float:
    """Write a reconciliation outcome; returns the seconds added to the machine's hour counter."""
    added = 0.0
    for effect in effects:
        if isinstance(effect, TouchOpen):
            await conn.execute(sa.update(use_t).where(_open_row(machine_id)).values(last_seen=effect.last_seen))
        elif isinstance(effect, OpenNew):
            u = effect.use
            await conn.execute(sa.insert(use_t).values(
                machine_id=machine_id, member_id=u.member_id, card_uid=u.card_uid, start=u.start,
                last_seen=u.last_seen, replay=u.replay, unauthorized=u.unauthorized))
        elif isinstance(effect, CloseOpen):
            u = effect.use
            closed = await conn.execute(sa.update(use_t).where(_open_row(machine_id)).values(
                start=u.start, end=u.end, last_seen=max(u.end, u.start), duration_s=u.duration_s,
                member_id=u.member_id, replay=u.replay))
            if closed.rowcount:  # the hour counter moves only with a use actually written
                added += u.duration_s
        elif isinstance(effect, InsertClosed):
            u = effect.use
            await conn.execute(sa.insert(use_t).values(
                machine_id=machine_id, member_id=u.member_id, card_uid=u.card_uid, start=u.start, end=u.end,
                last_seen=u.end, duration_s=u.duration_s, replay=u.replay, unauthorized=u.unauthorized))
            added += u.duration_s
    if added:
        await conn.execute(sa.update(machine_t).where(machine_t.c.id == machine_id)
                           .values(usage_seconds=machine_t.c.usage_seconds + added))
    return added


async def record_unknown_card(conn: AsyncConnection, uid: str, machine_id: int, now: datetime) -> None:
    stmt = _insert(conn, unknown_t).values(uid=uid, machine_id=machine_id, first_seen=now, last_seen=now, attempts=1)
    stmt = stmt.on_conflict_do_update(index_elements=['uid', 'machine_id'],
                                      set_={'last_seen': now, 'attempts': unknown_t.c.attempts + 1})
    await conn.execute(stmt)


async def record_board(conn: AsyncConnection, machine_id: int, *, serial: str, ip: str, firmware: str, heap: int,
                       now: datetime) -> None:
    values = {'serial': serial, 'ip': ip, 'firmware': firmware, 'heap': heap, 'last_seen': now}
    stmt = _insert(conn, board_t).values(machine_id=machine_id, **values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=['machine_id'], set_=values))
    await conn.execute(sa.update(machine_t).where(machine_t.c.id == machine_id).values(last_seen=now))


async def record_interventions(conn: AsyncConnection, machine_id: int, member_id: int, plan_ids: list[int],
                               now: datetime, replay: bool) -> None:
    if plan_ids:
        await conn.execute(sa.insert(intervention_t), [
            {'plan_id': p, 'machine_id': machine_id, 'member_id': member_id, 'at': now, 'source': 'board',
             'replay': replay, 'note': ''} for p in plan_ids])


async def recent_intervention_plans(conn: AsyncConnection, machine_id: int, member_id: int,
                                    since: datetime) -> set[int]:
    rows = await conn.execute(sa.select(intervention_t.c.plan_id).where(
        intervention_t.c.machine_id == machine_id, intervention_t.c.member_id == member_id,
        intervention_t.c.at >= since))
    return {r[0] for r in rows}


async def save_last_seen(conn: AsyncConnection, seen: dict[int, datetime]) -> None:
    if seen:
        await conn.execute(sa.update(machine_t).where(machine_t.c.id == sa.bindparam('mid'))
                           .values(last_seen=sa.bindparam('seen')),
                           [{'mid': k, 'seen': v} for k, v in seen.items()])

