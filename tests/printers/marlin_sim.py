"""A Marlin printer on a pseudo-terminal, run as its own process (tests and bench/printers.py).

    python -m tests.printers.marlin_sim --link PATH [--count N] [--fault KIND@LINE ...] [--record FILE]

Each printer gets a pty (`os.openpty()`) and a symlink at PATH (PATH-0 .. PATH-{N-1} with --count) pointing at
its slave tty, like a /dev/serial/by-id link. It speaks Marlin 2: `start` banner, M110, M115 with capabilities,
M105, M155 auto-report, M114, M104/M109/M140/M190 with a first-order heating curve, G28/G4 with `busy:`,
M118 echo (`M118 A1 action:pause` prints `//action:pause`), line numbers and checksums checked with
`Error:` + `Resend:` + `ok` (and the RX buffer flushed, as the firmware does), an RX buffer of 128 bytes and a
command queue of 4 whose overflow drops bytes (so a host that sends too much is caught), M112 via the
emergency parser. It does not import fabpanel: it checks the host's checksums with its own code.

Faults, once per line: `--fault KIND@N` (N is the line number the host sent) or in-band `M118 SIM:KIND` in the
streamed file. KIND: resend (line number error), checksum (checksum error), dropok (no `ok`), busy (1.5 s of
`busy:`), thermal (thermal runaway, then silent), reset (`start`, line numbers reset), unplug (the pty and
link vanish; back after --replug-after seconds if set), move (the link moves to a new pty, the old one closes).

With --record FILE every executed command is appended to FILE (FILE-i with --count); lines starting with `!`
are protocol errors the simulator detected (not injected ones: those are `#`) and RX overflows.
"""

from __future__ import annotations

import argparse
import math
import os
import selectors
import signal
import sys
import time
import tty
from collections import deque
from functools import reduce
from operator import xor
from pathlib import Path

from tests.printers.marlin_sim_commands import AMBIENT, HANDLERS, temps_line
from tests.printers.marlin_sim_io import SimProcess

__all__ = ['SimProcess', 'main']


