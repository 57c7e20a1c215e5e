"""Stateful property of the spool ledger on a real SQLite database: any order of job ends, repeated and concurrent
deliveries, settles cut off mid-transaction and panel restarts gives each job's grams exactly once, and the spool's
remaining grams always agree with its ledger rows."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from fabpanel.db.engine import create_engine, session_factory
from fabpanel.db.models import Filament, Printer, PrintJob, Spool, Vendor
from fabpanel.live.state import LiveState
from fabpanel.services.spool_ledger import SpoolLedger, spool_t, usage_t

from ..lab import create_lab

INITIAL = 100_000.0  # never runs empty: the sums stay exact


class LedgerMachine(RuleBasedStateMachine):
    jobs = Bundle('jobs')

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.dir = tempfile.mkdtemp(prefix='ledger-')
        self.url = f'sqlite:///{self.dir}/fabpanel.db'
        self.expected: dict[int, float] = {}
        self.run(create_lab(self.url))
        self.engine = create_engine(self.url)
        self.spool_id, self.printer_id = self.run(self._seed())
        self.ledger = SpoolLedger(self.engine, LiveState())

    def run(self, coro):  # noqa: ANN001, ANN201
        return self.runner.run(coro)

    async def _seed(self) -> tuple[int, int]:
        async with session_factory(self.engine)() as session:
            vendor = Vendor(name='V')
            session.add(vendor)
            await session.flush()
            filament = Filament(vendor_id=vendor.id, name='F', material='PLA')
            session.add(filament)
            await session.flush()
            spool = Spool(filament_id=filament.id, code='ABCDEFGHJK', initial_grams=INITIAL, remaining_grams=INITIAL)
            session.add(spool)
            await session.flush()
            printer = Printer(name='P', kind='simulated', loaded_spool_id=spool.id)
            session.add(printer)
            await session.commit()
            return spool.id, printer.id  # type: ignore[return-value]

    @rule(
        target=jobs,
        outcome=st.sampled_from(['done', 'failed', 'cancelled', 'interrupted']),
        grams=st.integers(1, 500),
        progress=st.sampled_from([None, 0.0, 0.25, 0.5, 1.0]),
    )
    def job_ends(self, outcome: str, grams: int, progress: float | None) -> int:
        async def insert() -> int:
            now = datetime.now(UTC)
            async with session_factory(self.engine)() as session:
                job = PrintJob(
                    printer_id=self.printer_id,
                    state=outcome,
                    started_at=now - timedelta(minutes=5),
                    ended_at=now,
                    grams_planned=float(grams),
                    progress=progress,
                )
                session.add(job)
                await session.commit()
                return job.id  # type: ignore[return-value]

        job_id = self.run(insert())
        fraction = 1.0 if outcome == 'done' else (progress or 0.0)
        self.expected[job_id] = round(grams * fraction, 2)
        return job_id

    @rule(job=jobs)
    def deliver(self, job: int) -> None:
        self.run(self.ledger.settle(job))

    @rule(job=jobs, copies=st.integers(2, 3))
    def deliver_concurrently(self, job: int, copies: int) -> None:
        async def race() -> None:
            engines = [create_engine(self.url) for _ in range(copies)]
            try:
                await asyncio.gather(*(SpoolLedger(e, LiveState()).settle(job) for e in engines))
            finally:
                for e in engines:
                    await e.dispose()

        self.run(race())

    @rule(job=jobs, steps=st.integers(0, 12))
    def crash_mid_settle(self, job: int, steps: int) -> None:
        """The panel dies while the ledger writes: the settle is cut off after a few loop turns, then restart."""

        async def crash() -> None:
            task = asyncio.ensure_future(self.ledger.settle(job))
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self.engine.dispose()

        self.run(crash())
        self.restart()

    @rule()
    def restart(self) -> None:
        async def again() -> None:
            await self.engine.dispose()
            self.engine = create_engine(self.url)
            self.ledger = SpoolLedger(self.engine, LiveState())
            await self.ledger.start()  # catches up every job ended and not settled
            await self.ledger.stop()

        self.run(again())

    async def _rows(self) -> tuple[float, list[tuple[int, float]]]:
        async with self.engine.connect() as conn:
            remaining = await conn.scalar(sa.select(spool_t.c.remaining_grams).where(spool_t.c.id == self.spool_id))
            rows = await conn.execute(sa.select(usage_t.c.print_job_id, usage_t.c.grams))
            return float(remaining), [(r.print_job_id, r.grams) for r in rows]

    @invariant()
    def remaining_agrees_with_the_ledger(self) -> None:
        remaining, rows = self.run(self._rows())
        assert len({job for job, _ in rows}) == len(rows)  # one row per job (one spool here)
        for job, grams in rows:
            assert grams == self.expected[job]
        assert abs(remaining - (INITIAL - sum(g for _, g in rows))) < 1e-6

    def teardown(self) -> None:
        try:
            self.restart()
            remaining, rows = self.run(self._rows())
            assert sorted(rows) == sorted(self.expected.items())  # every job settled, exactly once
            assert abs(remaining - (INITIAL - sum(self.expected.values()))) < 1e-6
        finally:
            self.run(self.engine.dispose())
            self.runner.close()
            shutil.rmtree(self.dir, ignore_errors=True)


LedgerMachine.TestCase.settings = settings(
    max_examples=12, stateful_step_count=12, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLedger = LedgerMachine.TestCase
