"""The async engine: URL mapping to async drivers, SQLite tuning, PostgreSQL connection."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from fabpanel.db.engine import async_url, create_engine, is_sqlite, sqlite_path, sync_url
from fabpanel.db.migrate import upgrade


@pytest.mark.parametrize(('url', 'expected'), [
    ('sqlite:///data/fabpanel.db', 'sqlite+aiosqlite:///data/fabpanel.db'),
    ('sqlite:////var/lib/fabpanel/lab.db', 'sqlite+aiosqlite:////var/lib/fabpanel/lab.db'),
    ('sqlite+pysqlite:///lab.db', 'sqlite+aiosqlite:///lab.db'),
    ('sqlite+aiosqlite:///lab.db', 'sqlite+aiosqlite:///lab.db'),
    ('postgresql://fab:pw@db.lab:5432/fabpanel', 'postgresql+asyncpg://fab:pw@db.lab:5432/fabpanel'),
    ('postgres://fab:pw@db.lab/fabpanel', 'postgresql+asyncpg://fab:pw@db.lab/fabpanel'),
    ('postgresql+psycopg2://fab:pw@db.lab/fabpanel', 'postgresql+asyncpg://fab:pw@db.lab/fabpanel'),
    ('postgresql+psycopg://fab@db.lab/fabpanel', 'postgresql+asyncpg://fab@db.lab/fabpanel'),
    ('postgresql+asyncpg://fab@db.lab/fabpanel', 'postgresql+asyncpg://fab@db.lab/fabpanel'),
    # a password with URL-escaped characters survives (rendered, not hidden)
    ('postgresql://fab:p%40ss%2Fw@db.lab/fabpanel', 'postgresql+asyncpg://fab:p%40ss%2Fw@db.lab/fabpanel'),
    ('  sqlite:///x.db  ', 'sqlite+aiosqlite:///x.db'),
])
def test_async_url_chooses_the_async_driver(url: str, expected: str) -> None:
    assert async_url(url) == expected


def test_other_databases_are_left_for_validation_to_refuse() -> None:
    assert async_url('mysql://root@localhost/lab') == 'mysql://root@localhost/lab'


def test_helpers() -> None:
    assert sync_url('postgres://fab:pw@db/lab') == 'postgresql://fab:pw@db/lab'
    assert sync_url('sqlite+aiosqlite:///x.db') == 'sqlite:///x.db'
    assert is_sqlite('sqlite:///x.db') and not is_sqlite('postgresql://h/db')
    assert sqlite_path('sqlite:///data/x.db') == Path('data/x.db')
    assert sqlite_path('sqlite:////abs/x.db') == Path('/abs/x.db')
    assert sqlite_path('sqlite://') is None and sqlite_path('postgresql://h/db') is None


async def test_sqlite_runs_in_wal_with_foreign_keys_on_every_connection(tmp_path: Path) -> None:
    url = f'sqlite:///{tmp_path}/new/folder/lab.db'
    engine = create_engine(url)
    try:
        # two connections at once: the pragmas are per connection, each must have them
        async with engine.connect() as one, engine.connect() as two:
            for conn in (one, two):
                assert (await conn.exec_driver_sql('PRAGMA journal_mode')).scalar() == 'wal'
                assert (await conn.exec_driver_sql('PRAGMA foreign_keys')).scalar() == 1
                assert (await conn.exec_driver_sql('PRAGMA synchronous')).scalar() == 1  # NORMAL
                assert (await conn.exec_driver_sql('PRAGMA busy_timeout')).scalar() == 30000
        assert (tmp_path / 'new' / 'folder' / 'lab.db').exists()
        assert (tmp_path / 'new' / 'folder' / 'lab.db-wal').exists()
    finally:
        await engine.dispose()


async def test_sqlite_enforces_foreign_keys(tmp_path: Path) -> None:
    url = f'sqlite:///{tmp_path}/lab.db'
    engine = create_engine(url)
    try:
        await upgrade(engine, url)
        with pytest.raises(IntegrityError, match='FOREIGN KEY'):
            async with engine.begin() as conn:
                await conn.execute(sa.text("INSERT INTO machine (id, name, type_id, blocked, usage_seconds) "
                                           "VALUES (1, 'orphan', 42, 0, 0)"))
    finally:
        await engine.dispose()


async def test_the_database_connects(database_url: str) -> None:
    """Both backends: the plain URL the settings hold is enough to connect."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text('SELECT 1 + 1'))).scalar() == 2
            expected = 'sqlite' if database_url.startswith('sqlite') else 'postgresql'
            assert conn.dialect.name == expected
            assert conn.dialect.driver == ('aiosqlite' if expected == 'sqlite' else 'asyncpg')
    finally:
        await engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize('database_url', ['postgres'], indirect=True)
async def test_postgres_scheme_alias_connects(database_url: str) -> None:
    engine = create_engine(database_url.replace('postgresql://', 'postgres://', 1))
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text('SELECT current_database()'))).scalar() == database_url.rsplit('/')[-1]
    finally:
        await engine.dispose()


async def test_sqlite_checkpoints_run_outside_commits(tmp_path: Path) -> None:
    """Commits never checkpoint (an fsync a board's answer would wait for); the background checkpoint does."""
    import sqlite3

    from fabpanel.db.engine import checkpoint_sqlite

    path = tmp_path / 'ck.db'
    engine = create_engine(f'sqlite:///{path}')
    try:
        async with engine.begin() as conn:
            assert (await conn.exec_driver_sql('PRAGMA wal_autocheckpoint')).scalar() == 0
            await conn.exec_driver_sql('CREATE TABLE t (x TEXT)')
            for _ in range(200):
                await conn.exec_driver_sql("INSERT INTO t VALUES (hex(randomblob(2000)))")
        checkpoint_sqlite(path)
        with sqlite3.connect(path) as db:
            busy, log_frames, checkpointed = db.execute('PRAGMA wal_checkpoint(PASSIVE)').fetchone()
        assert busy == 0 and log_frames == checkpointed  # everything in the log is in the database file
    finally:
        await engine.dispose()
