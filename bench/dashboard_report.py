"""Measuring helpers of the dashboard benchmark: per-step results, process-tree CPU, py-spy and log summaries.

(Small copies of bench/boards.py's helpers, which belong to the board benchmark.)
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import CLK_TCK, latency_ms

from .dashboard_clients import Change, ClientStats, process_tree

P99_TARGET_MS = 500.0
RSS_TARGET_MB = 2.0


@dataclass(kw_only=True)
class StepResult:
    clients: int
    light: int
    browsers: int
    changes: int
    lat: dict[str, float]  # board message -> update received, every client
    lat_light: dict[str, float]
    lat_browser: dict[str, float]
    reply: dict[str, float]  # board message -> the board has the panel's answer
    missed: int  # (change, client) pairs never seen within the grace period
    expected: int
    missed_by: dict[str, int]  # client kind -> clients that missed at least one change
    cpu: dict[str, float]
    rss: float
    rss_growth: float  # MB since before any client
    lag_ms: float  # the load side's worst event-loop lag during the window
    connect: dict[str, float] = field(default_factory=dict)  # the clients added for this step
    msg_rate: float = 0.0  # socket.io messages per second a lightweight client received
    printer_rate: float = 0.0  # printer tile updates per second a lightweight client received
    stalls: dict[str, Any] = field(default_factory=dict)  # the panel's loop stalls and GC passes (--probe)

    @property
    def per_client_mb(self) -> float:
        return self.rss_growth / self.clients if self.clients else float('nan')


def step_latencies(changes: list[Change], clients: list[tuple[str, ClientStats]], w0: float
                   ) -> tuple[dict[str, list[float]], int, int, Counter[str]]:
    """Latencies (s) by client kind plus 'all', the (change, client) pairs missed and expected, and by kind
    the clients that missed some."""
    out: dict[str, list[float]] = {'all': [], 'socket.io': [], 'chromium': []}
    missed = expected = 0
    missed_by: Counter[str] = Counter()
    for kind, stats in clients:
        if not stats.connected_at or stats.connected_at > w0:
            continue
        if stats.disconnected_at:
            missed_by[f'{kind} (disconnected)'] += 1
            continue
        some = False
        for c in changes:
            expected += 1
            t = stats.received.get(c.seq)
            if t is None:
                missed += 1
                some = True
                continue
            out['all'].append(t - c.sent)
            out[kind].append(t - c.sent)
        if some:
            missed_by[kind + (f' ({stats.error})' if stats.error else '')] += 1
    return out, missed, expected, missed_by


def make_result(*, clients: list[tuple[str, ClientStats]], changes: list[Change], w0: float, cpu: dict[str, float],
                rss: float, rss0: float, lag_ms: float) -> StepResult:
    lats, missed, expected, missed_by = step_latencies(changes, clients, w0)
    replies = [c.replied - c.sent for c in changes if c.replied]
    browsers = sum(1 for kind, _ in clients if kind == 'chromium')
    return StepResult(clients=len(clients), light=len(clients) - browsers, browsers=browsers, changes=len(changes),
                      lat=latency_ms(lats['all']), lat_light=latency_ms(lats['socket.io']),
                      lat_browser=latency_ms(lats['chromium']), reply=latency_ms(replies), missed=missed,
                      expected=expected, missed_by=dict(missed_by), cpu=cpu, rss=rss, rss_growth=rss - rss0,
                      lag_ms=lag_ms)


# ---- CPU of a process tree (Chromium: chromedriver and every browser process under it) --------------------------
def tree_ticks(roots: list[int]) -> int:
    """utime + stime ticks of the processes `roots` and all their living descendants."""
    total = 0
    for pid in {p for root in roots for p in process_tree(root)}:
        with contextlib.suppress(OSError, IndexError):
            f = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
            total += int(f[11]) + int(f[12])
    return total


def ticks_percent(a: int, b: int, dt: float) -> float:
    return (b - a) / CLK_TCK / max(dt, 1e-6) * 100


# ---- py-spy -------------------------------------------------------------------------------------------------------
def summarize_profile(path: Path, top: int = 22) -> str:
    """Self and inclusive sample shares per function from py-spy's raw (collapsed stacks) output."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(' ')
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [re.sub(r':\d+\)$', ')', f) for f in stack.split(';')[1:]]  # drop the thread/process frame
        if frames:
            own[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    if not total:
        return 'profile: no samples'
    lines = [f'\npanel profile ({path}, {total} samples of the thread holding the GIL): top self time']
    lines += [f'  {n / total * 100:5.1f} %  {f}' for f, n in own.most_common(top)]
    lines.append('top inclusive time (fabpanel / nicegui / socketio / engineio / starlette frames)')
    ours = re.compile(r'fabpanel|nicegui|socketio|engineio|starlette|fastapi|sqlalchemy|aiomqtt|json')
    keep = [(f, n) for f, n in incl.most_common() if ours.search(f)]
    lines += [f'  {n / total * 100:5.1f} %  {f}' for f, n in keep[:top]]
    return '\n'.join(lines)


def scan_log(path: Path) -> tuple[Counter[str], int]:
    """Distinct WARNING/ERROR messages of the panel log (numbers blanked) and the number of tracebacks."""
    counts: Counter[str] = Counter()
    try:
        text = path.read_text(errors='replace')
    except OSError:
        return counts, 0
    tracebacks = sum(1 for line in text.splitlines() if line.startswith('Traceback'))
    for line in text.splitlines():
        m = re.match(r'^\S+ \S+ (WARNING|ERROR|CRITICAL) (.*)$', line)
        if m:
            msg = re.sub(r'\b\d+\b', 'N', m.group(2))[:160]
            counts[f'{m.group(1)} {msg}'] += 1
    return counts, tracebacks
