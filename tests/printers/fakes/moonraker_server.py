"""The real Moonraker (PyPI `moonraker`, in its own venv) without Klipper: its websocket API, API-key auth and file
uploads are real, Klipper stays 'disconnected'. Checks the driver against the server where no Klipper is needed.

The venv is $FABPANEL_MOONRAKER_VENV, default `<repo>/.venv-moonraker`, made with `pip install moonraker` when
its `bin/moonraker` is missing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port, missing, wait_port

REPO = Path(__file__).resolve().parents[3]
VENV = Path(os.environ.get('FABPANEL_MOONRAKER_VENV', REPO / '.venv-moonraker'))


def ensure_moonraker() -> Path:
    binary = VENV / 'bin' / 'moonraker'
    if not binary.exists():
        try:
            subprocess.run([sys.executable, '-m', 'venv', str(VENV)], check=True, capture_output=True, timeout=120)
            subprocess.run(
                [str(VENV / 'bin' / 'pip'), 'install', '-q', 'moonraker'], check=True, capture_output=True, timeout=600
            )
        except (OSError, subprocess.SubprocessError) as error:
            missing('moonraker', f'pip install moonraker into {VENV} failed: {error}')
    return binary


@dataclass(kw_only=True, slots=True)
class MoonrakerServer:
    url: str
    api_key: str
    datapath: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_moonraker(datapath: Path) -> MoonrakerServer:
    binary = ensure_moonraker()
    port = free_port()
    (datapath / 'config').mkdir(parents=True, exist_ok=True)
    (datapath / 'config' / 'moonraker.conf').write_text(
        f'[server]\nhost: 127.0.0.1\nport: {port}\nklippy_uds_address: {datapath}/klippy.sock\n\n'
        '[file_manager]\nenable_object_processing: False\n'
    )
    unix_socket = datapath / 'moonraker.sock'
    with open(datapath / 'moonraker.log', 'ab') as log:
        process = subprocess.Popen(
            [str(binary), '-d', str(datapath), '-n', '-u', str(unix_socket)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_port(port, timeout=60)
        key = _api_key(unix_socket)
    except (TimeoutError, OSError):
        process.kill()
        raise
    return MoonrakerServer(url=f'http://127.0.0.1:{port}', api_key=key, datapath=datapath, process=process)


def _api_key(unix_socket: Path) -> str:
    """Clients on Moonraker's unix socket are trusted: ask it for the API key the TCP clients need."""
    deadline = time.monotonic() + 30
    while not unix_socket.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(unix_socket))
        client.sendall(json.dumps({'jsonrpc': '2.0', 'method': 'access.get_api_key', 'id': 1}).encode() + b'\x03')
        data = b''
        while not data.endswith(b'\x03'):
            chunk = client.recv(65536)
            if not chunk:
                break
            data += chunk
    replies = [json.loads(part) for part in data.split(b'\x03') if part]
    return str(next(reply['result'] for reply in replies if reply.get('id') == 1))
