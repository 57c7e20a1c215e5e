"""Start the panel like `python main.py`, plus loopback-only diagnostics (`bench.dashboard --probe / --trace-memory`).

GET /_bench/stalls: the event loop's stalls (a 5 ms timer that fired late by more than 20 ms) and the garbage
collector's passes by generation since the previous call, as JSON. Costs next to nothing.

GET /_bench/memory?mark=1 takes a baseline (gc object counts by type) and starts tracemalloc; GET
/_bench/memory later reports what grew since: live NiceGUI clients and their elements and bindings, object
types by count, and allocation sites. tracemalloc slows the panel: latencies and CPU of such a run are not
the panel's.

It changes nothing in the panel, unless asked for experiments (FABPANEL_PROBE_EXPERIMENTS=a,b; what a panel
feature gains, without editing the panel):
  nofreeze  the dashboard's PageHeap never freezes open pages (nor runs its full pass after pages closed): the
            collector's full passes then walk every open page's objects again, every few seconds under load.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.responses import JSONResponse, PlainTextResponse  # noqa: E402
from nicegui import Client, app, binding  # noqa: E402
from starlette.requests import Request  # noqa: E402

from fabpanel.cli import main  # noqa: E402

log = logging.getLogger('fabpanel.probe')
EXPERIMENTS = set(filter(None, os.environ.get('FABPANEL_PROBE_EXPERIMENTS', '').split(',')))
FRAMES = 10
STALL_MS = 20.0
_base: dict[str, object] = {}


class Stalls:
    def __init__(self) -> None:
        self.gc_start = 0.0
        self.reset()

    def reset(self) -> None:
        self.gc: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self.stalls: list[float] = []

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == 'start':
            self.gc_start = time.perf_counter()
        else:
            self.gc[info['generation']].append((time.perf_counter() - self.gc_start) * 1000)

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.005)
            late = (loop.time() - t - 0.005) * 1000
            if late > STALL_MS:
                self.stalls.append(late)


stalls = Stalls()
gc.callbacks.append(stalls.on_gc)
_tasks: set[asyncio.Task[None]] = set()


async def _start() -> None:
    _tasks.add(asyncio.create_task(stalls.watch()))


app.on_startup(_start)


if 'nofreeze' in EXPERIMENTS:
    from fabpanel.ui.dashboard import PageHeap

    PageHeap.opened = PageHeap.closed = lambda self: None  # type: ignore[method-assign]


def _loopback(request: Request) -> bool:
    return request.client is not None and request.client.host == '127.0.0.1'


@app.get('/_bench/stalls')
def stalls_since(request: Request) -> JSONResponse:
    if not _loopback(request):
        return JSONResponse({}, status_code=403)
    out = {'stalls_ms': sorted(stalls.stalls, reverse=True),
           'gc': {str(g): {'n': len(v), 'max_ms': max(v, default=0.0), 'total_ms': sum(v)}
                  for g, v in stalls.gc.items()},
           'gc_tracked': len(gc.get_objects()), 'gc_frozen': gc.get_freeze_count()}
    stalls.reset()
    return JSONResponse(out)


def _types() -> Counter[str]:
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def _site(trace: tracemalloc.Traceback, where: tuple[str, ...]) -> str:
    """The innermost frame of a file under one of `where` (the traceback runs from the oldest frame)."""
    for frame in reversed(trace):
        if any(w in frame.filename for w in where):
            return f'{frame.filename.split("/site-packages/")[-1].split("/work/main/")[-1]}:{frame.lineno}'
    return '(elsewhere)'


def _clients() -> tuple[int, int, int]:
    clients = list(Client.instances.values())
    bindings = sum(len(v) for v in binding.bindings.values())
    return len(clients), sum(len(c.elements) for c in clients), bindings + len(binding.active_links)


@app.get('/_bench/memory')
def memory(request: Request, mark: int = 0) -> PlainTextResponse:
    if not _loopback(request):
        return PlainTextResponse('loopback only', status_code=403)
    gc.collect()
    if mark:
        tracemalloc.start(FRAMES)  # from here on: starting the panel under tracemalloc takes half a minute
        _base.update(types=_types(), clients=_clients())
        return PlainTextResponse('marked')
    clients, elements, links = _clients()
    c0, e0, l0 = _base.get('clients', (0, 0, 0))  # type: ignore[misc]
    n = max(1, clients - c0)
    lines = [f'NiceGUI clients {c0} -> {clients}, their elements {e0} -> {elements} '
             f'({(elements - e0) / n:.0f} per new client), bindings + active links {l0} -> {links} '
             f'({(links - l0) / n:.0f} per new client)']
    grown = _types() - _base.get('types', Counter())  # type: ignore[operator]
    lines.append('objects that grew, per new client (gc-tracked types):')
    lines += [f'  {k:<40}{v / n:>9.0f}' for k, v in grown.most_common(15)]
    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    stats = snap.statistics('traceback')  # what is still allocated of what was allocated since the mark
    total = sum(s.size for s in stats)
    lines.append(f'allocations grown since the mark: {total / 1e6:.1f} MB = {total / n / 1e6:.2f} MB per new client '
                 f'(traced Python memory; RSS adds allocator overhead)')
    for title, where in (('innermost NiceGUI / panel frame', ('/nicegui/', '/fabpanel/')),
                         ('innermost panel frame (which line of ours asked for it)', ('/fabpanel/',))):
        by_site: Counter[str] = Counter()
        for stat in stats:
            by_site[_site(stat.traceback, where)] += stat.size
        lines.append(f'top sites by {title}:')
        lines += [f'  {v / n / 1e3:>8.1f} kB/client  {k}' for k, v in by_site.most_common(18)]
    return PlainTextResponse('\n'.join(lines))


if __name__ in {'__main__', '__mp_main__'}:
    from bench.dashboard_panel import start_printing

    start_printing()  # like bench/dashboard_panel.py: some simulated printers print
    main()
