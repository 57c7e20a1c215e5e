"""Bring the database schema to the newest revision (run at every start-up)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

ALEMBIC_DIR = Path(__file__).resolve().parents[2] / 'alembic'


def alembic_config(url: str) -> Config:
    cfg = Config(str(ALEMBIC_DIR / 'alembic.ini'))
    cfg.set_main_option('script_location', str(ALEMBIC_DIR))
    cfg.attributes['database_url'] = url
    return cfg


def _upgrade(connection: Connection, url: str, revision: str) -> None:
    cfg = alembic_config(url)
    cfg.attributes['connection'] = connection
    command.upgrade(cfg, revision)


async def upgrade(engine: AsyncEngine, url: str, revision: str = 'head') -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, url, revision)


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)
