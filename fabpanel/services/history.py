"""The usage history for admins: filtered, paged uses with totals; closing or deleting a wrong record while
keeping machines' hour counters and the boards' in-memory picture consistent; the xlsx export."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fabpanel.core.cards import mask_uid
from fabpanel.core.history import (
    CounterEffect,
    check_close_time,
    close_duration,
    counter_after_close,
    counter_after_delete,
)
from fabpanel.db.loaders import aware
from fabpanel.db.models import Machine, Member, Use
from fabpanel.services.auth import CurrentUser
from fabpanel.services.boards import BoardService
from fabpanel.services.exports import xlsx

log = logging.getLogger(__name__)

use_t: sa.Table = Use.__table__  # type: ignore[attr-defined]
machine_t: sa.Table = Machine.__table__  # type: ignore[attr-defined]
member_t: sa.Table = Member.__table__  # type: ignore[attr-defined]

PER_PAGE = 25
EXPORT_LIMIT = 100_000


class HistoryError(Exception):
    """A history action was refused; `code` says why (pages translate it)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(kw_only=True, slots=True, frozen=True)
class UseFilter:
    member_id: int | None = None
    machine_id: int | None = None
    start: datetime | None = None  # uses that started at or after this
    until: datetime | None = None  # ... and before this
    open_only: bool = False


@dataclass(kw_only=True, slots=True, frozen=True)
class UseRow:
    id: int
    machine_id: int
    machine_name: str
    member_id: int | None
    member_name: str  # '' for a card nobody owns
    card: str  # masked
    start: datetime
    end: datetime | None
    last_seen: datetime
    duration_s: float | None
    unauthorized: bool
    replay: bool

    @property
    def open(self) -> bool:
        return self.end is None


@dataclass(kw_only=True, slots=True, frozen=True)
class UsePage:
    rows: list[UseRow]
    total: int  # uses matching the filter
    hours: float  # of the closed ones among them
    open_count: int


@dataclass(kw_only=True, slots=True, frozen=True)
class Choice:
    id: int
    name: str
    gone: bool = False  # a deleted member or machine, kept for its history


def _now() -> datetime:
    return datetime.now(UTC)


def _require_admin(user: CurrentUser) -> None:
    if not user.may_administer:
        raise HistoryError('forbidden')


def _where(f: UseFilter) -> list[sa.ColumnElement[bool]]:
    out: list[sa.ColumnElement[bool]] = []
    if f.member_id is not None:
        out.append(use_t.c.member_id == f.member_id)
    if f.machine_id is not None:
        out.append(use_t.c.machine_id == f.machine_id)
    if f.start is not None:
        out.append(use_t.c.start >= f.start)
    if f.until is not None:
        out.append(use_t.c.start < f.until)
    if f.open_only:
        out.append(use_t.c.end.is_(None))
    return out


def _rows_query(f: UseFilter) -> sa.Select[Any]:
    return (sa.select(use_t, machine_t.c.name.label('machine_name'), member_t.c.first_name, member_t.c.last_name)
            .select_from(use_t.join(machine_t, machine_t.c.id == use_t.c.machine_id)
                         .outerjoin(member_t, member_t.c.id == use_t.c.member_id))
            .where(*_where(f))
            .order_by(use_t.c.start.desc(), use_t.c.id.desc()))


def _row(r: Any) -> UseRow:
    name = f'{r.first_name} {r.last_name}'.strip() if r.member_id is not None and r.first_name is not None else ''
    return UseRow(id=r.id, machine_id=r.machine_id, machine_name=r.machine_name, member_id=r.member_id,
                  member_name=name, card=mask_uid(r.card_uid), start=aware(r.start), end=aware(r.end),
                  last_seen=aware(r.last_seen), duration_s=r.duration_s, unauthorized=r.unauthorized,
                  replay=r.replay)


async def _use_with_counter(conn: AsyncConnection, use_id: int) -> Any:
    q = (sa.select(use_t, machine_t.c.name.label('machine_name'), machine_t.c.usage_seconds)
         .join(machine_t, machine_t.c.id == use_t.c.machine_id).where(use_t.c.id == use_id))
    return (await conn.execute(q)).first()


