"""`python main.py --demo`: a newcomer sees a live lab at once (sample data, simulated boards, real protocol)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from fabpanel.demo import MACHINES

from .support import free_port
from .test_cli import MAIN, panel_env


def _health(port: int) -> dict:
    with urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2) as r:  # noqa: S310 - loopback
        return json.loads(r.read())


def test_demo_runs_a_live_lab(tmp_path: Path) -> None:
    env = panel_env(tmp_path, FABPANEL_MQTT__PORT=str(free_port()))
    env.pop('FABPANEL_DATABASE__URL')  # the demo picks its own database under data/
    port = int(env['FABPANEL_WEB__PORT'])
    proc = subprocess.Popen([sys.executable, str(MAIN), '--demo'], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        health: dict = {}
        while time.monotonic() < deadline:
            try:
                health = _health(port)
                # boards announce themselves and check in: replies flow through the real broker
                if health['gateway']['replied'] >= 3:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert health.get('ok'), health
        assert health['gateway']['replied'] >= 3 and health['gateway']['malformed'] == 0, health
        with urllib.request.urlopen(f'http://127.0.0.1:{port}/', timeout=5) as r:  # noqa: S310 - loopback
            assert r.status == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    demo_db = tmp_path / 'data' / 'demo.db'
    assert demo_db.exists()
    with sqlite3.connect(demo_db) as db:
        machines, members, boards = (db.execute(f'select count(*) from {t}').fetchone()[0]  # noqa: S608
                                     for t in ('machine', 'member', 'board'))
    assert machines == len(MACHINES) and members == 40 + 1  # the demo's members and the first admin
    assert boards >= 1  # at least one simulated board announced itself with `alive`
