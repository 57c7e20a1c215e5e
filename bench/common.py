"""Shared pieces of the benchmarks: a private Mosquitto, the panel as a subprocess, /proc sampling, percentiles."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from fabpanel.settings import DatabaseSettings

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf('SC_CLK_TCK')


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f'nothing listens on port {port}')


def taskset(cpu: int | None) -> list[str]:
    if cpu is None or shutil.which('taskset') is None or cpu >= (os.cpu_count() or 1):
        return []
    return ['taskset', '-c', str(cpu)]


class Mosquitto:
    """A private mosquitto on a free loopback port (configured like tests/services.py), optionally pinned."""

    def __init__(self, workdir: Path, cpu: int | None = None) -> None:
        binary = shutil.which('mosquitto') or ('/usr/sbin/mosquitto' if Path('/usr/sbin/mosquitto').exists() else None)
        if binary is None:
            raise SystemExit('mosquitto is not installed (apt-get install mosquitto)')
        self.binary, self.cpu, self.workdir = binary, cpu, workdir
        self.port = free_port()
        self.conf = workdir / 'mosquitto.conf'
        self.conf.write_text('\n'.join([
            f'listener {self.port} 127.0.0.1', 'allow_anonymous true', 'queue_qos0_messages true',
            'max_queued_messages 100000', 'max_inflight_messages 0', 'max_connections -1', 'persistence false',
        ]) + '\n')
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([*taskset(self.cpu), self.binary, '-c', str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.workdir / 'mosquitto.log', 'ab'))  # noqa: SIM115
        wait_port(self.port)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class PanelProcess:
    """`python main.py` with its own settings file, a given database and an external broker."""

    def __init__(self, workdir: Path, db_path: Path, mqtt_port: int, cpu: int | None = None,
                 script: str = 'main.py', env: dict[str, str] | None = None) -> None:
        self.workdir, self.cpu, self.script = workdir, cpu, script
        self.web_port = free_port()
        self.config = workdir / 'fabpanel.toml'
        toml = '[web]\nhost = "127.0.0.1"\nsecret_key = "bench-secret-key-not-for-production"\n'
        if 'data_dir' in {f.name for f in fields(DatabaseSettings)}:  # keep the panel's files out of the repo
            toml += f'[database]\ndata_dir = "{workdir / "data"}"\n'
        self.config.write_text(toml)
        self.log = workdir / 'panel.log'
        self.env = {**os.environ, 'FABPANEL_CONFIG': str(self.config), 'FABPANEL_DATABASE__URL': f'sqlite:///{db_path}',
                    'FABPANEL_MQTT__BROKER': '127.0.0.1', 'FABPANEL_MQTT__PORT': str(mqtt_port),
                    'FABPANEL_WEB__PORT': str(self.web_port), 'PYTHONUNBUFFERED': '1', **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # run from the work directory: whatever the panel writes relative to its cwd stays out of the repo
        self.proc = subprocess.Popen([*taskset(self.cpu), sys.executable, str(ROOT / self.script)], cwd=self.workdir,
                                     env=self.env,
                                     stdout=open(self.log, 'ab'), stderr=subprocess.STDOUT)  # noqa: SIM115

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def healthz(self, timeout: float = 2.0) -> dict[str, Any]:
        url = f'http://127.0.0.1:{self.web_port}/healthz'
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - our own loopback URL
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())

    async def ahealthz(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.healthz)

    def wait_connected(self, timeout: float = 60.0) -> float:
        """Block until /healthz says the gateway is connected; returns the seconds it took."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc is not None and self.proc.poll() is not None:
                raise SystemExit(f'the panel exited with {self.proc.returncode}; see {self.log}:\n{self.tail()}')
            try:
                if self.healthz(timeout=1.0).get('gateway', {}).get('connected'):
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f'the panel did not become healthy within {timeout:.0f} s; see {self.log}:\n{self.tail()}')

    def tail(self, lines: int = 30) -> str:
        try:
            return '\n'.join(self.log.read_text(errors='replace').splitlines()[-lines:])
        except OSError:
            return ''

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


# ---- /proc sampling --------------------------------------------------------------------------------------------
def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks."""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_mb(pid: int) -> float:
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return 0.0


def core_ticks(core: int) -> tuple[int, int]:
    """(busy, total) ticks of one CPU core from /proc/stat."""
    with open('/proc/stat') as f:
        for line in f:
            if line.startswith(f'cpu{core} '):
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + v[4]
                return sum(v) - idle, sum(v)
    return 0, 0


@dataclass(slots=True)
class CpuSnapshot:
    t: float
    ticks: dict[str, int]
    cores: dict[int, tuple[int, int]]


class CpuMeter:
    """CPU % of named processes and busy % of cores between two snapshots."""

    def __init__(self, pids: dict[str, int], cores: tuple[int, ...] = (0, 1)) -> None:
        self.pids = pids
        self.cores = tuple(c for c in cores if c < (os.cpu_count() or 1))

    def snap(self) -> CpuSnapshot:
        ticks = {}
        for name, pid in self.pids.items():
            try:
                ticks[name] = cpu_ticks(pid)
            except OSError:
                ticks[name] = 0
        return CpuSnapshot(time.monotonic(), ticks, {c: core_ticks(c) for c in self.cores})

    def percent(self, a: CpuSnapshot, b: CpuSnapshot) -> dict[str, float]:
        dt = max(b.t - a.t, 1e-6)
        out = {name: (b.ticks[name] - a.ticks[name]) / CLK_TCK / dt * 100 for name in self.pids}
        for c in self.cores:
            busy = b.cores[c][0] - a.cores[c][0]
            total = b.cores[c][1] - a.cores[c][1]
            out[f'core{c}'] = busy / total * 100 if total else 0.0
        # what other programs took from the pinned cores (core 0: the panel; core 1: load side and broker)
        if 0 in self.cores and 'panel' in out:
            out['other0'] = max(0.0, out['core0'] - out['panel'])
        if 1 in self.cores:
            out['other1'] = max(0.0, out['core1'] - sum(v for k, v in out.items() if k in ('load', 'mosquitto')))
        return out


# ---- statistics ------------------------------------------------------------------------------------------------
def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100); NaN when empty."""
    if not sorted_values:
        return float('nan')
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def latency_ms(values_s: list[float]) -> dict[str, float]:
    v = sorted(values_s)
    return {'n': len(v), 'p50': percentile(v, 50) * 1000, 'p95': percentile(v, 95) * 1000,
            'p99': percentile(v, 99) * 1000, 'max': (v[-1] * 1000) if v else float('nan')}