class Printer:
    """One simulated printer: its pty, link, parser state, heaters and position."""

    def __init__(self, sim: Sim, index: int, link: Path, record: Path | None) -> None:
        self.sim, self.index, self.link = sim, index, link
        self.record = open(record, 'a', buffering=1) if record else None  # noqa: SIM115 - lives as long as we do
        self.master = -1
        self.slave = -1
        self.plug()

    # ---- pty and link --------------------------------------------------------------------------------------------
    def plug(self) -> None:
        old_master, old_slave = self.master, self.slave
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line editing: a tty that behaves like a USB CDC port
        os.set_blocking(self.master, False)
        tmp = self.link.with_name(self.link.name + '.tmp')
        tmp.unlink(missing_ok=True)
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, self.link)  # atomic, like udev replacing a by-id link
        if old_master >= 0:  # opened the new pty first, so the new tty never reuses the old number
            self.sim.selector.unregister(old_master)
            os.close(old_master)
            os.close(old_slave)
        self.sim.selector.register(self.master, selectors.EVENT_READ, self)
        self.reset()

    def unplug(self) -> None:
        self.link.unlink(missing_ok=True)
        self.sim.selector.unregister(self.master)
        os.close(self.master)
        os.close(self.slave)
        self.master = self.slave = -1
        self.rx = bytearray()
        self.out.clear()

    def reset(self) -> None:
        self.rx = bytearray()
        self.out: list[bytes] = []
        self.last_n = 0
        self.halted = False
        self.block: tuple[str, float] | None = None  # (what, until) for a command that holds the queue
        self.next_busy = 0.0
        self.autoreport = 0.0
        self.next_report = math.inf
        self.temps = {'T': [AMBIENT, 0.0], 'B': [AMBIENT, 0.0]}
        self.temps_at = time.monotonic()
        self.pos = {'X': 0.0, 'Y': 0.0, 'Z': 0.0, 'E': 0.0}
        self.relative = False
        self.relative_e = False
        self.send(b'start\necho:Marlin 2.1.2.1\necho: Last Updated: 2023-07-16 | Author: (fabpanel sim)\n')

    def note(self, text: str) -> None:
        if self.record:
            self.record.write(text + '\n')

    def send(self, data: bytes) -> None:
        self.out.append(data)

    # ---- input -----------------------------------------------------------------------------------------------------
    def readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:  # nobody has the slave open and it was never opened: nothing to read
            return
        if b'M112' in data or b'M108' in data:
            self.emergency_parser(data)
        if self.halted:
            return
        self.rx += data
        if self.block is not None:
            self.check_overflow()
        self.process()

    def emergency_parser(self, data: bytes) -> None:
        for raw in data.split(b'\n'):
            words = raw.split(b'*')[0].split()
            if words and words[0].startswith(b'N'):
                words = words[1:]
            if words[:1] == [b'M112']:
                self.note('M112')
                self.kill('Printer halted. kill() called!')
            elif words[:1] == [b'M108'] and self.block is not None and self.block[0].startswith('heat'):
                self.block = None

    def check_overflow(self) -> None:
        """While a command holds the queue, 3 more lines fit in the queue and 127 bytes in the RX ring."""
        pos = 0
        for _ in range(self.sim.bufsize - 1):
            nl = self.rx.find(b'\n', pos)
            if nl < 0:
                break
            pos = nl + 1
        excess = len(self.rx) - pos - (self.sim.rx_size - 1)
        if excess > 0:
            self.note(f'!overflow {excess} bytes dropped')
            del self.rx[len(self.rx) - excess :]

    def process(self) -> None:
        while self.block is None and not self.halted:
            nl = self.rx.find(b'\n')
            if nl < 0:
                return
            line = bytes(self.rx[:nl]).strip()
            del self.rx[: nl + 1]
            if line:
                self.line(line)

    def line(self, line: bytes) -> None:
        if line[:1] != b'N':
            if self.sim.strict and not line.startswith((b'M112', b'M108')):
                self.note(f'!unnumbered {line.decode(errors="replace")}')
            self.command(line, None)
            return
        body, star, cs = line.rpartition(b'*')
        if not star:
            return self.line_error(b'No Checksum with line number')
        try:
            good = int(cs) == reduce(xor, body, 0)
            number, _, cmd = body.partition(b' ')
            n = int(number[1:])
        except ValueError:
            good, n, cmd = False, -1, b''
        if not good:
            return self.line_error(b'checksum mismatch')
        fault = self.sim.fault_at(self.index, n, cmd)
        if fault in ('resend', 'checksum'):
            self.note(f'#{fault} {n}')
            return self.line_error(
                b'checksum mismatch' if fault == 'checksum' else b'Line Number is not Last Line Number+1', injected=True
            )
        if cmd.startswith(b'M110'):
            words = cmd.split()
            self.last_n = int(words[1][1:]) if len(words) > 1 and words[1][:1] == b'N' else n
        elif n != self.last_n + 1:
            return self.line_error(b'Line Number is not Last Line Number+1')
        else:
            self.last_n = n
        if fault:
            self.note(f'#{fault} {n}')
        self.command(cmd, fault)

    def line_error(self, what: bytes, injected: bool = False) -> None:
        if not injected:
            self.note(f'!{what.decode()} after {self.last_n}')
        self.send(b'Error:%s, Last Line: %d\nResend: %d\nok\n' % (what, self.last_n, self.last_n + 1))
        self.rx.clear()  # Marlin empties its RX buffer before asking for the resend

    # ---- commands ----------------------------------------------------------------------------------------------------
    def command(self, cmd: bytes, fault: str | None) -> None:
        if self.record:
            self.record.write(cmd.decode(errors='replace') + '\n')
        code = cmd.split(b' ', 1)[0].upper()
        handler = self.sim.handlers.get(code)
        blocked = handler(self, cmd) if handler else False
        if fault == 'busy':
            self.hold('busy', 1.5)
            blocked = True
        elif fault and self.fault(fault):
            return
        if not blocked and fault != 'dropok':
            self.send(b'ok\n')

    def fault(self, kind: str) -> bool:
        """Apply an injected fault after its line ran; True when the printer is gone or halted."""
        if kind == 'thermal':
            self.kill('Thermal Runaway, system stopped! Heater_ID: 0')
        elif kind == 'reset':
            self.reset()
        elif kind == 'unplug':
            self.sim.unplug(self)
        elif kind == 'move':
            self.plug()
        return kind in ('thermal', 'reset', 'unplug', 'move')

    def kill(self, reason: str) -> None:
        self.send(
            b'Error:%s\nError:Printer halted. kill() called!\n' % reason.encode()
            if 'kill()' not in reason
            else b'Error:%s\n' % reason.encode()
        )
        self.halted = True
        self.block = None
        self.temps['T'][1] = self.temps['B'][1] = 0.0

    def hold(self, what: str, seconds: float) -> None:
        now = time.monotonic()
        self.block = (what, now + seconds)
        self.next_busy = now + self.sim.busy_interval

    def heat(self, heater: str, target: float) -> None:
        self.update_temps()
        self.temps[heater][1] = target

    def update_temps(self) -> None:
        now = time.monotonic()
        dt, self.temps_at = now - self.temps_at, now
        for actual_target in self.temps.values():
            actual, target = actual_target
            goal, tau = (target, self.sim.heat_tau) if target > 0 else (AMBIENT, self.sim.heat_tau * 3)
            actual_target[0] = actual + (goal - actual) * (1 - math.exp(-dt / tau))

    # ---- time ------------------------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        if self.master < 0:
            return
        if now >= self.next_report:
            self.next_report = now + self.autoreport
            self.update_temps()
            self.send(temps_line(self.temps).encode() + b'\n')
        if self.block is not None:
            self.tick_block(now)
        if self.out:
            self.flush()

    def tick_block(self, now: float) -> None:
        what, until = self.block  # type: ignore[misc]
        if what.startswith('heat'):
            self.update_temps()
            actual, target = self.temps['T' if what == 'heat_T' else 'B']
            done = abs(actual - target) < 1.0
        else:
            done = now >= until
        if done:
            self.block = None
            self.send(b'ok\n')
            self.process()
        elif now >= self.next_busy:
            self.next_busy = now + self.sim.busy_interval
            self.send(
                b'%s\n'
                % (
                    temps_line(self.temps, waiting=True).encode()
                    if what.startswith('heat')
                    else b'echo:busy: processing'
                )
            )

    def due(self) -> float:
        due = self.next_report
        if self.block is not None:
            due = min(due, self.next_busy, self.block[1] if not self.block[0].startswith('heat') else self.next_busy)
        return due

    def flush(self) -> None:
        data = b''.join(self.out)
        self.out.clear()
        try:
            n = os.write(self.master, data)
        except BlockingIOError:
            n = 0
        except OSError:  # the host side closed: keep nothing
            return
        if n < len(data) and len(data) - n < 1 << 20:
            self.out.append(data[n:])  # the host is slow to read; drop beyond 1 MB like a port with no reader


