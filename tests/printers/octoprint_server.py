"""A real OctoPrint (PyPI `octoprint`, in its own venv) with its virtual printer, for tests and benchmarks.

Usable outside pytest (`bench/printers.py` imports it):

    ensure_octoprint_venv(*, install: bool = True) -> Path
        The venv directory ($FABPANEL_OCTOPRINT_VENV, default `<repo>/.venv-octoprint`), created and
        `pip install octoprint` into it when its `bin/octoprint` is missing. Raises OctoPrintMissing when
        the install fails (or install=False and it is absent).

    start_octoprint(basedir: Path, port: int, *, error_injection: bool = False, autoconnect: bool = True,
                    virtual_printer: dict | None = None, venv: Path | None = None,
                    timeout: float = 90.0) -> OctoPrintServer
        Writes basedir/config.yaml (setup wizard done, no online checks, tracking, software update or
        plugin repository, G-code analysis off, virtual printer on and fast) and basedir/users.yaml (user
        `fabpanel`, admin, with a random API key), starts `octoprint serve` on 127.0.0.1:port and returns
        once /api/version answers with the key. `error_injection=False` clears the virtual printer's
        simulated errors on lines 100-115; `virtual_printer` overrides its settings (e.g. {'sendBusy': True}).
        The handle has url, api_key, username, port, basedir, log_path; stop(), start() (again, same port
        and key), wait_operational(timeout) (the virtual printer connected), wait_idle(timeout) (connected
        and no job: cancels one, reconnects after an error), request(method, path, body) (a synchronous API
        call), `proc` (the Popen, for its pid and CPU times), and is a context manager.

Speed: the virtual printer sleeps through each move at a tenth of its real duration and heats at 10 °C/s; a
file that starts with `M220 S10000` and has no M109/M190 streams as fast as OctoPrint can send. The virtual
printer runs inside OctoPrint's process (its CPU counts as OctoPrint's) and logs every line to
basedir/logs/plugin_virtual_printer_serial.log (it cannot be turned off).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
USERNAME = 'fabpanel'
# Bundled plugins that phone home or do background work a test neither needs nor wants.
DISABLED_PLUGINS = [
    'tracking',
    'softwareupdate',
    'announcements',
    'pluginmanager',
    'discovery',
    'errortracking',
    'achievements',
    'backup',
    'health_check',
    'gcodeviewer',
    'firmware_check',
    'file_check',
    'pi_support',
]


class OctoPrintMissing(RuntimeError):
    """OctoPrint is not installed and could not be installed."""


def octoprint_venv_path() -> Path:
    return Path(os.environ.get('FABPANEL_OCTOPRINT_VENV') or REPO / '.venv-octoprint')


def ensure_octoprint_venv(*, install: bool = True) -> Path:
    venv = octoprint_venv_path()
    if (venv / 'bin' / 'octoprint').exists():
        return venv
    if not install:
        raise OctoPrintMissing(f'no OctoPrint in {venv} (bash tests/run.sh installs it)')
    try:
        subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True, capture_output=True, timeout=120)
        subprocess.run(
            [str(venv / 'bin' / 'pip'), 'install', '-q', '--disable-pip-version-check', 'octoprint'],
            check=True,
            capture_output=True,
            timeout=600,
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise OctoPrintMissing(f'installing OctoPrint into {venv} failed: {e}') from e
    return venv


def _password_hash(password: str) -> str:
    """passlib's `$pbkdf2-sha256$` format, which OctoPrint accepts for users.yaml (computed here to stay fast)."""
    salt = secrets.token_bytes(16)
    rounds = 29000
    digest = hashlib.pbkdf2_hmac('sha256', password.encode(), salt, rounds)

    def ab64(b: bytes) -> str:
        return base64.b64encode(b).decode().rstrip('=').replace('+', '.')

    return f'$pbkdf2-sha256${rounds}${ab64(salt)}${ab64(digest)}'


def _config(port: int, *, error_injection: bool, autoconnect: bool, virtual_printer: dict[str, Any]) -> dict:
    printer: dict[str, Any] = {'enabled': True, 'waitInterval': 1.0, 'throttle': 0.0, 'simulateReset': True}
    if not error_injection:
        printer['simulated_errors'] = []
    printer.update(virtual_printer)
    return {
        'server': {
            'firstRun': False,
            'host': '127.0.0.1',
            'port': port,
            'secretKey': secrets.token_hex(16),
            'onlineCheck': {'enabled': False},
            'pluginBlacklist': {'enabled': False},
            'pythonEolCheck': {'enabled': False},
            'ipCheck': {'enabled': False},
            'seenWizards': {'corewizard': 4, 'backup': None, 'tracking': None},
        },
        'accessControl': {'autologinLocal': False},
        'gcodeAnalysis': {'runAt': 'never'},
        'serial': {'port': 'VIRTUAL', 'baudrate': 115200, 'autoconnect': autoconnect, 'log': False},
        'devel': {'cache': {'preemptive': False}, 'webassets': {'clean_on_startup': False}},
        'plugins': {'_disabled': DISABLED_PLUGINS, 'virtual_printer': printer, 'tracking': {'enabled': False}},
    }


