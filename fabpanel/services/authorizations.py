"""Authorizations: who may use which machine, until when. Granted in bulk, renewed, given an expiry, revoked."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fabpanel.db.models import Authorization, Machine, MachineType, Member, Role
from fabpanel.services.auth import CurrentUser
from fabpanel.services.boards import BoardService
from fabpanel.services.machines import PAGE_SIZE, Page, Refused, aware, like, require_admin

log = logging.getLogger(__name__)

auth_t = Authorization.__table__
member_t = Member.__table__
machine_t = Machine.__table__
type_t = MachineType.__table__
role_t = Role.__table__

Status = Literal['all', 'active', 'expired']
EXPORT_LIMIT = 50_000


def expiry_for_day(day: date, tz: tzinfo | None = None) -> datetime:
    """An authorization valid 'until 30 June' ends when 1 July begins in the lab's time zone (the server's when
    `tz` is None)."""
    midnight = datetime.combine(day + timedelta(days=1), time.min)
    local = midnight.replace(tzinfo=tz) if tz is not None else midnight.astimezone()
    return local.astimezone(UTC)


def last_valid_day(expires_at: datetime, tz: tzinfo | None = None) -> date:
    """The last day an authorization works (the day before the one its expiry falls in, at midnight)."""
    moment = expires_at - timedelta(microseconds=1)
    return (moment.astimezone(tz) if tz is not None else moment.astimezone()).date()


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    """The same rule as the board's decision (core.access): expired from the expiry moment on."""
    return expires_at is not None and expires_at <= now


def check_expiry(day: date | None, now: datetime, tz: tzinfo | None = None) -> datetime | None:
    if day is None:
        return None
    expires = expiry_for_day(day, tz)
    if expires <= now:
        raise Refused('expiry_past', 'expiry')
    return expires


def parse_day(text: str | None) -> date | None:
    """A date typed or picked as YYYY-MM-DD ('' = none); raises Refused('bad_date')."""
    text = (text or '').strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text.replace('/', '-'))
    except ValueError:
        raise Refused('bad_date', 'expiry') from None


@dataclass(kw_only=True, slots=True)
class AuthRow:
    member_id: int
    member_name: str
    member_disabled: bool
    member_may_use_all: bool  # the member's role opens every machine anyway
    machine_id: int
    machine_name: str
    authorization_required: bool  # False: the machine's type needs none
    expires_at: datetime | None
    created_at: datetime | None
    expired: bool


@dataclass(kw_only=True, slots=True, frozen=True)
class Granted:
    added: int
    renewed: int  # already there: given the new expiry


def _query(now: datetime, *, machine_id: int | None, member_id: int | None, search: str, status: Status) -> Any:
    q = (sa.select(auth_t.c.member_id, auth_t.c.machine_id, auth_t.c.expires_at, auth_t.c.created_at,
                   member_t.c.first_name, member_t.c.last_name, member_t.c.disabled,
                   role_t.c.may_use_all_machines, machine_t.c.name.label('machine_name'),
                   type_t.c.authorization_required)
         .select_from(auth_t)
         .join(member_t, member_t.c.id == auth_t.c.member_id)
         .join(role_t, role_t.c.id == member_t.c.role_id)
         .join(machine_t, machine_t.c.id == auth_t.c.machine_id)
         .join(type_t, type_t.c.id == machine_t.c.type_id)
         .where(member_t.c.deleted_at.is_(None), machine_t.c.deleted_at.is_(None)))
    if machine_id is not None:
        q = q.where(auth_t.c.machine_id == machine_id)
    if member_id is not None:
        q = q.where(auth_t.c.member_id == member_id)
    if search.strip():
        pattern = like(search)
        if member_id is None:
            full = sa.func.lower(member_t.c.first_name + ' ' + member_t.c.last_name)
            q = q.where(full.like(pattern, escape='\\') | sa.func.lower(
                sa.func.coalesce(member_t.c.email, '')).like(pattern, escape='\\'))
        else:
            q = q.where(sa.func.lower(machine_t.c.name).like(pattern, escape='\\'))
    expired = auth_t.c.expires_at.is_not(None) & (auth_t.c.expires_at <= now)
    if status == 'expired':
        q = q.where(expired)
    elif status == 'active':
        q = q.where(~expired)
    return q


def _order(q: Any, by_machine: bool) -> Any:
    if by_machine:
        return q.order_by(sa.func.lower(machine_t.c.name), auth_t.c.machine_id)
    return q.order_by(sa.func.lower(member_t.c.first_name), sa.func.lower(member_t.c.last_name), auth_t.c.member_id)


def _row(r: sa.Row, now: datetime) -> AuthRow:
    expires = aware(r.expires_at)
    return AuthRow(member_id=r.member_id, member_name=f'{r.first_name} {r.last_name}'.strip(),
                   member_disabled=bool(r.disabled), member_may_use_all=bool(r.may_use_all_machines),
                   machine_id=r.machine_id, machine_name=r.machine_name,
                   authorization_required=bool(r.authorization_required), expires_at=expires,
                   created_at=aware(r.created_at), expired=is_expired(expires, now))


