"""Web panel benchmark (BENCHMARKS.md, section "Browsers"): many browsers on the dashboard while boards work.

Seeds a fresh SQLite lab (bench/dashboard_seed.py: 50 machines, one member and card per machine, 10 simulated
printers, viewers with open sessions), starts a private Mosquitto and the panel (`python main.py` through
bench/dashboard_panel.py, which starts a job on every other simulated printer; pinned to core 0) and drives it
from this process (pinned to core 1, like everything else it starts):

- 50 simulated boards (fabpanel/boards/simulator.py) take turns to start and stop a use: 10 state changes per
  second in total (--rate), each machine every 5 s;
- clients of the dashboard '/', signed in with a session cookie: one headless Chromium (--browsers; a
  MutationObserver notes when a tile's data-status changes in the DOM) and the rest lightweight clients speaking
  the page's socket.io protocol (bench/dashboard_clients.py; they note when the update with the tile's new
  data-status arrives). One browser only by default: a headless Chromium takes about a fifth of core 1 for the
  page's 10 updates a second, and core 1 also runs the boards, the lightweight clients and Mosquitto (use
  --browsers 3 with more cores). Browsers run at nice 10;
- steps of 10, 50 and 100 connected clients (--clients, browsers included): for each, the time from a board's
  message to the update reaching every client (p50/p95/p99/max, and for Chromium alone), updates that never
  arrived, the boards' reply time, the CPU of the panel / this load side / Mosquitto / Chromium, and the panel's
  RSS growth since before the first client (per connected client). A first step with no clients gives the
  panel's CPU and RSS without browsers. The headline latency is the socket.io clients' (what the panel
  delivers); Chromium's, which adds its own rendering on a shared core, is shown apart;
- at the end every client leaves, and 40 s later (--leave) the panel's RSS (and with --probe the objects its
  garbage collector holds) show whether their pages were freed.

The dashboard shows the 50 machine tiles and the 10 printer tiles (BENCHMARKS.md): the printing ones change
with their reports (progress, temperatures: a printer_sample at most every 2 s per printer), which every client
receives on top of the boards' changes.

Run from the repo root:

    .venv/bin/python -m bench.dashboard                       # full run, ~2-3 min
    .venv/bin/python -m bench.dashboard --quick               # smoke run, < 1 min
    .venv/bin/python -m bench.dashboard --clients 100 --profile   # py-spy on the panel at 100 clients
    .venv/bin/python -m bench.dashboard --probe               # + the panel's event-loop stalls and GC passes
    .venv/bin/python -m bench.dashboard --experiment nofreeze   # without the dashboard's gc.freeze() of open pages
    .venv/bin/python -m bench.dashboard --clients 5,15 --browsers 0 --trace-memory   # what a client's memory is

Targets from the issue (2 cores): 100 clients, p99 < 500 ms, < 2 MB of panel memory per client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CpuMeter, Mosquitto, PanelProcess, latency_ms, rss_mb, taskset  # noqa: E402
from bench.dashboard_clients import BoardDriver, Changes, ChromiumClient, LightClient  # noqa: E402
from bench.dashboard_panel import ENV as PRINTING_ENV  # noqa: E402
from bench.dashboard_report import (  # noqa: E402
    P99_TARGET_MS,
    RSS_TARGET_MB,
    StepResult,
    make_result,
    scan_log,
    summarize_profile,
    ticks_percent,
    tree_ticks,
)
from bench.dashboard_seed import DashboardLab, seed_dashboard  # noqa: E402
from fabpanel.boards.simulator import SimulatedBoard  # noqa: E402
from fabpanel.ui.session import COOKIE  # noqa: E402

PANEL_CPU, LOAD_CPU = 0, 1
GRACE_S = 2.0  # after a window: time for the last changes' updates to arrive


class Bench:
    def __init__(self, args: argparse.Namespace, lab: DashboardLab, mosq: Mosquitto, panel: PanelProcess,
                 workdir: Path) -> None:
        self.args, self.lab, self.mosq, self.panel, self.workdir = args, lab, mosq, panel, workdir
        self.base_url = f'http://127.0.0.1:{panel.web_port}'
        self.meter = CpuMeter({'panel': panel.pid, 'load': os.getpid(), 'mosquitto': mosq.pid})
        self.changes = Changes()
        self.clients: list[LightClient | ChromiumClient] = []
        self.browsers: list[ChromiumClient] = []
        self.steps: list[StepResult] = []
        self.rss0 = 0.0
        self.idle_cpu = 0.0  # the panel's CPU with the boards working and no client
        self.lag_max = 0.0
        self.profile_summary = ''
        self.memory_report = ''
        self.driver: BoardDriver | None = None
        self.connect_errors: list[str] = []
        self.sessions = iter(lab.sessions)
        self.left: dict[str, float] = {}  # after every client left (--leave)
        self.objects0 = -1  # objects in the panel's collector before any client (--probe)
        self.printer_tiles = self.printing_tiles = -1  # printer tiles on the page a client loads, printing ones

    async def lag_monitor(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.01)
            self.lag_max = max(self.lag_max, loop.time() - t - 0.01)

    def browser_pids(self) -> list[int]:
        return [pid for b in self.browsers if (pid := b.pid) is not None]

    async def run(self) -> None:
        a = self.args
        lag = asyncio.create_task(self.lag_monitor())
        boards = {m: SimulatedBoard(m, '127.0.0.1', self.mosq.port, serial=f'{m:012x}', ip=f'10.0.0.{m}')
                  for m in self.lab.machines}
        self.driver = driver = BoardDriver(boards, self.lab.user_uid, self.changes, a.rate)
        await driver.bring_online()
        try:
            driver.start()
            await asyncio.sleep(a.settle)
            self.print_header()
            await self.measure(0)  # the boards' work alone: the panel's CPU and RSS without browsers
            await self.count_printer_tiles()
            for target in a.clients:
                connect = await self.fill(target)
                self.print_connect(connect)
                await asyncio.sleep(a.settle)
                r = await self.measure(target)
                r.connect = connect
            if a.trace_memory:
                self.memory_report = await self.memory_probe()
                print(f'\npanel memory since before the first client (tracemalloc):\n{self.memory_report}', flush=True)
            if a.leave:
                await self.leave()
        finally:
            await driver.stop()
            await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)
            lag.cancel()

    async def count_printer_tiles(self) -> None:
        """What a client's page holds: the printer tiles (BENCHMARKS.md: 10) and how many of them show a print."""
        session = next(self.sessions)

        def get() -> str:
            req = urllib.request.Request(f'{self.base_url}/', headers={'Cookie': f'{COOKIE}={session}'})  # noqa: S310
            with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - loopback
                return r.read().decode()

        html = await asyncio.to_thread(get)
        self.printer_tiles = len(re.findall(r'"data-printer":\s*\d+', html))
        self.printing_tiles = len(re.findall(r'"data-state":\s*"printing"', html))
        print(f'the page holds {self.printer_tiles} printer tiles, {self.printing_tiles} of them printing', flush=True)

    async def leave(self) -> None:
        """Every client goes away; `--leave` seconds later the panel must have freed their pages (the dashboard's
        PageHeap runs one full collection a while after pages closed: closed pages leave reference cycles)."""
        a = self.args
        with_clients = (len(self.clients), rss_mb(self.panel.pid), await self.gc_objects())
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)
        self.clients.clear()
        self.browsers.clear()
        await self.stalls()
        await asyncio.sleep(a.leave)
        stalls = await self.stalls()
        longest_gc = max((g['max_ms'] for g in stalls.get('gc', {}).values()), default=float('nan'))
        self.left = {'clients': with_clients[0], 'rss_with': with_clients[1], 'rss_after': rss_mb(self.panel.pid),
                     'objects_with': with_clients[2], 'objects_after': await self.gc_objects(),
                     'longest_gc_ms': longest_gc}
        print(f'\n  (all {with_clients[0]} clients left; {a.leave:g} s later: {self.leave_text()})', flush=True)

    async def gc_objects(self) -> int:
        """Objects the panel's collector holds, frozen ones included (--probe), else -1."""
        if not self.args.probe:
            return -1
        s = await self.stalls()
        return int(s['gc_tracked'] + s['gc_frozen'])

    def leave_text(self) -> str:
        k = self.left
        text = (f'panel RSS {k["rss_after"]:.0f} MB (with the clients {k["rss_with"]:.0f} MB, before any client '
                f'{self.rss0:.0f} MB)')
        if k['objects_after'] >= 0:
            text += (f'; objects in the collector {k["objects_with"]:,} -> {k["objects_after"]:,} (before any client '
                     f'{self.objects0:,}); longest GC pass meanwhile {k["longest_gc_ms"]:.0f} ms')
        return text

    async def fill(self, target: int) -> dict[str, float]:
        """Connect clients until `target` are on the page: the browsers first, then lightweight ones."""
        a = self.args
        added: list[LightClient | ChromiumClient] = []
        c0, t0 = self.meter.snap(), time.monotonic()
        while len(self.browsers) < min(a.browsers, target):
            b = ChromiumClient(self.base_url, next(self.sessions), self.changes,
                               self.workdir / f'chromium{len(self.browsers)}', nice=a.browser_nice)
            self.browsers.append(b)
            await b.connect()
            self.clients.append(b)
            added.append(b)
        while len(self.clients) < target:
            batch = [LightClient(self.base_url, next(self.sessions), self.changes)
                     for _ in range(min(a.connect_batch, target - len(self.clients)))]
            results = await asyncio.gather(*(c.connect() for c in batch), return_exceptions=True)
            for c, res in zip(batch, results, strict=True):
                if isinstance(res, BaseException):  # e.g. NiceGUI's 500 when the page took > 3 s: try again
                    self.connect_errors.append(repr(res)[:160])
                    await c.close()
                    if len(self.connect_errors) > 3 * a.connect_batch + len(self.clients) // 2:
                        raise SystemExit(f'too many failed page loads: {self.connect_errors[-3:]}\n'
                                         f'{self.panel.tail()}')
                else:
                    self.clients.append(c)
                    added.append(c)
        took = time.monotonic() - t0
        cpu = self.meter.percent(c0, self.meter.snap())
        light = [c for c in added if isinstance(c, LightClient)]
        pages = latency_ms([c.stats.page_s for c in light])
        sockets = latency_ms([c.stats.connect_s for c in light])
        return {'added': len(added), 'took_s': took, 'batch': a.connect_batch,
                'page_p50': pages['p50'], 'page_max': pages['max'],
                'socket_p50': sockets['p50'], 'socket_max': sockets['max'],
                'panel_cpu_s_per_client': cpu['panel'] / 100 * took / max(1, len(added)),
                'browser_page_s': max((b.stats.page_s for b in added if isinstance(b, ChromiumClient)), default=0.0)}

    async def measure(self, target: int) -> StepResult:
        a = self.args
        await self.stalls()  # forget what happened before the window
        light = [c for c in self.clients if isinstance(c, LightClient)]
        m0 = sum(c.stats.messages for c in light)
        u0 = sum(c.stats.printer_updates for c in light)
        w0, c0, b0 = time.time(), self.meter.snap(), tree_ticks(self.browser_pids())
        first = len(self.changes.all)
        self.lag_max = 0.0
        profiler = self.start_profiler() if a.profile and target == a.clients[-1] else None
        await asyncio.sleep(a.window)
        c1, b1 = self.meter.snap(), tree_ticks(self.browser_pids())
        m1 = sum(c.stats.messages for c in light)
        u1 = sum(c.stats.printer_updates for c in light)
        rss, lag = rss_mb(self.panel.pid), self.lag_max
        stalls = await self.stalls()
        last = len(self.changes.all)
        await asyncio.sleep(GRACE_S)  # the window's last changes still reach the clients
        await asyncio.gather(*(b.collect() for b in self.browsers))
        cpu = self.meter.percent(c0, c1)
        cpu['browsers'] = ticks_percent(b0, b1, c1.t - c0.t)
        cpu['other1'] = max(0.0, cpu.get('core1', 0) - cpu['load'] - cpu['mosquitto'] - cpu['browsers'])
        if target == 0:
            self.rss0, self.idle_cpu = rss, cpu['panel']
            if stalls:
                self.objects0 = int(stalls['gc_tracked'] + stalls['gc_frozen'])
            if a.trace_memory:
                await self.memory_probe('?mark=1')
        r = make_result(clients=[(c.kind, c.stats) for c in self.clients], changes=self.changes.all[first:last],
                        w0=w0, cpu=cpu, rss=rss, rss0=self.rss0, lag_ms=lag * 1000)
        r.msg_rate = (m1 - m0) / max(1, len(light)) / max(c1.t - c0.t, 1e-6)
        r.printer_rate = (u1 - u0) / max(1, len(light)) / max(c1.t - c0.t, 1e-6)
        r.stalls = stalls
        if target:
            self.steps.append(r)
        self.print_step(r)
        if stalls:
            self.print_stalls(stalls)
        if profiler is not None:
            await asyncio.to_thread(profiler[0].wait)
            if profiler[1].exists():
                self.profile_summary = summarize_profile(profiler[1])
                print(self.profile_summary, flush=True)
        return r

    async def probe(self, path: str) -> str:
        def get() -> str:
            with urllib.request.urlopen(f'{self.base_url}{path}', timeout=120) as r:  # noqa: S310 - loopback
                return r.read().decode()

        return await asyncio.to_thread(get)

    async def memory_probe(self, query: str = '') -> str:
        return await self.probe(f'/_bench/memory{query}')

    async def stalls(self) -> dict[str, Any]:
        return json.loads(await self.probe('/_bench/stalls')) if self.args.probe else {}

    def start_profiler(self) -> tuple[subprocess.Popen[bytes], Path] | None:
        spy = shutil.which('py-spy') or str(Path(sys.executable).with_name('py-spy'))
        if not Path(spy).exists():
            print('  (py-spy not found: .venv/bin/pip install py-spy)')
            return None
        out = Path(self.args.profile_out or self.workdir / 'profile.txt')
        cmd = [*taskset(LOAD_CPU), spy, 'record', '--pid', str(self.panel.pid), '--duration',
               str(int(self.args.window)), '--rate', '100', '--format', 'raw', '--output', str(out), '--gil']
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out

    # -- output
    @staticmethod
    def print_header() -> None:
        print(f'\n{"clients":>7}{"chr":>4}{"chg":>5}{"p50":>7}{"p95":>7}{"p99":>8}{"max":>8}{"miss":>6}'
              f'{"chr p50/p99":>14}{"reply p99":>10}{"panel%":>7}{"load%":>6}{"mosq%":>6}{"chr%":>5}{"oth%":>5}'
              f'{"lag":>5}{"RSS MB":>8}{"+MB/cl":>7}{"msg/s":>6}{"prn/s":>6}  (ms; chg = board changes in the '
              f'window; msg/s = messages a client receives per second, prn/s = printer tile updates among them)',
              flush=True)

    def print_step(self, r: StepResult) -> None:
        c, lat, lb = r.cpu, r.lat, r.lat_browser
        browser = f'{lb["p50"]:.0f}/{lb["p99"]:.0f}' if lb['n'] else '-'
        per = f'{r.per_client_mb:>7.2f}' if r.clients else f'{"-":>7}'
        print(f'{r.clients:>7}{r.browsers:>4}{r.changes:>5}{lat["p50"]:>7.1f}{lat["p95"]:>7.1f}{lat["p99"]:>8.1f}'
              f'{lat["max"]:>8.1f}{r.missed:>6}{browser:>14}{r.reply["p99"]:>10.1f}{c["panel"]:>7.0f}{c["load"]:>6.0f}'
              f'{c["mosquitto"]:>6.0f}{c["browsers"]:>5.0f}{c.get("other1", 0) + c.get("other0", 0):>5.0f}'
              f'{r.lag_ms:>5.0f}{r.rss:>8.1f}{per}{r.msg_rate:>6.1f}{r.printer_rate:>6.1f}', flush=True)
        if r.missed_by:
            print(f'    (clients that missed updates or went away, by kind: {r.missed_by})', flush=True)

    @staticmethod
    def print_stalls(s: dict[str, Any]) -> None:
        st, g = s['stalls_ms'], s['gc']
        print(f'    (panel event loop: {len(st)} stalls > 20 ms, {sum(st):.0f} ms in all, the longest '
              f'{", ".join(f"{x:.0f}" for x in st[:5]) or "-"} ms; GC passes: '
              + ', '.join(f'gen{k} {v["n"]} x (max {v["max_ms"]:.0f} ms, {v["total_ms"]:.0f} ms in all)'
                          for k, v in g.items())
              + f'; {s["gc_tracked"]:,} objects tracked by the GC, {s["gc_frozen"]:,} frozen)', flush=True)

    @staticmethod
    def print_connect(k: dict[str, float]) -> None:
        if not k['added']:
            return
        print(f'  (filling up: {k["added"]:.0f} clients in {k["took_s"]:.1f} s, {k["batch"]:.0f} at a time; '
              f'GET / p50 {k["page_p50"]:.0f} ms, max {k["page_max"]:.0f} ms; socket connect p50 '
              f'{k["socket_p50"]:.0f} ms; panel CPU {k["panel_cpu_s_per_client"] * 1000:.0f} ms per new client'
              + (f'; Chromium page load {k["browser_page_s"] * 1000:.0f} ms' if k['browser_page_s'] else '') + ')',
              flush=True)