@dataclass(kw_only=True)
class OctoPrintServer:
    """One `octoprint serve` process on loopback. Stop and start again keep port, base dir and API key."""

    venv: Path
    basedir: Path
    port: int
    api_key: str
    username: str = USERNAME
    timeout: float = 90.0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    @property
    def log_path(self) -> Path:
        return self.basedir / 'serve.log'

    def start(self) -> None:
        cmd = [
            str(self.venv / 'bin' / 'octoprint'),
            'serve',
            '--iknowwhatimdoing',
            '--host',
            '127.0.0.1',
            '--port',
            str(self.port),
            '--basedir',
            str(self.basedir),
        ]
        env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
        env.pop('VIRTUAL_ENV', None)
        with open(self.log_path, 'ab') as log:  # the child keeps its own copy of the handle
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            self._wait_api()
        except BaseException:
            self.stop()
            raise

    def _wait_api(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f'OctoPrint exited with {self.proc.returncode}: {self._log_tail()}')
            try:
                if self.get('/api/version').get('server'):
                    return
            except (OSError, ValueError, http.client.HTTPException):
                pass  # not listening yet, or still starting up
            time.sleep(0.25)
        raise TimeoutError(f'OctoPrint did not answer within {self.timeout:.0f} s: {self._log_tail()}')

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors='replace')[-2000:]
        except OSError:
            return ''

    def get(self, path: str) -> dict[str, Any]:
        return self.request('GET', path)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A small synchronous API call (for setup in tests and benchmarks); {} for an empty answer."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {'X-Api-Key': self.api_key, 'Content-Type': 'application/json'}
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)  # noqa: S310
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - a loopback http URL built here
            raw = resp.read()
        return json.loads(raw) if raw else {}

    def wait_operational(self, timeout: float = 30.0) -> None:
        """Until OctoPrint is connected to its virtual printer and ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.get('/api/connection')['current']['state']
            if state == 'Operational':
                return
            if state in {'Closed', 'Offline', 'Error', 'Offline after error'}:
                self.request('POST', '/api/connection', {'command': 'connect', 'port': 'VIRTUAL', 'baudrate': 115200})
            time.sleep(0.25)
        raise TimeoutError('the virtual printer did not become operational')

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until the printer is connected and no job runs: cancels a job, reconnects after an error."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.get('/api/job')['state']
            if state == 'Operational':
                return
            if state.startswith(('Offline', 'Error', 'Closed')):
                self.wait_operational(max(deadline - time.monotonic(), 1.0))
                continue
            if state.startswith(('Printing', 'Paused', 'Pausing', 'Starting', 'Resuming')):
                try:
                    self.request('POST', '/api/job', {'command': 'cancel'})
                except urllib.error.HTTPError as e:
                    if e.code != 409:  # 409: the state changed meanwhile
                        raise
            time.sleep(0.2)
        raise TimeoutError('OctoPrint did not become idle')

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> OctoPrintServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_octoprint(
    basedir: Path,
    port: int,
    *,
    error_injection: bool = False,
    autoconnect: bool = True,
    virtual_printer: dict[str, Any] | None = None,
    venv: Path | None = None,
    timeout: float = 90.0,
) -> OctoPrintServer:
    basedir.mkdir(parents=True, exist_ok=True)
    api_key = secrets.token_hex(16).upper()
    config = _config(
        port, error_injection=error_injection, autoconnect=autoconnect, virtual_printer=virtual_printer or {}
    )
    users = {
        '_version': 2,
        USERNAME: {
            'password': _password_hash(secrets.token_urlsafe(16)),
            'active': True,
            'groups': ['admins', 'users'],
            'permissions': [],
            'apikey': api_key,
            'settings': {},
        },
    }
    # JSON is YAML: no YAML library needed on our side
    (basedir / 'config.yaml').write_text(json.dumps(config, indent=1))
    (basedir / 'users.yaml').write_text(json.dumps(users, indent=1))
    server = OctoPrintServer(
        venv=venv or ensure_octoprint_venv(), basedir=basedir, port=port, api_key=api_key, timeout=timeout
    )
    server.start()
    return server
