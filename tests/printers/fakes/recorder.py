"""A DriverListener for tests: keeps everything a driver reports and lets a test wait for a condition."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from fabpanel.core.printers import JobOutcome, PrinterReport, PrinterState


@dataclass(kw_only=True, slots=True)
class Recorder:
    reports: list[PrinterReport] = field(default_factory=list)
    endings: list[tuple[JobOutcome, str]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def report(self, report: PrinterReport) -> None:
        self.reports.append(report)
        self._changed.set()

    def job_ended(self, outcome: JobOutcome, reason: str) -> None:
        self.endings.append((outcome, reason))
        self._changed.set()

    def action(self, name: str) -> None:
        self.actions.append(name)
        self._changed.set()

    def console(self, direction: str, line: str) -> None:
        self.lines.append((direction, line))

    @property
    def last(self) -> PrinterReport:
        assert self.reports, 'no report yet'
        return self.reports[-1]

    async def wait_for(self, condition: Callable[[Recorder], object], within: float = 10.0, what: str = '') -> None:
        """Wait until condition(self) is true; fail with what was last reported."""
        deadline = asyncio.get_running_loop().time() + within
        while not condition(self):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                break
        assert condition(self), f'timed out waiting for {what}: last report {self.reports[-1:]} endings {self.endings}'

    async def wait_state(self, state: PrinterState, within: float = 10.0) -> PrinterReport:
        await self.wait_for(lambda r: bool(r.reports) and r.last.state == state, within, f'state {state}')
        return self.last

    async def wait_ending(self, count: int = 1, within: float = 10.0) -> tuple[JobOutcome, str]:
        await self.wait_for(lambda r: len(r.endings) >= count, within, f'{count} job endings')
        return self.endings[count - 1]
