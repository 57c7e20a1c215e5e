"""Bring the database schema to the newest revision (run at every start-up).

On SQLite a migration runs in one explicit transaction with foreign keys off, as SQLite's own procedure for
schema changes asks (https://sqlite.org/lang_altertable.html#otheralter):

* Python's sqlite3 driver does not begin a transaction before DDL, so without an explicit BEGIN every
  CREATE/DROP/ALTER is committed on its own and a migration that fails half-way leaves a half-migrated file
  that the next start cannot migrate either. Here it is all or nothing.
* Alembic's batch mode changes a table by copying it and dropping the original. With foreign keys on, dropping
  a table other rows point at (machine, member, ...) fails, so any batch migration of such a table would stop
  the panel from starting. Foreign keys are switched off for the migration and checked
  (``PRAGMA foreign_key_check``) before the commit instead; a violation rolls everything back.

PostgreSQL has transactional DDL: the migration runs in one ordinary transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fabpanel.db.engine import is_sqlite

ALEMBIC_DIR = Path(__file__).resolve().parents[2] / 'alembic'


class MigrationError(RuntimeError):
    """A migration would leave the database inconsistent; nothing was changed."""


def alembic_config(url: str) -> Config:
    cfg = Config(str(ALEMBIC_DIR / 'alembic.ini'))
    cfg.set_main_option('script_location', str(ALEMBIC_DIR))
    cfg.attributes['database_url'] = url
    return cfg


def head_revision(url: str = 'sqlite://') -> str | None:
    """The newest revision in the migration scripts."""
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def _run(connection: Connection, url: str, action: Callable[[Config], None]) -> None:
    cfg = alembic_config(url)
    cfg.attributes['connection'] = connection
    action(cfg)


def _sqlite_foreign_key_problems(connection: Connection) -> list[tuple]:
    return [tuple(row) for row in connection.exec_driver_sql('PRAGMA foreign_key_check').fetchall()]


async def run_sqlite_migration(conn: AsyncConnection, fn: Callable[[Connection], None]) -> None:
    """Run `fn` (alembic's work) on SQLite in one explicit transaction with foreign keys off, checked at the end."""
    # AUTOCOMMIT hands transaction control to us: PRAGMA foreign_keys only works outside a transaction
    await conn.execution_options(isolation_level='AUTOCOMMIT')
    await conn.exec_driver_sql('PRAGMA foreign_keys=OFF')
    try:
        await conn.exec_driver_sql('BEGIN IMMEDIATE')
        try:
            await conn.run_sync(fn)
            problems = await conn.run_sync(_sqlite_foreign_key_problems)
            if problems:
                raise MigrationError(f'the migration would break foreign keys (table, rowid, parent, fk): '
                                     f'{problems[:10]}; nothing was changed')
        except BaseException:
            await conn.exec_driver_sql('ROLLBACK')
            raise
        await conn.exec_driver_sql('COMMIT')
    finally:
        await conn.exec_driver_sql('PRAGMA foreign_keys=ON')


async def _migrate(engine: AsyncEngine, url: str, action: Callable[[Config], None]) -> None:
    if is_sqlite(url):
        async with engine.connect() as conn:
            await run_sqlite_migration(conn, partial(_run, url=url, action=action))
        return
    async with engine.begin() as conn:
        await conn.run_sync(_run, url, action)


async def upgrade(engine: AsyncEngine, url: str, revision: str = 'head') -> None:
    await _migrate(engine, url, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(engine: AsyncEngine, url: str, revision: str) -> None:
    await _migrate(engine, url, lambda cfg: command.downgrade(cfg, revision))


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)
