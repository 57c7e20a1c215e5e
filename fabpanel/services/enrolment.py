"""New cards: the unknown cards boards have seen lately, and 'swipe the new card on machine X now'."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from fabpanel.core import members as rules
from fabpanel.core.cards import InvalidCardUid, is_board_uid, mask_uid
from fabpanel.db.models import Card, Machine, UnknownCard
from fabpanel.live.state import LiveState
from fabpanel.services.auth import CurrentUser
from fabpanel.services.members import CardRow, MemberError, MemberService

log = logging.getLogger(__name__)

unknown_t = UnknownCard.__table__
machine_t = Machine.__table__
card_t = Card.__table__

WAIT_SECONDS = 60


@dataclass(kw_only=True, slots=True, frozen=True)
class Sighting:
    """An unknown card on one machine: when it was first and last shown there, and how often."""

    uid: str
    machine_id: int
    machine_name: str
    first_seen: datetime
    last_seen: datetime
    attempts: int

    @property
    def board_ok(self) -> bool:
        return is_board_uid(self.uid)


@dataclass(kw_only=True, slots=True, frozen=True)
class SightingPage:
    rows: list[Sighting]
    total: int
    page: int
    pages: int


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class CardWait:
    """Waits for the next unknown card shown on one machine. Subscribed from creation until `close()`, which
    `next()` calls on every way out: a card, the time-out, `close()` from elsewhere (cancel) or cancellation."""

    def __init__(self, live: LiveState, machine_id: int) -> None:
        self.live = live
        self.machine_id = machine_id
        self._future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        live.events.card_unknown.subscribe(self._seen)

    def _seen(self, arg: tuple[int, str]) -> None:
        machine_id, uid = arg
        if machine_id == self.machine_id and not self._future.done():
            self._future.set_result(uid)

    @property
    def waiting(self) -> bool:
        return not self._future.done()

    async def next(self, timeout: float) -> str | None:  # noqa: ASYNC109 - the countdown the admin sees
        """The card id, or None after `timeout` seconds or when closed."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._future), timeout)
        except TimeoutError:
            return None
        finally:
            self.close()

    def close(self) -> None:
        self.live.events.card_unknown.unsubscribe(self._seen)
        if not self._future.done():
            self._future.set_result(None)


class EnrolmentService:
    def __init__(self, engine: AsyncEngine, live: LiveState, members: MemberService) -> None:
        self.engine = engine
        self.live = live
        self.members = members

    async def sightings(self, actor: CurrentUser, page: int = 1) -> SightingPage:
        """Unknown cards, the most recently seen first; cards that have since been given to someone are left out."""
        known = sa.exists().where(card_t.c.uid == unknown_t.c.uid)
        where = [~known]
        async with self.engine.connect() as conn:
            await self.members.require_admin(conn, actor)
            total = (await conn.execute(sa.select(sa.func.count()).select_from(unknown_t).where(*where))).scalar_one()
            page = rules.clamp_page(page, total)
            rows = await conn.execute(
                sa.select(unknown_t, machine_t.c.name.label('machine_name'))
                .join(machine_t, machine_t.c.id == unknown_t.c.machine_id).where(*where)
                .order_by(unknown_t.c.last_seen.desc(), unknown_t.c.id.desc())
                .limit(rules.PER_PAGE).offset((page - 1) * rules.PER_PAGE))
            out = [Sighting(uid=r.uid, machine_id=r.machine_id, machine_name=r.machine_name,
                            first_seen=_aware(r.first_seen), last_seen=_aware(r.last_seen), attempts=r.attempts)
                   for r in rows]
        return SightingPage(rows=out, total=total, page=page, pages=rules.page_count(total))

    async def give(self, actor: CurrentUser, uid: str, member_id: int, label: str = '') -> CardRow:
        """Give a seen card to an existing member (its sightings go away)."""
        return await self.members.add_card(actor, member_id, uid, label)

    async def forget(self, actor: CurrentUser, uid: str) -> None:
        """Drop the sightings of a card nobody will get (a visitor's bank card, say)."""
        try:
            uid = rules.card_uid(uid)
        except InvalidCardUid as e:
            raise MemberError('invalid', {'card': 'bad_card'}) from e
        async with self.engine.begin() as conn:
            await self.members.require_admin(conn, actor)
            await conn.execute(sa.delete(unknown_t).where(unknown_t.c.uid == uid))
        log.info('sightings of card %s dropped by %d', mask_uid(uid), actor.member_id)

    async def machines(self, actor: CurrentUser) -> list[tuple[int, str]]:
        async with self.engine.connect() as conn:
            await self.members.require_admin(conn, actor)
            rows = await conn.execute(sa.select(machine_t.c.id, machine_t.c.name).where(
                machine_t.c.deleted_at.is_(None)).order_by(machine_t.c.name, machine_t.c.id))
            return [(r.id, r.name) for r in rows]

    async def start_wait(self, actor: CurrentUser, machine_id: int, member_id: int | None) -> CardWait:
        """Listen for the next unknown card on a machine; checked before the admin is told to swipe."""
        await self.members.check_admin(actor)
        async with self.engine.connect() as conn:
            machine = (await conn.execute(sa.select(machine_t.c.id).where(
                machine_t.c.id == machine_id, machine_t.c.deleted_at.is_(None)))).first()
        if machine is None:
            raise MemberError('no_machine')
        if member_id is not None:
            await self.members.get(actor, member_id)  # not_found / deleted are told now, not after the swipe
        return CardWait(self.live, machine_id)

    async def bind_next(self, actor: CurrentUser, machine_id: int, member_id: int | None,
                        timeout: float = WAIT_SECONDS) -> str | None:  # noqa: ASYNC109
        """The guided flow in one call: wait up to `timeout` s for an unknown card on the machine, then give it to
        the member (when one is named). Returns the card id, or None when no card came."""
        wait = await self.start_wait(actor, machine_id, member_id)
        uid = await wait.next(timeout)
        if uid is not None and member_id is not None:
            await self.members.add_card(actor, member_id, uid)
        return uid
