"""`python main.py create-admin EMAIL` for scripted set-ups: the password comes from standard input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fabpanel.db.engine import create_engine
from fabpanel.mail.sender import Mailer
from fabpanel.services.auth import AuthError, AuthService
from fabpanel.settings import EmailSettings

from .test_cli import MAIN, panel_env


def _create(tmp_path: Path, email: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(MAIN), 'create-admin', email], cwd=tmp_path, env=panel_env(tmp_path),
                          input=password + '\n', capture_output=True, text=True, timeout=60)


async def test_create_admin_reads_the_password_from_stdin(tmp_path: Path) -> None:
    result = _create(tmp_path, 'Boss@Example.org', 'a long enough secret')
    assert result.returncode == 0, result.stderr
    assert 'a long enough secret' not in result.stdout + result.stderr
    engine = create_engine(f'sqlite:///{tmp_path}/fabpanel.db')
    try:
        auth = AuthService(engine, Mailer(EmailSettings()), 'http://test')
        user = await auth.sign_in('boss@example.org', 'a long enough secret')
        assert user.may_administer and not user.must_change_password
        try:
            await auth.sign_in('boss@example.org', 'wrong')
            raise AssertionError('a wrong password signed in')
        except AuthError:
            pass
    finally:
        await engine.dispose()


def test_create_admin_refuses_weak_passwords_and_bad_addresses(tmp_path: Path) -> None:
    weak = _create(tmp_path, 'boss@example.org', 'short')
    assert weak.returncode == 2 and 'at least 10 characters' in weak.stderr
    bad = _create(tmp_path, 'not-an-address', 'a long enough secret')
    assert bad.returncode == 2 and 'not an e-mail address' in bad.stderr
