"""Roles and machine types: the lab's settings. Refuses what would lock every admin out or orphan members
and machines."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fabpanel.db.models import Machine, MachineType, Member, Role
from fabpanel.services.auth import CurrentUser
from fabpanel.services.boards import BoardService
from fabpanel.services.machines import Refused, clean_name, parse_int, require_admin

log = logging.getLogger(__name__)

role_t = Role.__table__
type_t = MachineType.__table__
member_t = Member.__table__
machine_t = Machine.__table__

LOGOFF_MAX = 65535  # minutes; 0 = never
GRACE_MAX = 255  # minutes
ROLE_FLAGS = ('may_use_all_machines', 'may_maintain', 'may_administer', 'may_approve_prints', 'is_default')


@dataclass(kw_only=True, slots=True)
class RoleRow:
    id: int
    name: str
    may_use_all_machines: bool
    may_maintain: bool
    may_administer: bool
    may_approve_prints: bool
    is_default: bool
    members: int  # members holding the role, not counting deleted ones
    deleted_members: int = 0


@dataclass(kw_only=True, slots=True)
class TypeRow:
    id: int
    name: str
    auto_logoff_minutes: int
    grace_minutes: int
    authorization_required: bool
    machines: int  # machines of the type, not counting deleted ones
    deleted_machines: int = 0


def check_minutes(value: Any, field: str, maximum: int) -> int:
    number = parse_int(value)
    if number is None or not 0 <= number <= maximum:
        raise Refused('bad_minutes', field, max=maximum)
    return number


async def active_admins(conn: AsyncConnection, *, except_member: int | None = None) -> int:
    """Members who can sign in and administer: a role that may administer, a password, not disabled or deleted.
    Member pages can call this (with `except_member`) before disabling, deleting or demoting someone."""
    q = (sa.select(sa.func.count()).select_from(member_t).join(role_t, role_t.c.id == member_t.c.role_id)
         .where(role_t.c.may_administer.is_(True), member_t.c.password_hash.is_not(None),
                member_t.c.disabled.is_(False), member_t.c.deleted_at.is_(None)))
    if except_member is not None:
        q = q.where(member_t.c.id != except_member)
    return int((await conn.execute(q)).scalar_one())


async def _name_taken(conn: AsyncConnection, table: sa.Table, name: str, own_id: int | None) -> bool:
    q = sa.select(table.c.id).where(sa.func.lower(table.c.name) == name.lower())
    if own_id is not None:
        q = q.where(table.c.id != own_id)
    return (await conn.execute(q)).first() is not None


async def _usage(conn: AsyncConnection, table: sa.Table, column: sa.Column, value: int) -> tuple[int, int]:
    """(active, deleted) rows of `table` whose `column` is `value`."""
    rows = await conn.execute(sa.select(table.c.deleted_at.is_(None).label('active'), sa.func.count())
                              .where(column == value).group_by(table.c.deleted_at.is_(None)))
    counts = {bool(r[0]): int(r[1]) for r in rows}
    return counts.get(True, 0), counts.get(False, 0)


class RoleService:
    def __init__(self, engine: AsyncEngine, boards: BoardService) -> None:
        self.engine = engine
        self.boards = boards

    # ---- roles -------------------------------------------------------------------------------------------------
    async def roles(self) -> list[RoleRow]:
        active = sa.func.sum(sa.case((member_t.c.id.is_not(None) & member_t.c.deleted_at.is_(None), 1), else_=0))
        deleted = sa.func.sum(sa.case((member_t.c.deleted_at.is_not(None), 1), else_=0))
        q = (sa.select(role_t, sa.func.coalesce(active, 0).label('members'),
                       sa.func.coalesce(deleted, 0).label('deleted_members'))
             .select_from(role_t).outerjoin(member_t, member_t.c.role_id == role_t.c.id)
             .group_by(*role_t.c).order_by(sa.func.lower(role_t.c.name)))
        async with self.engine.connect() as conn:
            return [RoleRow(id=r.id, name=r.name, members=int(r.members), deleted_members=int(r.deleted_members),
                            **{f: bool(getattr(r, f)) for f in ROLE_FLAGS}) for r in await conn.execute(q)]

    async def save_role(self, actor: CurrentUser | None, role_id: int | None, name: str, *,
                        may_use_all_machines: bool = False, may_maintain: bool = False, may_administer: bool = False,
                        may_approve_prints: bool = False, is_default: bool = False) -> int:
        """Add (role_id None) or change a role. Making it the default takes that from the previous default."""
        require_admin(actor)
        name = clean_name(name)
        values = {'name': name, 'may_use_all_machines': bool(may_use_all_machines),
                  'may_maintain': bool(may_maintain), 'may_administer': bool(may_administer),
                  'may_approve_prints': bool(may_approve_prints), 'is_default': bool(is_default)}
        async with self.engine.begin() as conn:
            if role_id is not None:
                current = (await conn.execute(sa.select(role_t.c.is_default).where(role_t.c.id == role_id))).first()
                if current is None:
                    raise Refused('role_unknown')
                if current.is_default and not is_default:
                    # new members get the default role: there is always one; another role takes it over instead
                    raise Refused('default_needed', 'is_default')
            admins_before = await active_admins(conn)
            if await _name_taken(conn, role_t, name, role_id):
                raise Refused('name_taken', 'name', name=name)
            if is_default:
                await conn.execute(sa.update(role_t).where(role_t.c.is_default.is_(True)).values(is_default=False))
            if role_id is None:
                role_id = int((await conn.execute(sa.insert(role_t).values(**values).returning(role_t.c.id)))
                              .scalar_one())
            else:
                await conn.execute(sa.update(role_t).where(role_t.c.id == role_id).values(**values))
            # checked on the result, inside the transaction: raising here undoes the change
            if admins_before and not await active_admins(conn):
                raise Refused('last_admin', 'may_administer')
        await self.boards.reload_rules()
        return role_id

    async def delete_role(self, actor: CurrentUser | None, role_id: int, reassign_to: int | None = None) -> int:
        """Delete a role nobody holds; with `reassign_to`, first move its members to that role. Returns how many
        members were moved. Refused: 'role_in_use' (with the counts) or 'role_default'."""
        require_admin(actor)
        async with self.engine.begin() as conn:
            row = (await conn.execute(sa.select(role_t.c.is_default).where(role_t.c.id == role_id))).first()
            if row is None:
                raise Refused('role_unknown')
            if row.is_default:
                raise Refused('role_default')
            admins_before = await active_admins(conn)
            active, deleted = await _usage(conn, member_t, member_t.c.role_id, role_id)
            moved = 0
            if active or deleted:
                if reassign_to is None:
                    raise Refused('role_in_use', members=active, deleted=deleted)
                if reassign_to == role_id or (await conn.execute(sa.select(role_t.c.id).where(
                        role_t.c.id == reassign_to))).first() is None:
                    raise Refused('reassign_unknown', 'reassign')
                moved = (await conn.execute(sa.update(member_t).where(member_t.c.role_id == role_id).values(
                    role_id=reassign_to))).rowcount
            await conn.execute(sa.delete(role_t).where(role_t.c.id == role_id))
            if admins_before and not await active_admins(conn):
                raise Refused('last_admin', 'reassign')
        log.info('role %d deleted (%d members moved)', role_id, moved)
        await self.boards.reload_rules()
        return moved

    # ---- machine types ---------------------------------------------------------------------------------------
    async def types(self) -> list[TypeRow]:
        active = sa.func.sum(sa.case((machine_t.c.id.is_not(None) & machine_t.c.deleted_at.is_(None), 1), else_=0))
        deleted = sa.func.sum(sa.case((machine_t.c.deleted_at.is_not(None), 1), else_=0))
        q = (sa.select(type_t, sa.func.coalesce(active, 0).label('machines'),
                       sa.func.coalesce(deleted, 0).label('deleted_machines'))
             .select_from(type_t).outerjoin(machine_t, machine_t.c.type_id == type_t.c.id)
             .group_by(*type_t.c).order_by(sa.func.lower(type_t.c.name)))
        async with self.engine.connect() as conn:
            return [TypeRow(id=r.id, name=r.name, auto_logoff_minutes=r.auto_logoff_minutes,
                            grace_minutes=r.grace_minutes, authorization_required=bool(r.authorization_required),
                            machines=int(r.machines), deleted_machines=int(r.deleted_machines))
                    for r in await conn.execute(q)]

    async def save_type(self, actor: CurrentUser | None, type_id: int | None, name: str, *,
                        auto_logoff_minutes: Any = 0, grace_minutes: Any = 2,
                        authorization_required: bool = True) -> int:
        require_admin(actor)
        name = clean_name(name)
        values = {'name': name,
                  'auto_logoff_minutes': check_minutes(auto_logoff_minutes, 'auto_logoff_minutes', LOGOFF_MAX),
                  'grace_minutes': check_minutes(grace_minutes, 'grace_minutes', GRACE_MAX),
                  'authorization_required': bool(authorization_required)}
        async with self.engine.begin() as conn:
            if type_id is not None and (await conn.execute(sa.select(type_t.c.id).where(
                    type_t.c.id == type_id))).first() is None:
                raise Refused('type_unknown')
            if await _name_taken(conn, type_t, name, type_id):
                raise Refused('name_taken', 'name', name=name)
            if type_id is None:
                type_id = int((await conn.execute(sa.insert(type_t).values(**values).returning(type_t.c.id)))
                              .scalar_one())
            else:
                await conn.execute(sa.update(type_t).where(type_t.c.id == type_id).values(**values))
        await self.boards.reload_rules()
        return type_id

    async def delete_type(self, actor: CurrentUser | None, type_id: int, reassign_to: int | None = None) -> int:
        """Delete a type no machine has; with `reassign_to`, first move its machines (deleted ones too) to that
        type. Returns how many machines were moved. Refused: 'type_in_use' with the counts."""
        require_admin(actor)
        async with self.engine.begin() as conn:
            if (await conn.execute(sa.select(type_t.c.id).where(type_t.c.id == type_id))).first() is None:
                raise Refused('type_unknown')
            active, deleted = await _usage(conn, machine_t, machine_t.c.type_id, type_id)
            moved = 0
            if active or deleted:
                if reassign_to is None:
                    raise Refused('type_in_use', machines=active, deleted=deleted)
                if reassign_to == type_id or (await conn.execute(sa.select(type_t.c.id).where(
                        type_t.c.id == reassign_to))).first() is None:
                    raise Refused('reassign_unknown', 'reassign')
                moved = (await conn.execute(sa.update(machine_t).where(machine_t.c.type_id == type_id).values(
                    type_id=reassign_to))).rowcount
            await conn.execute(sa.delete(type_t).where(type_t.c.id == type_id))
        log.info('machine type %d deleted (%d machines moved)', type_id, moved)
        await self.boards.reload_rules()
        return moved
