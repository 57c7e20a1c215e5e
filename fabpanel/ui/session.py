"""Who is asking: the signed-in member behind a page request, and the role checks every page makes."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from urllib.parse import quote

from fastapi.responses import RedirectResponse
from starlette.requests import Request

from fabpanel.core.auth import safe_next
from fabpanel.services.auth import AuthService, CurrentUser

COOKIE = 'fabpanel_session'
HANDOFF_TTL_S = 30.0

Permission = Callable[[CurrentUser], bool]


def signed_in(_user: CurrentUser) -> bool:
    return True


def administers(user: CurrentUser) -> bool:
    return user.may_administer


def maintains(user: CurrentUser) -> bool:
    return user.may_maintain or user.may_administer


class Handoffs:
    """One-time codes that carry a new session from the sign-in form (a websocket event) to a plain HTTP
    response that can set an HttpOnly cookie. Kept in memory for 30 s; used once."""

    def __init__(self) -> None:
        self._codes: dict[str, tuple[str, str, float]] = {}

    def create(self, token: str, next_url: str) -> str:
        now = time.monotonic()
        self._codes = {k: v for k, v in self._codes.items() if v[2] > now}
        code = secrets.token_urlsafe(24)
        self._codes[code] = (token, safe_next(next_url), now + HANDOFF_TTL_S)
        return code

    def take(self, code: str) -> tuple[str, str] | None:
        item = self._codes.pop(code, None)
        if item is None or item[2] < time.monotonic():
            return None
        return item[0], item[1]


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f'?{request.url.query}' if request.url.query else '')
    return RedirectResponse(f'/login?next={quote(safe_next(target), safe="")}', status_code=303)


async def page_user(request: Request, auth: AuthService, allowed: Permission = signed_in
                    ) -> CurrentUser | RedirectResponse:
    """The signed-in member, or the response to send instead: sign in first, set a new password first,
    or 'not allowed' (checked here, on the server, for every page)."""
    user = await auth.session_user(request.cookies.get(COOKIE))
    if user is None:
        return login_redirect(request)
    if user.must_change_password and request.url.path != '/account/password':
        return RedirectResponse('/account/password', status_code=303)
    if not allowed(user):
        return RedirectResponse('/forbidden', status_code=303)
    return user
