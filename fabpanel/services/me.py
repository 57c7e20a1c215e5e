"""What a signed-in member may see about themselves: cards, authorizations, what each machine still needs,
usage history with this month's totals, and their language. Every call takes the member id from the caller's
session (never from a URL), and every query is filtered by it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from fabpanel.db.loaders import aware
from fabpanel.db.models import Authorization, Card, Machine, MachineType, Member, Role, Use
from fabpanel.i18n import LANGUAGES
from fabpanel.live.state import LiveState

USES_PER_PAGE = 25
LANGUAGE_CHOICES = ('', *LANGUAGES)  # '' follows the browser

member_t, role_t, card_t = Member.__table__, Role.__table__, Card.__table__
machine_t, type_t, auth_t, use_t = Machine.__table__, MachineType.__table__, Authorization.__table__, Use.__table__


class MeError(Exception):
    """A member's own change was refused; `code` says why (pages translate it)."""

    def __init__(self, code: str, detail: str = '') -> None:
        super().__init__(detail or code)
        self.code = code


@dataclass(kw_only=True, slots=True, frozen=True)
class MyCard:
    uid: str
    label: str
    created_at: datetime

    @property
    def shown(self) -> str:
        # even to its owner, only the end: a screenshot of the page must not be enough to clone the card
        return '••••' + self.uid[-4:] if len(self.uid) > 4 else '••••'


@dataclass(kw_only=True, slots=True, frozen=True)
class MyAuthorization:
    machine_id: int
    machine_name: str
    created_at: datetime
    expires_at: datetime | None
    expired: bool


class Basis(StrEnum):
    """Why a member may use a machine, when nothing is missing."""

    AUTHORIZED = 'authorized'
    FREE_TO_USE = 'free_to_use'  # the machine's type needs no authorization
    ALL_MACHINES = 'all_machines'  # the member's role may use every machine


class Need(StrEnum):
    """What stands between a member and a machine."""

    INTRODUCTION = 'introduction'  # never authorized: ask a staff member for an introduction
    EXPIRED = 'expired'  # the authorization ran out: ask a staff member to renew it
    BLOCKED = 'blocked'  # the machine is blocked by the staff
    MAINTENANCE = 'maintenance'  # maintenance is due; the board may refuse cards until it is done


@dataclass(kw_only=True, slots=True, frozen=True)
class MachineNeeds:
    machine_id: int
    machine_name: str
    type_name: str
    basis: Basis | None
    needs: tuple[Need, ...]
    expires_at: datetime | None = None  # of the member's authorization, when there is one
    maintenance_text: str = ''

    @property
    def ready(self) -> bool:
        return not self.needs


def machine_needs(*, authorization_required: bool, blocked: bool, maintenance_due: bool, may_use_all: bool,
                  authorized: bool, expires_at: datetime | None, now: datetime
                  ) -> tuple[Basis | None, tuple[Need, ...]]:
    """The same decision a board gets for this member's card (core.access.decide_card), told as what is
    missing. Pure: no I/O, `now` passed in."""
    needs: list[Need] = []
    basis: Basis | None
    if may_use_all:
        basis = Basis.ALL_MACHINES  # such roles pass even a blocked machine, as on the board
    else:
        if blocked:
            needs.append(Need.BLOCKED)
        if not authorization_required:
            basis = Basis.FREE_TO_USE
        elif not authorized:
            basis = None
            needs.append(Need.INTRODUCTION)
        elif expires_at is not None and expires_at <= now:
            basis = None
            needs.append(Need.EXPIRED)
        else:
            basis = Basis.AUTHORIZED
    if maintenance_due:
        needs.append(Need.MAINTENANCE)
    return basis, tuple(needs)


@dataclass(kw_only=True, slots=True, frozen=True)
class MyUse:
    id: int
    machine_name: str
    start: datetime
    end: datetime | None
    duration_s: float | None  # None while the use is still open
    unauthorized: bool


@dataclass(kw_only=True, slots=True, frozen=True)
class UsePage:
    rows: list[MyUse]
    total: int
    page: int
    pages: int


@dataclass(kw_only=True, slots=True, frozen=True)
class MonthTotals:
    month_start: datetime
    uses: int
    seconds: float
    by_machine: list[tuple[str, float]]  # (machine name, seconds), most used first


def month_start(now: datetime) -> datetime:
    """The first instant of `now`'s month in the lab's (the server's) time zone, as UTC."""
    local = now.astimezone()
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