def summary(bench: Bench) -> None:
    print('\n==================== dashboard benchmark: summary ====================')
    print(f'dashboard: {len(bench.lab.machines)} machine tiles and {len(bench.lab.printers)} printer tiles '
          f'({len(bench.lab.printing)} printing; seen on the page: {bench.printer_tiles}, of them printing: '
          f'{bench.printing_tiles}); boards change a machine\'s state {bench.args.rate:g} times per second; '
          f'panel pinned to core {PANEL_CPU}, boards + clients + Mosquitto + Chromium to core {LOAD_CPU}')
    if not bench.steps:
        print('no step was measured')
        return
    for r in bench.steps:
        lat = r.lat_light  # what the panel delivers; Chromium's own figure adds its renderer (shown apart)
        ok_lat = lat['n'] > 0 and lat['p99'] < P99_TARGET_MS and r.missed == 0
        ok_rss = r.per_client_mb < RSS_TARGET_MB
        print(f'{r.clients:>4} clients ({r.browsers} Chromium): board message -> update received '
              f'p50 {lat["p50"]:.0f} ms, p99 {lat["p99"]:.0f} ms (max {lat["max"]:.0f}; {lat["n"]} updates at '
              f'socket.io clients, {r.missed} missed by any client)   '
              f'p99 < {P99_TARGET_MS:.0f} ms: {"MET" if ok_lat else "NOT MET"}')
        if r.lat_browser['n']:
            b = r.lat_browser
            print(f'     in Chromium (the tile\'s data-status changed in the DOM): p50 {b["p50"]:.0f} ms, p99 '
                  f'{b["p99"]:.0f} ms, max {b["max"]:.0f} ms ({b["n"]} changes; the browsers used '
                  f'{r.cpu["browsers"]:.0f} % of core {LOAD_CPU})')
        print(f'     panel RSS +{r.rss_growth:.1f} MB over {bench.rss0:.0f} MB before any client = '
              f'{r.per_client_mb:.2f} MB per client   < {RSS_TARGET_MB:g} MB: {"MET" if ok_rss else "NOT MET"};   '
              f'panel CPU {r.cpu["panel"]:.0f} % '
              f'(no clients: {bench.idle_cpu:.0f} %; {(r.cpu["panel"] - bench.idle_cpu) / r.clients:.2f} % of a core '
              f'per client), board replies p99 {r.reply["p99"]:.0f} ms')
        print(f'     a client receives {r.msg_rate:.1f} messages/s, {r.printer_rate:.1f} printer tile updates/s')
        k = r.connect
        if k and k['added'] and k['page_p50'] == k['page_p50']:  # (NaN when only browsers were added)
            print(f'     opening the page while {k["added"]:.0f} clients joined ({k["batch"]:.0f} at a time): '
                  f'GET / p50 {k["page_p50"]:.0f} ms, max {k["page_max"]:.0f} ms; '
                  f'{k["panel_cpu_s_per_client"] * 1000:.0f} ms of panel CPU per page')
        if r.stalls:
            g2 = r.stalls['gc']['2']
            print(f'     panel event loop: longest stall {max(r.stalls["stalls_ms"], default=0):.0f} ms; '
                  f'full GC passes {g2["n"]} x, up to {g2["max_ms"]:.0f} ms '
                  f'({r.stalls["gc_tracked"]:,} objects tracked)')
    if len(bench.steps) >= 2:
        a, b = bench.steps[-2], bench.steps[-1]
        print(f'marginal RSS per client from {a.clients} to {b.clients} clients: '
              f'{(b.rss - a.rss) / (b.clients - a.clients):.2f} MB')
    if bench.left:
        print(f'after all {bench.left["clients"]:.0f} clients left ({bench.args.leave:g} s later): '
              f'{bench.leave_text()}')
    if bench.connect_errors:
        print(f'failed page loads while filling up (retried): {len(bench.connect_errors)}, '
              f'e.g. {bench.connect_errors[0]}')
    if bench.driver is not None:
        print(f'board changes: {len(bench.changes.all)} sent, {bench.changes.failed} not answered in 2 s, '
              f'{bench.driver.skipped} skipped (the board still waited for its last answer)')
    if bench.args.trace_memory:
        print('NOTE: --trace-memory: the panel ran under tracemalloc, its latencies and CPU are not representative')
    last = bench.steps[-1]
    busy = max(last.cpu.get('other0', 0), last.cpu.get('other1', 0))
    if busy > 15 or last.lag_ms > 100:
        print(f'NOTE: other programs took {last.cpu.get("other0", 0):.0f} % of core 0 and '
              f'{last.cpu.get("other1", 0):.0f} % of core 1, the load side\'s loop lagged up to {last.lag_ms:.0f} ms: '
              'the machine was not quiet, latencies are pessimistic')


