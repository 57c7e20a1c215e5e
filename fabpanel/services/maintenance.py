"""Maintenance plans and interventions: what is due per machine, interventions recorded by hand, plans kept by
admins. After every change the boards' memory (and with it the dashboard tiles) is reloaded."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fabpanel.core.history import FUTURE_TOLERANCE
from fabpanel.core.maintenance import PlanUsage
from fabpanel.core.protocol import LCD_WIDTH
from fabpanel.db import loaders
from fabpanel.db.loaders import aware
from fabpanel.db.models import Intervention, Machine, MaintenancePlan, Member
from fabpanel.services.auth import CurrentUser
from fabpanel.services.boards import BoardService
from fabpanel.services.exports import xlsx

log = logging.getLogger(__name__)

plan_t: sa.Table = MaintenancePlan.__table__  # type: ignore[attr-defined]
intervention_t: sa.Table = Intervention.__table__  # type: ignore[attr-defined]
machine_t: sa.Table = Machine.__table__  # type: ignore[attr-defined]
member_t: sa.Table = Member.__table__  # type: ignore[attr-defined]

PER_PAGE = 25
EXPORT_LIMIT = 100_000
MAX_HOURS = 1_000_000.0
MAX_DESCRIPTION = 200
MAX_NOTE = 500
MAX_URL = 500


class MaintenanceError(Exception):
    """A maintenance action was refused. `code` says why; `fields` maps form fields to their problem."""

    def __init__(self, code: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.fields = fields or {}


@dataclass(kw_only=True, slots=True, frozen=True)
class PlanInput:
    machine_id: int | None
    hours_between: float | None
    description: str
    lcd_text: str = ''
    instructions_url: str = ''


@dataclass(kw_only=True, slots=True, frozen=True)
class PlanRow:
    id: int
    machine_id: int
    machine_name: str
    description: str
    hours_between: float
    used_hours: float  # closed uses since the last intervention
    lcd_text: str
    instructions_url: str
    last_intervention: datetime | None
    due: bool  # the boards' rule (core.maintenance), not recomputed here

    @property
    def hours_left(self) -> float:
        return self.hours_between - self.used_hours


@dataclass(kw_only=True, slots=True, frozen=True)
class InterventionRow:
    id: int
    plan_id: int
    plan_description: str
    machine_id: int
    machine_name: str
    member_name: str  # '' when nobody is known
    at: datetime
    source: str  # 'board' or 'manual'
    replay: bool
    note: str


def _now() -> datetime:
    return datetime.now(UTC)


def _require_maintainer(user: CurrentUser) -> None:
    if not (user.may_maintain or user.may_administer):
        raise MaintenanceError('forbidden')


def _require_admin(user: CurrentUser) -> None:
    if not user.may_administer:
        raise MaintenanceError('forbidden')


def is_web_link(url: str) -> bool:
    """Only http(s) addresses with a host become links; anything else (javascript:, data:, ...) never does."""
    if not url or len(url) > MAX_URL or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ('http', 'https') and bool(parts.hostname)


def _printable(text: str) -> bool:
    return all(c.isprintable() for c in text)


def validate_plan(data: PlanInput, machine_ids: set[int]) -> tuple[PlanInput, dict[str, str]]:
    """The cleaned input and the problems found, by field (empty when the plan can be saved)."""
    errors: dict[str, str] = {}
    description = (data.description or '').strip()
    lcd = (data.lcd_text or '').strip()
    url = (data.instructions_url or '').strip()
    if data.machine_id is None or data.machine_id not in machine_ids:
        errors['machine'] = 'machine_required'
    hours = data.hours_between
    if hours is None or not math.isfinite(hours) or not 0 < hours <= MAX_HOURS:
        errors['hours'] = 'hours_positive'
    if not description:
        errors['description'] = 'description_required'
    elif len(description) > MAX_DESCRIPTION or not _printable(description):
        errors['description'] = 'description_long' if len(description) > MAX_DESCRIPTION else 'text_invalid'
    if len(lcd) > LCD_WIDTH:
        errors['lcd'] = 'lcd_long'
    elif not _printable(lcd):
        errors['lcd'] = 'text_invalid'
    if url and not is_web_link(url):
        errors['url'] = 'url_invalid'
    clean = PlanInput(machine_id=data.machine_id, hours_between=hours, description=description, lcd_text=lcd,
                      instructions_url=url)
    return clean, errors


def lcd_warning(text: str) -> str | None:
    """A soft warning for text the board's 16-character display may show badly (not a refusal)."""
    return 'lcd_not_ascii' if any(ord(c) > 126 for c in text) else None


