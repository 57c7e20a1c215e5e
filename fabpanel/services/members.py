"""Members and their cards, as the admins manage them: list, create, edit, disable, delete, cards, exports.

Every call names the acting member and is refused unless that member is, right now in the database, an active
admin (`may_administer`): a page that was opened before the role was taken away cannot act any more.

Deleting is soft: the row stays (with its names) so the usage history keeps saying who used a machine; the
e-mail address is cleared (so it can be used again and the member can no longer sign in or get mail), the
cards are removed (uses keep the card id as text), sessions and reset links end. Authorizations are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fabpanel.core import members as rules
from fabpanel.core.cards import InvalidCardUid, is_board_uid, mask_uid
from fabpanel.core.members import MemberInput, Status
from fabpanel.db.models import Card, LoginSession, Member, PasswordReset, Role, UnknownCard
from fabpanel.services.auth import AuthService, CurrentUser
from fabpanel.services.boards import BoardService
from fabpanel.services.exports import xlsx

log = logging.getLogger(__name__)

member_t = Member.__table__
role_t = Role.__table__
card_t = Card.__table__
unknown_t = UnknownCard.__table__
session_t = LoginSession.__table__
reset_t = PasswordReset.__table__

EXPORT_MAX = 50_000


class MemberError(Exception):
    """A member or card change was refused. `code` says why; `problems` maps form fields to their problem
    (codes: required, too_long, bad_email, bad_language, taken, bad_role, bad_card); `owner` names whoever holds
    a card that is in use (admins only ever get this error)."""

    def __init__(self, code: str, problems: Mapping[str, str] | None = None, owner: str = '') -> None:
        super().__init__(code if not problems else f'{code}: {dict(problems)}')
        self.code = code
        self.problems = dict(problems or {})
        self.owner = owner


@dataclass(kw_only=True, slots=True, frozen=True)
class CardRow:
    id: int
    uid: str
    label: str
    created_at: datetime

    @property
    def board_ok(self) -> bool:
        """False for ids no board can send (not 8 hex characters): kept, but they cannot match a board."""
        return is_board_uid(self.uid)


@dataclass(kw_only=True, slots=True, frozen=True)
class MemberRow:
    id: int
    first_name: str
    last_name: str
    email: str
    language: str
    role_id: int
    role_name: str
    may_administer: bool
    disabled: bool
    deleted_at: datetime | None
    created_at: datetime
    cards: tuple[CardRow, ...] = ()

    @property
    def status(self) -> Status:
        if self.deleted_at is not None:
            return Status.DELETED
        return Status.DISABLED if self.disabled else Status.ACTIVE

    @property
    def name(self) -> str:
        return f'{self.first_name} {self.last_name}'.strip()


@dataclass(kw_only=True, slots=True)
class MemberQuery:
    text: str = ''
    role_id: int | None = None
    status: Status = Status.ANY
    has_card: bool | None = None
    page: int = 1


@dataclass(kw_only=True, slots=True, frozen=True)
class MemberPage:
    rows: list[MemberRow] = field(default_factory=list)
    total: int = 0
    page: int = 1
    pages: int = 1


def _aware(dt: datetime | None) -> datetime | None:
    return dt if dt is None or dt.tzinfo else dt.replace(tzinfo=UTC)


def _filters(query: MemberQuery) -> list[sa.ColumnElement[bool]]:
    m = member_t
    where: list[sa.ColumnElement[bool]] = []
    if query.status is Status.DELETED:
        where.append(m.c.deleted_at.is_not(None))
    else:
        where.append(m.c.deleted_at.is_(None))
        if query.status is Status.ACTIVE:
            where.append(m.c.disabled.is_(False))
        elif query.status is Status.DISABLED:
            where.append(m.c.disabled.is_(True))
    if query.role_id is not None:
        where.append(m.c.role_id == query.role_id)
    has_card = sa.exists().where(card_t.c.member_id == m.c.id)
    if query.has_card is True:
        where.append(has_card)
    elif query.has_card is False:
        where.append(~has_card)
    search = rules.parse_search(query.text)
    for term, card_term in zip(search.terms, search.card_terms, strict=True):
        pattern = rules.like_pattern(term)
        options = [m.c.first_name.ilike(pattern, escape='\\'), m.c.last_name.ilike(pattern, escape='\\'),
                   m.c.email.ilike(pattern, escape='\\')]
        if card_term is not None:
            options.append(sa.exists().where(card_t.c.member_id == m.c.id,
                                             card_t.c.uid.like(rules.like_pattern(card_term), escape='\\')))
        where.append(sa.or_(*options))
    return where


_COLUMNS = (member_t.c.id, member_t.c.first_name, member_t.c.last_name, member_t.c.email, member_t.c.language,
            member_t.c.role_id, role_t.c.name.label('role_name'), role_t.c.may_administer, member_t.c.disabled,
            member_t.c.deleted_at, member_t.c.created_at)  # never the password hash


def _row(r: Any, cards: Sequence[CardRow] = ()) -> MemberRow:
    return MemberRow(id=r.id, first_name=r.first_name, last_name=r.last_name, email=r.email or '',
                     language=r.language, role_id=r.role_id, role_name=r.role_name, may_administer=r.may_administer,
                     disabled=r.disabled, deleted_at=_aware(r.deleted_at), created_at=_aware(r.created_at),
                     cards=tuple(cards))


class MemberService:
    def __init__(self, engine: AsyncEngine, boards: BoardService, auth: AuthService) -> None:
        self.engine = engine
        self.boards = boards
        self.auth = auth

    # ---- who may ---------------------------------------------------------------------------------------------
    async def require_admin(self, conn: AsyncConnection, actor: CurrentUser) -> None:
        ok = (await conn.execute(sa.select(role_t.c.may_administer).join(
            member_t, member_t.c.role_id == role_t.c.id).where(
            member_t.c.id == actor.member_id, member_t.c.deleted_at.is_(None),
            member_t.c.disabled.is_(False)))).scalar()
        if not ok:
            log.warning('member %d tried an admin action on members without the right', actor.member_id)
            raise MemberError('forbidden')

    async def check_admin(self, actor: CurrentUser) -> None:
        async with self.engine.connect() as conn:
            await self.require_admin(conn, actor)

    # ---- reading ---------------------------------------------------------------------------------------------
    async def roles(self, actor: CurrentUser) -> list[tuple[int, str]]:
        async with self.engine.connect() as conn:
            await self.require_admin(conn, actor)
            rows = await conn.execute(sa.select(role_t.c.id, role_t.c.name).order_by(role_t.c.name, role_t.c.id))
            return [(r.id, r.name) for r in rows]

    async def default_role_id(self, actor: CurrentUser) -> int | None:
        async with self.engine.connect() as conn:
            await self.require_admin(conn, actor)
            return (await conn.execute(sa.select(role_t.c.id).order_by(
                role_t.c.is_default.desc(), role_t.c.may_administer, role_t.c.id).limit(1))).scalar()

    async def search(self, actor: CurrentUser, query: MemberQuery) -> MemberPage:
        """One page (25 rows) of the members matching the filters, ordered by last and first name."""
        where = _filters(query)
        async with self.engine.connect() as conn:
            await self.require_admin(conn, actor)
            total = (await conn.execute(sa.select(sa.func.count()).select_from(member_t).where(*where))).scalar_one()
            page = rules.clamp_page(query.page, total)
            rows = list(await conn.execute(self._select(where).limit(rules.PER_PAGE)
                                           .offset((page - 1) * rules.PER_PAGE)))
            cards = await self._cards_of(conn, [r.id for r in rows])
        return MemberPage(rows=[_row(r, cards.get(r.id, ())) for r in rows], total=total, page=page,
                          pages=rules.page_count(total))

    def _select(self, where: Sequence[sa.ColumnElement[bool]]) -> sa.Select[Any]:
        return (sa.select(*_COLUMNS).join(role_t, role_t.c.id == member_t.c.role_id).where(*where)
                .order_by(sa.func.lower(member_t.c.last_name), sa.func.lower(member_t.c.first_name), member_t.c.id))

    async def _cards_of(self, conn: AsyncConnection, member_ids: list[int]) -> dict[int, list[CardRow]]:
        out: dict[int, list[CardRow]] = {}
        for chunk in (member_ids[i:i + 500] for i in range(0, len(member_ids), 500)):
            q = sa.select(card_t).where(card_t.c.member_id.in_(chunk)).order_by(card_t.c.created_at, card_t.c.id)
            for c in await conn.execute(q):
                out.setdefault(c.member_id, []).append(
                    CardRow(id=c.id, uid=c.uid, label=c.label, created_at=_aware(c.created_at)))
        return out

    async def get(self, actor: CurrentUser, member_id: int) -> MemberRow:
        async with self.engine.connect() as conn:
            await self.require_admin(conn, actor)
            r = (await conn.execute(self._select([member_t.c.id == member_id]))).first()
            if r is None:
                raise MemberError('not_found')
            cards = await self._cards_of(conn, [member_id])
        return _row(r, cards.get(member_id, ()))

    async def choices(self, actor: CurrentUser) -> list[tuple[int, str]]:
        """Members a card can be given to (not deleted), as (id, 'First Last · e-mail') for a searchable pick."""
        async with self.engine.connect() as conn:
            await self.require_admin(conn, actor)
            rows = await conn.execute(self._select([member_t.c.deleted_at.is_(None)]))
            return [(r.id, ' · '.join(p for p in (f'{r.first_name} {r.last_name}'.strip(), r.email or '') if p))
                    for r in rows]

    async def export_xlsx(self, actor: CurrentUser, query: MemberQuery, headers: Sequence[str],
                          status_names: Mapping[str, str]) -> bytes:
        """Every member matching the filters (not only the page shown), without secrets: no password hashes,
        sessions or reset tokens ever leave through here."""
        where = _filters(query)
        async with self.engine.connect() as conn:
            await self.require_admin(conn, actor)
            rows = list(await conn.execute(self._select(where).limit(EXPORT_MAX)))
            cards = await self._cards_of(conn, [r.id for r in rows])
        members = [_row(r, cards.get(r.id, ())) for r in rows]
        return xlsx('members', headers, (
            [m.id, m.first_name, m.last_name, m.email, m.language, m.role_name, status_names.get(m.status.value, ''),
             ', '.join(f'{c.uid} ({c.label})' if c.label else c.uid for c in m.cards), m.created_at]
            for m in members))

    # ---- writing ---------------------------------------------------------------------------------------------
    async def _clean(self, conn: AsyncConnection, data: MemberInput, member_id: int | None) -> rules.CleanMember:
        clean, problems = rules.clean_member(data)
        if clean is not None:
            if (await conn.execute(sa.select(role_t.c.id).where(role_t.c.id == clean.role_id))).first() is None:
                problems['role_id'] = 'bad_role'
            elif clean.email is not None:
                taken = sa.select(member_t.c.id).where(sa.func.lower(member_t.c.email) == clean.email)
                if member_id is not None:
                    taken = taken.where(member_t.c.id != member_id)
                if (await conn.execute(taken)).first() is not None:
                    problems['email'] = 'taken'
        if problems or clean is None:
            raise MemberError('invalid', problems)
        return clean

    async def create(self, actor: CurrentUser, data: MemberInput, card: str = '', card_label: str = '') -> int:
        """A new member, with a first card when one is given. Returns the new member's id."""
        uid = self._uid(card) if card.strip() else None
        label = self._label(card_label)
        if uid is not None:
            await self.boards.settle()  # an unknown-card sighting still being written is removed below too
        try:
            async with self.engine.begin() as conn:
                await self.require_admin(conn, actor)
                clean = await self._clean(conn, data, None)
                if uid is not None:
                    await self._check_card_free(conn, uid, None)
                member_id = int((await conn.execute(sa.insert(member_t).values(
                    first_name=clean.first_name, last_name=clean.last_name, email=clean.email,
                    language=clean.language, role_id=clean.role_id, disabled=False,
                    created_at=datetime.now(UTC)).returning(member_t.c.id))).scalar_one())
                if uid is not None:
                    await self._insert_card(conn, member_id, uid, label)
        except IntegrityError as e:  # another admin was quicker with the same address or card
            raise await self._conflict(uid, None) from e
        log.info('member %d created by %d', member_id, actor.member_id)
        await self.boards.reload_rules()
        return member_id

    async def update(self, actor: CurrentUser, member_id: int, data: MemberInput) -> None:
        try:
            async with self.engine.begin() as conn:
                await self.require_admin(conn, actor)
                await self._live_member(conn, member_id)
                clean = await self._clean(conn, data, member_id)
                if member_id == actor.member_id:
                    admin = (await conn.execute(sa.select(role_t.c.may_administer).where(
                        role_t.c.id == clean.role_id))).scalar()
                    if not admin:
                        raise MemberError('self_lockout', {'role_id': 'self_lockout'})
                await conn.execute(sa.update(member_t).where(member_t.c.id == member_id).values(
                    first_name=clean.first_name, last_name=clean.last_name, email=clean.email,
                    language=clean.language, role_id=clean.role_id))
        except IntegrityError as e:
            raise MemberError('invalid', {'email': 'taken'}) from e
        log.info('member %d changed by %d', member_id, actor.member_id)
        await self.boards.reload_rules()

    async def set_disabled(self, actor: CurrentUser, member_id: int, disabled: bool) -> None:
        """A disabled member's cards stop working and they cannot sign in; nothing else changes."""
        async with self.engine.begin() as conn:
            await self.require_admin(conn, actor)
            await self._live_member(conn, member_id)
            if disabled and member_id == actor.member_id:
                raise MemberError('self_lockout')
            await conn.execute(sa.update(member_t).where(member_t.c.id == member_id).values(disabled=disabled))
        log.info('member %d %s by %d', member_id, 'disabled' if disabled else 'enabled', actor.member_id)
        await self.boards.reload_rules()

    async def delete(self, actor: CurrentUser, member_id: int, now: datetime | None = None) -> None:
        """Soft delete (see the module's docstring): history stays attributable, the address and cards are freed."""
        now = now or datetime.now(UTC)
        async with self.engine.begin() as conn:
            await self.require_admin(conn, actor)
            await self._live_member(conn, member_id)
            if member_id == actor.member_id:
                raise MemberError('self_lockout')
            await conn.execute(sa.update(member_t).where(member_t.c.id == member_id).values(
                deleted_at=now, email=None, disabled=True, password_hash=None, must_change_password=False,
                failed_signins=0, locked_until=None))
            await conn.execute(sa.delete(card_t).where(card_t.c.member_id == member_id))
            await conn.execute(sa.delete(session_t).where(session_t.c.member_id == member_id))
            await conn.execute(sa.delete(reset_t).where(reset_t.c.member_id == member_id))
        log.info('member %d deleted by %d', member_id, actor.member_id)
        await self.boards.reload_rules()

    async def send_password_link(self, actor: CurrentUser, member_id: int) -> None:
        """Mail the member a link to choose a password (the same link as 'forgotten password')."""
        async with self.engine.connect() as conn:
            await self.require_admin(conn, actor)
            row = await self._live_member(conn, member_id)
        if not row.email:
            raise MemberError('no_email')
        if row.disabled:
            raise MemberError('disabled')
        await self.auth.request_reset(row.email)
        log.info('password link for member %d requested by %d', member_id, actor.member_id)

    # ---- cards -----------------------------------------------------------------------------------------------
    async def add_card(self, actor: CurrentUser, member_id: int, card: str, label: str = '') -> CardRow:
        """Give a member one more card. The card's sightings on the 'new cards' page go away."""
        uid = self._uid(card)
        clean_label = self._label(label)
        await self.boards.settle()
        try:
            async with self.engine.begin() as conn:
                await self.require_admin(conn, actor)
                await self._live_member(conn, member_id)
                await self._check_card_free(conn, uid, member_id)
                row = await self._insert_card(conn, member_id, uid, clean_label)
        except IntegrityError as e:
            raise await self._conflict(uid, member_id) from e
        log.info('card %s given to member %d by %d', mask_uid(uid), member_id, actor.member_id)
        await self.boards.reload_rules()
        return row

    async def remove_card(self, actor: CurrentUser, card_id: int) -> None:
        """Revoke a card (lost, broken, returned): it stops working at once; past uses keep its id as text."""
        async with self.engine.begin() as conn:
            await self.require_admin(conn, actor)
            row = (await conn.execute(sa.select(card_t.c.uid, card_t.c.member_id).where(
                card_t.c.id == card_id))).first()
            if row is None:
                raise MemberError('not_found')
            await conn.execute(sa.delete(card_t).where(card_t.c.id == card_id))
        log.info('card %s of member %d revoked by %d', mask_uid(row.uid), row.member_id, actor.member_id)
        await self.boards.reload_rules()

    @staticmethod
    def _uid(text: str) -> str:
        try:
            return rules.card_uid(text)
        except InvalidCardUid as e:
            raise MemberError('invalid', {'card': 'bad_card'}) from e

    @staticmethod
    def _label(text: str) -> str:
        label = rules.clean_label(text)
        if label is None:
            raise MemberError('invalid', {'card_label': 'too_long'})
        return label

    async def _live_member(self, conn: AsyncConnection, member_id: int) -> Any:
        row = (await conn.execute(sa.select(member_t.c.id, member_t.c.email, member_t.c.disabled,
                                            member_t.c.deleted_at).where(member_t.c.id == member_id))).first()
        if row is None:
            raise MemberError('not_found')
        if row.deleted_at is not None:
            raise MemberError('deleted')
        return row

    async def _check_card_free(self, conn: AsyncConnection, uid: str, member_id: int | None) -> None:
        owner = (await conn.execute(sa.select(member_t.c.id, member_t.c.first_name, member_t.c.last_name).join(
            card_t, card_t.c.member_id == member_t.c.id).where(card_t.c.uid == uid))).first()
        if owner is None:
            return
        if owner.id == member_id:
            raise MemberError('card_theirs', {'card': 'card_theirs'})
        raise MemberError('card_in_use', {'card': 'card_in_use'},
                          owner=f'{owner.first_name} {owner.last_name}'.strip())

    async def _conflict(self, uid: str | None, member_id: int | None) -> MemberError:
        """What a unique-constraint failure meant: the card, or else the address, was taken meanwhile."""
        if uid is not None:
            async with self.engine.connect() as conn:
                try:
                    await self._check_card_free(conn, uid, member_id)
                except MemberError as e:
                    return e
        return MemberError('invalid', {'email': 'taken'})

    async def _insert_card(self, conn: AsyncConnection, member_id: int, uid: str, label: str) -> CardRow:
        now = datetime.now(UTC)
        card_id = (await conn.execute(sa.insert(card_t).values(
            uid=uid, member_id=member_id, label=label, created_at=now).returning(card_t.c.id))).scalar_one()
        await conn.execute(sa.delete(unknown_t).where(unknown_t.c.uid == uid))
        return CardRow(id=int(card_id), uid=uid, label=label, created_at=now)
