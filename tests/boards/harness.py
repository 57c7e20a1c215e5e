"""What the board end-to-end tests share: a running lab panel, a spy on the broker, the database as written."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import sqlalchemy as sa

from fabpanel.app import Panel
from fabpanel.db.engine import create_engine
from fabpanel.db.models import Board, Intervention, Machine, UnknownCard, Use

from ..conftest import make_settings, start_panel, wait_for
from ..lab import add_board_extras, create_lab


@dataclass
class Seen:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Spy:
    """A plain MQTT client that records every reply, command and stats message the panel publishes."""

    port: int
    topics: tuple[str, ...] = ('machine/+/reply', 'machine/+/request', 'stats/#')
    seen: list[Seen] = field(default_factory=list)
    _client: aiomqtt.Client | None = None
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Spy:
        self._client = aiomqtt.Client('127.0.0.1', self.port, identifier=None, clean_session=True)
        await self._client.__aenter__()
        for topic in self.topics:
            await self._client.subscribe(topic, qos=0)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.__aexit__(None, None, None)

    async def _read(self) -> None:
        assert self._client is not None
        async for m in self._client.messages:
            self.seen.append(Seen(m.topic.value, bytes(m.payload), m.retain))  # type: ignore[arg-type]

    def replies(self, machine_id: int | None = None) -> list[Seen]:
        return [s for s in self.seen if s.topic.endswith('/reply')
                and (machine_id is None or s.topic == f'machine/{machine_id}/reply')]

    def reply_counts(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for s in self.replies():
            mid = int(s.topic.split('/')[1])
            out[mid] = out.get(mid, 0) + 1
        return out

    async def expect_replies(self, counts: dict[int, int], settle: float = 0.3) -> None:
        """Exactly these numbers of replies per machine: waits for them, then a little longer for extras."""
        with contextlib.suppress(AssertionError):
            await wait_for(lambda: self.reply_counts() == counts, timeout=3)
        await asyncio.sleep(settle)
        assert self.reply_counts() == counts


@contextlib.asynccontextmanager
async def lab_panel(tmp_path: Path, url: str, port: int, *, extras: bool = True,
                    **mqtt: object) -> AsyncIterator[Panel]:
    """The known lab (plus the board extras) in a database, and a panel serving it."""
    await create_lab(url)
    if extras:
        await add_board_extras(url)
    panel = await start_panel(make_settings(tmp_path, url, port, **mqtt))
    try:
        yield panel
    finally:
        await panel.stop()


class Db:
    """Reads what the panel wrote, with its own engine (SQLAlchemy Core)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    async def close(self) -> None:
        await self.engine.dispose()

    async def rows(self, model: type, *where: sa.ColumnElement[bool], order: Any = None) -> list[sa.Row]:
        t = model.__table__  # type: ignore[attr-defined]
        q = sa.select(t).where(*where).order_by(order if order is not None else t.c[list(t.c.keys())[0]])
        async with self.engine.connect() as conn:
            return list(await conn.execute(q))

    async def uses(self, machine_id: int) -> list[sa.Row]:
        return await self.rows(Use, Use.__table__.c.machine_id == machine_id, order=Use.__table__.c.id)

    async def interventions(self, machine_id: int) -> list[sa.Row]:
        t = Intervention.__table__
        return await self.rows(Intervention, t.c.machine_id == machine_id, order=t.c.id)

    async def unknown_cards(self) -> list[sa.Row]:
        return await self.rows(UnknownCard)

    async def board(self, machine_id: int) -> sa.Row | None:
        rows = await self.rows(Board, Board.__table__.c.machine_id == machine_id)
        return rows[0] if rows else None

    async def usage_seconds(self, machine_id: int) -> float:
        (row,) = await self.rows(Machine, Machine.__table__.c.id == machine_id)
        return float(row.usage_seconds)

    async def assert_counters_match_uses(self) -> None:
        """Each machine's hour counter is the sum of its closed uses: it moves only when a use is written."""
        t = Use.__table__
        async with self.engine.connect() as conn:
            sums = dict((await conn.execute(sa.select(t.c.machine_id, sa.func.sum(t.c.duration_s))
                                            .where(t.c.end.is_not(None)).group_by(t.c.machine_id))).all())
            counters = dict((await conn.execute(sa.select(Machine.__table__.c.id,
                                                          Machine.__table__.c.usage_seconds))).all())
        for machine_id, seconds in counters.items():
            assert abs(seconds - float(sums.get(machine_id) or 0.0)) < 1e-3, (machine_id, seconds, sums)


@contextlib.asynccontextmanager
async def database(url: str) -> AsyncIterator[Db]:
    db = Db(url)
    try:
        yield db
    finally:
        await db.close()
