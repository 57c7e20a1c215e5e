"""Sign-in rules: safe redirect targets, lock-out after failed attempts, password policy, token digests."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

MAX_FAILED_SIGNINS = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
RESET_TOKEN_TTL = timedelta(hours=1)
SESSION_TTL = timedelta(days=14)

_SAFE_PATH = re.compile(r"/[A-Za-z0-9\-._~/%?=&+]*")


def safe_next(target: str | None, default: str = '/') -> str:
    """A redirect target after sign-in: same-site absolute paths only.

    Refuses `//evil.example`, `https://evil.example`, `javascript:…`, backslash tricks (`/\\evil`) and anything
    with a scheme or host.
    """
    if not target or len(target) > 512:
        return default
    if not target.startswith('/') or target.startswith('//') or '\\' in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not _SAFE_PATH.fullmatch(target):
        return default
    return target


def token_digest(token: str) -> str:
    """Tokens are stored as their SHA-256: a database leak does not hand out sessions or reset links."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(kw_only=True, slots=True, frozen=True)
class Lockout:
    failed: int
    locked_until: datetime | None


def after_failed_signin(failed: int, now: datetime) -> Lockout:
    failed += 1
    if failed >= MAX_FAILED_SIGNINS:
        # every further failure past the limit locks the account again, so guessing stays slow
        return Lockout(failed=failed, locked_until=now + LOCKOUT)
    return Lockout(failed=failed, locked_until=None)


def is_locked(locked_until: datetime | None, now: datetime) -> bool:
    return locked_until is not None and locked_until > now


def password_problem(password: str, email: str = '') -> str | None:
    """Why a new password is not acceptable (in English; the page translates the known messages), or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f'at least {MIN_PASSWORD_LENGTH} characters'
    if len(password) > MAX_PASSWORD_LENGTH:
        return f'at most {MAX_PASSWORD_LENGTH} characters'
    if email and password.lower() == email.lower():
        return 'must not be your e-mail address'
    if len(set(password)) < 4:
        return 'too simple'
    return None


EMAIL = re.compile(r'[^@\s<>"]{1,64}@[^@\s<>"]{1,189}\.[A-Za-z0-9-]{2,63}')


def normalize_email(text: str) -> str:
    return text.strip().lower()


def valid_email(text: str) -> bool:
    return bool(EMAIL.fullmatch(text.strip()))
