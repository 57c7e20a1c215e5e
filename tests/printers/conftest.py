"""Fixtures for printer driver tests: a real OctoPrint with its virtual printer, a listener that records."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fabpanel.core.printers import JobOutcome, PrinterReport
from tests.support import free_port, missing

from .octoprint_server import OctoPrintMissing, OctoPrintServer, ensure_octoprint_venv, start_octoprint


@pytest.fixture(scope='module')
def octoprint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OctoPrintServer]:
    """One real OctoPrint per test module, connected to its virtual printer (error injection off)."""
    try:
        venv = ensure_octoprint_venv(install=False)
    except OctoPrintMissing as e:
        missing('OctoPrint', str(e))
    server = start_octoprint(tmp_path_factory.mktemp('octoprint'), free_port(), venv=venv)
    try:
        server.wait_operational()
        yield server
    finally:
        server.stop()


@dataclass(kw_only=True)
class RecordingListener:
    """A DriverListener that keeps everything a driver tells, and can wait for a condition on it."""

    reports: list[PrinterReport] = field(default_factory=list)
    ended: list[tuple[JobOutcome, str]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=list)

    def report(self, report: PrinterReport) -> None:
        self.reports.append(report)

    def job_ended(self, outcome: JobOutcome, reason: str) -> None:
        self.ended.append((outcome, reason))

    def action(self, name: str) -> None:
        self.actions.append(name)

    def console(self, direction: str, line: str) -> None:
        self.lines.append((direction, line))

    @property
    def last(self) -> PrinterReport:
        return self.reports[-1]

    async def until(self, predicate: Callable[[], object], within_s: float = 15.0, what: str = '') -> None:
        deadline = asyncio.get_running_loop().time() + within_s
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                last = self.reports[-1] if self.reports else None
                raise AssertionError(
                    f'{what or "condition"} not met in {within_s} s; last report {last}, '
                    f'ended {self.ended}, actions {self.actions}'
                )
            await asyncio.sleep(0.05)


@pytest.fixture
def listener() -> RecordingListener:
    return RecordingListener()


def trimmed_gcode(source: Path, target: Path, lines: int, *, feedrate_percent: int = 100) -> Path:
    """The first `lines` lines of a real slicer file, made quick to start: without the heat-and-wait commands
    (the virtual printer heats at 10 °C/s) and without the start script's long moves before the first layer.
    It starts with an M220 (the virtual printer keeps it from one print to the next): a low `feedrate_percent`
    lets a test act mid-print (the virtual printer moves at ten times real speed)."""
    kept = [f'M220 S{feedrate_percent} ; fabpanel test: print speed\n']
    in_body = False
    with source.open(encoding='utf-8', errors='replace') as f:
        for line in f:
            if len(kept) >= lines:
                break
            in_body = in_body or line.startswith(';LAYER_CHANGE')
            code = line.split(';', 1)[0].strip().split(' ', 1)[0]
            if code in {'M109', 'M190', 'M191'} or (not in_body and code in {'G0', 'G1'}):
                continue
            kept.append(line)
    target.write_text(''.join(kept), encoding='utf-8')
    return target
