"""Real-browser fixtures: the panel as a real process (`python main.py`), headless Chromium through selenium."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ..lab import create_lab
from ..support import Mosquitto, free_port, missing

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / 'test-artifacts'
CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
CHROME_ARGS = ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
               '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run')


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to the end on its own loop, in a thread, out of the way of pytest-asyncio's loop."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


async def _prepare(url: str, extra_machines: Sequence[str], first_names: dict[int, str],
                   passwords: dict[int, str] | None = None) -> None:
    """Add machines (ids 100, 101, ...), rename members and give them passwords, before the panel reads the lab."""
    from fabpanel.db.engine import create_engine, session_factory
    from fabpanel.db.models import Machine, Member

    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            session.add_all([Machine(id=100 + i, name=name, type_id=3) for i, name in enumerate(extra_machines)])
            for member_id, first_name in first_names.items():
                member = await session.get(Member, member_id)
                assert member is not None
                member.first_name = first_name
                session.add(member)
            for member_id, password in (passwords or {}).items():
                from fabpanel.services.auth import hash_password

                member = await session.get(Member, member_id)
                assert member is not None
                member.password_hash = hash_password(password)
                session.add(member)
            await session.commit()
    finally:
        await engine.dispose()


async def _open_session(url: str, member_id: int, out: list[str]) -> None:
    from fabpanel.db.engine import create_engine
    from fabpanel.mail.sender import Mailer
    from fabpanel.services.auth import AuthService
    from fabpanel.settings import EmailSettings

    engine = create_engine(url)
    try:
        out.append(await AuthService(engine, Mailer(EmailSettings()), 'http://test').open_session(member_id))
    finally:
        await engine.dispose()


class PanelProcess:
    """`python main.py` on a free loopback port, against a seeded SQLite lab and a private Mosquitto."""

    def __init__(self, workdir: Path, database_url: str, mqtt_port: int, smtp_port: int | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.mqtt_port = mqtt_port
        self.url = f'http://127.0.0.1:{self.port}'
        self.log = workdir / 'panel.log'
        # without pytest's variables: NiceGUI would take the panel for its own test harness
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(('PYTEST_', 'FABPANEL_'))}
        self.env = {**inherited, 'FABPANEL_CONFIG': str(workdir / 'fabpanel.toml'),
                    'FABPANEL_DATABASE__URL': database_url, 'FABPANEL_DATABASE__DATA_DIR': str(workdir / 'data'),
                    'FABPANEL_MQTT__BROKER': '127.0.0.1',
                    'FABPANEL_MQTT__PORT': str(mqtt_port),
                    'FABPANEL_MQTT__CLIENT_ID': f'fabpanel-ui-{uuid.uuid4().hex[:6]}',
                    'FABPANEL_WEB__HOST': '127.0.0.1', 'FABPANEL_WEB__PORT': str(self.port),
                    'FABPANEL_WEB__BASE_URL': self.url}
        if smtp_port is not None:
            self.env.update({'FABPANEL_EMAIL__SERVER': '127.0.0.1', 'FABPANEL_EMAIL__PORT': str(smtp_port),
                             'FABPANEL_EMAIL__USE_TLS': 'false'})
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        with self.log.open('ab') as log:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / 'main.py')], cwd=self.workdir, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT)
        self.wait_healthy(timeout)

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f'{self.url}/healthz', timeout=1) as r:  # noqa: S310 - our own loopback URL
                return json.loads(r.read())
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def session(self, member_id: int = 3) -> str:
        """A signed-in session of a lab member (default: Anna, staff) without going through the form."""
        out: list[str] = []
        _run(_open_session(self.env['FABPANEL_DATABASE__URL'], member_id, out))
        return out[0]

    def sign_in(self, driver: Any, member_id: int = 3) -> None:
        """Give a browser the session cookie of a lab member (the sign-in form has tests of its own)."""
        from fabpanel.ui.session import COOKIE

        driver.get(self.url + '/healthz')  # a cookie can only be set for the origin the browser is on
        driver.add_cookie({'name': COOKIE, 'value': self.session(member_id), 'path': '/', 'httpOnly': True})

    def get(self, path: str, member_id: int | None = 3, **headers: str) -> str:
        """The HTML the server sends (what a browser receives before any script runs), signed in by default."""
        from fabpanel.ui.session import COOKIE

        if member_id is not None:
            headers['Cookie'] = f'{COOKIE}={self.session(member_id)}'
        request = urllib.request.Request(self.url + path, headers=headers)  # noqa: S310 - our loopback URL
        with urllib.request.urlopen(request, timeout=5) as r:  # noqa: S310 - our own loopback URL
            return r.read().decode()

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f'the panel exited with {self.proc.returncode}:\n{self.log_tail()}')
            body = self.health()
            if body and body.get('ok'):
                return
            time.sleep(0.05)
        raise TimeoutError(f'the panel is not healthy after {timeout} s:\n{self.log_tail()}')

    def log_tail(self, lines: int = 40) -> str:
        return '\n'.join(self.log.read_text(errors='replace').splitlines()[-lines:]) if self.log.exists() else ''

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def make_panel(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Callable[..., PanelProcess]]:
    """Start the real panel on the known lab; optionally add machines (by name) and rename members first."""
    started: list[PanelProcess] = []

    def make(extra_machines: Sequence[str] = (), first_names: dict[int, str] | None = None,
             passwords: dict[int, str] | None = None, smtp_port: int | None = None) -> PanelProcess:
        workdir = tmp_path / f'panel{len(started)}'
        workdir.mkdir()
        url = f'sqlite:///{workdir}/fabpanel.db'
        _run(create_lab(url))
        if extra_machines or first_names or passwords:
            _run(_prepare(url, extra_machines, first_names or {}, passwords))
        panel = PanelProcess(workdir, url, mosquitto.port, smtp_port)
        started.append(panel)
        panel.start()
        return panel

    yield make
    for panel in started:
        panel.stop()


@pytest.fixture
def panel(make_panel: Callable[..., PanelProcess]) -> PanelProcess:
    return make_panel()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Callable[..., object]]:
    """A factory of headless Chromium drivers: browser(width, height, mobile=False, lang='en')."""
    if not (shutil.which('chromium') or Path(CHROMIUM).exists()) or not Path(CHROMEDRIVER).exists():
        missing('chromium', 'apt-get install chromium chromium-driver')
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers: list[webdriver.Chrome] = []

    def make(width: int = 1280, height: int = 800, *, mobile: bool = False, lang: str = 'en') -> webdriver.Chrome:
        options = webdriver.ChromeOptions()
        for arg in CHROME_ARGS:
            options.add_argument(arg)
        options.add_argument(f'--user-data-dir={tmp_path / f"chromium{len(drivers)}"}')
        options.add_argument(f'--lang={lang}')
        options.add_argument(f'--window-size={width},{height}')
        options.add_experimental_option('prefs', {'intl.accept_languages': lang})
        options.binary_location = CHROMIUM
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        drivers.append(driver)
        # the viewport exactly (a headless window's chrome would eat some height), as a phone when mobile
        driver.execute_cdp_cmd('Emulation.setDeviceMetricsOverride', {
            'width': width, 'height': height, 'deviceScaleFactor': 2 if mobile else 1, 'mobile': mobile})
        if mobile:
            driver.execute_cdp_cmd('Emulation.setTouchEmulationEnabled', {'enabled': True, 'maxTouchPoints': 5})
        driver.set_script_timeout(10)
        return driver

    yield make
    for driver in drivers:
        try:
            driver.quit()
        except Exception:  # noqa: BLE001, S110 - a crashed browser is already gone
            pass


@pytest.fixture(scope='session')
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
