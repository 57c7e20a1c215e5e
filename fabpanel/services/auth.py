"""Sign-in, sessions, password changes and resets, and the first admin account."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.ext.asyncio import AsyncEngine

from fabpanel.core import auth as rules
from fabpanel.db.models import LoginSession, Member, PasswordReset, Role
from fabpanel.mail.sender import Mailer, MailError
from fabpanel.mail.templates import render

log = logging.getLogger(__name__)
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# verifying against this keeps unknown e-mails as slow as known ones, so timing does not tell them apart
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

member_t = Member.__table__
role_t = Role.__table__
session_t = LoginSession.__table__
reset_t = PasswordReset.__table__


class AuthError(Exception):
    """A sign-in or password operation was refused; `code` says why (for translated messages)."""

    def __init__(self, code: str, detail: str = '') -> None:
        super().__init__(detail or code)
        self.code = code


@dataclass(kw_only=True, slots=True, frozen=True)
class CurrentUser:
    member_id: int
    first_name: str
    last_name: str
    email: str
    language: str
    role_name: str
    may_use_all_machines: bool
    may_maintain: bool
    may_administer: bool
    may_approve_prints: bool
    must_change_password: bool

    @property
    def is_staff(self) -> bool:
        return self.may_administer or self.may_approve_prints or self.may_maintain


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(stored: str | None, password: str) -> tuple[bool, bool]:
    """(matches, needs rehash). Unknown hash formats never match."""
    if not stored:
        try:
            _hasher.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        return False, False
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, False
    return True, _hasher.check_needs_rehash(stored)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(dt: datetime | None) -> datetime | None:
    return dt if dt is None or dt.tzinfo else dt.replace(tzinfo=UTC)


class AuthService:
    def __init__(self, engine: AsyncEngine, mailer: Mailer, base_url: str) -> None:
        self.engine = engine
        self.mailer = mailer
        self.base_url = base_url.rstrip('/')
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- sign-in ---------------------------------------------------------------------------------------------
    async def sign_in(self, email: str, password: str, now: datetime | None = None) -> CurrentUser:
        """Check e-mail and password; raises AuthError('invalid' | 'locked'). Same error for unknown e-mails."""
        now = now or _now()
        email = rules.normalize_email(email)
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(member_t).where(
                member_t.c.email == email, member_t.c.deleted_at.is_(None)))).first()
        if row is None:
            await asyncio.to_thread(check_password, None, password)
            raise AuthError('invalid')
        if rules.is_locked(_aware(row.locked_until), now):
            raise AuthError('locked')
        ok, rehash = await asyncio.to_thread(check_password, row.password_hash, password)
        if not ok or row.disabled:
            lock = rules.after_failed_signin(row.failed_signins, now)
            async with self.engine.begin() as conn:
                await conn.execute(sa.update(member_t).where(member_t.c.id == row.id).values(
                    failed_signins=lock.failed, locked_until=lock.locked_until))
            log.info('failed sign-in for member %d (%d in a row)', row.id, lock.failed)
            raise AuthError('locked' if lock.locked_until else 'invalid')
        values: dict[str, Any] = {'failed_signins': 0, 'locked_until': None}
        if rehash:
            values['password_hash'] = await asyncio.to_thread(hash_password, password)
        async with self.engine.begin() as conn:
            await conn.execute(sa.update(member_t).where(member_t.c.id == row.id).values(**values))
        user = await self.user(row.id)
        assert user is not None
        return user

    async def user(self, member_id: int) -> CurrentUser | None:
        q = (sa.select(member_t, role_t.c.name.label('role_name'), role_t.c.may_use_all_machines,
                       role_t.c.may_maintain, role_t.c.may_administer, role_t.c.may_approve_prints)
             .join(role_t, role_t.c.id == member_t.c.role_id)
             .where(member_t.c.id == member_id, member_t.c.deleted_at.is_(None), member_t.c.disabled.is_(False)))
        async with self.engine.connect() as conn:
            r = (await conn.execute(q)).first()
        if r is None:
            return None
        return CurrentUser(member_id=r.id, first_name=r.first_name, last_name=r.last_name, email=r.email or '',
                           language=r.language, role_name=r.role_name, may_use_all_machines=r.may_use_all_machines,
                           may_maintain=r.may_maintain, may_administer=r.may_administer,
                           may_approve_prints=r.may_approve_prints, must_change_password=r.must_change_password)

    # ---- sessions --------------------------------------------------------------------------------------------
    async def open_session(self, member_id: int, now: datetime | None = None) -> str:
        """A new random session token (a fresh one at every sign-in: no session fixation)."""
        now = now or _now()
        token = secrets.token_urlsafe(32)
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(session_t).values(
                token_hash=rules.token_digest(token), member_id=member_id, created_at=now, last_seen=now,
                expires_at=now + rules.SESSION_TTL))
        return token

    async def session_user(self, token: str | None, now: datetime | None = None) -> CurrentUser | None:
        if not token or len(token) > 100:
            return None
        now = now or _now()
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(session_t.c.member_id, session_t.c.expires_at).where(
                session_t.c.token_hash == rules.token_digest(token)))).first()
        if row is None or _aware(row.expires_at) <= now:
            return None
        return await self.user(row.member_id)

    async def close_session(self, token: str | None) -> None:
        if token:
            async with self.engine.begin() as conn:
                await conn.execute(sa.delete(session_t).where(session_t.c.token_hash == rules.token_digest(token)))

    # ---- passwords -------------------------------------------------------------------------------------------
    async def change_password(self, member_id: int, new_password: str, keep_session: str | None = None) -> None:
        """Set a new password; every other session and every reset link of the member stops working."""
        async with self.engine.connect() as conn:
            email = (await conn.execute(sa.select(member_t.c.email).where(member_t.c.id == member_id))).scalar()
        problem = rules.password_problem(new_password, email or '')
        if problem:
            raise AuthError('weak', problem)
        hashed = await asyncio.to_thread(hash_password, new_password)
        async with self.engine.begin() as conn:
            await conn.execute(sa.update(member_t).where(member_t.c.id == member_id).values(
                password_hash=hashed, must_change_password=False, failed_signins=0, locked_until=None))
            await conn.execute(sa.delete(reset_t).where(reset_t.c.member_id == member_id))
            keep = rules.token_digest(keep_session) if keep_session else ''
            await conn.execute(sa.delete(session_t).where(session_t.c.member_id == member_id,
                                                          session_t.c.token_hash != keep))

    async def request_reset(self, email: str, now: datetime | None = None) -> None:
        """Mail a reset link when the address belongs to an active member. Returns the same way either way,
        and the mail goes out in the background, so neither the answer nor its timing tells who is a member."""
        now = now or _now()
        email = rules.normalize_email(email)
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(member_t.c.id, member_t.c.first_name, member_t.c.language).where(
                member_t.c.email == email, member_t.c.deleted_at.is_(None), member_t.c.disabled.is_(False)))).first()
        if row is None:
            return
        token = secrets.token_urlsafe(32)
        async with self.engine.begin() as conn:
            # a newer link replaces older ones
            await conn.execute(sa.delete(reset_t).where(reset_t.c.member_id == row.id))
            await conn.execute(sa.insert(reset_t).values(token_hash=rules.token_digest(token), member_id=row.id,
                                                         created_at=now, expires_at=now + rules.RESET_TOKEN_TTL))
        subject, body = render('password_reset', row.language or 'en', first_name=row.first_name,
                               link=f'{self.base_url}/reset?token={token}',
                               minutes=str(int(rules.RESET_TOKEN_TTL.total_seconds() // 60)))
        self._background(self._send(email, subject, body))

    async def _send(self, to: str, subject: str, body: str) -> None:
        try:
            await self.mailer.send(to, subject, body)
        except MailError as e:
            log.error('%s', e)

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def reset_password(self, token: str, new_password: str, now: datetime | None = None) -> int:
        """Use a reset link once; raises AuthError('bad_token' | 'weak'). Returns the member id."""
        now = now or _now()
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(reset_t).where(
                reset_t.c.token_hash == rules.token_digest(token or '')))).first()
        if row is None or row.used_at is not None or _aware(row.expires_at) <= now:
            raise AuthError('bad_token')
        await self.change_password(row.member_id, new_password)  # also deletes this and any other link
        return int(row.member_id)

    # ---- accounts ----------------------------------------------------------------------------------------------
    async def admin_role_id(self) -> int:
        async with self.engine.begin() as conn:
            rid = (await conn.execute(sa.select(role_t.c.id).where(role_t.c.may_administer.is_(True))
                                      .order_by(role_t.c.id).limit(1))).scalar()
            if rid is None:
                rid = (await conn.execute(sa.insert(role_t).values(
                    name='Admin', may_use_all_machines=True, may_maintain=True, may_administer=True,
                    may_approve_prints=True, is_default=False).returning(role_t.c.id))).scalar_one()
        return int(rid)

    async def create_admin(self, email: str, password: str, *, must_change: bool = False,
                           first_name: str = 'Admin') -> int:
        email = rules.normalize_email(email)
        if not rules.valid_email(email):
            raise AuthError('bad_email', f'not an e-mail address: {email!r}')
        problem = rules.password_problem(password, email)
        if problem and not must_change:
            raise AuthError('weak', problem)
        role_id = await self.admin_role_id()
        hashed = await asyncio.to_thread(hash_password, password)
        async with self.engine.begin() as conn:
            existing = (await conn.execute(sa.select(member_t.c.id).where(member_t.c.email == email))).scalar()
            values = {'password_hash': hashed, 'role_id': role_id, 'must_change_password': must_change,
                      'disabled': False, 'deleted_at': None, 'failed_signins': 0, 'locked_until': None}
            if existing is not None:
                await conn.execute(sa.update(member_t).where(member_t.c.id == existing).values(**values))
                return int(existing)
            return int((await conn.execute(sa.insert(member_t).values(
                first_name=first_name, last_name='', email=email, language='', created_at=_now(),
                **values).returning(member_t.c.id))).scalar_one())

    async def ensure_first_admin(self, email: str, data_dir: Path) -> Path | None:
        """On an empty lab, create the admin named in settings with a one-time password written to a file
        (never to the log); it must be changed at first sign-in. Returns the file's path when created."""
        async with self.engine.connect() as conn:
            admins = (await conn.execute(sa.select(sa.func.count()).select_from(member_t).join(
                role_t, role_t.c.id == member_t.c.role_id).where(role_t.c.may_administer.is_(True),
                                                                  member_t.c.password_hash.is_not(None)))).scalar()
        if admins:
            return None
        password = secrets.token_urlsafe(12)
        await self.create_admin(email, password, must_change=True)
        return await asyncio.to_thread(_write_secret, data_dir / 'initial-admin-password.txt', f'{email}\n{password}\n')


def _write_secret(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others, not even briefly
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    return path

