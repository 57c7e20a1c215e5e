"""Read what the gateway and live state keep in memory, at start and after an admin change."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fabpanel.core.access import AccessRules, MachineRule, MemberRule, RoleRule
from fabpanel.core.maintenance import PlanUsage
from fabpanel.core.uses import RECENT_KEPT, ClosedUse, MachineUses, OpenUse

from .models import Authorization, Board, Card, Intervention, Machine, MachineType, MaintenancePlan, Member, Role, Use


def _t(model: type) -> sa.Table:
    return model.__table__  # type: ignore[attr-defined,no-any-return]


def aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


async def load_access_rules(conn: AsyncConnection) -> AccessRules:
    rules = AccessRules()
    r, m, c, mt, ma, a = _t(Role), _t(Member), _t(Card), _t(MachineType), _t(Machine), _t(Authorization)
    for row in await conn.execute(sa.select(r.c.id, r.c.may_use_all_machines, r.c.may_maintain)):
        rules.roles[row.id] = RoleRule(id=row.id, may_use_all_machines=row.may_use_all_machines,
                                       may_maintain=row.may_maintain)
    for row in await conn.execute(sa.select(m.c.id, m.c.first_name, m.c.role_id, m.c.disabled, m.c.deleted_at)):
        rules.members[row.id] = MemberRule(id=row.id, first_name=row.first_name, role_id=row.role_id,
                                           disabled=row.disabled, deleted=row.deleted_at is not None)
    for row in await conn.execute(sa.select(c.c.uid, c.c.member_id)):
        rules.cards[row.uid.lower()] = row.member_id  # boards send lower case (rule 13.2)
    q = sa.select(ma.c.id, ma.c.name, ma.c.type_id, ma.c.blocked, mt.c.authorization_required,
                  mt.c.auto_logoff_minutes, mt.c.grace_minutes).join(mt, mt.c.id == ma.c.type_id)
    for row in await conn.execute(q.where(ma.c.deleted_at.is_(None))):
        rules.machines[row.id] = MachineRule(
            id=row.id, name=row.name, type_id=row.type_id, blocked=row.blocked,
            authorization_required=row.authorization_required, auto_logoff_minutes=row.auto_logoff_minutes,
            grace_minutes=row.grace_minutes)
    for row in await conn.execute(sa.select(a.c.member_id, a.c.machine_id, a.c.expires_at)):
        rules.authorizations[(row.member_id, row.machine_id)] = aware(row.expires_at)
    return rules


async def load_machine_uses(conn: AsyncConnection) -> dict[int, MachineUses]:
    u = _t(Use)
    opened: dict[int, OpenUse] = {}
    for row in await conn.execute(sa.select(u).where(u.c.end.is_(None))):
        opened[row.machine_id] = OpenUse(card_uid=row.card_uid, member_id=row.member_id, start=aware(row.start),
                                         last_seen=aware(row.last_seen), replay=row.replay,
                                         unauthorized=row.unauthorized)
    # the last few closed uses per machine: enough to recognise a replayed stopuse after a restart
    ranked = sa.select(u, sa.func.row_number().over(partition_by=u.c.machine_id, order_by=u.c.end.desc())
                       .label('rn')).where(u.c.end.is_not(None)).subquery()
    recent: dict[int, list[ClosedUse]] = defaultdict(list)
    for row in await conn.execute(sa.select(ranked).where(ranked.c.rn <= RECENT_KEPT).order_by(ranked.c.end)):
        recent[row.machine_id].append(ClosedUse(card_uid=row.card_uid, member_id=row.member_id,
                                                start=aware(row.start), end=aware(row.end), replay=row.replay,
                                                unauthorized=row.unauthorized))
    out: dict[int, MachineUses] = {}
    for machine_id in set(opened) | set(recent):
        o = opened.get(machine_id)
        last_start = {o.card_uid: o.start} if o else {}
        out[machine_id] = MachineUses(open=o, recent=tuple(recent.get(machine_id, ())), last_start=last_start)
    return out


async def load_plans(conn: AsyncConnection, machine_id: int | None = None) -> dict[int, list[PlanUsage]]:
    """Every plan with the usage since its last intervention; only one machine's when `machine_id` is given."""
    p, i, u = _t(MaintenancePlan), _t(Intervention), _t(Use)
    last_q = sa.select(i.c.plan_id, sa.func.max(i.c.at).label('last_at')).group_by(i.c.plan_id)
    if machine_id is not None:
        # one machine's plans (a board's maintenance message, answered while it waits): group only their
        # interventions, not the whole lab's history
        last_q = last_q.where(i.c.plan_id.in_(sa.select(p.c.id).where(p.c.machine_id == machine_id)))
    last = last_q.subquery()
    used = sa.func.coalesce(sa.func.sum(u.c.duration_s), 0.0)
    q = (sa.select(p.c.id, p.c.machine_id, p.c.hours_between, p.c.lcd_text, p.c.description, last.c.last_at,
                   used.label('used'))
         .select_from(p)
         .outerjoin(last, last.c.plan_id == p.c.id)
         .outerjoin(u, sa.and_(u.c.machine_id == p.c.machine_id, u.c.end.is_not(None),
                               sa.or_(last.c.last_at.is_(None), u.c.start > last.c.last_at)))
         .group_by(p.c.id, p.c.machine_id, p.c.hours_between, p.c.lcd_text, p.c.description, last.c.last_at)
         .order_by(p.c.id))
    if machine_id is not None:
        q = q.where(p.c.machine_id == machine_id)
    plans: dict[int, list[PlanUsage]] = defaultdict(list)
    for row in await conn.execute(q):
        plans[row.machine_id].append(PlanUsage(
            plan_id=row.id, machine_id=row.machine_id, hours_between=row.hours_between, lcd_text=row.lcd_text,
            description=row.description, last_intervention=aware(row.last_at), used_seconds=float(row.used or 0.0)))
    return dict(plans)


async def load_machine_rows(conn: AsyncConnection) -> list[sa.Row]:
    ma, mt = _t(Machine), _t(MachineType)
    q = (sa.select(ma.c.id, ma.c.name, ma.c.blocked, ma.c.usage_seconds, ma.c.last_seen, mt.c.name.label('type_name'))
         .join(mt, mt.c.id == ma.c.type_id).where(ma.c.deleted_at.is_(None)).order_by(ma.c.id))
    return list(await conn.execute(q))


async def load_boards(conn: AsyncConnection) -> list[sa.Row]:
    return list(await conn.execute(sa.select(_t(Board))))


async def member_first_names(conn: AsyncConnection, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    m = _t(Member)
    return {r.id: r.first_name for r in await conn.execute(sa.select(m.c.id, m.c.first_name).where(m.c.id.in_(ids)))}