class AuthorizationService:
    def __init__(self, engine: AsyncEngine, boards: BoardService) -> None:
        self.engine = engine
        self.boards = boards

    # ---- choices for the forms ---------------------------------------------------------------------------------
    async def machines(self) -> list[tuple[int, str]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(machine_t.c.id, machine_t.c.name).where(
                machine_t.c.deleted_at.is_(None)).order_by(sa.func.lower(machine_t.c.name), machine_t.c.id))
            return [(r.id, r.name) for r in rows]

    async def members(self) -> list[tuple[int, str]]:
        """Members who are not deleted, as (id, 'First Last'), for the multi-select."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(member_t.c.id, member_t.c.first_name, member_t.c.last_name).where(
                member_t.c.deleted_at.is_(None)).order_by(sa.func.lower(member_t.c.first_name),
                                                           sa.func.lower(member_t.c.last_name), member_t.c.id))
            return [(r.id, f'{r.first_name} {r.last_name}'.strip()) for r in rows]

    async def member_name(self, member_id: int) -> str | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(sa.select(member_t.c.first_name, member_t.c.last_name).where(
                member_t.c.id == member_id, member_t.c.deleted_at.is_(None)))).first()
        return f'{r.first_name} {r.last_name}'.strip() if r is not None else None

    # ---- lists ------------------------------------------------------------------------------------------------
    async def list(self, now: datetime, *, machine_id: int | None = None, member_id: int | None = None,
                   search: str = '', status: Status = 'all', page: int = 0, size: int = PAGE_SIZE) -> Page[AuthRow]:
        """One machine's authorized members (by name) or one member's machines (by machine name), paged."""
        q = _query(now, machine_id=machine_id, member_id=member_id, search=search, status=status)
        async with self.engine.connect() as conn:
            total = int((await conn.execute(sa.select(sa.func.count()).select_from(q.subquery()))).scalar_one())
            page = max(0, min(page, max(0, -(-total // size) - 1)))
            rows = await conn.execute(_order(q, by_machine=member_id is not None).offset(page * size).limit(size))
            return Page(rows=[_row(r, now) for r in rows], total=total, page=page, size=size)

    async def export_rows(self, now: datetime, *, machine_id: int | None = None, member_id: int | None = None,
                          search: str = '', status: Status = 'all') -> list[AuthRow]:
        """Everything the list shows under the same filter, unpaged (for the spreadsheet)."""
        q = _query(now, machine_id=machine_id, member_id=member_id, search=search, status=status)
        async with self.engine.connect() as conn:
            rows = await conn.execute(_order(q, by_machine=member_id is not None).limit(EXPORT_LIMIT))
            return [_row(r, now) for r in rows]

    # ---- changes ----------------------------------------------------------------------------------------------
    async def grant(self, actor: CurrentUser | None, member_ids: Iterable[int], machine_ids: Iterable[int],
                    expiry: date | None = None, now: datetime | None = None, tz: tzinfo | None = None) -> Granted:
        """Authorize every member on every machine (one machine and many members, or the other way round).
        Members already authorized keep their authorization with the new expiry (a renewal)."""
        require_admin(actor)
        now = now or datetime.now(UTC)
        members, machines = sorted(set(member_ids)), sorted(set(machine_ids))
        if not members:
            raise Refused('choose_members', 'members')
        if not machines:
            raise Refused('choose_machines', 'machines')
        expires = check_expiry(expiry, now, tz)
        async with self.engine.begin() as conn:
            await _all_exist(conn, member_t, members, 'member_unknown')
            await _all_exist(conn, machine_t, machines, 'machine_unknown')
            existing = {(r.member_id, r.machine_id) for r in await conn.execute(
                sa.select(auth_t.c.member_id, auth_t.c.machine_id).where(
                    auth_t.c.member_id.in_(members), auth_t.c.machine_id.in_(machines)))}
            fresh = [{'member_id': m, 'machine_id': k, 'expires_at': expires, 'created_at': now}
                     for m in members for k in machines if (m, k) not in existing]
            if fresh:
                await conn.execute(sa.insert(auth_t), fresh)
            for m, k in existing:
                await conn.execute(sa.update(auth_t).where(auth_t.c.member_id == m, auth_t.c.machine_id == k)
                                   .values(expires_at=expires))
        log.info('authorizations granted: %d new, %d renewed', len(fresh), len(existing))
        await self.boards.reload_rules()
        return Granted(added=len(fresh), renewed=len(existing))

    async def set_expiry(self, actor: CurrentUser | None, member_id: int, machine_id: int, expiry: date | None,
                         now: datetime | None = None, tz: tzinfo | None = None) -> None:
        """Give an authorization an expiry day, or none (`expiry` None)."""
        require_admin(actor)
        expires = check_expiry(expiry, now or datetime.now(UTC), tz)
        async with self.engine.begin() as conn:
            done = (await conn.execute(sa.update(auth_t).where(auth_t.c.member_id == member_id,
                                                               auth_t.c.machine_id == machine_id)
                                       .values(expires_at=expires))).rowcount
            if not done:
                raise Refused('authorization_unknown')
        await self.boards.reload_rules()

    async def revoke(self, actor: CurrentUser | None, member_id: int, machine_id: int) -> None:
        require_admin(actor)
        async with self.engine.begin() as conn:
            done = (await conn.execute(sa.delete(auth_t).where(auth_t.c.member_id == member_id,
                                                               auth_t.c.machine_id == machine_id))).rowcount
            if not done:
                raise Refused('authorization_unknown')
        log.info('authorization of member %d on machine %d revoked', member_id, machine_id)
        await self.boards.reload_rules()


async def _all_exist(conn: AsyncConnection, table: sa.Table, ids: Sequence[int], code: str) -> None:
    found = {r.id for r in await conn.execute(sa.select(table.c.id).where(table.c.id.in_(ids),
                                                                         table.c.deleted_at.is_(None)))}
    missing = [i for i in ids if i not in found]
    if missing:
        raise Refused(code, ids=missing)