class MeService:
    def __init__(self, engine: AsyncEngine, live: LiveState) -> None:
        self.engine = engine
        self.live = live

    async def cards(self, member_id: int) -> list[MyCard]:
        q = sa.select(card_t.c.uid, card_t.c.label, card_t.c.created_at).where(
            card_t.c.member_id == member_id).order_by(card_t.c.created_at, card_t.c.id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [MyCard(uid=r.uid, label=r.label, created_at=aware(r.created_at)) for r in rows]

    async def authorizations(self, member_id: int, now: datetime | None = None) -> list[MyAuthorization]:
        now = now or datetime.now(UTC)
        q = (sa.select(auth_t.c.machine_id, machine_t.c.name, auth_t.c.created_at, auth_t.c.expires_at)
             .join(machine_t, machine_t.c.id == auth_t.c.machine_id)
             .where(auth_t.c.member_id == member_id, machine_t.c.deleted_at.is_(None))
             .order_by(machine_t.c.name, machine_t.c.id))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        out = []
        for r in rows:
            expires = aware(r.expires_at)
            out.append(MyAuthorization(machine_id=r.machine_id, machine_name=r.name, created_at=aware(r.created_at),
                                       expires_at=expires, expired=expires is not None and expires <= now))
        return out

    async def needs(self, member_id: int, now: datetime | None = None) -> list[MachineNeeds]:
        """For every machine of the lab: may this member use it now, and if not, what is missing."""
        now = now or datetime.now(UTC)
        machines_q = (sa.select(machine_t.c.id, machine_t.c.name, machine_t.c.blocked, type_t.c.name.label('type_name'),
                                type_t.c.authorization_required)
                      .join(type_t, type_t.c.id == machine_t.c.type_id)
                      .where(machine_t.c.deleted_at.is_(None)).order_by(machine_t.c.name, machine_t.c.id))
        role_q = (sa.select(role_t.c.may_use_all_machines).join(member_t, member_t.c.role_id == role_t.c.id)
                  .where(member_t.c.id == member_id))
        auth_q = sa.select(auth_t.c.machine_id, auth_t.c.expires_at).where(auth_t.c.member_id == member_id)
        async with self.engine.connect() as conn:
            machines = (await conn.execute(machines_q)).all()
            may_use_all = bool((await conn.execute(role_q)).scalar())
            authorized = {r.machine_id: aware(r.expires_at) for r in await conn.execute(auth_q)}
        out = []
        for m in machines:
            live = self.live.machines.get(m.id)
            due = bool(live and live.maintenance_due)
            basis, needs = machine_needs(authorization_required=m.authorization_required, blocked=m.blocked,
                                         maintenance_due=due, may_use_all=may_use_all,
                                         authorized=m.id in authorized, expires_at=authorized.get(m.id), now=now)
            out.append(MachineNeeds(machine_id=m.id, machine_name=m.name, type_name=m.type_name, basis=basis,
                                    needs=needs, expires_at=authorized.get(m.id),
                                    maintenance_text=live.maintenance_text if live and due else ''))
        return out

    async def uses(self, member_id: int, page: int = 1, per_page: int = USES_PER_PAGE) -> UsePage:
        """The member's uses, newest first, one page at a time (paged in the database)."""
        where = use_t.c.member_id == member_id
        async with self.engine.connect() as conn:
            total = int((await conn.execute(sa.select(sa.func.count()).select_from(use_t).where(where))).scalar_one())
            pages = max(1, -(-total // per_page))
            page = min(max(1, page), pages)
            q = (sa.select(use_t.c.id, machine_t.c.name, use_t.c.start, use_t.c.end, use_t.c.duration_s,
                           use_t.c.unauthorized)
                 .join(machine_t, machine_t.c.id == use_t.c.machine_id).where(where)
                 .order_by(use_t.c.start.desc(), use_t.c.id.desc()).limit(per_page).offset((page - 1) * per_page))
            rows = (await conn.execute(q)).all()
        return UsePage(rows=[MyUse(id=r.id, machine_name=r.name, start=aware(r.start), end=aware(r.end),
                                   duration_s=r.duration_s if r.end is not None else None, unauthorized=r.unauthorized)
                             for r in rows], total=total, page=page, pages=pages)

    async def month_totals(self, member_id: int, now: datetime | None = None) -> MonthTotals:
        """Closed uses that started this month (the lab's time zone): how many, how long, on which machines."""
        now = now or datetime.now(UTC)
        start = month_start(now)
        seconds = sa.func.coalesce(sa.func.sum(use_t.c.duration_s), 0.0)
        q = (sa.select(machine_t.c.name, sa.func.count().label('n'), seconds.label('s'))
             .join(machine_t, machine_t.c.id == use_t.c.machine_id)
             .where(use_t.c.member_id == member_id, use_t.c.end.is_not(None), use_t.c.start >= start)
             .group_by(machine_t.c.id, machine_t.c.name))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        by_machine = sorted(((r.name, float(r.s)) for r in rows), key=lambda x: (-x[1], x[0]))
        return MonthTotals(month_start=start, uses=sum(int(r.n) for r in rows),
                           seconds=sum(float(r.s) for r in rows), by_machine=by_machine)

    async def has_card(self, member_id: int) -> bool:
        async with self.engine.connect() as conn:
            return bool((await conn.execute(sa.select(card_t.c.id).where(card_t.c.member_id == member_id)
                                            .limit(1))).first())

    async def set_language(self, member_id: int, language: str) -> None:
        """Save the member's language ('' follows the browser); raises MeError('bad_language')."""
        if language not in LANGUAGE_CHOICES:
            raise MeError('bad_language', f'not a language fabpanel speaks: {language!r}')
        async with self.engine.begin() as conn:
            await conn.execute(sa.update(member_t).where(member_t.c.id == member_id).values(language=language))
