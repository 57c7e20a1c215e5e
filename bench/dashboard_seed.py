"""Seed the "Browsers" benchmark lab (BENCHMARKS.md) and open the viewers' sessions.

50 machines over the board benchmark's machine types, one member per machine (a card, authorized on it) whose
board starts and stops uses, 10 simulated printers (the panel's own kind, `sim://name?speed=1`: the panel's fleet
drives them in its process; bench/dashboard_panel.py starts a job on every other one), an administrator (so the
panel creates no first admin) and `viewers` plain members, each with an open session: one per simulated browser,
sent as the `fabpanel_session` cookie.

Usage: .venv/bin/python -m bench.dashboard_seed /tmp/dashboard.db
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.seed_boards import FIRST, LAST, TYPES  # noqa: E402
from fabpanel.core.printers import PrinterKind  # noqa: E402
from fabpanel.db.engine import create_engine, session_factory  # noqa: E402
from fabpanel.db.migrate import upgrade  # noqa: E402
from fabpanel.db.models import Authorization, Card, Machine, MachineType, Member, Printer, Role  # noqa: E402
from fabpanel.mail.sender import Mailer  # noqa: E402
from fabpanel.services.auth import AuthService, hash_password  # noqa: E402
from fabpanel.settings import EmailSettings  # noqa: E402

ADMIN_ID = 1
FIRST_USER_ID = 100  # member 100 + k uses machine k + 1
FIRST_VIEWER_ID = 1000


@dataclass(kw_only=True)
class DashboardLab:
    machines: list[int]
    user_uid: dict[int, str] = field(default_factory=dict)  # machine -> card of the member who uses it
    user_name: dict[int, str] = field(default_factory=dict)  # machine -> that member's first name
    sessions: list[str] = field(default_factory=list)  # one session token per viewer
    printers: dict[int, str] = field(default_factory=dict)  # printer id -> its sim:// address
    printing: list[str] = field(default_factory=list)  # addresses of the printers that print during the run


def printer_address(k: int) -> str:
    # speed 1: real time, as in a lab; reports every second (the simulated printer's default), temperature samples
    # reach the tiles at most every 2 s per printer (the fleet's chart points)
    return f'sim://bench-printer-{k}?speed=1'


async def seed_dashboard(path: Path, *, machines: int = 50, printers: int = 10, viewers: int = 110) -> DashboardLab:
    """Create `path` (replacing it) with the schema, the lab and the viewers' sessions."""
    for suffix in ('', '-wal', '-shm'):
        Path(f'{path}{suffix}').unlink(missing_ok=True)  # noqa: ASYNC240 - before anything runs
    url = f'sqlite:///{path}'
    engine = create_engine(url)
    lab = DashboardLab(machines=list(range(1, machines + 1)))
    try:
        await upgrade(engine, url)
        async with session_factory(engine)() as s:
            s.add_all([Role(id=1, name='Member', is_default=True),
                       Role(id=2, name='Staff', may_use_all_machines=True, may_maintain=True, may_administer=True,
                            may_approve_prints=True)])
            s.add_all([MachineType(id=i, name=name, auto_logoff_minutes=logoff, grace_minutes=grace,
                                   authorization_required=auth)
                       for i, (name, logoff, grace, auth) in enumerate(TYPES, start=1)])
            await s.flush()
            for mid in lab.machines:
                type_id = (mid - 1) % len(TYPES) + 1
                s.add(Machine(id=mid, name=f'{TYPES[type_id - 1][0].split()[0]} #{mid}', type_id=type_id))
            s.add(Member(id=ADMIN_ID, first_name='Admin', last_name='Bench', email='admin@bench.fabpanel.invalid',
                         role_id=2, password_hash=await asyncio.to_thread(hash_password, 'bench-admin-password')))
            for k, mid in enumerate(lab.machines):
                member_id = FIRST_USER_ID + k
                first = FIRST[k % len(FIRST)]
                lab.user_uid[mid], lab.user_name[mid] = f'{0xB0000000 + mid:08x}', first
                s.add(Member(id=member_id, first_name=first, last_name=LAST[(k * 7) % len(LAST)],
                             email=f'user{mid}@bench.fabpanel.invalid', role_id=1))
            for k in range(1, printers + 1):
                lab.printers[k] = printer_address(k)
                if k % 2:
                    lab.printing.append(lab.printers[k])
                s.add(Printer(id=k, name=f'Printer #{k}', kind=PrinterKind.SIMULATED.value, address=lab.printers[k]))
            for v in range(viewers):
                s.add(Member(id=FIRST_VIEWER_ID + v, first_name=f'Viewer{v}', last_name='Bench',
                             email=f'viewer{v}@bench.fabpanel.invalid', role_id=1))
            await s.flush()
            for k, mid in enumerate(lab.machines):
                s.add(Card(uid=lab.user_uid[mid], member_id=FIRST_USER_ID + k))
                s.add(Authorization(member_id=FIRST_USER_ID + k, machine_id=mid))
            await s.commit()
        auth = AuthService(engine, Mailer(EmailSettings()), 'http://bench.invalid')
        lab.sessions = [await auth.open_session(FIRST_VIEWER_ID + v) for v in range(viewers)]
    finally:
        await engine.dispose()
    return lab


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('path', type=Path)
    p.add_argument('--machines', type=int, default=50)
    p.add_argument('--printers', type=int, default=10)
    p.add_argument('--viewers', type=int, default=110)
    a = p.parse_args()
    lab = asyncio.run(seed_dashboard(a.path, machines=a.machines, printers=a.printers, viewers=a.viewers))
    print(f'seeded {a.path}: {len(lab.machines)} machines, {len(lab.printers)} printers '
          f'({len(lab.printing)} printing), {len(lab.sessions)} viewer sessions')


if __name__ == '__main__':
    main()
