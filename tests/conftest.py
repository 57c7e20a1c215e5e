"""Shared fixtures: real Mosquitto, SQLite or PostgreSQL databases, a running panel core."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from fabpanel.app import Panel
from fabpanel.db.engine import create_engine
from fabpanel.settings import Settings, load_settings

from .support import POSTGRES_URL, Mosquitto, SmtpSink, missing

pytest_plugins = ["nicegui.testing.user_plugin"]  # NiceGUI storage in a temp dir, `User` support

SHARED = Path(__file__).resolve().parents[1].parent / 'shared'


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


def _postgres_database() -> str:
    """A fresh database on the PostgreSQL server for one test; dropped afterwards by the fixture."""
    import asyncpg  # noqa: F401 - fail early with a clear import error

    return f'fabpanel_test_{uuid.uuid4().hex[:10]}'


async def _pg_admin(sql: str) -> None:
    engine = create_engine(POSTGRES_URL)
    try:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level='AUTOCOMMIT')
            await conn.execute(sa.text(sql))
    finally:
        await engine.dispose()


@pytest.fixture(params=['sqlite', pytest.param('postgres', marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Every test using this runs on SQLite and on PostgreSQL."""
    if request.param == 'sqlite':
        yield f'sqlite:///{tmp_path}/fabpanel.db'
        return
    name = _postgres_database()
    try:
        await _pg_admin(f'CREATE DATABASE {name}')
    except Exception as e:  # noqa: BLE001
        missing('PostgreSQL', f'{POSTGRES_URL}: {e}')
    base = POSTGRES_URL.rsplit('/', 1)[0]
    yield f'{base}/{name}'
    await _pg_admin(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f'sqlite:///{tmp_path}/fabpanel.db'


def make_settings(tmp_path: Path, database_url: str, mqtt_port: int = 1, smtp_port: int | None = None,
                  **mqtt: object) -> Settings:
    env = {'FABPANEL_DATABASE__URL': database_url, 'FABPANEL_DATABASE__DATA_DIR': str(tmp_path / 'data'),
           'FABPANEL_MQTT__BROKER': '127.0.0.1',
           'FABPANEL_MQTT__PORT': str(mqtt_port), 'FABPANEL_MQTT__CLIENT_ID': f'fabpanel-test-{uuid.uuid4().hex[:6]}'}
    if smtp_port is not None:
        env.update({'FABPANEL_EMAIL__SERVER': '127.0.0.1', 'FABPANEL_EMAIL__PORT': str(smtp_port),
                    'FABPANEL_EMAIL__USE_TLS': 'false'})
    for key, value in mqtt.items():
        env[f'FABPANEL_MQTT__{key.upper()}'] = str(value)
    return load_settings(tmp_path / 'fabpanel.toml', environ=env)


async def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02) -> None:  # noqa: ANN001, ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError('condition not met in time')
        await asyncio.sleep(interval)


async def start_panel(settings: Settings) -> Panel:
    panel = Panel(settings)
    await panel.start()
    assert panel.gateway is not None
    await wait_for(lambda: panel.live.gateway.connected and not panel.gateway._draining, timeout=10)
    return panel


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    server = SmtpSink()
    server.start()
    yield server
    server.stop()