class Sim:
    def __init__(self, args: argparse.Namespace) -> None:
        self.selector = selectors.DefaultSelector()
        self.strict, self.heat_tau, self.busy_interval = args.strict, args.heat_tau, args.busy_interval
        self.rx_size, self.bufsize, self.replug_after = args.rx_buffer, args.bufsize, args.replug_after
        self.autoreport_cap = not args.no_autoreport
        self.handlers = HANDLERS
        self.faults: dict[int, str] = {}
        for spec in args.fault:
            kind, _, line = spec.partition('@')
            self.faults[int(line)] = kind
        self.fired: set[tuple[int, int]] = set()
        self.replugs: deque[tuple[float, Printer]] = deque()
        link = Path(args.link)
        links = [link] if args.count == 1 else [link.with_name(f'{link.name}-{i}') for i in range(args.count)]
        records = (
            [None] * args.count
            if not args.record
            else ([Path(args.record)] if args.count == 1 else [Path(f'{args.record}-{i}') for i in range(args.count)])
        )
        self.printers = [Printer(self, i, path, rec) for i, (path, rec) in enumerate(zip(links, records, strict=True))]

    def fault_at(self, index: int, n: int, cmd: bytes) -> str | None:
        kind = self.faults.get(n)
        if kind is None and cmd.startswith(b'M118 SIM:'):
            kind = cmd[9:].strip().decode(errors='replace')
        if kind is None or (index, n) in self.fired:
            return None
        self.fired.add((index, n))
        return kind

    def unplug(self, printer: Printer) -> None:
        printer.unplug()
        if self.replug_after > 0:
            self.replugs.append((time.monotonic() + self.replug_after, printer))

    def run(self) -> None:
        for p in self.printers:
            p.flush()
        print('READY ' + ' '.join(str(p.link) for p in self.printers), flush=True)
        while any(p.master >= 0 for p in self.printers) or self.replugs:
            now = time.monotonic()
            due = min([p.due() for p in self.printers if p.master >= 0] + [r[0] for r in self.replugs] + [now + 1])
            for key, _ in self.selector.select(max(0.0, due - now)):
                key.data.readable()
            now = time.monotonic()
            while self.replugs and self.replugs[0][0] <= now:
                self.replugs.popleft()[1].plug()
            for p in self.printers:
                p.tick(now)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--link', required=True)
    parser.add_argument('--count', type=int, default=1)
    parser.add_argument('--fault', action='append', default=[], help='KIND@LINE, repeatable')
    parser.add_argument('--record')
    parser.add_argument('--strict', action='store_true', help='note unnumbered lines as errors')
    parser.add_argument('--no-autoreport', action='store_true', help='no Cap:AUTOREPORT_TEMP (the host polls)')
    parser.add_argument('--heat-tau', type=float, default=0.3, help='heating time constant, seconds')
    parser.add_argument('--busy-interval', type=float, default=0.5)
    parser.add_argument('--replug-after', type=float, default=0.0)
    parser.add_argument('--rx-buffer', type=int, default=128)
    parser.add_argument('--bufsize', type=int, default=4)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sim = Sim(args)
    try:
        sim.run()
    finally:
        for p in sim.printers:
            p.link.unlink(missing_ok=True)


if __name__ == '__main__':
    main()
