"""Async engine creation: maps plain database URLs to their async drivers and tunes SQLite."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import threading
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession


def async_url(url: str) -> str:
    """The URL with fabpanel's async driver: `sqlite:///x.db` -> `sqlite+aiosqlite:///x.db`,
    `postgresql://` (also `postgres://` and any sync driver such as `+psycopg2`) -> `postgresql+asyncpg://`.
    Other databases are returned unchanged (settings validation refuses them)."""
    url = url.strip()
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == 'sqlite':
        u = u.set(drivername='sqlite+aiosqlite')
    elif backend in ('postgresql', 'postgres'):
        u = u.set(drivername='postgresql+asyncpg')
    return u.render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    """The URL alembic's offline tools and reports show: driver part removed."""
    u = make_url(async_url(url))
    return u.set(drivername=u.get_backend_name()).render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(async_url(url)).get_backend_name() == 'sqlite'


def sqlite_path(url: str) -> Path | None:
    u = make_url(async_url(url))
    if u.get_backend_name() != 'sqlite' or not u.database or u.database == ':memory:':
        return None
    return Path(u.database)


def create_engine(url: str, echo: bool = False) -> AsyncEngine:
    url = async_url(url)
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={'timeout': 30})

        @event.listens_for(engine.sync_engine, 'connect')
        def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute('PRAGMA journal_mode=WAL')
            cur.execute('PRAGMA synchronous=NORMAL')  # WAL + NORMAL: durable across app crashes, fast commits
            cur.execute('PRAGMA foreign_keys=ON')
            cur.execute('PRAGMA busy_timeout=30000')
            # checkpoints (the only fsyncs in WAL + NORMAL) run in the background, not inside a commit that a
            # board's answer waits for: see checkpoint_sqlite
            cur.execute('PRAGMA wal_autocheckpoint=0')
            cur.close()

        return engine
    return create_async_engine(url, echo=echo, pool_size=5, max_overflow=5, pool_pre_ping=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def checkpoint_sqlite(path: Path) -> None:
    """Copy the write-ahead log into the database file without blocking writers (PASSIVE); runs in a thread.

    The copying runs in a thread of its own at the lowest CPU priority: the panel usually has one core, and a
    checkpoint (5-35 ms of CPU every few seconds) at normal priority took half of it from the event loop while it
    ran, which showed in the boards' reply times. At nice 19 it runs in the loop's idle time, and still gets a
    small share when the panel is saturated, so the log cannot grow without bound.
    """
    failed: list[BaseException] = []

    def work() -> None:
        try:
            _lowest_priority()
            with sqlite3.connect(path, timeout=30) as conn:
                conn.execute('PRAGMA wal_checkpoint(PASSIVE)')
            conn.close()
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            failed.append(e)

    thread = threading.Thread(target=work, name='sqlite-checkpoint', daemon=True)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


def _lowest_priority() -> None:
    """Nice 19 for the calling thread only (Linux: a thread id is a task id); elsewhere nothing."""
    if sys.platform == 'linux':
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
