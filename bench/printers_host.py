"""The streaming host of bench/printers.py: MarlinDrivers in one asyncio process, one per simulated printer.

    python -m bench.printers_host --links L1,L2,... --file F [--window N]

Connects every printer, starts the same file on all at once, waits for every job to end, and prints one JSON
line: per printer the lines streamed and the seconds it took, and this process's CPU time while streaming.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fabpanel.core.printers import JobOutcome, PrinterConfig, PrinterKind, PrinterReport  # noqa: E402
from fabpanel.printers.marlin import MarlinDriver  # noqa: E402
from fabpanel.printers.marlin_link import MarlinSettings  # noqa: E402


class Listener:
    """What the fleet worker would do, minus the database: keep the last report, note the end."""

    def __init__(self) -> None:
        self.last: PrinterReport | None = None
        self.reports = 0
        self.ended: asyncio.Future[tuple[JobOutcome, str, float]] = asyncio.get_running_loop().create_future()

    def report(self, report: PrinterReport) -> None:
        self.last = report
        self.reports += 1

    def job_ended(self, outcome: JobOutcome, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result((outcome, reason, time.perf_counter()))

    def action(self, name: str) -> None:
        pass

    def console(self, direction: str, line: str) -> None:
        pass


async def stream(links: list[str], path: Path, window: int) -> dict[str, Any]:
    settings = MarlinSettings()
    if window:
        settings = dataclasses.replace(settings, window_lines=window)
    listeners = [Listener() for _ in links]
    drivers = [
        MarlinDriver(
            PrinterConfig(id=i, name=f'sim {i}', kind=PrinterKind.MARLIN, address=link), listener, settings=settings
        )
        for i, (link, listener) in enumerate(zip(links, listeners, strict=True))
    ]
    await asyncio.gather(*(d.connect() for d in drivers))
    names = [await d.upload(path, path.name) for d in drivers]
    gc.collect()
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(d.start(name) for d, name in zip(drivers, names, strict=True)))
    ends = await asyncio.gather(*(listener.ended for listener in listeners))
    cpu = time.process_time() - cpu0
    printers = []
    for driver, (outcome, reason, t_end) in zip(drivers, ends, strict=True):
        if outcome is not JobOutcome.DONE:
            raise SystemExit(f'{driver.config.name}: job {outcome.value} {reason}')
        printers.append({'lines': driver.lines_streamed, 'seconds': t_end - t0})
    await asyncio.gather(*(d.close() for d in drivers))
    return {
        'printers': printers,
        'cpu_s': cpu,
        'wall_s': max(p['seconds'] for p in printers),
        'reports': sum(listener.reports for listener in listeners),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--links', required=True)
    parser.add_argument('--file', required=True)
    parser.add_argument('--window', type=int, default=0)
    args = parser.parse_args()
    result = asyncio.run(stream(args.links.split(','), Path(args.file), args.window))
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
    main()
