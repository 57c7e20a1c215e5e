"""Marlin streaming benchmark: fabpanel's MarlinDriver against OctoPrint on the same 100,000-line file.

Builds a G-code file from the body of a real Cura file (/work/shared/samples/gcode, repeated to 100,000 command
lines, with M220/M221 first so OctoPrint's virtual printer does not sleep through its simulated moves). Then:

1. fabpanel: the Marlin simulator (tests/printers/marlin_sim.py, one process serving all ptys, `taskset -c 1`)
   and the streaming host (MarlinDriver in an asyncio process, `taskset -c 0`), for 1 and for 10 printers at
   once: lines/s per printer, host CPU seconds per 100k lines (the host process's own CPU time while streaming).
2. OctoPrint (its own venv, tests/printers/octoprint_server.py) with its built-in virtual printer, error
   injection off, pinned to core 0: the same file uploaded and printed; lines/s and CPU s per 100k lines. Its
   virtual printer runs inside OctoPrint's process, so its CPU counts both sides of the wire: the ratio is also
   shown against fabpanel's host + simulator CPU, the comparison that is fair to OctoPrint.

Run from the repo root, under the benchmark lock:

    flock -x /tmp/bench.lock .venv/bin/python -m bench.printers            # full run, ~3-6 min
    flock -x /tmp/bench.lock .venv/bin/python -m bench.printers --quick    # 20,000 lines, 1 and 3 printers
    flock -x /tmp/bench.lock .venv/bin/python -m bench.printers --window 1 --skip-octoprint   # OctoPrint's window

Targets from the issue: host CPU per line at most a third of OctoPrint's; 10 printers streaming together at
>= 1,000 lines/s each on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CLK_TCK, cpu_ticks, taskset  # noqa: E402
from tests.printers.marlin_sim_io import SimProcess  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = Path('/work/shared/samples/gcode/cura-4.5.0_schieberdeckel.gcode')
HOST_CPU, SIM_CPU = 0, 1


def build_gcode(target: Path, commands: int) -> int:
    """Header, then the sample's body (;LAYER:0 to its last ;TIME_ELAPSED) repeated; returns the command count."""
    lines = SAMPLE.read_text(encoding='utf-8', errors='replace').splitlines()
    start = lines.index(';LAYER:0')
    end = max(i for i, line in enumerate(lines) if line.startswith(';TIME_ELAPSED'))
    body = lines[start : end + 1]
    out = [
        '; fabpanel benchmark: the body of ' + SAMPLE.name + ' repeated',
        'M220 S1000000 ; OctoPrint virtual printer: do not simulate move durations',
        'M221 S1000000',
        'G90',
        'M82',
        'G92 E0',
    ]
    count = sum(1 for line in out if line.split(';', 1)[0].strip())
    while count < commands:
        for line in body:
            if count >= commands:
                break
            out.append(line)
            if line.split(';', 1)[0].strip():
                count += 1
    target.write_text('\n'.join(out) + '\n')
    return count


def run_fabpanel(workdir: Path, path: Path, printers: int, window: int) -> dict[str, Any]:
    """The simulator and a host process streaming `path` to `printers` printers at once."""
    sim = SimProcess(workdir / f'marlin-{printers}', count=printers, cpu=SIM_CPU).start()
    try:
        links = ','.join(str(link) for link in sim.links)
        cmd = [
            *taskset(HOST_CPU),
            sys.executable,
            '-m',
            'bench.printers_host',
            '--links',
            links,
            '--file',
            str(path),
            '--window',
            str(window),
        ]
        sim_ticks = cpu_ticks(sim.pid)
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
        sim_cpu = (cpu_ticks(sim.pid) - sim_ticks) / CLK_TCK
        if out.returncode != 0:
            raise SystemExit(f'the host process failed:\n{out.stderr[-3000:]}')
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result['sim_cpu_s'] = sim_cpu
        return result
    finally:
        sim.stop()


def run_octoprint(workdir: Path, path: Path, commands: int) -> dict[str, Any] | str:
    """OctoPrint's half; a string saying why when OctoPrint is not available."""
    try:
        from tests.printers.octoprint_server import OctoPrintMissing, ensure_octoprint_venv, start_octoprint
        from tests.support import free_port
    except ImportError as exc:
        return f'tests/printers/octoprint_server.py is not usable ({exc})'
    try:
        venv = ensure_octoprint_venv(install=False)
    except OctoPrintMissing as exc:
        return str(exc)
    server = start_octoprint(workdir / 'octoprint', free_port(), venv=venv, error_injection=False)
    try:
        server.wait_operational()
        pin_all_threads(server.proc.pid if server.proc else 0, HOST_CPU)
        upload(server, path)
        pid = server.proc.pid if server.proc else 0
        t0, c0 = time.perf_counter(), cpu_ticks(pid)
        server.request('POST', f'/api/files/local/{path.name}', {'command': 'select', 'print': True})
        time.sleep(1.0)
        while server.get('/api/job')['state'].lower().startswith(('printing', 'starting')):
            time.sleep(0.5)
        wall, cpu = time.perf_counter() - t0, (cpu_ticks(pid) - c0) / CLK_TCK
        job = server.get('/api/job')
        if (job.get('progress') or {}).get('completion') not in (100, 100.0):
            return f'the OctoPrint print did not complete: {job}'
        return {'lines': commands, 'wall_s': wall, 'cpu_s': cpu}
    finally:
        server.stop()


