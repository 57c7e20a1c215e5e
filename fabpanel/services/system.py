"""What the system page reports: the boards the gateway knows, the database's size and rows, the process."""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from fabpanel.db.engine import sqlite_path
from fabpanel.db.models import (
    Authorization,
    Board,
    Card,
    Intervention,
    LoginSession,
    Machine,
    Member,
    UnknownCard,
    Use,
)
from fabpanel.live.state import BoardInfo, LiveState

_IMPORTED_AT = time.time()  # the fallback for the process start when psutil is missing

# the tables worth a row count on the system page, in the order shown
MAIN_TABLES: tuple[tuple[str, sa.Table], ...] = tuple((m.__tablename__, m.__table__) for m in (  # type: ignore[misc]
    Member, Card, Machine, Authorization, Use, Intervention, UnknownCard, Board, LoginSession))


@dataclass(kw_only=True, slots=True, frozen=True)
class BoardRow:
    machine_id: int
    machine_name: str  # '' when the machine was deleted since the board last spoke
    info: BoardInfo  # the live object: pages bind to it


def board_rows(live: LiveState) -> list[BoardRow]:
    """The boards the gateway has heard from, with their machines' names, ordered by machine name."""
    rows = []
    for machine_id, info in live.boards.items():
        m = live.machines.get(machine_id)
        rows.append(BoardRow(machine_id=machine_id, machine_name=m.name if m else '', info=info))
    return sorted(rows, key=lambda r: (r.machine_name == '', r.machine_name.lower(), r.machine_id))


def unknown_boards(live: LiveState) -> list[tuple[int, datetime]]:
    """(machine id, last heard) of boards whose machine id the database does not know, newest first."""
    return sorted(live.unknown_boards.items(), key=lambda item: item[1], reverse=True)


@dataclass(kw_only=True, slots=True, frozen=True)
class DatabaseInfo:
    backend: str  # 'SQLite' | 'PostgreSQL' | the dialect's name
    size_bytes: int | None
    rows: dict[str, int] = field(default_factory=dict)


def sqlite_size(path: Path) -> int:
    """The database file plus its write-ahead log (where recent commits live until a checkpoint)."""
    total = 0
    for p in (path, path.with_name(path.name + '-wal')):
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            pass
    return total


async def database_info(engine: AsyncEngine, url: str) -> DatabaseInfo:
    dialect = engine.dialect.name
    async with engine.connect() as conn:
        rows = {}
        for name, table in MAIN_TABLES:
            rows[name] = int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())
        size: int | None = None
        if dialect == 'postgresql':
            size = int((await conn.execute(sa.text('SELECT pg_database_size(current_database())'))).scalar_one())
    if dialect == 'sqlite':
        path = sqlite_path(url)
        size = await asyncio.to_thread(sqlite_size, path) if path is not None else None
    backend = {'sqlite': 'SQLite', 'postgresql': 'PostgreSQL'}.get(dialect, dialect)
    return DatabaseInfo(backend=backend, size_bytes=size, rows=rows)


@dataclass(kw_only=True, slots=True, frozen=True)
class ProcessInfo:
    pid: int
    uptime_s: float
    rss_bytes: int | None
    python: str
    nicegui: str


def _started_at() -> float:
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - psutil absent or not allowed to read /proc: an estimate will do
        return _IMPORTED_AT


def _rss() -> int | None:
    try:
        with open('/proc/self/statm') as f:  # Linux: resident pages are the second field
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, IndexError):
        pass
    try:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the peak, not now: better than nothing
        return int(peak if sys.platform == 'darwin' else peak * 1024)
    except (OSError, ValueError):
        return None


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return '?'


def process_info(now: float | None = None) -> ProcessInfo:
    now = time.time() if now is None else now
    return ProcessInfo(pid=os.getpid(), uptime_s=max(0.0, now - _started_at()), rss_bytes=_rss(),
                       python=platform.python_version(), nicegui=_version('nicegui'))