# ---- main ----------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true', help='smoke run: 10 and 30 clients, 6 s windows')
    p.add_argument('--clients', type=lambda s: [int(x) for x in s.split(',')], default=None,
                   help='connected clients per step, browsers included (default 10,50,100)')
    p.add_argument('--browsers', type=int, default=None,
                   help='headless Chromium clients among them (default 1: each needs about half a core, see above)')
    p.add_argument('--browser-nice', type=int, default=10,
                   help='nice level of the Chromium processes (default 10: they share core 1 with the boards and the '
                        'lightweight clients and would starve them; 0 to run them at normal priority)')
    p.add_argument('--rate', type=float, default=10.0, help='machine state changes per second, all boards together')
    p.add_argument('--machines', type=int, default=50)
    p.add_argument('--printers', type=int, default=10, help='simulated printers (every other one prints)')
    p.add_argument('--window', type=float, default=None, help='measured seconds per step (default 20; --quick 6)')
    p.add_argument('--settle', type=float, default=None, help='seconds between filling up and measuring (3)')
    p.add_argument('--connect-batch', type=int, default=None,
                   help='clients that open the page at the same time while a step fills up (default 5; '
                        '--trace-memory: 1)')
    p.add_argument('--profile', action='store_true', help='py-spy on the panel during the last step')
    p.add_argument('--profile-out', type=Path, default=None, help='py-spy raw output (default in the workdir)')
    p.add_argument('--probe', action='store_true',
                   help='start the panel through bench/dashboard_probe.py and show its event-loop stalls and garbage '
                        'collections per step (cheap)')
    p.add_argument('--experiment', default='',
                   help='comma list of bench/dashboard_probe.py experiments (nofreeze): monkeypatches that show what '
                        'a panel feature gains; implies --probe')
    p.add_argument('--trace-memory', action='store_true',
                   help='start the panel through bench/dashboard_probe.py (tracemalloc) and report what the clients\' '
                        'memory is made of; slows the panel: its latencies and CPU are then not representative')
    p.add_argument('--leave', type=float, default=None,
                   help='after the last step every client leaves; report the panel\'s memory this many seconds later '
                        '(default 40: NiceGUI\'s reconnect timeout, then the dashboard frees closed pages within 30 s; '
                        '--quick: 0 = skip)')
    p.add_argument('--loop', choices=['uvloop', 'asyncio'], default='uvloop', help='event loop of the load side')
    p.add_argument('--wait-quiet', type=float, default=0.0,
                   help='wait up to this many seconds for both cores to be idle (<= 15 %%) for 3 s before starting')
    p.add_argument('--keep', action='store_true', help='keep the work directory (database, logs, profile)')
    a = p.parse_args(argv)
    a.clients = sorted(a.clients or ([10, 30] if a.quick else [10, 50, 100]))
    a.browsers = a.browsers if a.browsers is not None else 1
    a.probe = a.probe or bool(a.experiment)
    a.connect_batch = a.connect_batch or (1 if a.trace_memory else 5)
    a.window = a.window or (6.0 if a.quick else 20.0)
    a.leave = a.leave if a.leave is not None else (0.0 if a.quick else 40.0)
    a.settle = a.settle if a.settle is not None else (2.0 if a.quick else 3.0)
    return a


