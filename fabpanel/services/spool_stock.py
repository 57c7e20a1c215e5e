"""Stock reports over the spool ledger: remaining grams per filament, low stock (for the dashboard), the reorder
list, and grams and material cost per member over a period."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from fabpanel.core import spools as core
from fabpanel.db.loaders import aware
from fabpanel.db.models import Filament, Member, Vendor
from fabpanel.services.auth import CurrentUser
from fabpanel.services.machines import Refused
from fabpanel.services.spool_ledger import REASON_WEIGH_IN, spool_t, usage_t

vendor_t: sa.Table = Vendor.__table__  # type: ignore[attr-defined]
filament_t: sa.Table = Filament.__table__  # type: ignore[attr-defined]
member_t: sa.Table = Member.__table__  # type: ignore[attr-defined]

DEFAULT_SPOOL_G = 1000.0


@dataclass(kw_only=True, slots=True)
class MemberUsageRow:
    member_id: int | None  # None: jobs started at a printer, nobody's
    name: str  # member text: render as text only
    grams: float
    cost: float
    entries_without_price: int  # ledger entries whose filament has no price: not in `cost`
    by_material: dict[str, float] = field(default_factory=dict)


class SpoolReports:
    engine: AsyncEngine

    async def stock(self) -> list[core.Stock]:
        """Per filament: grams left on its spools in use; a new spool's size is that of its latest spool."""
        async with self.engine.connect() as conn:
            filaments = (
                await conn.execute(
                    sa.select(filament_t, vendor_t.c.name.label('vendor'))
                    .join(vendor_t, vendor_t.c.id == filament_t.c.vendor_id)
                    .order_by(vendor_t.c.name, filament_t.c.name)
                )
            ).all()
            spools = (
                await conn.execute(
                    sa.select(
                        spool_t.c.filament_id,
                        spool_t.c.remaining_grams,
                        spool_t.c.archived,
                        spool_t.c.initial_grams,
                        spool_t.c.id,
                    ).order_by(spool_t.c.id)
                )
            ).all()
        size = {s.filament_id: s.initial_grams for s in spools}  # ordered by id: the last one wins
        return core.stock(
            [
                core.FilamentStockIn(
                    filament_id=f.id,
                    name=f.name,
                    vendor=f.vendor,
                    threshold_g=f.low_stock_grams,
                    spool_net_g=size.get(f.id, DEFAULT_SPOOL_G),
                    price_per_kg=f.price_per_kg,
                )
                for f in filaments
            ],
            [
                core.SpoolStockIn(filament_id=s.filament_id, remaining_g=s.remaining_grams, archived=s.archived)
                for s in spools
            ],
        )

    async def low_stock(self) -> list[core.Stock]:
        return core.low_stock(await self.stock())

    async def reorder(self) -> list[core.Reorder]:
        return core.reorder_list(await self.stock())

    async def member_usage(self, actor: CurrentUser, start: datetime, end: datetime) -> list[MemberUsageRow]:
        """Grams and material cost per member over [start, end): staff see everyone, a member only themself.
        Weigh-in corrections are stock keeping, not anyone's printing: left out."""
        if end <= start:
            raise Refused('empty_period')
        q = (
            sa.select(
                usage_t.c.member_id,
                usage_t.c.grams,
                usage_t.c.created_at,
                filament_t.c.price_per_kg,
                filament_t.c.material,
            )
            .join(spool_t, spool_t.c.id == usage_t.c.spool_id)
            .join(filament_t, filament_t.c.id == spool_t.c.filament_id)
            .where(usage_t.c.reason != REASON_WEIGH_IN, usage_t.c.created_at >= start, usage_t.c.created_at < end)
        )
        if not actor.is_staff:
            q = q.where(usage_t.c.member_id == actor.member_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
            ids = {r.member_id for r in rows if r.member_id is not None}
            names = (
                {
                    m.id: f'{m.first_name} {m.last_name}'.strip()
                    for m in await conn.execute(
                        sa.select(member_t.c.id, member_t.c.first_name, member_t.c.last_name).where(
                            member_t.c.id.in_(ids)
                        )
                    )
                }
                if ids
                else {}
            )
        usages = [
            core.UsageIn(
                member_id=r.member_id,
                grams=r.grams,
                at=_aware(r.created_at),
                price_per_kg=r.price_per_kg,
                material=r.material,
            )
            for r in rows
        ]
        return [
            MemberUsageRow(
                member_id=u.member_id,
                name=names.get(u.member_id, '') if u.member_id else '',
                grams=u.grams,
                cost=u.cost,
                entries_without_price=u.jobs_without_price,
                by_material=u.by_material or {},
            )
            for u in core.member_usage(usages, _aware(start), _aware(end))
        ]


def _aware(dt: datetime) -> datetime:
    out = aware(dt)
    assert out is not None
    return out
