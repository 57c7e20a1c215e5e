"""Printers: the admin's list of printers and the controls staff (and a job's own member) use. Every command is
checked here, role first, then G-code safety against the printer's limits, before the fleet worker runs it."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fabpanel.core.gcode_safety import Refusal, check_line
from fabpanel.core.printers import ACTIVE_STATES, Heater
from fabpanel.db.loaders import aware
from fabpanel.live.state import LiveState
from fabpanel.printers.driver import CommandRefused, PrinterDriver, PrinterUnavailable
from fabpanel.printers.fleet import CONNECTION_FIELDS, Fleet
from fabpanel.printers.job_store import ACTIVE, job_t, member_t, printer_t
from fabpanel.services.auth import CurrentUser
from fabpanel.services.machines import Refused, require_admin
from fabpanel.services.printer_forms import PrinterForm, PrinterRow, clean_form, row_of, scan_file

log = logging.getLogger(__name__)
T = TypeVar('T')

__all__ = ['JobRow', 'PrinterForm', 'PrinterRow', 'PrinterService', 'Refused']

CONSOLE_MAX = 256  # characters in one console line
MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass(kw_only=True, slots=True)
class JobRow:
    id: int
    printer_id: int
    file_name: str  # display only (member text: render as text)
    member_id: int | None
    started_by: str  # first name, '' for a job started at the printer
    state: str  # 'printing', 'paused' or a JobOutcome value
    outcome: str | None  # the JobOutcome value once ended
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None
    reason: str
    started_outside: bool


def refused_gcode(r: Refusal) -> Refused:
    return Refused(
        'gcode_refused', line=r.line_no, reason=r.reason, check=r.code, command=r.command, value=r.value, limit=r.limit
    )


def require_staff(actor: CurrentUser | None) -> CurrentUser:
    if actor is None or not actor.is_staff:
        raise Refused('forbidden')
    return actor


class PrinterService:
    def __init__(self, engine: AsyncEngine, live: LiveState, fleet: Fleet) -> None:
        self.engine, self.live, self.fleet = engine, live, fleet

    # ---- the list (anyone signed in) -----------------------------------------------------------------------

    async def list(self) -> list[PrinterRow]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(printer_t).where(printer_t.c.deleted_at.is_(None)).order_by(printer_t.c.name)
            )
            return [row_of(r) for r in rows]

    async def get(self, printer_id: int) -> PrinterRow | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(printer_t).where(printer_t.c.id == printer_id, printer_t.c.deleted_at.is_(None))
                )
            ).first()
        return None if row is None else row_of(row)

    async def jobs(self, printer_id: int, limit: int = 20) -> list[JobRow]:
        q = (
            sa.select(job_t, member_t.c.first_name)
            .outerjoin(member_t, member_t.c.id == job_t.c.member_id)
            .where(job_t.c.printer_id == printer_id)
            .order_by(job_t.c.started_at.desc(), job_t.c.id.desc())
            .limit(max(1, min(int(limit), 500)))
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        out = []
        for r in rows:
            started, ended = aware(r.started_at), aware(r.ended_at)
            out.append(
                JobRow(
                    id=r.id,
                    printer_id=r.printer_id,
                    file_name=r.file_name,
                    member_id=r.member_id,
                    started_by=r.first_name or '',
                    state=r.state,
                    outcome=None if r.state in ACTIVE else r.state,
                    started_at=started,
                    ended_at=ended,
                    duration_s=(ended - started).total_seconds() if started and ended else None,
                    reason=r.reason,
                    started_outside=r.started_outside,
                )
            )
        return out

    # ---- admin ---------------------------------------------------------------------------------------------

    async def create(self, actor: CurrentUser, form: PrinterForm) -> int:
        require_admin(actor)
        async with self.engine.begin() as conn:
            values = await clean_form(conn, form, None)
            result = await conn.execute(
                sa.insert(printer_t).values(**values, created_at=datetime.now(UTC)).returning(printer_t.c.id)
            )
            printer_id = int(result.scalar_one())
        log.info('printer %d (%s) added by member %d', printer_id, values['kind'], actor.member_id)
        await self.fleet.reload()
        return printer_id

    async def update(self, actor: CurrentUser, printer_id: int, form: PrinterForm) -> None:
        require_admin(actor)
        async with self.engine.begin() as conn:
            old = await self._row(conn, printer_id)
            values = await clean_form(conn, form, old)
            connection = (*CONNECTION_FIELDS, 'enabled')
            if self._busy(printer_id) and any(values[k] != getattr(old, k) for k in connection):
                raise Refused('printer_busy')  # a new connection would end a streamed job
            await conn.execute(sa.update(printer_t).where(printer_t.c.id == printer_id).values(**values))
        log.info('printer %d edited by member %d', printer_id, actor.member_id)
        await self.fleet.reload()

    async def delete(self, actor: CurrentUser, printer_id: int) -> None:
        """Removed from the fleet; its job history stays (and keeps its name)."""
        require_admin(actor)
        async with self.engine.begin() as conn:
            await self._row(conn, printer_id)
            running = (
                await conn.execute(
                    sa.select(job_t.c.id).where(job_t.c.printer_id == printer_id, job_t.c.state.in_(ACTIVE))
                )
            ).first()
            if running is not None or self._busy(printer_id):
                raise Refused('printer_busy')
            await conn.execute(
                sa.update(printer_t)
                .where(printer_t.c.id == printer_id)
                .values(deleted_at=datetime.now(UTC), enabled=False)
            )
        log.info('printer %d deleted by member %d', printer_id, actor.member_id)
        await self.fleet.reload()

    async def _row(self, conn: AsyncConnection, printer_id: int) -> Any:
        row = (
            await conn.execute(
                sa.select(printer_t).where(printer_t.c.id == printer_id, printer_t.c.deleted_at.is_(None))
            )
        ).first()
        if row is None:
            raise Refused('printer_unknown')
        return row

    def _busy(self, printer_id: int) -> bool:
        live = self.live.printers.get(printer_id)
        return self.fleet.current_job(printer_id) is not None or (live is not None and live.state in ACTIVE_STATES)

    # ---- controls ------------------------------------------------------------------------------------------

    async def pause(self, actor: CurrentUser, printer_id: int) -> None:
        self._job_control(actor, printer_id, 'printing')
        await self._command(printer_id, 'pause', lambda d: d.pause())

    async def resume(self, actor: CurrentUser, printer_id: int) -> None:
        self._job_control(actor, printer_id, 'paused')
        await self._command(printer_id, 'resume', lambda d: d.resume())

    async def cancel(self, actor: CurrentUser, printer_id: int) -> None:
        self._job_control(actor, printer_id, None)
        await self._command(printer_id, 'cancel', lambda d: d.cancel())

    async def emergency_stop(self, actor: CurrentUser, printer_id: int) -> None:
        require_staff(actor)
        self._known(printer_id)
        log.warning('printer %d: emergency stop by member %d', printer_id, actor.member_id)
        self._capable(printer_id, 'emergency_stop')
        await _mapped(self.fleet.emergency_stop(printer_id))

    async def set_temperature(self, actor: CurrentUser, printer_id: int, heater: Heater, target: float) -> None:
        require_staff(actor)
        limits = self._known(printer_id).limits
        heater = Heater(heater)
        limit = limits.max_for(heater)
        if not isinstance(target, int | float) or not math.isfinite(target) or target < 0:
            raise Refused('bad_number', heater.value, min=0, max=f'{limit:g}')
        if target > limit:
            raise Refused('too_hot', heater.value, heater=heater.value, max=f'{limit:g}', value=target)
        code = {Heater.NOZZLE: 'M104', Heater.BED: 'M140', Heater.CHAMBER: 'M141'}[heater]
        if (r := check_line(f'{code} S{target:g}', limits, staff=True)) is not None:  # the same rule as files
            raise refused_gcode(r)
        await self._command(printer_id, 'set_temperature', lambda d: d.set_temperature(heater, float(target)))

    async def console(self, actor: CurrentUser, printer_id: int, line: str) -> list[str]:
        require_staff(actor)
        limits = self._known(printer_id).limits
        line = (line or '').strip()
        if not line:
            return []
        if '\n' in line or '\r' in line:
            raise Refused('one_line')
        if len(line) > CONSOLE_MAX:
            raise Refused('line_too_long', max=CONSOLE_MAX)
        if (r := check_line(line, limits, staff=True)) is not None:
            raise refused_gcode(r)
        log.info('printer %d console, member %d: %s', printer_id, actor.member_id, line[:80])
        return await self._command(printer_id, 'gcode', lambda d: d.send_gcode([line]))

    async def start_file(
        self, actor: CurrentUser, printer_id: int, path: Path, display_name: str, *, maintenance: bool = False
    ) -> int:
        """Scan the file against the printer's limits, then upload and start it; returns the job id. Firmware-
        changing commands pass only in a maintenance job (staff who may maintain)."""
        require_staff(actor)
        if maintenance and not (actor.may_maintain or actor.may_administer):
            raise Refused('forbidden')
        config = self._known(printer_id)
        path = Path(path)
        if not path.is_file():
            raise Refused('file_missing')
        if path.stat().st_size > MAX_FILE_BYTES:
            raise Refused('file_too_large', max=MAX_FILE_BYTES)
        refusal = await asyncio.to_thread(scan_file, path, config.limits, maintenance, MAX_FILE_BYTES)
        if isinstance(refusal, str):
            raise Refused(refusal)
        if refusal is not None:
            raise refused_gcode(refusal)
        name = ' '.join((display_name or path.name).split())[:255] or path.name
        self._capable(printer_id, 'start')
        try:
            job_id = await self.fleet.start_job(printer_id, path, name, actor.member_id)
        except PrinterUnavailable as e:
            raise Refused('not_connected') from e
        except CommandRefused as e:
            raise Refused('printer_busy', reason=str(e)) from e
        log.info('printer %d: job %d started by member %d', printer_id, job_id, actor.member_id)
        return job_id

    # ---- helpers -------------------------------------------------------------------------------------------

    def _known(self, printer_id: int) -> Any:
        config = self.fleet.config(printer_id)
        if config is None:
            raise Refused('printer_unknown')
        return config

    def _job_control(self, actor: CurrentUser | None, printer_id: int, state: str | None) -> None:
        """Staff, or the member who started the running job."""
        if actor is None:
            raise Refused('forbidden')
        self._known(printer_id)
        job = self.fleet.current_job(printer_id)
        if job is None:
            raise Refused('not_printing')
        if not actor.is_staff and (job.member_id is None or job.member_id != actor.member_id):
            raise Refused('not_your_job')
        live = self.live.printers.get(printer_id)
        if state is not None and live is not None and live.state != state:
            raise Refused('not_paused' if state == 'paused' else 'not_printing', state=live.state)

    def _capable(self, printer_id: int, capability: str) -> None:
        driver = self.fleet.driver(printer_id)
        if driver is None:
            raise Refused('not_connected')
        if not getattr(driver.capabilities, capability, True):
            raise Refused('not_supported')

    async def _command(self, printer_id: int, capability: str, factory: Callable[[PrinterDriver], Awaitable[T]]) -> T:
        self._capable(printer_id, capability)
        return await _mapped(self.fleet.command(printer_id, factory))


async def _mapped(command: Awaitable[T]) -> T:
    """A fleet command, with the printer's refusals as Refused."""
    try:
        return await command
    except PrinterUnavailable as e:
        raise Refused('not_connected') from e
    except CommandRefused as e:
        raise Refused('printer_refused', reason=str(e)) from e
