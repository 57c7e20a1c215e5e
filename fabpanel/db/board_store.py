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
from .writer import Bulk

use_t = Use.__table__
machine_t = Machine.__table__
unknown_t = UnknownCard.__table__
board_t = Board.__table__
intervention_t = Intervention.__table__


def _insert(conn: AsyncConnection, table: sa.Table):  # noqa: ANN202 - dialect-specific Insert
    return (pg_insert if conn.dialect.name == 'postgresql' else sqlite_insert)(table)


def _open_row(machine_id: int) -> sa.ColumnElement[bool]:
    return sa.and_(use_t.c.machine_id == machine_id, use_t.c.end.is_(None))


# Prebuilt statements for the hot path: executed many rows at a time (executemany) by the group writer.
# Bind names differ from column names, as SQLAlchemy requires for UPDATE ... SET with bindparams.
_OPEN_ROW = sa.and_(use_t.c.machine_id == sa.bindparam('b_machine'), use_t.c.end.is_(None))
CLOSE_OPEN = sa.update(use_t).where(_OPEN_ROW).values(
    start=sa.bindparam('b_start'), end=sa.bindparam('b_end'), last_seen=sa.bindparam('b_end'),
    duration_s=sa.bindparam('b_duration'), member_id=sa.bindparam('b_member'), replay=sa.bindparam('b_replay'))
INSERT_USE = sa.insert(use_t)
# a heartbeat only moves last-seen forward (a late flush must not move a newer use's time back)
TOUCH_OPEN = sa.update(use_t).where(_OPEN_ROW).values(last_seen=sa.case(
    (use_t.c.last_seen < sa.bindparam('b_seen'), sa.bindparam('b_seen')), else_=use_t.c.last_seen))
ADD_HOURS = sa.update(machine_t).where(machine_t.c.id == sa.bindparam('b_machine')).values(
    usage_seconds=machine_t.c.usage_seconds + sa.bindparam('b_duration'))

# the order the groups run in, so one message's effects apply in their own order (close before open)
STEP_CLOSE, STEP_INSERT, STEP_HOURS, STEP_TOUCH = range(4)


def use_effect_rows(machine_id: int, effects: Iterable[Effect]) -> tuple[Bulk, ...]:
    """A reconciliation outcome as rows for the group writer's executemany groups."""
    rows: list[Bulk] = []
    for effect in effects:
        if isinstance(effect, TouchOpen):
            rows.append(Bulk(STEP_TOUCH, TOUCH_OPEN, {'b_machine': machine_id, 'b_seen': effect.last_seen}))
        elif isinstance(effect, OpenNew):
            u = effect.use
            rows.append(Bulk(STEP_INSERT, INSERT_USE, {
                'machine_id': machine_id, 'member_id': u.member_id, 'card_uid': u.card_uid, 'start': u.start,
                'last_seen': u.last_seen, 'end': None, 'duration_s': None, 'replay': u.replay,
                'unauthorized': u.unauthorized}))
        elif isinstance(effect, CloseOpen):
            u = effect.use
            # the hour counter moves only if the database really had the use open (memory could be behind an
            # admin's edit): the close runs alone and its counter row requires it to have changed a row
            rows.append(Bulk(STEP_CLOSE, CLOSE_OPEN, {
                'b_machine': machine_id, 'b_start': u.start, 'b_end': u.end, 'b_duration': u.duration_s,
                'b_member': u.member_id, 'b_replay': u.replay}, guard='close'))
            rows.append(Bulk(STEP_HOURS, ADD_HOURS, {'b_machine': machine_id, 'b_duration': u.duration_s},
                             requires='close'))
        elif isinstance(effect, InsertClosed):
            u = effect.use
            rows.append(Bulk(STEP_INSERT, INSERT_USE, {
                'machine_id': machine_id, 'member_id': u.member_id, 'card_uid': u.card_uid, 'start': u.start,
                'last_seen': u.end, 'end': u.end, 'duration_s': u.duration_s, 'replay': u.replay,
                'unauthorized': u.unauthorized}))
            rows.append(Bulk(STEP_HOURS, ADD_HOURS, {'b_machine': machine_id, 'b_duration': u.duration_s}))
    return tuple(rows)


async def apply_use_effects(conn: AsyncConnection, machine_id: int, effects: Iterable[Effect]) -> float:
    """The same writes, row by row (outside the group writer); returns the seconds added to the hour counter."""
    added, failed = 0.0, set()
    for row in sorted(use_effect_rows(machine_id, effects), key=lambda r: r.step):
        if row.requires in failed:
            continue
        result = await conn.execute(row.statement, row.params)
        if row.guard and result.rowcount == 0:
            failed.add(row.guard)
        if row.statement is ADD_HOURS:
            added += row.params['b_duration']
    return added


async def touch_open_uses(conn: AsyncConnection, seen: dict[int, datetime]) -> None:
    if seen:
        await conn.execute(TOUCH_OPEN, [{'b_machine': m, 'b_seen': t} for m, t in seen.items()])


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

