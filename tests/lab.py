"""A small known lab for tests: roles, members with cards, machine types, machines, plans."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from fabpanel.db.engine import create_engine, session_factory
from fabpanel.db.migrate import upgrade
from fabpanel.db.models import (
    Authorization,
    Card,
    Machine,
    MachineType,
    MaintenancePlan,
    Member,
    Role,
    Use,
)
from fabpanel.services.auth import CurrentUser

GIULIA = '0a1b2c3d'  # plain member, authorized on machine 1
MARIO = '11223344'  # maintainer, authorized on 1 and 2
ANNA = 'aabbccdd'  # staff: may use every machine, may maintain
DISABLED = 'deadbeef'  # disabled member, authorized on 1
EXPIRED = '55667788'  # authorization on 1 expired yesterday
UNKNOWN = 'f00dcafe'

PRINTER, LASER, DRILL, BLOCKED = 1, 2, 3, 4


async def seed(session: AsyncSession) -> None:
    now = datetime.now(UTC)
    member = Role(id=1, name='Member', is_default=True)
    maintainer = Role(id=2, name='Maintainer', may_maintain=True)
    staff = Role(id=3, name='Staff', may_use_all_machines=True, may_maintain=True, may_administer=True,
                 may_approve_prints=True)
    printer = MachineType(id=1, name='3D printer', auto_logoff_minutes=480, grace_minutes=2)
    laser = MachineType(id=2, name='Laser cutter', auto_logoff_minutes=60, grace_minutes=5)
    free = MachineType(id=3, name='Hand tool', auto_logoff_minutes=0, grace_minutes=0, authorization_required=False)
    session.add_all([member, maintainer, staff, printer, laser, free])
    await session.flush()
    session.add_all([
        Machine(id=PRINTER, name='Prusa MK4', type_id=1),
        Machine(id=LASER, name='Laser', type_id=2),
        Machine(id=DRILL, name='Drill press', type_id=3),
        Machine(id=BLOCKED, name='Blocked CNC', type_id=1, blocked=True),
    ])
    people = [
        Member(id=1, first_name='Giulia', last_name='Rossi', email='giulia@example.org', role_id=1),
        Member(id=2, first_name='Mario', last_name='Bianchi', email='mario@example.org', role_id=2),
        Member(id=3, first_name='Anna', last_name='Verdi', email='anna@example.org', role_id=3),
        Member(id=4, first_name='Dino', last_name='Neri', email='dino@example.org', role_id=1, disabled=True),
        Member(id=5, first_name='Elsa', last_name='Gialli', email='elsa@example.org', role_id=1),
    ]
    session.add_all(people)
    await session.flush()
    session.add_all([Card(uid=GIULIA, member_id=1), Card(uid=MARIO, member_id=2), Card(uid=ANNA, member_id=3),
                     Card(uid=DISABLED, member_id=4), Card(uid=EXPIRED, member_id=5)])
    session.add_all([
        Authorization(member_id=1, machine_id=PRINTER),
        Authorization(member_id=2, machine_id=PRINTER),
        Authorization(member_id=2, machine_id=LASER),
        Authorization(member_id=4, machine_id=PRINTER),
        Authorization(member_id=5, machine_id=PRINTER, expires_at=now - timedelta(days=1)),
    ])
    session.add(MaintenancePlan(id=1, machine_id=PRINTER, hours_between=10, description='Clean the nozzle',
                                lcd_text='Clean nozzle'))
    session.add(MaintenancePlan(id=2, machine_id=LASER, hours_between=0.01, description='Clean the lens',
                                lcd_text='Clean lens'))
    await session.commit()
    await fix_sequences(session)


async def fix_sequences(session: AsyncSession) -> None:
    """Rows inserted with explicit ids leave PostgreSQL's id sequences behind: move them past the rows."""
    if session.bind.dialect.name != 'postgresql':
        return
    conn = await session.connection()
    for table in ('role', 'machine_type', 'member', 'card', 'authorization', 'maintenance_plan'):
        await conn.execute(sa.text(
            f'SELECT setval(pg_get_serial_sequence(\'"{table}"\', \'id\'), '
            f'COALESCE((SELECT MAX(id) FROM "{table}"), 0) + 1, false)'))  # noqa: S608 - names from the list
    await session.commit()


async def create_lab(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine, url)
        async with session_factory(engine)() as session:
            await seed(session)
    finally:
        await engine.dispose()


# ---- opt-in extras for the board tests (the known lab above stays as other tests expect it) --------------------------
LEO = 'c0ffee01'  # role that may use every machine but not maintain: level 1 (rule 13.3)
LONG_NAMED = '0badf00d'  # member with a first name far longer than the LCD, authorized on LONG
LONG = 5  # machine with a long multi-byte name and an overdue plan with a long LCD text
LONG_NAME = 'Überlange Maschinenbezeichnung für den Lasercutter im Keller – Ünïcödé ✓✓✓'
LONG_LCD = 'Düse reinigen, Riemen spannen ✓✓✓✓✓✓✓✓✓'


async def add_board_extras(url: str) -> None:
    """Members, roles and a machine the board protocol tests need on top of the known lab."""
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            session.add(Role(id=4, name='Host', may_use_all_machines=True))
            session.add(Machine(id=LONG, name=LONG_NAME[:80], type_id=1, usage_seconds=60.0))
            await session.flush()
            session.add_all([Member(id=6, first_name='Leo', last_name='Blu', email='leo@example.org', role_id=4),
                             Member(id=7, first_name='Maximiliana Wilhelmina Benedetta Ünïcödé ✓✓✓✓✓✓✓✓✓✓',
                                    last_name='Lunga', email='max@example.org', role_id=1)])
            await session.flush()
            session.add_all([Card(uid=LEO, member_id=6), Card(uid=LONG_NAMED, member_id=7),
                             Authorization(member_id=1, machine_id=BLOCKED),
                             Authorization(member_id=7, machine_id=LONG)])
            session.add(MaintenancePlan(id=3, machine_id=LONG, hours_between=0.001, description='d' * 200,
                                        lcd_text=LONG_LCD[:40]))
            start = datetime.now(UTC) - timedelta(hours=2)
            session.add(Use(machine_id=LONG, member_id=7, card_uid=LONG_NAMED, start=start, last_seen=start,
                            end=start + timedelta(seconds=60), duration_s=60.0))
            await session.commit()
            await fix_sequences(session)
    finally:
        await engine.dispose()


# The lab's people as a signed-in session sees them (for service tests that act as someone)
ADMIN_USER = CurrentUser(member_id=3, first_name='Anna', last_name='Verdi', email='anna@example.org', language='',
                         role_name='Staff', may_use_all_machines=True, may_maintain=True, may_administer=True,
                         may_approve_prints=True, must_change_password=False)
MAINTAINER_USER = replace(ADMIN_USER, member_id=2, first_name='Mario', role_name='Maintainer',
                          may_use_all_machines=False, may_administer=False, may_approve_prints=False)
MEMBER_USER = replace(MAINTAINER_USER, member_id=1, first_name='Giulia', role_name='Member', may_maintain=False)
