"""`python main.py`: settings errors and a taken broker port stop it with a clear message; `migrate`; the embedded
broker serves the boards."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from fabpanel.boards.embedded import BrokerPortTaken, EmbeddedBroker, port_free
from fabpanel.boards.simulator import SimulatedBoard
from fabpanel.db import migrate
from fabpanel.db.engine import create_engine
from fabpanel.settings import load_settings

from .conftest import start_panel
from .lab import GIULIA, PRINTER, UNKNOWN, create_lab
from .support import free_port

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / 'main.py'


def panel_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The process environment for a panel of one test: its own settings file, database and loopback ports."""
    # PYTEST_CURRENT_TEST would make NiceGUI think it runs inside pytest
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(('FABPANEL_', 'PYTEST_'))}
    env.update({
        'FABPANEL_CONFIG': str(tmp_path / 'fabpanel.toml'),
        'FABPANEL_DATABASE__URL': f'sqlite:///{tmp_path}/fabpanel.db',
        'FABPANEL_MQTT__EMBEDDED_BIND': '127.0.0.1',
        'FABPANEL_WEB__HOST': '127.0.0.1',
        'FABPANEL_WEB__PORT': str(free_port()),
    })
    env.update(settings)
    return env


def run_main(tmp_path: Path, env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(MAIN), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port some other program listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        s.listen()
        yield int(s.getsockname()[1])


# ---- the embedded broker's port is taken ------------------------------------------------------------------------

def test_a_taken_broker_port_stops_the_panel_naming_the_settings(tmp_path: Path, taken_port: int) -> None:
    env = panel_env(tmp_path, FABPANEL_MQTT__PORT=str(taken_port))
    result = run_main(tmp_path, env)
    assert result.returncode == 2, result.stderr
    err = result.stderr
    assert f'port {taken_port} is already in use' in err
    assert 'FABPANEL_MQTT__PORT' in err and '[MQTT] port' in err  # either choose another port ...
    assert '[MQTT] broker' in err and 'FABPANEL_MQTT__BROKER' in err  # ... or use the broker that runs there
    assert str(tmp_path / 'fabpanel.toml') in err  # the file to edit
    assert 'Traceback' not in err
    assert not (tmp_path / 'fabpanel.db').exists()  # stopped before touching anything


def test_a_taken_web_port_stops_the_panel_naming_the_setting(tmp_path: Path, taken_port: int) -> None:
    env = panel_env(tmp_path, FABPANEL_WEB__PORT=str(taken_port), FABPANEL_MQTT__PORT=str(free_port()))
    result = run_main(tmp_path, env)
    assert result.returncode == 2, result.stderr
    assert f'port {taken_port} is already in use' in result.stderr
    assert '[web] port' in result.stderr and 'FABPANEL_WEB__PORT' in result.stderr
    assert 'Traceback' not in result.stderr


def test_the_embedded_broker_refuses_a_taken_port(taken_port: int) -> None:
    assert not port_free(taken_port, '127.0.0.1')
    with pytest.raises(BrokerPortTaken, match='FABPANEL_MQTT__PORT'):
        asyncio.run(EmbeddedBroker(taken_port, '127.0.0.1').start())


def test_port_free() -> None:
    port = free_port()
    assert port_free(port, '127.0.0.1')
    with socket.socket() as s:
        s.bind(('127.0.0.1', port))
        s.listen()
        assert not port_free(port, '127.0.0.1')
    assert port_free(port, '127.0.0.1')


# ---- invalid settings -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(('file', 'env', 'needles'), [
    (None, {'FABPANEL_MQTT__PORT': 'abc'}, ['FABPANEL_MQTT__PORT', '[MQTT] port', 'whole number']),
    (None, {'FABPANEL_EMAIL__USE_TLS': 'perhaps'}, ['FABPANEL_EMAIL__USE_TLS', '[email] use_tls']),
    ('[MQTT]\ntopic = "machine/1"\n', {}, ['[MQTT] topic', 'fabpanel.toml']),
    ('[MQTT]\nprot = 1884\n', {}, ['[MQTT] prot', "did you mean 'port'"]),
    ('[database]\nurl = "mysql://root@localhost/lab"\n', {}, ['[database] url']),
    ('[MQTT\n', {}, ['not valid TOML', 'fabpanel.toml']),
])
@pytest.mark.parametrize('command', [[], ['migrate']], ids=['run', 'migrate'])
def test_invalid_settings_stop_the_panel_naming_the_key(tmp_path: Path, file: str | None, env: dict[str, str],
                                                        needles: list[str], command: list[str]) -> None:
    environ = panel_env(tmp_path, **env)
    if file is not None:
        (tmp_path / 'fabpanel.toml').write_text(file)
        del environ['FABPANEL_DATABASE__URL']  # the file is what is being checked
    result = run_main(tmp_path, environ, *command)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('fabpanel: '), result.stderr
    for needle in needles:
        assert needle in last, f'{needle!r} not in {last!r}'
    assert 'Traceback' not in result.stderr