def pin_all_threads(pid: int, cpu: int) -> None:
    if cpu >= (os.cpu_count() or 1) or not pid:
        return
    for task in os.listdir(f'/proc/{pid}/task'):
        try:
            os.sched_setaffinity(int(task), {cpu})
        except OSError:
            pass


def upload(server: Any, path: Path) -> None:
    import urllib.request

    boundary = 'fabpanel-bench-boundary'
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        'Content-Type: application/octet-stream\r\n\r\n'
    )
    body = head.encode() + path.read_bytes() + f'\r\n--{boundary}--\r\n'.encode()
    req = urllib.request.Request(  # noqa: S310 - loopback URL built here
        f'{server.url}/api/files/local',
        data=body,
        method='POST',
        headers={'X-Api-Key': server.api_key, 'Content-Type': f'multipart/form-data; boundary={boundary}'},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - loopback URL built here
        resp.read()


def per_100k(seconds: float, lines: int) -> float:
    return seconds / lines * 100_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--lines', type=int, default=100_000)
    parser.add_argument('--printers', default='1,10', help='comma-separated printer counts')
    parser.add_argument('--window', type=int, default=0, help='max lines in flight (0: the driver default)')
    parser.add_argument('--quick', action='store_true', help='20,000 lines, 1 and 3 printers')
    parser.add_argument('--skip-octoprint', action='store_true')
    args = parser.parse_args(argv)
    if args.quick:
        args.lines, args.printers = 20_000, '1,3'
    workdir = Path(tempfile.mkdtemp(prefix='fabpanel-bench-printers-'))
    path = workdir / 'bench.gcode'
    commands = build_gcode(path, args.lines)
    print(
        f'file: {path} ({path.stat().st_size / 1e6:.1f} MB, {commands} command lines); '
        f'window: {args.window or "default"}',
        flush=True,
    )
    results: dict[str, Any] = {}
    for n in (int(x) for x in args.printers.split(',')):
        r = run_fabpanel(workdir, path, n, args.window)
        results[f'fabpanel x{n}'] = r
        print(f'fabpanel, {n} printer(s): {r}', flush=True)
    octo: dict[str, Any] | str = 'skipped' if args.skip_octoprint else run_octoprint(workdir, path, commands)
    print(f'octoprint: {octo}', flush=True)
    report(results, octo, commands)
    return 0


def report(results: dict[str, Any], octo: dict[str, Any] | str, commands: int) -> None:
    print('\n=== Marlin streaming: figures ===')
    print(f'{"run":<16}{"lines/s per printer (min / mean)":>34}{"host CPU s/100k":>18}{"host+sim CPU s/100k":>22}')
    for name, r in results.items():
        rates = [p['lines'] / p['seconds'] for p in r['printers']]
        lines = sum(p['lines'] for p in r['printers'])
        print(
            f'{name:<16}{min(rates):>20,.0f} / {sum(rates) / len(rates):>11,.0f}'
            f'{per_100k(r["cpu_s"], lines):>18.2f}{per_100k(r["cpu_s"] + r["sim_cpu_s"], lines):>22.2f}'
        )
    if isinstance(octo, str):
        print(f'OctoPrint: not measured ({octo}); run it with the OctoPrint venv (bash tests/run.sh installs it)')
        return
    octo_100k = per_100k(octo['cpu_s'], octo['lines'])
    print(
        f'{"OctoPrint x1":<16}{octo["lines"] / octo["wall_s"]:>20,.0f} / {"":>11}{octo_100k:>18.2f}'
        f'{"(incl. its virtual printer)":>22}'
    )
    one = results.get('fabpanel x1') or next(iter(results.values()))
    lines = sum(p['lines'] for p in one['printers'])
    host = per_100k(one['cpu_s'], lines)
    both = per_100k(one['cpu_s'] + one['sim_cpu_s'], lines)
    print(
        f'ratio host CPU per line, fabpanel / OctoPrint: {host / octo_100k:.3f} (target <= 0.333); '
        f'fabpanel host + simulator / OctoPrint: {both / octo_100k:.3f}'
    )


if __name__ == '__main__':
    sys.exit(main())