def wait_quiet(seconds: float) -> dict[str, float]:
    meter = CpuMeter({})
    deadline, quiet = time.monotonic() + seconds, 0
    while True:
        c0 = meter.snap()
        time.sleep(1.0)
        busy = meter.percent(c0, meter.snap())
        quiet = quiet + 1 if max(busy.get('core0', 0), busy.get('core1', 0)) <= 15 else 0
        if quiet >= 3 or time.monotonic() >= deadline:
            return busy


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if (os.cpu_count() or 1) > LOAD_CPU:
        os.sched_setaffinity(0, {LOAD_CPU})  # this process and all it starts (Chromium, Mosquitto)
    else:
        print('warning: fewer than 2 cores, nothing is pinned')
    workdir = Path(tempfile.mkdtemp(prefix='fabpanel-dashbench-'))
    db = workdir / 'dashboard.db'
    # one session per client, and spares for page loads that fail and are retried
    lab = asyncio.run(seed_dashboard(db, machines=args.machines, printers=args.printers,
                                     viewers=max(args.clients) + 60))
    busy = wait_quiet(args.wait_quiet)
    print(f'seeded {db}: {len(lab.machines)} machines, {len(lab.printers)} printers ({len(lab.printing)} printing), '
          f'{len(lab.sessions)} viewer sessions; cores busy before start '
          f'(other programs): core0 {busy.get("core0", 0):.0f} %, core1 {busy.get("core1", 0):.0f} %', flush=True)
    mosq = Mosquitto(workdir, cpu=LOAD_CPU)
    mosq.start()
    if args.experiment:
        print(f'EXPERIMENT: the panel runs with these monkeypatches: {args.experiment} (see bench/dashboard_probe.py)')
    panel = PanelProcess(workdir, db, mosq.port, cpu=PANEL_CPU,
                         script='bench/dashboard_probe.py' if args.probe or args.trace_memory else
                         'bench/dashboard_panel.py',
                         env={'FABPANEL_PROBE_EXPERIMENTS': args.experiment, PRINTING_ENV: ' '.join(lab.printing)})
    bench: Bench | None = None
    try:
        panel.start()
        took = panel.wait_connected()
        time.sleep(1.0)
        print(f'panel (pid {panel.pid}, core {PANEL_CPU}) healthy after {took:.1f} s, RSS {rss_mb(panel.pid):.0f} MB; '
              f'steps {args.clients} clients ({args.browsers} Chromium), {args.window:g} s windows', flush=True)
        bench = Bench(args, lab, mosq, panel, workdir)
        if args.loop == 'uvloop':
            import uvloop

            uvloop.run(bench.run())
        else:
            asyncio.run(bench.run())
    except KeyboardInterrupt:
        print('interrupted')
    except SystemExit as e:  # the run could not go on (e.g. pages kept failing): report what was measured
        print(f'stopped: {e}')
    finally:
        panel.stop()
        mosq.stop()
    counts, tracebacks = scan_log(panel.log)
    if counts or tracebacks:
        print(f'\npanel log ({panel.log}): {sum(counts.values())} warnings/errors, {tracebacks} tracebacks')
        for msg, n in counts.most_common(10):
            print(f'  {n:>6} x {msg}')
    if bench is not None:
        summary(bench)
    if args.keep:
        print(f'work directory kept: {workdir}')
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
