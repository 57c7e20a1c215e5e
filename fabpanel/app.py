"""Composition root: builds the database, live state, services and adapters of one running panel."""

from __future__ import annotations

import asyncio
import gc
import logging
from contextlib import suppress
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from fabpanel.boards.embedded import EmbeddedBroker
from fabpanel.boards.gateway import BoardGateway
from fabpanel.db import migrate
from fabpanel.db.engine import checkpoint_sqlite, create_engine, sqlite_path
from fabpanel.db.writer import GroupWriter
from fabpanel.live.state import LiveState
from fabpanel.mail.sender import Mailer
from fabpanel.printers.fleet import Fleet
from fabpanel.services.auth import AuthService
from fabpanel.services.boards import BoardService
from fabpanel.services.printers import PrinterService
from fabpanel.services.spool_ledger import SpoolLedger
from fabpanel.services.spools import SpoolService
from fabpanel.settings import Settings

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 5.0
CHECKPOINT_EVERY_S = 5.0


class Panel:
    """Everything one fabpanel process runs, minus the web pages (which are registered on top)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = Path(settings.database.data_dir)
        self.live = LiveState()
        # built here (nothing connects yet) so pages can be registered before start-up
        self.engine: AsyncEngine = create_engine(settings.database.url)
        self.writer = GroupWriter(self.engine)
        self.boards = BoardService(self.engine, self.writer, self.live)
        self.mailer = Mailer(settings.email)
        self.auth = AuthService(self.engine, self.mailer, settings.web.base_url)
        self.fleet = Fleet(self.engine, self.live)  # one worker per enabled printer, started in start()
        self.printers = PrinterService(self.engine, self.live, self.fleet)
        self.spools = SpoolService(self.engine, self.live, settings.web.base_url)
        self.ledger = SpoolLedger(self.engine, self.live)  # job ends -> spool usage, exactly once
        self.gateway: BoardGateway | None = None
        self.broker: EmbeddedBroker | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.started = asyncio.Event()

    async def start(self, *, gateway: bool = True) -> None:
        s = self.settings
        await migrate.upgrade(self.engine, s.database.url)
        self.writer.start()
        await self.boards.load()
        created = await self.auth.ensure_first_admin(s.web.default_admin_email, self.data_dir)
        if created is not None:
            log.warning('first start: the admin account %s was created; its one-time password is in %s '
                        '(sign in and choose your own)', s.web.default_admin_email, created)
        await self.ledger.start()  # before the fleet: it reports the jobs a restart interrupted
        await self.fleet.start()
        if gateway:
            if s.mqtt.embedded:
                self.broker = EmbeddedBroker(s.mqtt.port, s.mqtt.embedded_bind)
                await self.broker.start()
            self.gateway = BoardGateway(s.mqtt, self.boards, self.live)
            self._tasks.append(asyncio.create_task(self.gateway.run(), name='board-gateway'))
        self._tasks.append(asyncio.create_task(self._sweep(), name='offline-sweep'))
        db_file = sqlite_path(s.database.url)
        if db_file is not None:
            self._tasks.append(asyncio.create_task(self._checkpoints(db_file), name='sqlite-checkpoints'))
        # what start-up loaded lives as long as the process: keep it out of the collector's full passes,
        # which otherwise stall the event loop for 100 ms and more on a large lab
        gc.collect()
        gc.freeze()
        self.started.set()

    async def stop(self) -> None:
        if self.gateway is not None:
            await self.gateway.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.fleet.stop()  # closes the printer connections and writes their pending records
        await self.ledger.stop()
        await self.boards.settle()
        await self.auth.settle()
        if self.started.is_set():
            with suppress(Exception):
                await self.boards.flush_last_seen()
        await self.writer.stop()
        if self.broker is not None:
            await self.broker.stop()
        await self.engine.dispose()

    async def _checkpoints(self, db_file: Path) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY_S)
            try:
                await asyncio.to_thread(checkpoint_sqlite, db_file)
            except Exception as e:  # a busy database just waits for the next round
                log.warning('database checkpoint failed: %s', e)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            self.live.sweep_offline()
