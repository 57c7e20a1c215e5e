"""The fleet with simulated printers against a real database: live state, job records and samples, reconnects
with backoff, reconciling on every (re)connect, host restarts, stale data, admin changes."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from fabpanel.core.printers import JobOutcome
from fabpanel.db.engine import create_engine, session_factory
from fabpanel.db.models import Printer, PrinterSample, PrintJob
from fabpanel.live.state import LiveState
from fabpanel.printers.fleet import HOST_RESTART, Fleet
from fabpanel.printers.registry import DriverRegistry
from fabpanel.printers.sim import SimPrinter, SimulatedDriver, sim_printer
from fabpanel.printers.worker import Timing

from ..conftest import wait_for
from ..lab import create_lab

FAST = Timing(
    backoff_initial=0.05,
    backoff_cap=0.4,
    stable_after=0.5,
    connect_timeout=2,
    stale_after=0.3,
    sample_every=0.25,
    flush_every=0.2,
    settle=0.2,
    start_grace=2,
)


def sim_address(**options: object) -> str:
    query = '&'.join(f'{k}={v}' for k, v in {'speed': 100, 'report': 0.02, **options}.items())
    return f'sim://fleet-{uuid.uuid4().hex[:8]}?{query}'


class Lab:
    def __init__(self, engine: AsyncEngine, live: LiveState, fleet: Fleet) -> None:
        self.engine, self.live, self.fleet = engine, live, fleet
        self.events: list[tuple[str, Any]] = []
        for name in ('job_started', 'job_ended', 'printer_changed', 'printers_reloaded'):
            getattr(live.events, name).subscribe(lambda arg, name=name: self.events.append((name, arg)))

    async def add_printer(self, name: str = 'Sim', **fields: Any) -> tuple[int, SimPrinter]:
        address = fields.pop('address', None) or sim_address()
        async with session_factory(self.engine)() as s:
            printer = Printer(name=name, kind='simulated', address=address, **fields)
            s.add(printer)
            await s.commit()
            return int(printer.id), sim_printer(address)

    async def add_job(self, printer_id: int, **fields: Any) -> int:
        async with session_factory(self.engine)() as s:
            job = PrintJob(printer_id=printer_id, started_at=datetime.now(UTC), **fields)
            s.add(job)
            await s.commit()
            return int(job.id)

    async def job(self, job_id: int) -> PrintJob:
        async with session_factory(self.engine)() as s:
            job = await s.get(PrintJob, job_id)
            assert job is not None
            return job

    async def jobs(self, printer_id: int) -> list[PrintJob]:
        async with session_factory(self.engine)() as s:
            q = select(PrintJob).where(PrintJob.printer_id == printer_id).order_by(PrintJob.id)
            return list((await s.exec(q)).all())

    async def job_state(self, job_id: int, state: str, timeout: float = 10.0) -> PrintJob:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while (job := await self.job(job_id)).state != state:
            assert time.monotonic() < deadline, f'job {job_id} is {job.state}, not {state}'
            await asyncio.sleep(0.05)
        return job


async def make_lab(url: str) -> AsyncIterator[Lab]:
    await create_lab(url)
    engine = create_engine(url)
    live = LiveState()
    fleet = Fleet(engine, live, timing=FAST)
    try:
        yield Lab(engine, live, fleet)
    finally:
        await fleet.stop()
        await engine.dispose()


@pytest.fixture
async def lab(sqlite_url: str) -> AsyncIterator[Lab]:
    async for lab in make_lab(sqlite_url):
        yield lab


@pytest.fixture
async def any_lab(database_url: str) -> AsyncIterator[Lab]:
    """SQLite and PostgreSQL."""
    async for lab in make_lab(database_url):
        yield lab


def gcode(tmp_path: Path, seconds: int) -> Path:
    path = tmp_path / 'benchy.gcode'
    path.write_text(f';TIME:{seconds}\n;LAYER_COUNT:20\nM140 S60\nM104 S215\n' + 'G1 X1 Y1 E1\n' * 100)
    return path


async def test_a_job_runs_live_and_is_recorded_with_downsampled_samples(any_lab: Lab, tmp_path: Path) -> None:
    lab = any_lab
    printer_id, sim = await lab.add_printer(address=sim_address(speed=150))
    await lab.fleet.start()
    live = lab.live.printers[printer_id]
    await wait_for(lambda: live.state == 'idle')
    assert live.name == 'Sim' and live.nozzle_actual is not None and not live.stale
    job_id = await lab.fleet.start_job(printer_id, gcode(tmp_path, seconds=400), 'Benchy <b>.gcode', member_id=1)
    assert ('job_started', (printer_id, job_id)) in lab.events
    assert (live.state, live.job_id, live.file_name, live.started_by) == (
        'printing',
        job_id,
        'Benchy <b>.gcode',
        'Giulia',
    )
    await wait_for(lambda: (live.progress or 0) > 20 and live.layer is not None, timeout=10)
    assert live.eta is not None and live.eta > datetime.now(UTC)
    await wait_for(lambda: ('job_ended', (printer_id, job_id, 'done')) in lab.events, timeout=15)
    assert live.state == 'idle' and live.job_id is None and live.progress is None
    job = await lab.job(job_id)
    assert (job.state, job.member_id, job.file_name, job.started_outside, job.host_streamed) == (
        'done',
        1,
        'Benchy <b>.gcode',
        False,
        False,
    )
    assert job.remote_name.startswith('fabpanel-') and job.ended_at is not None  # a generated name on the printer
    async with lab.engine.connect() as conn:
        samples = (
            await conn.execute(
                sa.select(PrinterSample.t, PrinterSample.state, PrinterSample.nozzle)
                .where(PrinterSample.job_id == job_id)
                .order_by(PrinterSample.t)
            )
        ).all()
    reports = (job.ended_at - job.started_at).total_seconds() / 0.02
    assert 3 <= len(samples) < reports / 5, (len(samples), reports)  # about one per sample_every, not per report
    assert samples[-1].state == 'done' and samples[0].nozzle is not None
    assert len(lab.live.temperatures[printer_id].samples) >= 1


async def test_reconnects_with_backoff_and_keeps_the_last_reading(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    attempts: list[float] = []

    class Counting(SimulatedDriver):
        async def connect(self):  # noqa: ANN202
            attempts.append(time.monotonic())
            return await super().connect()

    lab.fleet.registry = DriverRegistry({'simulated': Counting})
    printer_id, sim = await lab.add_printer()
    await lab.fleet.start()
    live = lab.live.printers[printer_id]
    await wait_for(lambda: live.state == 'idle' and live.nozzle_actual is not None)
    last_reading = live.nozzle_actual
    caplog.set_level(logging.INFO, logger='fabpanel.printers.worker')
    sim.refuse_connect = True
    sim.disconnect()
    await wait_for(lambda: live.state == 'offline')
    assert live.stale and live.nozzle_actual == last_reading and live.updated_at is not None  # shown with its age
    attempts.clear()
    await asyncio.sleep(1.6)
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert 3 <= len(attempts) <= 8, gaps
    assert gaps[1] > gaps[0] * 1.5 and max(gaps) < 0.4 * 1.5, gaps  # doubling, capped
    offline_logs = [r for r in caplog.records if 'offline' in r.getMessage() or 'lost' in r.getMessage()]
    assert len(offline_logs) == 1, [r.getMessage() for r in offline_logs]  # the transition, once
    sim.refuse_connect = False
    await wait_for(lambda: live.state == 'idle' and not live.stale, timeout=3)
    assert any('back online' in r.getMessage() for r in caplog.records)


async def test_reconcile_a_database_job_the_printer_no_longer_runs(any_lab: Lab) -> None:
    lab = any_lab
    idle_id, _idle = await lab.add_printer('Idle')
    finished_id, finished = await lab.add_printer('Finished')
    broken_id, broken = await lab.add_printer('Broken')
    lost = await lab.add_job(idle_id, remote_name='a.gcode')
    done = await lab.add_job(finished_id, remote_name='b.gcode')
    failed = await lab.add_job(broken_id, remote_name='c.gcode')
    finished.last_outcome, finished.last_file = JobOutcome.DONE, 'b.gcode'  # it ended while the host was away
    broken.state, broken.message = 'error', 'MINTEMP triggered'
    broken.reset = lambda: None  # stays in error on connect
    await lab.fleet.start()
    assert (await lab.job_state(lost, 'interrupted')).reason == 'the printer no longer reports this job'
    assert (await lab.job_state(done, 'done')).ended_at is not None
    assert (await lab.job_state(failed, 'failed')).reason == 'MINTEMP triggered'
    await wait_for(lambda: ('job_ended', (idle_id, lost, 'interrupted')) in lab.events)


async def test_an_unknown_running_job_is_recorded(lab: Lab) -> None:
    printer_id, sim = await lab.add_printer(address=sim_address(speed=200))
    sim.start_outside('/sd/BENCHY~1.GCO', duration_s=300)
    await lab.fleet.start()
    live = lab.live.printers[printer_id]
    await wait_for(lambda: live.state == 'printing' and live.job_id is not None)
    (job,) = await lab.jobs(printer_id)
    assert (job.started_outside, job.member_id, job.file_name, job.state) == (True, None, 'BENCHY~1.GCO', 'printing')
    assert live.file_name == 'BENCHY~1.GCO' and live.started_by == ''
    assert ('job_started', (printer_id, job.id)) in lab.events
    await lab.job_state(job.id, 'done')


async def test_a_host_restart_interrupts_a_streamed_job_and_never_restarts_it(any_lab: Lab) -> None:
    lab = any_lab
    printer_id, sim = await lab.add_printer(address=sim_address(streaming=1))
    job_id = await lab.add_job(printer_id, remote_name='/tmp/x.gcode', host_streamed=True, member_id=1)
    await lab.fleet.start()
    job = await lab.job(job_id)
    assert (job.state, job.reason) == ('interrupted', HOST_RESTART)
    live = lab.live.printers[printer_id]
    await wait_for(lambda: live.state == 'idle')
    await asyncio.sleep(0.2)
    assert sim.job is None and live.job_id is None and len(await lab.jobs(printer_id)) == 1


async def test_a_network_job_survives_a_disconnect_a_streamed_one_does_not(lab: Lab, tmp_path: Path) -> None:
    net_id, net = await lab.add_printer('Net', address=sim_address(speed=20))
    usb_id, usb = await lab.add_printer('USB', address=sim_address(speed=20, streaming=1))
    await lab.fleet.start()
    await wait_for(lambda: lab.live.printers[net_id].state == lab.live.printers[usb_id].state == 'idle')
    net_job = await lab.fleet.start_job(net_id, gcode(tmp_path, 3600), 'net.gcode', 1)
    usb_job = await lab.fleet.start_job(usb_id, gcode(tmp_path, 3600), 'usb.gcode', 1)
    net.disconnect()
    usb.disconnect()
    job = await lab.job_state(usb_job, 'interrupted')
    assert job.reason == 'the connection to the printer was lost'
    await wait_for(lambda: lab.live.printers[net_id].state == 'printing' and not lab.live.printers[net_id].stale)
    assert lab.live.printers[net_id].job_id == net_job and (await lab.job(net_job)).state == 'printing'
    assert len(await lab.jobs(net_id)) == 1  # the same job, not a second one
    await lab.fleet.command(net_id, lambda d: d.pause())
    await lab.job_state(net_job, 'paused')
    await lab.fleet.command(net_id, lambda d: d.cancel())
    assert (await lab.job_state(net_job, 'cancelled')).reason == 'cancelled'


async def test_thermal_runaway_fails_the_job_and_shows_the_error(lab: Lab, tmp_path: Path) -> None:
    printer_id, sim = await lab.add_printer()
    await lab.fleet.start()
    live = lab.live.printers[printer_id]
    await wait_for(lambda: live.state == 'idle')
    job_id = await lab.fleet.start_job(printer_id, gcode(tmp_path, 3600), 'x.gcode', None)
    sim.thermal_runaway()
    job = await lab.job_state(job_id, 'failed')
    assert 'Thermal Runaway' in job.reason
    await wait_for(lambda: live.state == 'error' and 'Thermal Runaway' in live.message)


async def test_silence_marks_the_printer_stale(lab: Lab) -> None:
    printer_id, sim = await lab.add_printer()
    await lab.fleet.start()
    live = lab.live.printers[printer_id]
    await wait_for(lambda: live.state == 'idle')
    sim.silent = True
    await wait_for(lambda: live.stale, timeout=3)
    assert live.state == 'idle' and (datetime.now(UTC) - live.updated_at).total_seconds() >= 0.3
    sim.silent = False
    await wait_for(lambda: not live.stale, timeout=3)


async def test_commands_run_one_at_a_time(lab: Lab) -> None:
    printer_id, _sim = await lab.add_printer()
    await lab.fleet.start()
    await wait_for(lambda: lab.live.printers[printer_id].state == 'idle')
    running: list[int] = []
    overlaps: list[int] = []

    async def slow(_driver: Any) -> int:
        running.append(1)
        overlaps.append(len(running))
        await asyncio.sleep(0.05)
        running.pop()
        return 1

    assert sum(await asyncio.gather(*(lab.fleet.command(printer_id, slow) for _ in range(5)))) == 5
    assert overlaps == [1] * 5


async def test_printers_added_edited_and_removed(lab: Lab) -> None:
    await lab.fleet.start()
    printer_id, sim = await lab.add_printer('First')
    assert printer_id not in lab.live.printers
    await lab.fleet.reload()
    await wait_for(lambda: lab.live.printers[printer_id].state == 'idle')
    driver = lab.fleet.driver(printer_id)
    async with session_factory(lab.engine)() as s:
        row = await s.get(Printer, printer_id)
        row.name, row.max_nozzle_c = 'Renamed', 230
        await s.commit()
    await lab.fleet.reload()
    assert lab.live.printers[printer_id].name == 'Renamed' and lab.fleet.limits(printer_id).max_nozzle_c == 230
    assert lab.fleet.driver(printer_id) is driver  # no reconnect for a new name or limit
    async with session_factory(lab.engine)() as s:
        (await s.get(Printer, printer_id)).enabled = False
        await s.commit()
    await lab.fleet.reload()
    assert printer_id not in lab.fleet.workers and lab.live.printers[printer_id].state == 'offline'
    async with session_factory(lab.engine)() as s:
        (await s.get(Printer, printer_id)).deleted_at = datetime.now(UTC)
        await s.commit()
    await lab.fleet.reload()
    assert printer_id not in lab.live.printers and ('printers_reloaded', None) in lab.events


async def test_the_demo_has_printers_and_one_is_printing(tmp_path: Path) -> None:
    from fabpanel.db.migrate import upgrade
    from fabpanel.demo import DEMO_PRINTERS, seed_demo

    url = f'sqlite:///{tmp_path}/demo.db'
    engine = create_engine(url)
    live = LiveState()
    fleet = Fleet(engine, live, timing=FAST)
    try:
        await upgrade(engine, url)
        assert await seed_demo(engine) and not await seed_demo(engine)  # a second demo start adds nothing
        await fleet.start()
        assert len(live.printers) == len(DEMO_PRINTERS)
        await wait_for(lambda: all(p.state in ('idle', 'printing') for p in live.printers.values()), timeout=5)
        (printing,) = [p for p in live.printers.values() if p.state == 'printing']
        assert printing.started_by and printing.file_name == '3DBenchy.gcode' and 10 < (printing.progress or 0) < 40
        (job,) = await Lab(engine, live, fleet).jobs(printing.id)
        assert not job.started_outside and job.member_id is not None  # the database and the printer agree
    finally:
        await fleet.stop()
        await engine.dispose()
