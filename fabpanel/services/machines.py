"""Machines: add, edit, block, soft-delete and restore; their history, plans and boards; remote start / stop."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fabpanel.core import remote
from fabpanel.core.cards import mask_uid
from fabpanel.core.maintenance import PlanUsage
from fabpanel.db import loaders
from fabpanel.db.models import Authorization, Card, Machine, MachineType, MaintenancePlan, Member, Use
from fabpanel.live.state import LiveState
from fabpanel.services.auth import CurrentUser
from fabpanel.services.boards import BoardService

log = logging.getLogger(__name__)

machine_t = Machine.__table__
type_t = MachineType.__table__
member_t = Member.__table__
card_t = Card.__table__
use_t = Use.__table__
plan_t = MaintenancePlan.__table__
auth_t = Authorization.__table__

MACHINE_ID_MAX = 65535
NAME_MAX = 80
LCD_WIDTH = 16  # the board's display shows this many characters of the name
PAGE_SIZE = 25
T = TypeVar('T')


class Refused(Exception):
    """An admin change that is not made; `code` says why, `field` which form field it is about, `info` the
    numbers a message needs (e.g. how many members use a role). Pages turn it into a translated message."""

    def __init__(self, code: str, field: str = '', **info: Any) -> None:
        super().__init__(code)
        self.code = code
        self.field = field
        self.info = info


def require_admin(actor: CurrentUser | None) -> CurrentUser:
    if actor is None or not actor.may_administer:
        raise Refused('forbidden')
    return actor


def clean_name(name: str | None, field: str = 'name', max_length: int = NAME_MAX) -> str:
    text = ' '.join((name or '').split())  # no line breaks or runs of spaces in names shown on boards and lists
    if not text:
        raise Refused('name_required', field)
    if len(text) > max_length:
        raise Refused('name_too_long', field, max=max_length)
    return text


def lcd_preview(name: str) -> str | None:
    """What the board's 16-character display shows of a longer name; None when the whole name fits."""
    text = ' '.join(name.split())
    return text[:LCD_WIDTH] if len(text) > LCD_WIDTH else None


def check_machine_id(machine_id: int | None) -> int:
    if machine_id is None or isinstance(machine_id, bool) or not 1 <= int(machine_id) <= MACHINE_ID_MAX:
        raise Refused('bad_machine_id', 'id', max=MACHINE_ID_MAX)
    return int(machine_id)


def parse_int(text: str | float | None) -> int | None:
    """A whole number typed in a form (' 12 ', 12.0), or None."""
    if text is None:
        return None
    if isinstance(text, float):
        return int(text) if text.is_integer() else None
    try:
        return int(str(text).strip())
    except ValueError:
        return None


def like(text: str) -> str:
    """A case-insensitive LIKE pattern for a search box (its % and _ taken literally)."""
    escaped = text.strip().lower().replace('\\', '\\\\').replace('%', '\\%').replace('_', '\\_')
    return f'%{escaped}%'


def aware(dt: datetime | None) -> datetime | None:
    return loaders.aware(dt)


@dataclass(kw_only=True, slots=True)
class Page(Generic[T]):
    rows: list[T]
    total: int
    page: int
    size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))


@dataclass(kw_only=True, slots=True)
class MachineRow:
    id: int
    name: str
    type_id: int
    type_name: str
    blocked: bool
    usage_seconds: float
    deleted_at: datetime | None = None

    @property
    def hours(self) -> float:
        return self.usage_seconds / 3600


@dataclass(kw_only=True, slots=True, frozen=True)
class Dependents:
    """What hangs on a machine: said in the delete confirmation."""

    uses: int
    plans: int
    authorizations: int
    in_use: bool


@dataclass(kw_only=True, slots=True)
class UseRow:
    start: datetime
    end: datetime | None
    duration_s: float | None
    member_id: int | None
    member_name: str
    unauthorized: bool
    replay: bool


