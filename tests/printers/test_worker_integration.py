"""The fleet worker with real drivers against real counterparts: an unplugged Marlin (pty simulator) is back the
moment its link is, an idle Moonraker (fake, real websocket) stays fresh while a hung one goes stale, an emergency
stop ends the job cancelled whatever the driver says, and uploads keep the suffix the printer starts them by."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fabpanel.core.printers import JobOutcome, PrinterConfig, PrinterKind
from fabpanel.db.engine import create_engine, session_factory
from fabpanel.db.models import Printer, PrintJob
from fabpanel.i18n import gettext_for
from fabpanel.live.state import LiveState
from fabpanel.printers.driver import DriverListener
from fabpanel.printers.fleet import Fleet
from fabpanel.printers.marlin import MarlinDriver
from fabpanel.printers.registry import DriverRegistry
from fabpanel.printers.worker import ESTOP_REASON, Timing, remote_name_for
from fabpanel.ui.printer_tile import tile_view

from ..conftest import wait_for
from ..lab import create_lab
from .conftest import RecordingListener
from .fakes.moonraker import FakeMoonraker
from .marlin_fixtures import FAST as FAST_MARLIN
from .marlin_fixtures import SimFactory, sim
from .test_fleet import FAST, Lab, gcode, lab, sim_address

__all__ = ['lab', 'sim']  # fixtures


class Fleetside:
    """A fleet of real drivers on a real database, with the timing a test needs."""

    def __init__(self, url: str, timing: Timing, registry: DriverRegistry | None = None) -> None:
        self.engine = create_engine(url)
        self.live = LiveState()
        self.fleet = Fleet(self.engine, self.live, registry, timing)

    async def add(self, **fields: Any) -> int:
        async with session_factory(self.engine)() as s:
            printer = Printer(**fields)
            s.add(printer)
            await s.commit()
            return int(printer.id)

    async def job(self, job_id: int) -> PrintJob:
        async with session_factory(self.engine)() as s:
            job = await s.get(PrintJob, job_id)
            assert job is not None
            return job

    async def close(self) -> None:
        await self.fleet.stop()
        await self.engine.dispose()


@contextlib.asynccontextmanager
async def fleetside(url: str, timing: Timing, registry: DriverRegistry | None = None) -> AsyncIterator[Fleetside]:
    await create_lab(url)
    side = Fleetside(url, timing, registry)
    try:
        yield side
    finally:
        await side.close()


def test_remote_names_keep_the_suffix_the_printer_goes_by() -> None:
    cases = {
        'Benchy plate.gcode.3mf': '.gcode.3mf',  # Bambu starts a .3mf as a project
        'PLATE.3MF': '.3mf',
        'part.bgcode': '.bgcode',
        'part.gcode': '.gcode',
        '../../etc/passwd': '.gcode',
    }
    for display, suffix in cases.items():
        name = remote_name_for(display)
        assert re.fullmatch(r'fabpanel-[0-9a-f]{12}' + re.escape(suffix), name), (display, name)
    assert remote_name_for('Benchy', 'upload-1234.gcode.3mf').endswith('.gcode.3mf')  # else the local file's


@pytest.mark.parametrize(
    ('ending', 'delay'),
    [
        ((JobOutcome.FAILED, 'Error:Printer halted. kill() called!'), 0.3),  # OctoPrint's way, a moment later
        ((JobOutcome.INTERRUPTED, 'the host stopped streaming'), 0.0),
        (None, 0.0),  # the printer says nothing: the worker settles the job from the error state
    ],
)
async def test_an_emergency_stop_ends_the_job_cancelled_whatever_the_driver_says(
    lab: Lab, tmp_path: Path, ending: tuple[JobOutcome, str] | None, delay: float
) -> None:
    printer_id, sim = await lab.add_printer()
    sim.estop_ending, sim.estop_delay = ending, delay
    await lab.fleet.start()
    await wait_for(lambda: lab.live.printers[printer_id].state == 'idle')
    job_id = await lab.fleet.start_job(printer_id, gcode(tmp_path, 3600), 'x.gcode', None)
    await lab.fleet.emergency_stop(printer_id)
    job = await lab.job_state(job_id, 'cancelled')
    assert job.reason == ESTOP_REASON
    # the stop is not carried over: the next job that fails, fails
    sim.reset()
    await wait_for(lambda: lab.live.printers[printer_id].state == 'idle')  # the sim's report after its reset
    second = await lab.fleet.start_job(printer_id, gcode(tmp_path, 3600), 'y.gcode', None)
    sim.thermal_runaway()
    assert 'Thermal Runaway' in (await lab.job_state(second, 'failed')).reason


async def test_a_failure_long_after_an_emergency_stop_is_a_failure(lab: Lab, tmp_path: Path) -> None:
    # only the driver's own ending, told a second after the stop, counts here (settling waits longer)
    lab.fleet.timing = replace(FAST, estop_window=0.2, settle=5.0)
    printer_id, sim = await lab.add_printer()
    sim.estop_ending, sim.estop_delay = (JobOutcome.FAILED, 'kill() called'), 1.0
    await lab.fleet.start()
    await wait_for(lambda: lab.live.printers[printer_id].state == 'idle')
    job_id = await lab.fleet.start_job(printer_id, gcode(tmp_path, 3600), 'x.gcode', None)
    await lab.fleet.emergency_stop(printer_id)
    assert (await lab.job_state(job_id, 'failed')).reason == 'kill() called'


# ---- liveness of printers that report only changes ---------------------------------------------------------------


@pytest.fixture
async def moonraker() -> AsyncIterator[FakeMoonraker]:
    fake = FakeMoonraker(api_key='key')
    await fake.start()
    yield fake
    await fake.stop()


@pytest.mark.parametrize('heartbeat', [True, False])
async def test_an_idle_moonraker_stays_fresh_and_a_hung_one_goes_stale(
    sqlite_url: str, moonraker: FakeMoonraker, heartbeat: bool
) -> None:
    timing = Timing(stale_after=1.0, probe_after=0.3 if heartbeat else 1e9, probe_timeout=0.5, connect_timeout=5)
    async with fleetside(sqlite_url, timing) as side:
        printer_id = await side.add(name='Voron', kind='moonraker', address=moonraker.url, api_key='key')
        await side.fleet.start()
        live = side.live.printers[printer_id]
        await wait_for(lambda: live.state == 'idle' and live.nozzle_actual is not None)
        first_report = live.updated_at
        await asyncio.sleep(2.5)  # the fake sits at ambient temperature: it pushes nothing at all
        if not heartbeat:
            assert live.stale and live.updated_at == first_report  # why the heartbeat is needed
            return
        assert not live.stale and live.state == 'idle'
        assert live.updated_at is not None and first_report is not None and live.updated_at > first_report
        assert moonraker.calls.count('server.info') >= 4  # one at connect, then the cheap checks
        moonraker.hang()
        hung_at = time.monotonic()
        await wait_for(lambda: live.stale, timeout=3)
        assert time.monotonic() - hung_at >= 0.5 and live.state == 'idle'  # not before the reading has aged
        moonraker.hang(False)
        await wait_for(lambda: not live.stale, timeout=3)


# ---- a USB printer that is unplugged and plugged in again ---------------------------------------------------------


class QuickMarlin(MarlinDriver):
    def __init__(self, config: PrinterConfig, listener: DriverListener) -> None:
        super().__init__(config, listener, settings=FAST_MARLIN)


async def test_an_unplugged_marlin_is_back_as_soon_as_its_link_is(sqlite_url: str, sim: SimFactory) -> None:
    printer = sim(extra=('--replug-after', '1.0'))
    backoff = 8.0  # far longer than the replug: waiting it out would fail the test
    timing = Timing(backoff_initial=backoff, backoff_cap=backoff, stable_after=1e9, port_poll=0.1, connect_timeout=5)
    async with fleetside(sqlite_url, timing, DriverRegistry({'marlin': QuickMarlin})) as side:
        printer_id = await side.add(name='MK3', kind='marlin', address=str(printer.link))
        await side.fleet.start()
        live = side.live.printers[printer_id]
        await wait_for(lambda: live.state == 'idle', timeout=10)
        with contextlib.suppress(Exception):  # the printer is gone before it answers
            await asyncio.wait_for(side.fleet.command(printer_id, lambda d: d.send_gcode(['M118 SIM:unplug'])), 3)
        await wait_for(lambda: live.state == 'offline', timeout=3)
        assert not printer.link.exists()
        unplugged = time.monotonic()
        await wait_for(lambda: live.state == 'idle', timeout=backoff - 2)
        assert time.monotonic() - unplugged < 4.0
        # plugged in but not answering is not "reappeared": that waits out the backoff as before
        assert await QuickMarlin.wait_reachable(side.fleet.configs[printer_id], 0.1) is False


async def test_other_printers_keep_their_backoff(lab: Lab) -> None:
    printer_id, _sim = await lab.add_printer(address=sim_address())
    await lab.fleet.start()
    await wait_for(lambda: lab.live.printers[printer_id].state == 'idle')
    config = lab.fleet.configs[printer_id]
    registry = lab.fleet.registry
    assert await asyncio.wait_for(registry.driver_class(config.kind).wait_reachable(config, 0.1), 1) is False


async def test_a_quiet_marlin_is_alive_while_its_lines_come_and_not_once_they_stop(sim: SimFactory) -> None:
    printer = sim()
    listener = RecordingListener()
    driver = QuickMarlin(PrinterConfig(id=1, name='MK3', kind=PrinterKind.MARLIN, address=str(printer.link)), listener)
    await driver.connect()
    try:
        reports = len(listener.reports)
        await asyncio.sleep(2.0)  # four temperature reports, all the same
        assert len(listener.reports) == reports  # nothing new to report: the worker would see silence
        assert await driver.alive()
        os.kill(printer.pid, signal.SIGSTOP)  # the firmware hangs: the port stays open, nothing arrives
        try:
            await asyncio.sleep(3 * FAST_MARLIN.poll_s + 1.5)
            assert not await driver.alive()
        finally:
            os.kill(printer.pid, signal.SIGCONT)
    finally:
        await driver.close()


async def test_a_print_unplugged_midway_is_interrupted_and_the_worker_and_tile_carry_on(
        sqlite_url: str, sim: SimFactory, tmp_path: Path) -> None:
    printer = sim(extra=('--replug-after', '1.5'))
    timing = Timing(backoff_initial=0.2, backoff_cap=0.5, stable_after=1e9, port_poll=0.1, connect_timeout=5)
    job_file = tmp_path / 'bracket.gcode'
    job_file.write_text('G28\n' + 'G1 X10 Y10 E0.1\n' * 400 + 'M118 SIM:unplug\n' + 'G1 X20 Y20 E0.1\n' * 400)
    async with fleetside(sqlite_url, timing, DriverRegistry({'marlin': QuickMarlin})) as side:
        ended: list[tuple[int, int, str]] = []
        side.live.events.job_ended.subscribe(ended.append)
        printer_id = await side.add(name='MK3', kind='marlin', address=str(printer.link))
        await side.fleet.start()
        live = side.live.printers[printer_id]
        await wait_for(lambda: live.state == 'idle', timeout=10)
        job_id = await side.fleet.start_job(printer_id, job_file, 'bracket.gcode', None)
        await wait_for(lambda: ended, timeout=15)
        assert ended == [(printer_id, job_id, JobOutcome.INTERRUPTED.value)]
        job = await side.job(job_id)
        assert job.state == 'interrupted' and job.ended_at is not None
        await wait_for(lambda: live.state == 'offline', timeout=3)
        view = tile_view(live, gettext_for('en'), datetime.now(UTC), link=False)
        assert view['label'] == 'Offline' and 'job' not in view  # what every open tile shows while the cable is out
        # the worker survived: the printer is back and ready for the next job, the lost one stays interrupted
        await wait_for(lambda: live.state == 'idle', timeout=10)
        assert (await side.job(job_id)).state == 'interrupted'
        assert live.job_id is None