# ---- migrate ----------------------------------------------------------------------------------------------------

async def test_migrate_creates_the_database(tmp_path: Path, database_url: str) -> None:
    env = panel_env(tmp_path, FABPANEL_DATABASE__URL=database_url)
    result = await asyncio.to_thread(run_main, tmp_path, env, 'migrate')
    assert result.returncode == 0, result.stderr
    assert 'database is up to date' in result.stdout
    config = tmp_path / 'fabpanel.toml'  # a first run: the settings file was written too
    assert config.exists() and stat.S_IMODE(config.stat().st_mode) == 0o600
    if database_url.startswith('sqlite'):
        assert (tmp_path / 'fabpanel.db').exists()
    engine = create_engine(database_url)
    try:
        assert await migrate.current_revision(engine) == migrate.head_revision()
    finally:
        await engine.dispose()


def test_migrate_uses_the_file_given_by_config(tmp_path: Path) -> None:
    other = tmp_path / 'other.toml'
    other.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/other.db"\n')
    env = panel_env(tmp_path)
    del env['FABPANEL_DATABASE__URL']
    result = run_main(tmp_path, env, '--config', str(other), 'migrate')
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'other.db').exists() and not (tmp_path / 'fabpanel.db').exists()
    assert not (tmp_path / 'fabpanel.toml').exists()  # --config beats FABPANEL_CONFIG


def test_migrate_reports_an_unreachable_database_without_its_password(tmp_path: Path) -> None:
    url = f'postgresql://fab:s3cretpw@127.0.0.1:{free_port()}/lab'  # nothing listens there
    result = run_main(tmp_path, panel_env(tmp_path, FABPANEL_DATABASE__URL=url), 'migrate')
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('fabpanel: cannot migrate the database') and '[database] url' in last
    assert 's3cretpw' not in result.stderr and '127.0.0.1' in last
    assert 'Traceback' not in result.stderr


# ---- a fresh install: python main.py with nothing else ----------------------------------------------------------

async def _mqtt_connects(port: int, deadline: float) -> None:
    while True:
        try:
            async with aiomqtt.Client('127.0.0.1', port, identifier='probe', timeout=2):
                return
        except aiomqtt.MqttError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def _http_status(proc: subprocess.Popen[bytes], url: str, deadline: float) -> int:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - a loopback URL of the test
                return int(response.status)
        except OSError:
            assert proc.poll() is None, 'the panel stopped'
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_python_main_py_runs_with_the_embedded_broker(tmp_path: Path) -> None:
    """The defaults of a fresh install (embedded broker, SQLite) run; only ports and addresses are the test's."""
    mqtt_port = free_port()
    env = panel_env(tmp_path, FABPANEL_MQTT__PORT=str(mqtt_port))
    del env['FABPANEL_DATABASE__URL']  # the default, under the working directory
    with open(tmp_path / 'panel.log', 'w+') as log:
        proc = subprocess.Popen([sys.executable, str(MAIN)], cwd=tmp_path, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            assert _http_status(proc, f'http://127.0.0.1:{env["FABPANEL_WEB__PORT"]}/', deadline) == 200
            asyncio.run(_mqtt_connects(mqtt_port, deadline))
            assert proc.poll() is None
            assert (tmp_path / 'data' / 'fabpanel.db').exists()
            assert (tmp_path / 'fabpanel.toml').exists()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.seek(0)
            output = log.read()
    assert 'Traceback' not in output, output
    assert f'embedded MQTT broker listening on 127.0.0.1:{mqtt_port}' in output, output


# ---- the embedded broker serves the boards ----------------------------------------------------------------------

async def test_the_embedded_broker_serves_the_gateway(tmp_path: Path, sqlite_url: str) -> None:
    await create_lab(sqlite_url)
    port = free_port()
    settings = load_settings(tmp_path / 'fabpanel.toml', environ={
        'FABPANEL_DATABASE__URL': sqlite_url, 'FABPANEL_DATABASE__DATA_DIR': str(tmp_path / 'data'),
        'FABPANEL_MQTT__BROKER': 'embedded', 'FABPANEL_MQTT__PORT': str(port),
        'FABPANEL_MQTT__EMBEDDED_BIND': '127.0.0.1'})
    assert settings.mqtt.embedded
    panel = await start_panel(settings)
    try:
        assert panel.broker is not None and panel.broker.address == f'127.0.0.1:{port}'
        async with SimulatedBoard(PRINTER, '127.0.0.1', port) as board:
            assert await board.checkuser(GIULIA) == {'request_ok': True, 'is_valid': True, 'name': 'Giulia',
                                                     'missing_auth': False, 'level': 1}
            assert (await board.checkuser(UNKNOWN))['is_valid'] is False
    finally:
        await panel.stop()
    assert port_free(port, '127.0.0.1')  # stopping the panel stops its broker
