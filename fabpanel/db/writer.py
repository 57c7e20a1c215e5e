"""Group commit: many small writes from concurrent board workers share one transaction.

A board must get its answer within 2 s, and an answer is sent only after its record is committed. One
transaction per message would cap the gateway at the disk's commit rate; batching the writes that arrive
while the previous commit runs keeps each write's latency to about one commit and the throughput high.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.expression import Executable

log = logging.getLogger(__name__)
T = TypeVar('T')


@dataclass(frozen=True, slots=True)
class Bulk:
    """One row for a prebuilt statement. The rows of a batch that share a statement run as one executemany,
    groups in `step` order, so each writer's rows apply in the order their steps say."""

    step: int
    statement: Executable
    params: dict[str, Any]
    guard: str = ''  # run alone; when it changes no row, this writer's rows that require it are skipped
    requires: str = ''


Work = Callable[[AsyncConnection], Awaitable[Any]] | tuple[Bulk, ...]

MAX_BATCH = 500


class GroupWriter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._pending: list[tuple[Work, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0
        self.writes = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name='db-group-writer')

    async def stop(self) -> None:
        if self._task is not None:
            if self._pending:  # writes run in order: once this empty one is done, the queued ones have landed
                await self.write(_nothing)
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def write(self, work: Callable[[AsyncConnection], Awaitable[T]] | tuple[Bulk, ...]) -> T:
        """Run `work` (a coroutine function, or rows for prebuilt statements) inside a shared transaction;
        returns once that transaction is committed."""
        if self._task is None:
            self.start()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((work, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[Work, asyncio.Future[Any]]]) -> None:
        try:
            results = await self._transaction([work for work, _ in batch])
        except Exception as e:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(e)
                return
            # one bad write must not sink the others: run each in a transaction of its own, once
            for item in batch:
                await self._commit([item])
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _transaction(self, works: list[Work]) -> list[Any]:
        groups: dict[tuple[int, int], tuple[Executable, list[tuple[int, Bulk]]]] = {}
        for index, work in enumerate(works):
            if isinstance(work, tuple):
                for row in work:
                    groups.setdefault((row.step, id(row.statement)), (row.statement, []))[1].append((index, row))
        async with self._engine.begin() as conn:
            failed: set[tuple[int, str]] = set()  # (writer, guard) whose guarded statement changed nothing
            for key in sorted(groups):
                statement, rows = groups[key]
                rows = [(i, r) for i, r in rows if not r.requires or (i, r.requires) not in failed]
                guarded = [(i, r) for i, r in rows if r.guard]
                for i, r in guarded:
                    if (await conn.execute(statement, r.params)).rowcount == 0:
                        failed.add((i, r.guard))
                plain = [r.params for _, r in rows if not r.guard]
                if plain:
                    await conn.execute(statement, plain)
            results = [None if isinstance(work, tuple) else await work(conn) for work in works]
        self.commits += 1
        self.writes += len(works)
        return results


async def _nothing(_conn: AsyncConnection) -> None:
    return None