class HistoryService:
    def __init__(self, engine: AsyncEngine, boards: BoardService) -> None:
        self.engine = engine
        self.boards = boards

    # ---- reading -----------------------------------------------------------------------------------------------
    async def uses(self, user: CurrentUser, f: UseFilter, page: int = 0, per_page: int = PER_PAGE) -> UsePage:
        _require_admin(user)
        where = _where(f)
        totals = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(use_t.c.duration_s), 0.0),
                           sa.func.coalesce(sa.func.sum(sa.case((use_t.c.end.is_(None), 1), else_=0)), 0)
                           ).where(*where)
        async with self.engine.connect() as conn:
            total, seconds, open_count = (await conn.execute(totals)).one()
            rows = await conn.execute(_rows_query(f).limit(per_page).offset(max(page, 0) * per_page))
            out = [_row(r) for r in rows]
        return UsePage(rows=out, total=int(total), hours=float(seconds or 0.0) / 3600, open_count=int(open_count))

    async def members(self, user: CurrentUser) -> list[Choice]:
        """Everyone a use can belong to, for the filter (deleted members too: their uses stay)."""
        _require_admin(user)
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(member_t.c.id, member_t.c.first_name, member_t.c.last_name,
                                                member_t.c.deleted_at))
            out = [Choice(id=r.id, name=f'{r.first_name} {r.last_name}'.strip(), gone=r.deleted_at is not None)
                   for r in rows]
        return sorted(out, key=lambda c: (c.gone, c.name.lower(), c.id))

    async def machines(self, user: CurrentUser) -> list[Choice]:
        _require_admin(user)
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(machine_t.c.id, machine_t.c.name, machine_t.c.deleted_at))
            out = [Choice(id=r.id, name=r.name, gone=r.deleted_at is not None) for r in rows]
        return sorted(out, key=lambda c: (c.gone, c.name.lower(), c.id))

    async def export(self, user: CurrentUser, f: UseFilter, headers: list[str], yes: str = 'yes') -> bytes:
        """All uses matching the filter (not only one page) as an xlsx workbook; headers come translated."""
        _require_admin(user)
        async with self.engine.connect() as conn:
            rows = [_row(r) for r in await conn.execute(_rows_query(f).limit(EXPORT_LIMIT))]

        def line(r: UseRow) -> list[Any]:
            hours = round(r.duration_s / 3600, 3) if r.duration_s is not None else None
            return [r.start, r.end, r.machine_name, r.member_name, r.card, hours,
                    yes if r.open else '', yes if r.unauthorized else '', yes if r.replay else '']

        return await asyncio.to_thread(xlsx, 'Uses', headers, [line(r) for r in rows])

    # ---- the effect of a change, said before it is made --------------------------------------------------------
    async def close_effect(self, user: CurrentUser, use_id: int, end: datetime | None = None,
                           now: datetime | None = None) -> tuple[CounterEffect, datetime]:
        """What closing this open use at `end` (default: its last sign of life) does; raises when it cannot."""
        _require_admin(user)
        await self.boards.flush_last_seen()  # heartbeats wait in memory for a few seconds: the last one counts
        async with self.engine.connect() as conn:
            row = await _use_with_counter(conn, use_id)
        return self._close_plan(row, end, now or _now())

    def _close_plan(self, row: Any, end: datetime | None, now: datetime) -> tuple[CounterEffect, datetime]:
        if row is None:
            raise HistoryError('not_found')
        if row.end is not None:
            raise HistoryError('already_closed')
        start = aware(row.start)
        end = end or aware(row.last_seen)
        assert start is not None and end is not None
        problem = check_close_time(start, end, now)
        if problem is not None:
            raise HistoryError(problem)
        effect = CounterEffect(machine_name=row.machine_name, before_s=row.usage_seconds,
                               after_s=counter_after_close(row.usage_seconds, start, end))
        return effect, end

    async def delete_effect(self, user: CurrentUser, use_id: int) -> CounterEffect:
        _require_admin(user)
        async with self.engine.connect() as conn:
            row = await _use_with_counter(conn, use_id)
        if row is None:
            raise HistoryError('not_found')
        return self._delete_plan(row)

    @staticmethod
    def _delete_plan(row: Any) -> CounterEffect:
        counted = row.duration_s if row.end is not None else None
        return CounterEffect(machine_name=row.machine_name, before_s=row.usage_seconds,
                             after_s=counter_after_delete(row.usage_seconds, counted))

    # ---- changes -----------------------------------------------------------------------------------------------
    async def close_use(self, user: CurrentUser, use_id: int, end: datetime | None = None,
                        now: datetime | None = None) -> CounterEffect:
        """Close an open use at `end` (default: its last sign of life); its duration joins the hour counter."""
        _require_admin(user)
        now = now or _now()
        await self.boards.flush_last_seen()

        async def work(conn: AsyncConnection) -> tuple[CounterEffect, int, datetime] | HistoryError:
            row = await _use_with_counter(conn, use_id)
            try:
                effect, at = self._close_plan(row, end, now)
            except HistoryError as e:
                return e  # returned, not raised: the writer's shared transaction must not roll back for it
            duration = close_duration(aware(row.start), at)
            done = await conn.execute(sa.update(use_t).where(use_t.c.id == use_id, use_t.c.end.is_(None))
                                      .values(end=at, last_seen=at, duration_s=duration))
            if not done.rowcount:
                return HistoryError('already_closed')
            await conn.execute(sa.update(machine_t).where(machine_t.c.id == row.machine_id)
                               .values(usage_seconds=machine_t.c.usage_seconds + duration))
            return effect, row.machine_id, aware(row.start)

        result = await self.boards.writer.write(work)
        if isinstance(result, HistoryError):
            raise result
        effect, machine_id, start = result
        log.info('use %d on machine %d closed by hand by member %d', use_id, machine_id, user.member_id)
        await self._forget_open(machine_id, start)
        self.boards.live.events.use_ended.emit(machine_id)
        return effect

    async def delete_use(self, user: CurrentUser, use_id: int) -> CounterEffect:
        """Delete a wrong record; a closed one's duration leaves the hour counter (never below 0)."""
        _require_admin(user)

        async def work(conn: AsyncConnection) -> tuple[CounterEffect, Any] | HistoryError:
            row = await _use_with_counter(conn, use_id)
            if row is None:
                return HistoryError('not_found')
            effect = self._delete_plan(row)
            await conn.execute(sa.delete(use_t).where(use_t.c.id == use_id))
            if row.end is not None and row.duration_s:
                left = machine_t.c.usage_seconds - row.duration_s
                await conn.execute(sa.update(machine_t).where(machine_t.c.id == row.machine_id)
                                   .values(usage_seconds=sa.case((left < 0, 0.0), else_=left)))
            return effect, row

        result = await self.boards.writer.write(work)
        if isinstance(result, HistoryError):
            raise result
        effect, row = result
        log.info('use %d on machine %d deleted by member %d', use_id, row.machine_id, user.member_id)
        if row.end is None:
            await self._forget_open(row.machine_id, aware(row.start))
            self.boards.live.events.use_ended.emit(row.machine_id)
        else:
            await self.boards.reload_rules()  # hour counters and maintenance hours follow
        return effect

    async def _forget_open(self, machine_id: int, start: datetime | None) -> None:
        """Rebuild the boards' memory from the database, so the machine's open use is gone from it and from the
        dashboard. A board message for that machine racing the reload makes it keep its (older) memory for that
        machine: read again until the closed use is gone."""
        for _attempt in range(5):
            await self.boards.reload_rules()
            state = self.boards.uses.get(machine_id)
            if state is None or state.open is None or state.open.start != start:
                return
            await asyncio.sleep(0.05)
        log.warning('machine %d: memory still shows a use closed by hand; it ends with the next card', machine_id)
