"""Start the Marlin simulator (tests/printers/marlin_sim.py) as a separate process and read what it recorded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class SimProcess:
    """`python -m tests.printers.marlin_sim` in a subprocess, optionally pinned to a CPU (`taskset -c`)."""

    def __init__(
        self,
        link: Path,
        *,
        count: int = 1,
        faults: tuple[str, ...] = (),
        record: Path | None = None,
        extra: tuple[str, ...] = (),
        cpu: int | None = None,
    ) -> None:
        self.link, self.count, self.record = link, count, record
        cmd = [sys.executable, '-m', 'tests.printers.marlin_sim', '--link', str(link), '--count', str(count)]
        for fault in faults:
            cmd += ['--fault', fault]
        if record is not None:
            cmd += ['--record', str(record)]
        cmd += list(extra)
        if cpu is not None and cpu < (os.cpu_count() or 1):
            cmd = ['taskset', '-c', str(cpu), *cmd]
        self.cmd = cmd
        self.proc: subprocess.Popen[str] | None = None

    @property
    def links(self) -> list[Path]:
        return (
            [self.link]
            if self.count == 1
            else [self.link.with_name(f'{self.link.name}-{i}') for i in range(self.count)]
        )

    def start(self, timeout: float = 10.0) -> SimProcess:
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline()  # 'READY <links>' once every link exists
        if not line.startswith('READY') or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError(f'the Marlin simulator did not start: {line!r}')
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def recorded(self, index: int | None = None) -> list[str]:
        """The commands the printer executed (and `!` protocol errors, `#` injected faults), in order."""
        assert self.record is not None
        path = self.record if index is None else Path(f'{self.record}-{index}')
        try:
            return path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


SAMPLE = Path('/work/shared/samples/gcode/cura-4.5.0_schieberdeckel.gcode')


def sample_gcode(target: Path, lines: int, inserts: dict[int, str] | None = None) -> list[str]:
    """The first `lines` lines of a real Cura file (its start script heats, waits and homes), with extra lines
    inserted before the given line indexes; writes target and returns the commands the printer should run."""
    raw = SAMPLE.read_text(encoding='utf-8', errors='replace').splitlines()[:lines]
    for index, extra in sorted((inserts or {}).items(), reverse=True):
        raw.insert(index, extra)
    target.write_text('\n'.join(raw) + '\n', encoding='utf-8')
    return [c for c in (line.split(';', 1)[0].strip() for line in raw) if c]


def executed(recorded: list[str], *, skip: tuple[str, ...] = ()) -> list[str]:
    """The commands a simulator ran, without fault notes and the given commands (e.g. temperature polls)."""
    return [line for line in recorded if not line.startswith(('#', '!')) and line not in skip]
