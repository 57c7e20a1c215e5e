"""Sign-in, sessions, roles on the server, password change and reset: NiceGUI's simulated browser, in-process."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from fabpanel.db.models import LoginSession, Member
from fabpanel.services.auth import AuthError
from fabpanel.ui.session import COOKIE

from ..conftest import make_settings
from ..lab import create_lab
from ..support import SmtpSink
from .simulation import signed_in, simulated_panel

PASSWORD = 'correct horse battery'


async def _lab_with_passwords(url: str, panel_auth) -> None:  # noqa: ANN001
    # Giulia (member), Anna (staff/admin) get passwords
    async with panel_auth.engine.begin() as conn:
        from fabpanel.services.auth import hash_password

        await conn.execute(sa.update(Member.__table__).where(Member.__table__.c.id.in_([1, 3])).values(
            password_hash=hash_password(PASSWORD)))


@pytest.fixture
async def lab(tmp_path: Path, smtp: SmtpSink):
    url = f'sqlite:///{tmp_path}/fabpanel.db'
    await create_lab(url)
    settings = make_settings(tmp_path, url, smtp_port=smtp.port)
    async with simulated_panel(settings) as (new_user, panel):
        await _lab_with_passwords(url, panel.auth)
        yield new_user, panel


async def test_pages_need_a_signed_in_member(lab) -> None:  # noqa: ANN001
    new_user, _panel = lab
    user = new_user()
    await user.open('/')
    await user.should_see('Sign in', retries=50)
    response = await user.http_client.get('/members?q=x', follow_redirects=False)
    assert response.status_code in (303, 404)
    response = await user.http_client.get('/', follow_redirects=False)
    assert response.status_code == 303 and response.headers['location'] == '/login?next=%2F'


async def test_sign_in_rotates_the_session_and_goes_to_a_safe_next(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = new_user()
    user.http_client.cookies.set(COOKIE, 'planted-by-an-attacker', domain='test.local')
    await user.open('/login?next=/kiosk')
    user.find(marker='email').clear().type('giulia@example.org')
    user.find(marker='password').clear().type(PASSWORD)
    user.find(marker='signin').click()
    await user.should_see('Free', retries=50)  # the kiosk's counters
    token = user.http_client.cookies.get(COOKIE, domain='test.local')
    assert token and token != 'planted-by-an-attacker'
    assert (await panel.auth.session_user(token)).first_name == 'Giulia'


@pytest.mark.parametrize('target', ['//evil.example', 'https://evil.example', 'javascript:alert(1)', '/\\evil.example',
                                    'http:/evil.example'])
async def test_hostile_next_targets_are_refused(lab, target: str) -> None:  # noqa: ANN001
    new_user, _panel = lab
    user = new_user()
    await user.open(f'/login?next={target}')
    user.find(marker='email').clear().type('giulia@example.org')
    user.find(marker='password').clear().type(PASSWORD)
    user.find(marker='signin').click()
    await user.should_see('Machines', retries=50)  # the dashboard, not the hostile target
    visited_after_login = [str(p) for p in user.back_history[1:]]
    assert visited_after_login and all(p.startswith('/') and 'evil' not in p and 'javascript' not in p
                                       for p in visited_after_login)


async def _failed_signins(panel, member_id: int) -> int:  # noqa: ANN001
    async with panel.engine.connect() as conn:
        return (await conn.execute(sa.select(Member.__table__.c.failed_signins).where(
            Member.__table__.c.id == member_id))).scalar_one()


async def test_wrong_passwords_lock_the_account(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = new_user()
    await user.open('/login')
    for attempt in range(1, 6):
        user.find(marker='email').clear().type('giulia@example.org')
        user.find(marker='password').clear().type('wrong password')
        user.find(marker='signin').click()
        for _ in range(100):
            if await _failed_signins(panel, 1) == attempt:
                break
            await asyncio.sleep(0.05)
        assert await _failed_signins(panel, 1) == attempt
    await user.should_see('Too many failed attempts', retries=50)
    # now even the right password is refused until the lock expires
    user.find(marker='password').clear().type(PASSWORD)
    user.find(marker='signin').click()
    await asyncio.sleep(0.3)
    await user.should_see('Too many failed attempts', retries=50)
    assert user.http_client.cookies.get(COOKIE, domain='test.local') is None
    # an unknown address gets the same answer as a wrong password
    user2 = new_user()
    await user2.open('/login')
    user2.find(marker='email').clear().type('nobody@example.org')
    user2.find(marker='password').clear().type('whatever it is')
    user2.find(marker='signin').click()
    await user2.should_see('E-mail or password is wrong.', retries=50)


async def test_sign_out_ends_the_session_on_the_server(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = await signed_in(new_user, panel, 1)
    token = user.http_client.cookies.get(COOKIE, domain='test.local')
    await user.open('/')
    await user.should_see('Machines', retries=50)
    await user.open('/logout')
    assert await panel.auth.session_user(token) is None
    async with panel.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(LoginSession))).scalar() == 0


async def test_first_admin_must_choose_a_password(lab, tmp_path: Path) -> None:  # noqa: ANN001
    new_user, panel = lab
    # the lab's staff have no password: at start a first admin was made with a one-time password in a file
    secret = tmp_path / 'data' / 'initial-admin-password.txt'
    assert oct(secret.stat().st_mode & 0o777) == '0o600'
    email, password = secret.read_text().split()
    assert email == panel.settings.web.default_admin_email
    user = new_user()
    await user.open('/login')
    user.find(marker='email').clear().type(email)
    user.find(marker='password').clear().type(password)
    user.find(marker='signin').click()
    await user.should_see('Please choose your own password', retries=50)
    await user.open('/')  # every page sends the admin back until the password is changed
    await user.should_see('Please choose your own password', retries=50)
    user.find(marker='new-password').clear().type('a brand new secret')
    user.find(marker='new-password-again').clear().type('a brand new secret')
    user.find(marker='save-password').click()
    await user.should_see('Machines', retries=50)


async def test_members_cannot_open_admin_only_pages_and_forbidden_explains(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = await signed_in(new_user, panel, 1)
    await user.open('/forbidden')
    await user.should_see('Your role does not allow this page.', retries=50)


async def test_password_reset_by_mail(lab, smtp: SmtpSink) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = new_user()
    await user.open('/forgot')
    user.find(marker='email').clear().type('GIULIA@example.org ')
    user.find(marker='send-reset').click()
    await user.should_see('If an account uses this address', retries=50)
    await panel.auth.settle()
    assert len(smtp.messages) == 1
    body = smtp.bodies()[0]
    link = re.search(r'(http://\S+/reset\?token=\S+)', body).group(1)
    assert link.startswith(panel.settings.web.base_url)
    # unknown addresses: the same answer, no mail
    await user.open('/forgot')
    user.find(marker='email').clear().type('nobody@example.org')
    user.find(marker='send-reset').click()
    await user.should_see('If an account uses this address', retries=50)
    await panel.auth.settle()
    assert len(smtp.messages) == 1

    path = link[len(panel.settings.web.base_url):]
    await user.open(path)
    user.find(marker='new-password').clear().type('my new password 42')
    user.find(marker='new-password-again').clear().type('my new password 42')
    user.find(marker='save-password').click()
    for _ in range(100):  # the page changes the password in the background
        try:
            await panel.auth.sign_in('giulia@example.org', 'my new password 42')
            break
        except AuthError:
            await asyncio.sleep(0.05)
    else:
        raise AssertionError('the new password does not work')
    # the link works once
    await user.open(path)
    user.find(marker='new-password').clear().type('another password 43')
    user.find(marker='new-password-again').clear().type('another password 43')
    user.find(marker='save-password').click()
    await user.should_see('This link is no longer valid', retries=50)
