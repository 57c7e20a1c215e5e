"""Seed a fresh SQLite database with the "Boards" benchmark workload (BENCHMARKS.md).

400 machines over 6 machine types (2 without authorization), 2,000 members with one card each (90 % plain,
6 % maintainers, 4 % staff; 5 % disabled), ~10 authorizations per member, 2 maintenance plans per machine
(each with one past intervention), and a year of closed uses (100,000, `duration_s` set, the machines' hour
counters consistent). `extra_machines` more machines (default 100, no use history) exist for the reconnect
storm, which needs 500 boards.

The schema comes from the real migration; rows go in with SQLAlchemy Core bulk inserts.

Usage: .venv/bin/python -m bench.seed_boards /tmp/boards.db
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from fabpanel.db.engine import create_engine  # noqa: E402
from fabpanel.db.migrate import upgrade  # noqa: E402
from fabpanel.db.models import (  # noqa: E402
    Authorization,
    Card,
    Intervention,
    Machine,
    MachineType,
    MaintenancePlan,
    Member,
    Role,
    Use,
)

FIRST = ['Giulia', 'Marco', 'Sara', 'Luca', 'Elena', 'Paolo', 'Chiara', 'Davide', 'Anna', 'Matteo', 'Laura',
         'Simone', 'Marta', 'Andrea', 'Irene', 'Stefano', 'Alice', 'Pietro', 'Francesca', 'Nicola']
LAST = ['Rossi', 'Bianchi', 'Ferrari', 'Esposito', 'Romano', 'Colombo', 'Ricci', 'Marino', 'Greco', 'Bruno']
# (name, auto-logoff minutes, grace minutes, authorization required)
TYPES = [('3D printer', 480, 2, True), ('Laser cutter', 120, 5, True), ('CNC', 240, 5, True),
         ('Resin printer', 480, 2, True), ('Workshop tool', 60, 1, False), ('Electronics bench', 0, 0, False)]
PLANS = [(25, 'Clean nozzle'), (50, 'Check belts'), (100, 'Lubricate axes'), (200, 'Replace filter'),
         (500, 'Full service')]
ROLE_MEMBER, ROLE_MAINTAINER, ROLE_STAFF = 1, 2, 3


@dataclass(kw_only=True, slots=True)
class SeedMember:
    id: int
    uid: str
    role: int
    disabled: bool


@dataclass(kw_only=True)
class Workload:
    """What the load generator needs to know about the seeded lab (to pick cards and check replies)."""

    machines: list[int]  # the ramp's machines (1..400)
    extra_machines: list[int]  # only used by the storm / the burst's observer board
    machine_type: dict[int, int] = field(default_factory=dict)  # machine -> type id (1-based)
    machine_name: dict[int, str] = field(default_factory=dict)
    type_auth: dict[int, bool] = field(default_factory=dict)
    members: dict[str, SeedMember] = field(default_factory=dict)  # uid -> member
    auth: set[tuple[int, int]] = field(default_factory=set)  # (member id, machine id)
    allowed: dict[int, list[str]] = field(default_factory=dict)  # machine -> uids a session may use
    maintainer_uids: list[str] = field(default_factory=list)  # enabled, role may maintain
    all_uids: list[str] = field(default_factory=list)

    def expect_checkuser(self, uid: str, machine_id: int) -> tuple[bool, int]:
        """(is_valid, level) the panel must answer, from the seeded data (no machine is blocked)."""
        m = self.members.get(uid)
        if m is None or m.disabled:
            return False, 0
        level = 2 if m.role in (ROLE_MAINTAINER, ROLE_STAFF) else 1
        if m.role == ROLE_STAFF or not self.type_auth[self.machine_type[machine_id]]:
            return True, level
        return ((m.id, machine_id) in self.auth), (level if (m.id, machine_id) in self.auth else 0)


def uid_of(rng: random.Random, taken: set[str]) -> str:
    while True:
        uid = f'{rng.getrandbits(32):08x}'
        if uid not in taken:
            taken.add(uid)
            return uid


def build(*, machines: int = 400, extra_machines: int = 100, members: int = 2000, uses: int = 100_000,
          seed: int = 1) -> tuple[Workload, dict[str, list[dict]]]:
    """The workload and the rows to insert, table name -> list of row dicts."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    year_ago = now - timedelta(days=365)
    total = machines + extra_machines
    wl = Workload(machines=list(range(1, machines + 1)), extra_machines=list(range(machines + 1, total + 1)))
    rows: dict[str, list[dict]] = defaultdict(list)
    rows['role'] = [
        {'id': ROLE_MEMBER, 'name': 'Member', 'is_default': True, 'may_use_all_machines': False,
         'may_maintain': False, 'may_administer': False, 'may_approve_prints': False},
        {'id': ROLE_MAINTAINER, 'name': 'Maintainer', 'is_default': False, 'may_use_all_machines': False,
         'may_maintain': True, 'may_administer': False, 'may_approve_prints': False},
        {'id': ROLE_STAFF, 'name': 'Staff', 'is_default': False, 'may_use_all_machines': True,
         'may_maintain': True, 'may_administer': False, 'may_approve_prints': True},
    ]
    for i, (name, logoff, grace, auth) in enumerate(TYPES, start=1):
        rows['machine_type'].append({'id': i, 'name': name, 'auto_logoff_minutes': logoff, 'grace_minutes': grace,
                                     'authorization_required': auth})
        wl.type_auth[i] = auth
    for mid in range(1, total + 1):
        type_id = (mid - 1) % len(TYPES) + 1
        name = f'{TYPES[type_id - 1][0].split()[0]} #{mid}'
        wl.machine_type[mid], wl.machine_name[mid] = type_id, name
        rows['machine'].append({'id': mid, 'name': name, 'type_id': type_id, 'blocked': False, 'usage_seconds': 0.0,
                                'last_seen': None, 'deleted_at': None})
    auth_machines = [m for m in range(1, machines + 1) if wl.type_auth[wl.machine_type[m]]]
    # roles: 90 % plain, 6 % maintainers, 4 % staff; 5 % disabled across all roles
    n_maint, n_staff = round(members * 0.06), round(members * 0.04)
    roles = [ROLE_MAINTAINER] * n_maint + [ROLE_STAFF] * n_staff
    roles += [ROLE_MEMBER] * (members - len(roles))
    rng.shuffle(roles)
    disabled = set(rng.sample(range(members), round(members * 0.05)))
    taken: set[str] = set()
    created = now - timedelta(days=400)
    for i in range(members):
        mid = i + 1
        uid = uid_of(rng, taken)
        m = SeedMember(id=mid, uid=uid, role=roles[i], disabled=i in disabled)
        wl.members[uid] = m
        wl.all_uids.append(uid)
        rows['member'].append({
            'id': mid, 'first_name': FIRST[i % len(FIRST)], 'last_name': LAST[(i * 7) % len(LAST)],
            'email': f'member{mid}@bench.fabpanel.invalid', 'language': '', 'role_id': m.role,
            'disabled': m.disabled, 'deleted_at': None, 'password_hash': None, 'must_change_password': False,
            'created_at': created})
        rows['card'].append({'id': mid, 'uid': uid, 'member_id': mid, 'label': '', 'created_at': created})
        for machine_id in rng.sample(auth_machines, rng.randint(5, 15)):  # ~10 per member
            wl.auth.add((mid, machine_id))
            rows['authorization'].append({'member_id': mid, 'machine_id': machine_id, 'expires_at': None,
                                          'created_at': created})
    wl.maintainer_uids = [u for u, m in wl.members.items() if m.role != ROLE_MEMBER and not m.disabled]
    enabled = [u for u, m in wl.members.items() if not m.disabled]
    by_machine: dict[int, list[str]] = defaultdict(list)
    for member_id, machine_id in wl.auth:
        by_machine[machine_id].append(wl.all_uids[member_id - 1])
    staff = [u for u in enabled if wl.members[u].role == ROLE_STAFF]
    for machine_id in range(1, total + 1):
        if not wl.type_auth[wl.machine_type[machine_id]]:
            wl.allowed[machine_id] = enabled
        else:
            ok = sorted(u for u in by_machine.get(machine_id, []) if not wl.members[u].disabled)
            wl.allowed[machine_id] = ok or staff
    # maintenance plans: two per machine, each with one intervention some time in the past year
    plan_id = 0
    for machine_id in range(1, total + 1):
        for hours, text in rng.sample(PLANS, 2):
            plan_id += 1
            rows['maintenance_plan'].append({'id': plan_id, 'machine_id': machine_id, 'hours_between': float(hours),
                                             'description': f'{text} every {hours} h', 'lcd_text': text,
                                             'instructions_url': ''})
            rows['intervention'].append({'plan_id': plan_id, 'machine_id': machine_id,
                                         'member_id': wl.members[rng.choice(wl.maintainer_uids)].id,
                                         'at': year_ago + timedelta(seconds=rng.uniform(0, 365 * 86400)),
                                         'source': 'board', 'replay': False, 'note': ''})
    # a year of closed uses on the ramp's machines, sequential and non-overlapping per machine
    usage: dict[int, float] = defaultdict(float)
    per_machine = [uses // machines + (1 if i < uses % machines else 0) for i in range(machines)]
    for idx, n in enumerate(per_machine):
        machine_id = idx + 1
        slot = 365 * 86400 / n
        candidates = wl.allowed[machine_id]
        for k in range(n):
            start = year_ago + timedelta(seconds=k * slot + rng.uniform(0, slot * 0.3))
            duration = float(int(min(rng.expovariate(1 / 5400) + 60, slot * 0.6)))
            end = start + timedelta(seconds=duration)
            uid = rng.choice(candidates)
            usage[machine_id] += duration
            rows['use'].append({'machine_id': machine_id, 'member_id': wl.members[uid].id, 'card_uid': uid,
                                'start': start, 'last_seen': end, 'end': end, 'duration_s': duration,
                                'replay': False, 'unauthorized': False})
    for row in rows['machine']:
        row['usage_seconds'] = usage.get(row['id'], 0.0)
    return wl, rows


TABLES = [(Role, 'role'), (MachineType, 'machine_type'), (Machine, 'machine'), (Member, 'member'), (Card, 'card'),
          (Authorization, 'authorization'), (MaintenancePlan, 'maintenance_plan'), (Intervention, 'intervention'),
          (Use, 'use')]


async def seed_database(path: Path, **kw: int) -> Workload:
    """Create `path` (replacing it) with the schema and the workload; returns the workload."""
    for suffix in ('', '-wal', '-shm'):
        Path(f'{path}{suffix}').unlink(missing_ok=True)  # noqa: ASYNC240 - before anything runs
    wl, rows = build(**kw)
    url = f'sqlite:///{path}'
    engine = create_engine(url)
    await upgrade(engine, url)
    async with engine.begin() as conn:
        for model, name in TABLES:
            table: sa.Table = model.__table__  # type: ignore[attr-defined]
            data = rows[name]
            for i in range(0, len(data), 20_000):
                await conn.execute(sa.insert(table), data[i:i + 20_000])
    async with engine.connect() as conn:
        await conn.exec_driver_sql('ANALYZE')
    await engine.dispose()
    return wl


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('path', type=Path)
    p.add_argument('--machines', type=int, default=400)
    p.add_argument('--extra-machines', type=int, default=100)
    p.add_argument('--members', type=int, default=2000)
    p.add_argument('--uses', type=int, default=100_000)
    args = p.parse_args()
    t0 = time.perf_counter()
    wl = asyncio.run(seed_database(args.path, machines=args.machines, extra_machines=args.extra_machines,
                                   members=args.members, uses=args.uses))
    print(f'seeded {args.path} in {time.perf_counter() - t0:.1f} s: {len(wl.machines)}+{len(wl.extra_machines)} '
          f'machines, {len(wl.members)} members, {len(wl.auth)} authorizations, {args.uses} uses')


if __name__ == '__main__':
    main()
