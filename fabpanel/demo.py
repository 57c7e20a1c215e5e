"""Demo mode: a sample lab in the database, simulated boards that use it through the real broker, and simulated
printers (one of them printing) that the fleet drives like real ones."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from fabpanel.boards.simulator import SimulatedBoard, run_member_session
from fabpanel.db.engine import session_factory
from fabpanel.db.models import (
    Authorization,
    Card,
    Intervention,
    Machine,
    MachineType,
    MaintenancePlan,
    Member,
    Printer,
    PrintJob,
    Role,
    Use,
)
from fabpanel.printers.sim import sim_printer

log = logging.getLogger(__name__)

FIRST_NAMES = ['Giulia', 'Marco', 'Sara', 'Luca', 'Elena', 'Paolo', 'Chiara', 'Davide', 'Anna', 'Matteo', 'Laura',
               'Simone', 'Marta', 'Andrea', 'Irene', 'Stefano', 'Alice', 'Pietro', 'Francesca', 'Nicola']
LAST_NAMES = ['Rossi', 'Bianchi', 'Ferrari', 'Esposito', 'Romano', 'Colombo', 'Ricci', 'Marino', 'Greco', 'Bruno']
MACHINES = [  # (id, name, type index)
    (1, 'Prusa MK4 #1', 0), (2, 'Prusa MK4 #2', 0), (3, 'Bambu A1', 0), (4, 'Laser 60W', 1), (5, 'Laser 40W', 1),
    (6, 'CNC Shapeoko', 2), (7, 'Resin Form 3', 3), (8, 'Drill press', 4), (9, 'Band saw', 4),
    (10, 'Vinyl cutter', 4), (11, 'Soldering #1', 5), (12, 'Soldering #2', 5),
]


DEMO_PRINTERS = [  # (name, address, max nozzle, materials, tags)
    ('Prusa MK4 #1 (sim)', 'sim://demo-mk4-1', 290.0, 'PLA,PETG,ASA', 'front room'),
    ('Prusa MK4 #2 (sim)', 'sim://demo-mk4-2', 290.0, 'PLA,PETG', 'front room'),
    ('Bambu A1 (sim)', 'sim://demo-a1', 300.0, 'PLA,PETG,TPU', 'back room'),
    ('Ender 3 USB (sim)', 'sim://demo-ender?streaming=1', 260.0, 'PLA', 'back room'),
]
DEMO_JOB = 'demo-benchy.gcode'


def demo_uid(i: int) -> str:
    return f'{0xC0DE0000 + i:08x}'


async def seed_demo(engine: AsyncEngine, rng: random.Random | None = None) -> bool:
    """Fill an empty database with a small lab and a month of history. Returns False if it had data.
    The demo printers are added (once) and one of them is set printing at every demo start."""
    seeded = await _seed_lab(engine, rng or random.Random(7))
    await seed_demo_printers(engine)
    return seeded


async def seed_demo_printers(engine: AsyncEngine) -> None:
    """Add the simulated printers once; make the first print a Benchy that a member started ten minutes ago."""
    async with session_factory(engine)() as s:
        if not (await s.execute(sa.select(sa.func.count()).select_from(Printer))).scalar_one():
            for name, address, nozzle, materials, tags in DEMO_PRINTERS:
                s.add(Printer(name=name, kind='simulated', address=address, max_nozzle_c=nozzle, materials=materials,
                              tags=tags))
            await s.flush()
        first = (await s.execute(sa.select(Printer).where(Printer.address == DEMO_PRINTERS[0][1]))).scalar()
        if first is None:
            await s.commit()
            return
        job = (await s.execute(sa.select(PrintJob).where(PrintJob.printer_id == first.id,
                                                         PrintJob.state.in_(('printing', 'paused'))))).scalar()
        started = datetime.now(UTC) - timedelta(minutes=10)
        if job is None:
            member = (await s.execute(sa.select(Member.id).where(Member.deleted_at.is_(None),
                                                                 Member.disabled.is_(False)).order_by(Member.id)
                                      .offset(7).limit(1))).scalar()
            job = PrintJob(printer_id=first.id, member_id=member, file_name='3DBenchy.gcode', remote_name=DEMO_JOB,
                           state='printing', started_at=started)
            s.add(job)
        await s.commit()
    # the simulated printer runs the job the database knows: the fleet finds them in agreement when it connects
    printer = sim_printer(DEMO_PRINTERS[0][1])
    if printer.job is None:
        printer.start_outside(job.remote_name, duration_s=45 * 60, layers=120)
        printer.nozzle.actual, printer.bed.actual = printer.nozzle.target, printer.bed.target
        assert printer.job is not None
        printer.job.printed_s = (datetime.now(UTC) - (job.started_at or started).replace(tzinfo=UTC)).total_seconds()
        printer.job.started -= printer.job.printed_s


async def _seed_lab(engine: AsyncEngine, rng: random.Random) -> bool:
    async with session_factory(engine)() as s:
        if (await s.execute(sa.select(sa.func.count()).select_from(Machine))).scalar_one():
            return False
        roles = [Role(name='Member', is_default=True), Role(name='Maintainer', may_maintain=True),
                 Role(name='Staff', may_use_all_machines=True, may_maintain=True, may_approve_prints=True),
                 Role(name='Admin', may_use_all_machines=True, may_maintain=True, may_administer=True,
                      may_approve_prints=True)]
        types = [MachineType(name='3D printer', auto_logoff_minutes=480, grace_minutes=2),
                 MachineType(name='Laser cutter', auto_logoff_minutes=120, grace_minutes=5),
                 MachineType(name='CNC', auto_logoff_minutes=240, grace_minutes=5),
                 MachineType(name='Resin printer', auto_logoff_minutes=480, grace_minutes=2),
                 MachineType(name='Workshop tool', auto_logoff_minutes=60, grace_minutes=1),
                 MachineType(name='Electronics bench', auto_logoff_minutes=0, grace_minutes=0,
                             authorization_required=False)]
        s.add_all(roles + types)
        await s.flush()
        for mid, name, t in MACHINES:
            s.add(Machine(id=mid, name=name, type_id=types[t].id))
        members = []
        for i in range(40):
            role = roles[0] if i >= 6 else roles[1 + i % 3]
            members.append(Member(first_name=FIRST_NAMES[i % len(FIRST_NAMES)],
                                  last_name=LAST_NAMES[(i * 7) % len(LAST_NAMES)],
                                  email=f'member{i + 1}@demo.fabpanel.invalid', role_id=role.id,
                                  disabled=(i == 39)))
        s.add_all(members)
        await s.flush()
        for i, m in enumerate(members):
            s.add(Card(uid=demo_uid(i), member_id=m.id))
            for mid, _name, _t in rng.sample(MACHINES, 6):
                s.add(Authorization(member_id=m.id, machine_id=mid))
        for mid, name, t in MACHINES:
            if t in (0, 1, 2):
                s.add(MaintenancePlan(machine_id=mid, hours_between=rng.choice([20, 50, 100]),
                                      description=f'Routine check of {name}', lcd_text='Routine check'))
        await s.flush()
        now = datetime.now(UTC)
        seconds: dict[int, float] = {}
        for _k in range(600):
            mid = rng.choice(MACHINES)[0]
            m = rng.choice(members[:39])
            start = now - timedelta(days=rng.uniform(1, 30))
            dur = rng.uniform(600, 3 * 3600)
            s.add(Use(machine_id=mid, member_id=m.id, card_uid=demo_uid(members.index(m)), start=start,
                      last_seen=start + timedelta(seconds=dur), end=start + timedelta(seconds=dur), duration_s=dur))
            seconds[mid] = seconds.get(mid, 0.0) + dur
        for mid, total in seconds.items():
            machine = await s.get(Machine, mid)
            assert machine is not None
            machine.usage_seconds = total
        plan = (await s.execute(sa.select(MaintenancePlan).limit(1))).scalar_one()
        s.add(Intervention(plan_id=plan.id, machine_id=plan.machine_id, member_id=members[1].id,
                           at=now - timedelta(days=3), source='manual', note='demo'))
        await s.commit()
    return True


class DemoBoards:
    """One simulated board per demo machine: announces itself, checks in, and members come and go."""

    def __init__(self, host: str, port: int, machine_ids: list[int], member_count: int = 40,
                 session_seconds: tuple[float, float] = (20, 90), rng: random.Random | None = None) -> None:
        self.host, self.port = host, port
        self.machine_ids = machine_ids
        self.member_count = member_count
        self.session_seconds = session_seconds
        self.rng = rng or random.Random()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for mid in self.machine_ids:
            self._tasks.append(asyncio.create_task(self._board(mid), name=f'demo-board-{mid}'))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def _board(self, machine_id: int) -> None:
        await asyncio.sleep(self.rng.uniform(0, 3))
        while True:
            try:
                async with SimulatedBoard(machine_id, self.host, self.port, version='demo,1.0.1') as board:
                    await board.alive()
                    while True:
                        await asyncio.sleep(self.rng.uniform(3, 25))
                        uid = demo_uid(self.rng.randrange(self.member_count))
                        await run_member_session(board, uid, seconds=self.rng.uniform(*self.session_seconds),
                                                 tick=10)
                        await board.alive()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the broker went away; try again like a real board
                log.debug('demo board %d: %s', machine_id, e)
                await asyncio.sleep(5)