class MaintenanceService:
    def __init__(self, engine: AsyncEngine, boards: BoardService) -> None:
        self.engine = engine
        self.boards = boards

    # ---- plans -------------------------------------------------------------------------------------------------
    async def machines(self, user: CurrentUser) -> dict[int, str]:
        """The machines (not deleted) plans can belong to, by name."""
        _require_maintainer(user)
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(machine_t.c.id, machine_t.c.name)
                                      .where(machine_t.c.deleted_at.is_(None)))
            return {r.id: r.name for r in sorted(rows, key=lambda r: (r.name.lower(), r.id))}

    async def all_plans(self, user: CurrentUser, machine_id: int | None = None) -> list[PlanRow]:
        _require_maintainer(user)
        async with self.engine.connect() as conn:
            usage = await loaders.load_plans(conn, machine_id)
            q = (sa.select(plan_t, machine_t.c.name.label('machine_name'))
                 .join(machine_t, machine_t.c.id == plan_t.c.machine_id)
                 .where(machine_t.c.deleted_at.is_(None)))
            if machine_id is not None:
                q = q.where(plan_t.c.machine_id == machine_id)
            rows = list(await conn.execute(q))
        by_id: dict[int, PlanUsage] = {p.plan_id: p for plans in usage.values() for p in plans}
        out = []
        for r in rows:
            u = by_id.get(r.id) or PlanUsage(plan_id=r.id, machine_id=r.machine_id, hours_between=r.hours_between,
                                             lcd_text=r.lcd_text, description=r.description, last_intervention=None,
                                             used_seconds=0.0)
            out.append(PlanRow(id=r.id, machine_id=r.machine_id, machine_name=r.machine_name,
                               description=r.description, hours_between=r.hours_between,
                               used_hours=u.used_seconds / 3600, lcd_text=r.lcd_text,
                               instructions_url=r.instructions_url, last_intervention=u.last_intervention, due=u.due))
        # what is due first, then the closest to due
        return sorted(out, key=lambda p: (not p.due, p.hours_left / p.hours_between if p.hours_between else 0,
                                          p.machine_name.lower(), p.id))

    async def plans(self, user: CurrentUser, due_only: bool = False, machine_id: int | None = None, page: int = 0,
                    per_page: int = PER_PAGE) -> tuple[list[PlanRow], int]:
        """One page of plans and how many match. Hours come from the same rule the boards use."""
        rows = await self.all_plans(user, machine_id)
        if due_only:
            rows = [p for p in rows if p.due]
        start = max(page, 0) * per_page
        return rows[start:start + per_page], len(rows)

    async def create_plan(self, user: CurrentUser, data: PlanInput) -> int:
        _require_admin(user)
        clean = await self._valid(data)

        async def work(conn: AsyncConnection) -> int:
            result = await conn.execute(sa.insert(plan_t).values(
                machine_id=clean.machine_id, hours_between=float(clean.hours_between or 0),
                description=clean.description, lcd_text=clean.lcd_text, instructions_url=clean.instructions_url))
            return int(result.inserted_primary_key[0])

        plan_id = await self.boards.writer.write(work)
        log.info('maintenance plan %d created by member %d', plan_id, user.member_id)
        await self.boards.reload_rules()
        return plan_id

    async def update_plan(self, user: CurrentUser, plan_id: int, data: PlanInput) -> None:
        _require_admin(user)
        clean = await self._valid(data)

        async def work(conn: AsyncConnection) -> str | None:
            row = (await conn.execute(sa.select(plan_t).where(plan_t.c.id == plan_id))).first()
            if row is None:
                return 'not_found'
            if row.machine_id != clean.machine_id and await _intervention_count(conn, plan_id):
                return 'machine_fixed'  # its interventions were done on the other machine
            await conn.execute(sa.update(plan_t).where(plan_t.c.id == plan_id).values(
                machine_id=clean.machine_id, hours_between=float(clean.hours_between or 0),
                description=clean.description, lcd_text=clean.lcd_text, instructions_url=clean.instructions_url))
            return None

        problem = await self.boards.writer.write(work)
        if problem == 'machine_fixed':
            raise MaintenanceError('invalid', {'machine': 'machine_fixed'})
        if problem:
            raise MaintenanceError(problem)
        log.info('maintenance plan %d changed by member %d', plan_id, user.member_id)
        await self.boards.reload_rules()

    async def interventions_of(self, user: CurrentUser, plan_id: int) -> int:
        """How many interventions deleting this plan would delete with it."""
        _require_admin(user)
        async with self.engine.connect() as conn:
            return await _intervention_count(conn, plan_id)

    async def delete_plan(self, user: CurrentUser, plan_id: int) -> int:
        """Delete a plan and its interventions (in one transaction); returns how many interventions went."""
        _require_admin(user)

        async def work(conn: AsyncConnection) -> int | None:
            if (await conn.execute(sa.select(plan_t.c.id).where(plan_t.c.id == plan_id))).first() is None:
                return None
            gone = await conn.execute(sa.delete(intervention_t).where(intervention_t.c.plan_id == plan_id))
            await conn.execute(sa.delete(plan_t).where(plan_t.c.id == plan_id))
            return int(gone.rowcount or 0)

        removed = await self.boards.writer.write(work)
        if removed is None:
            raise MaintenanceError('not_found')
        log.info('maintenance plan %d deleted by member %d (%d interventions)', plan_id, user.member_id, removed)
        await self.boards.reload_rules()
        return removed

    async def _valid(self, data: PlanInput) -> PlanInput:
        async with self.engine.connect() as conn:
            ids = {r[0] for r in await conn.execute(sa.select(machine_t.c.id).where(machine_t.c.deleted_at.is_(None)))}
        clean, errors = validate_plan(data, ids)
        if errors:
            raise MaintenanceError('invalid', errors)
        return clean

    # ---- interventions -----------------------------------------------------------------------------------------
    async def record_intervention(self, user: CurrentUser, plan_id: int, at: datetime | None = None, note: str = '',
                                  now: datetime | None = None) -> int:
        """An intervention done by hand (source 'manual', by this member); `at` defaults to now, never later."""
        _require_maintainer(user)
        now = now or _now()
        at = at or now
        note = (note or '').strip()
        if at.tzinfo is None:
            raise MaintenanceError('invalid', {'at': 'time_invalid'})
        if at > now + FUTURE_TOLERANCE:
            raise MaintenanceError('invalid', {'at': 'in_future'})
        if len(note) > MAX_NOTE:
            raise MaintenanceError('invalid', {'note': 'note_long'})

        async def work(conn: AsyncConnection) -> tuple[int, int] | None:
            plan = (await conn.execute(
                sa.select(plan_t.c.machine_id).join(machine_t, machine_t.c.id == plan_t.c.machine_id)
                .where(plan_t.c.id == plan_id, machine_t.c.deleted_at.is_(None)))).first()
            if plan is None:
                return None
            result = await conn.execute(sa.insert(intervention_t).values(
                plan_id=plan_id, machine_id=plan.machine_id, member_id=user.member_id, at=at, source='manual',
                replay=False, note=note))
            return int(result.inserted_primary_key[0]), plan.machine_id

        done = await self.boards.writer.write(work)
        if done is None:
            raise MaintenanceError('not_found')
        intervention_id, machine_id = done
        log.info('intervention on plan %d recorded by hand by member %d', plan_id, user.member_id)
        await self.boards.reload_rules()
        self.boards.live.events.maintenance_done.emit(machine_id)
        return intervention_id

    async def interventions(self, user: CurrentUser, plan_id: int | None = None, machine_id: int | None = None,
                            page: int = 0, per_page: int = PER_PAGE) -> tuple[list[InterventionRow], int]:
        _require_maintainer(user)
        where = _intervention_where(plan_id, machine_id)
        async with self.engine.connect() as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(intervention_t).where(*where)))
            count = int(total.scalar_one())
            rows = await conn.execute(_interventions_query(where).limit(per_page).offset(max(page, 0) * per_page))
            return [_intervention_row(r) for r in rows], count

    async def export_interventions(self, user: CurrentUser, headers: list[str], sources: dict[str, str],
                                   plan_id: int | None = None, machine_id: int | None = None) -> bytes:
        """The interventions as filtered, as an xlsx workbook (headers and source names come translated)."""
        _require_maintainer(user)
        async with self.engine.connect() as conn:
            q = _interventions_query(_intervention_where(plan_id, machine_id)).limit(EXPORT_LIMIT)
            rows = [_intervention_row(r) for r in await conn.execute(q)]
        lines = [[r.at, r.machine_name, r.plan_description, r.member_name, sources.get(r.source, r.source), r.note]
                 for r in rows]
        return await asyncio.to_thread(xlsx, 'Interventions', headers, lines)


