"""The fleet supervisor: one worker per enabled printer, started with the panel, changed when an admin adds,
edits or removes a printer. Host-streamed jobs the database still shows running at start-up are over (the
host went away mid-print): they are marked interrupted, never restarted."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from fabpanel.core.printers import PrinterConfig, PrinterLimits
from fabpanel.live.printers import PrinterLive, TemperatureHistory
from fabpanel.live.state import LiveState

from . import job_store
from .driver import PrinterDriver, PrinterUnavailable
from .job_store import ActiveJob
from .registry import DriverRegistry
from .worker import PrinterWorker, Timing

log = logging.getLogger(__name__)
T = TypeVar('T')

HOST_RESTART = 'the panel restarted while it streamed this job'
# fields that need a new connection when they change; the others (name, limits, ...) apply in place
CONNECTION_FIELDS = ('kind', 'address', 'baudrate', 'api_key', 'username', 'serial_number', 'tls_fingerprint')


class Fleet:
    def __init__(
        self, engine: AsyncEngine, live: LiveState, registry: DriverRegistry | None = None, timing: Timing | None = None
    ) -> None:
        self.engine, self.live = engine, live
        self.registry = registry or DriverRegistry()
        self.timing = timing or Timing()
        self.workers: dict[int, PrinterWorker] = {}
        self.configs: dict[int, PrinterConfig] = {}
        self.started = False

    async def start(self) -> None:
        async with self.engine.begin() as conn:
            ended = await job_store.interrupt_host_streamed(conn, datetime.now(UTC), HOST_RESTART)
        for printer_id, job_id in ended:
            log.warning('printer %d: job %d was streamed by the host when it stopped: interrupted', printer_id, job_id)
            self.live.events.job_ended.emit((printer_id, job_id, 'interrupted'))
        self.started = True
        await self.reload()

    async def stop(self) -> None:
        self.started = False
        for printer_id in list(self.workers):
            await self._stop_worker(printer_id)

    async def reload(self) -> None:
        """Bring workers and live printers in line with the database (after an admin change)."""
        async with self.engine.connect() as conn:
            printers = await job_store.load_printers(conn)
            jobs = await job_store.active_jobs(conn)
        wanted = {config.id: (config, enabled) for config, enabled in printers}
        for printer_id in [p for p in self.live.printers if p not in wanted]:
            await self._stop_worker(printer_id, 'the printer was removed')
            self.live.printers.pop(printer_id, None)
            self.live.temperatures.pop(printer_id, None)
            self.configs.pop(printer_id, None)
        for printer_id, (config, enabled) in wanted.items():
            await self._apply(config, enabled, jobs.get(printer_id))
        self.live.events.printers_reloaded.emit(None)

    async def _apply(self, config: PrinterConfig, enabled: bool, job: ActiveJob | None) -> None:
        old = self.configs.get(config.id)
        self.configs[config.id] = config
        live = self.live.printers.setdefault(config.id, PrinterLive(id=config.id))
        self.live.temperatures.setdefault(config.id, TemperatureHistory())
        live.name, live.kind = config.name, config.kind.value
        worker = self.workers.get(config.id)
        reconnect = old is not None and any(getattr(old, f) != getattr(config, f) for f in CONNECTION_FIELDS)
        if worker is not None and (not enabled or reconnect):
            await self._stop_worker(config.id, 'the printer was disabled' if not enabled else 'the printer changed')
            worker = None
            job = await self._active_job(config.id)  # stopping may have ended a host-streamed job
        if worker is not None:
            worker.config = config  # name, limits, materials: no reconnect needed
        elif enabled and self.started:
            worker = PrinterWorker(
                config, engine=self.engine, live=self.live, registry=self.registry, job=job, timing=self.timing
            )
            self.workers[config.id] = worker
            worker.start()
        elif not enabled:
            live.state, live.stale = 'offline', False
            live.message = ''

    async def _active_job(self, printer_id: int) -> ActiveJob | None:
        async with self.engine.connect() as conn:
            return (await job_store.active_jobs(conn)).get(printer_id)

    async def _stop_worker(self, printer_id: int, reason: str = 'the panel stopped') -> None:
        worker = self.workers.pop(printer_id, None)
        if worker is not None:
            await worker.stop(reason)

    # ---- what services ask ---------------------------------------------------------------------------------

    def worker(self, printer_id: int) -> PrinterWorker:
        worker = self.workers.get(printer_id)
        if worker is None:
            raise PrinterUnavailable('the printer is not enabled' if printer_id in self.configs else 'no such printer')
        return worker

    def limits(self, printer_id: int) -> PrinterLimits:
        config = self.configs.get(printer_id)
        return config.limits if config is not None else PrinterLimits()

    def config(self, printer_id: int) -> PrinterConfig | None:
        config = self.configs.get(printer_id)
        return None if config is None else replace(config)

    def current_job(self, printer_id: int) -> ActiveJob | None:
        worker = self.workers.get(printer_id)
        return None if worker is None else worker.job

    def driver(self, printer_id: int) -> PrinterDriver | None:
        worker = self.workers.get(printer_id)
        return None if worker is None else worker.driver

    async def command(self, printer_id: int, factory: Callable[[PrinterDriver], Awaitable[T]]) -> T:
        """Run `factory(driver)` on the printer's worker, after the commands queued before it."""
        return await self.worker(printer_id).command(factory)

    async def emergency_stop(self, printer_id: int) -> None:
        """Straight to the printer, not queued behind other commands; the worker settles how the job ended."""
        await self.worker(printer_id).emergency_stop()

    async def start_job(self, printer_id: int, local_path: Path, display_name: str, member_id: int | None) -> int:
        return await self.worker(printer_id).start_job(local_path, display_name, member_id)