@dataclass(kw_only=True, slots=True, frozen=True)
class CardChoice:
    uid: str
    label: str  # the card's label and a masked id: enough to tell one's own cards apart


@dataclass(kw_only=True, slots=True)
class AuthorizedSummary:
    total: int
    names: list[str] = field(default_factory=list)


class CommandSender(Protocol):
    async def send_command(self, machine_id: int, request_type: str, uid: str) -> bool: ...


def _row(r: sa.Row) -> MachineRow:
    return MachineRow(id=r.id, name=r.name, type_id=r.type_id, type_name=r.type_name, blocked=r.blocked,
                      usage_seconds=float(r.usage_seconds or 0.0), deleted_at=aware(r.deleted_at))


_MACHINE_COLUMNS = (machine_t.c.id, machine_t.c.name, machine_t.c.type_id, type_t.c.name.label('type_name'),
                    machine_t.c.blocked, machine_t.c.usage_seconds, machine_t.c.deleted_at)


class MachineService:
    def __init__(self, engine: AsyncEngine, boards: BoardService, live: LiveState,
                 gateway: Callable[[], CommandSender | None]) -> None:
        self.engine = engine
        self.boards = boards
        self.live = live
        self.gateway = gateway

    # ---- reading ---------------------------------------------------------------------------------------------
    async def list(self, search: str = '', page: int = 0, size: int = PAGE_SIZE,
                   deleted: bool = False) -> Page[MachineRow]:
        """Machines by name, `size` a page; `deleted` lists the soft-deleted ones instead."""
        where: list[Any] = [machine_t.c.deleted_at.is_not(None) if deleted else machine_t.c.deleted_at.is_(None)]
        if search.strip():
            pattern = like(search)
            cond = sa.func.lower(machine_t.c.name).like(pattern, escape='\\') | sa.func.lower(
                type_t.c.name).like(pattern, escape='\\')
            number = parse_int(search)
            if number is not None:
                cond = cond | (machine_t.c.id == number)
            where.append(cond)
        base = sa.select(*_MACHINE_COLUMNS).join(type_t, type_t.c.id == machine_t.c.type_id).where(*where)
        async with self.engine.connect() as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(base.subquery()))).scalar_one()
            page = max(0, min(page, max(0, -(-total // size) - 1)))
            rows = await conn.execute(base.order_by(sa.func.lower(machine_t.c.name), machine_t.c.id)
                                      .offset(page * size).limit(size))
            return Page(rows=[_row(r) for r in rows], total=total, page=page, size=size)

    async def get(self, machine_id: int) -> MachineRow | None:
        """One machine, also a soft-deleted one."""
        async with self.engine.connect() as conn:
            r = (await conn.execute(sa.select(*_MACHINE_COLUMNS).join(type_t, type_t.c.id == machine_t.c.type_id)
                                    .where(machine_t.c.id == machine_id))).first()
        return _row(r) if r is not None else None

    async def types(self) -> list[tuple[int, str]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(type_t.c.id, type_t.c.name).order_by(sa.func.lower(type_t.c.name)))
            return [(r.id, r.name) for r in rows]

    async def dependents(self, machine_id: int) -> Dependents:
        async with self.engine.connect() as conn:
            return await _dependents(conn, machine_id)

    async def uses(self, machine_id: int, page: int = 0, size: int = PAGE_SIZE) -> Page[UseRow]:
        """The machine's uses, newest first."""
        async with self.engine.connect() as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(use_t).where(
                use_t.c.machine_id == machine_id))).scalar_one()
            page = max(0, min(page, max(0, -(-total // size) - 1)))
            q = (sa.select(use_t.c.start, use_t.c.end, use_t.c.duration_s, use_t.c.member_id, use_t.c.unauthorized,
                           use_t.c.replay, member_t.c.first_name, member_t.c.last_name)
                 .select_from(use_t).outerjoin(member_t, member_t.c.id == use_t.c.member_id)
                 .where(use_t.c.machine_id == machine_id)
                 .order_by(use_t.c.start.desc(), use_t.c.id.desc()).offset(page * size).limit(size))
            rows = [UseRow(start=aware(r.start), end=aware(r.end), duration_s=r.duration_s, member_id=r.member_id,
                           member_name=f'{r.first_name} {r.last_name}'.strip() if r.first_name is not None else '',
                           unauthorized=r.unauthorized, replay=r.replay)
                    for r in await conn.execute(q)]
        return Page(rows=rows, total=total, page=page, size=size)

    async def plans(self, machine_id: int) -> list[PlanUsage]:
        async with self.engine.connect() as conn:
            return (await loaders.load_plans(conn, machine_id)).get(machine_id, [])

    async def authorized(self, machine_id: int, limit: int = 8) -> AuthorizedSummary:
        """How many members hold an authorization on the machine, and the first few names."""
        q = (sa.select(member_t.c.first_name, member_t.c.last_name)
             .join(auth_t, auth_t.c.member_id == member_t.c.id)
             .where(auth_t.c.machine_id == machine_id, member_t.c.deleted_at.is_(None)))
        async with self.engine.connect() as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(q.subquery()))).scalar_one()
            rows = await conn.execute(q.order_by(sa.func.lower(member_t.c.first_name),
                                                 sa.func.lower(member_t.c.last_name)).limit(limit))
            return AuthorizedSummary(total=total, names=[f'{r.first_name} {r.last_name}'.strip() for r in rows])

    async def cards_of(self, member_id: int) -> list[CardChoice]:
        """The member's cards a board can send (the ones a remote start may use)."""
        async with self.engine.connect() as conn:
            rows = list(await conn.execute(sa.select(card_t.c.uid, card_t.c.label).where(
                card_t.c.member_id == member_id).order_by(card_t.c.id)))
        usable = set(remote.usable_cards([r.uid for r in rows]))
        out: list[CardChoice] = []
        for r in rows:
            uid = r.uid.lower()
            if uid in usable and all(c.uid != uid for c in out):
                out.append(CardChoice(uid=uid, label=f'{r.label} ({mask_uid(uid)})' if r.label else mask_uid(uid)))
        return out

    # ---- changing ---------------------------------------------------------------------------------------------
    async def create(self, actor: CurrentUser | None, machine_id: int | None, name: str, type_id: int | None,
                     blocked: bool = False) -> int:
        require_admin(actor)
        machine_id = check_machine_id(machine_id)
        name = clean_name(name)
        async with self.engine.begin() as conn:
            await _check_type(conn, type_id)
            existing = (await conn.execute(sa.select(machine_t.c.name, machine_t.c.deleted_at).where(
                machine_t.c.id == machine_id))).first()
            if existing is not None:
                raise Refused('machine_deleted' if existing.deleted_at is not None else 'machine_id_taken', 'id',
                              id=machine_id, name=existing.name)
            await conn.execute(sa.insert(machine_t).values(id=machine_id, name=name, type_id=type_id,
                                                           blocked=bool(blocked), usage_seconds=0.0))
        log.info('machine %d added', machine_id)
        await self.boards.reload_rules()
        return machine_id

    async def update(self, actor: CurrentUser | None, machine_id: int, name: str, type_id: int | None) -> None:
        """Name and type; the id is the board's and never changes."""
        require_admin(actor)
        name = clean_name(name)
        async with self.engine.begin() as conn:
            await _existing(conn, machine_id)
            await _check_type(conn, type_id)
            await conn.execute(sa.update(machine_t).where(machine_t.c.id == machine_id).values(
                name=name, type_id=type_id))
        await self.boards.reload_rules()

    async def set_blocked(self, actor: CurrentUser | None, machine_id: int, blocked: bool) -> None:
        require_admin(actor)
        async with self.engine.begin() as conn:
            await _existing(conn, machine_id)
            await conn.execute(sa.update(machine_t).where(machine_t.c.id == machine_id).values(blocked=bool(blocked)))
        log.info('machine %d %s', machine_id, 'blocked' if blocked else 'unblocked')
        await self.boards.reload_rules()

    async def delete(self, actor: CurrentUser | None, machine_id: int, now: datetime | None = None) -> None:
        """Soft delete: history, plans and authorizations stay (a restore brings the machine back as it was);
        the machine leaves the dashboard and its board is told 'Invalid machine ID'."""
        require_admin(actor)
        async with self.engine.begin() as conn:
            await _existing(conn, machine_id)
            await conn.execute(sa.update(machine_t).where(machine_t.c.id == machine_id).values(
                deleted_at=now or datetime.now(UTC)))
        log.info('machine %d deleted', machine_id)
        await self.boards.reload_rules()

    async def restore(self, actor: CurrentUser | None, machine_id: int) -> None:
        require_admin(actor)
        async with self.engine.begin() as conn:
            r = (await conn.execute(sa.select(machine_t.c.deleted_at).where(machine_t.c.id == machine_id))).first()
            if r is None:
                raise Refused('machine_unknown', id=machine_id)
            await conn.execute(sa.update(machine_t).where(machine_t.c.id == machine_id).values(deleted_at=None))
        log.info('machine %d restored', machine_id)
        await self.boards.reload_rules()

    # ---- remote start / stop ----------------------------------------------------------------------------------
    async def remote(self, actor: CurrentUser | None, machine_id: int, command: str, uid: str | None = None,
                     now: datetime | None = None) -> str:
        """Send `start` / `stop` to the machine's board with one of the actor's cards (rule 13.9); returns the uid
        sent. Raises remote.RemoteRefused, or Refused('no_gateway' | 'not_sent')."""
        now = now or datetime.now(UTC)
        member_active = False
        cards: list[str] = []
        if actor is not None:
            async with self.engine.connect() as conn:
                m = (await conn.execute(sa.select(member_t.c.disabled, member_t.c.deleted_at).where(
                    member_t.c.id == actor.member_id))).first()
                member_active = m is not None and not m.disabled and m.deleted_at is None
                cards = [r.uid for r in await conn.execute(sa.select(card_t.c.uid).where(
                    card_t.c.member_id == actor.member_id))]
        live = self.live.machines.get(machine_id)
        last_heard = None
        if live is not None and live.online:
            # the tile's time follows the board every few seconds; `heard` has its very last message
            heard = [t for t in (live.last_seen, self.live.heard.get(machine_id)) if t is not None]
            last_heard = max(heard) if heard else None
        ask = remote.RemoteAsk(command=command, may_administer=actor is not None and actor.may_administer,
                               member_active=member_active, machine_known=live is not None, last_heard=last_heard,
                               cards=cards, chosen_uid=uid)
        card = remote.remote_card(ask, now)
        gateway = self.gateway()
        if gateway is None:
            raise Refused('no_gateway')
        if not await gateway.send_command(machine_id, command, card):
            raise Refused('not_sent')
        log.info('remote %s sent to machine %d by member %d', command, machine_id, actor.member_id if actor else 0)
        return card


async def _dependents(conn: AsyncConnection, machine_id: int) -> Dependents:
    async def count(table: sa.Table, *where: Any) -> int:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table).where(
            table.c.machine_id == machine_id, *where))).scalar_one())

    return Dependents(uses=await count(use_t), plans=await count(plan_t), authorizations=await count(auth_t),
                      in_use=await count(use_t, use_t.c.end.is_(None)) > 0)


async def _existing(conn: AsyncConnection, machine_id: int) -> None:
    r = (await conn.execute(sa.select(machine_t.c.id).where(machine_t.c.id == machine_id,
                                                             machine_t.c.deleted_at.is_(None)))).first()
    if r is None:
        raise Refused('machine_unknown', id=machine_id)


async def _check_type(conn: AsyncConnection, type_id: int | None) -> None:
    if type_id is None or (await conn.execute(sa.select(type_t.c.id).where(type_t.c.id == type_id))).first() is None:
        raise Refused('type_required', 'type')