async def _intervention_count(conn: AsyncConnection, plan_id: int) -> int:
    q = sa.select(sa.func.count()).select_from(intervention_t).where(intervention_t.c.plan_id == plan_id)
    return int((await conn.execute(q)).scalar_one())


def _intervention_where(plan_id: int | None, machine_id: int | None) -> list[sa.ColumnElement[bool]]:
    out: list[sa.ColumnElement[bool]] = []
    if plan_id is not None:
        out.append(intervention_t.c.plan_id == plan_id)
    if machine_id is not None:
        out.append(intervention_t.c.machine_id == machine_id)
    return out


def _interventions_query(where: list[sa.ColumnElement[bool]]) -> sa.Select[Any]:
    return (sa.select(intervention_t, plan_t.c.description, machine_t.c.name.label('machine_name'),
                      member_t.c.first_name, member_t.c.last_name)
            .select_from(intervention_t.join(plan_t, plan_t.c.id == intervention_t.c.plan_id)
                         .join(machine_t, machine_t.c.id == intervention_t.c.machine_id)
                         .outerjoin(member_t, member_t.c.id == intervention_t.c.member_id))
            .where(*where)
            .order_by(intervention_t.c.at.desc(), intervention_t.c.id.desc()))


def _intervention_row(r: Any) -> InterventionRow:
    who = f'{r.first_name} {r.last_name}'.strip() if r.first_name is not None else ''
    return InterventionRow(id=r.id, plan_id=r.plan_id, plan_description=r.description, machine_id=r.machine_id,
                           machine_name=r.machine_name, member_name=who, at=aware(r.at), source=r.source,
                           replay=r.replay, note=r.note)
