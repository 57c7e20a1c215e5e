"""Real services for tests: a private Mosquitto per test, the PostgreSQL server, free ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get('CI', '').lower() == 'true'
POSTGRES_URL = os.environ.get('FABPANEL_TEST_POSTGRES_URL', 'postgresql://postgres@127.0.0.1:5432/test')


def missing(what: str, how: str) -> None:
    """A service a test needs is absent: fail under CI (a green run must mean it ran), skip elsewhere."""
    message = f'{what} is not available ({how})'
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


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


class Mosquitto:
    """A private mosquitto on a free loopback port; can be stopped and started again on the same port."""

    def __init__(self, workdir: Path, port: int | None = None, persistence: bool = False) -> None:
        binary = shutil.which('mosquitto') or ('/usr/sbin/mosquitto' if Path('/usr/sbin/mosquitto').exists() else None)
        if binary is None:
            missing('mosquitto', 'apt-get install mosquitto')
        self.binary = binary
        self.port = port or free_port()
        self.workdir = workdir
        self.conf = workdir / 'mosquitto.conf'
        lines = [f'listener {self.port} 127.0.0.1', 'allow_anonymous true', 'queue_qos0_messages true',
                 'max_queued_messages 100000', 'max_inflight_messages 0']
        if persistence:
            lines += ['persistence true', f'persistence_location {workdir}/', 'autosave_interval 1']
        else:
            lines.append('persistence false')
        self.conf.write_text('\n'.join(lines) + '\n')
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.workdir / 'mosquitto.log', 'ab') as log:  # the child keeps its own copy of the handle
            self.proc = subprocess.Popen([self.binary, '-c', str(self.conf)], stdout=subprocess.DEVNULL, stderr=log)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class SmtpSink:
    """A real SMTP server (aiosmtpd) on a free loopback port that keeps what it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Any] = []
        self.port = free_port()
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                from email import message_from_bytes, policy

                sink.messages.append(message_from_bytes(envelope.content, policy=policy.default))
                return '250 OK'

        self.controller = Controller(Handler(), hostname='127.0.0.1', port=self.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def bodies(self) -> list[str]:
        return [m.get_body(preferencelist=('plain',)).get_content() for m in self.messages]
