"""A Bambu Lab printer in LAN mode, built from the community protocol notes (OpenBambuAPI, ha-bambulab): a real
Mosquitto with a TLS listener that takes `bblp` + access code, a fake printer client that answers pushall and
commands and then sends P1-style diffs, and the implicit-FTPS server (fakes/ftps.py) for uploads."""

from __future__ import annotations

import asyncio
import getpass
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiomqtt

from tests.support import Mosquitto, free_port, missing, wait_port

from .ftps import ImplicitFtpsServer

AMBIENT = 22.0
CANCELLED = 0x0300400C


def make_certificate(directory: Path, common_name: str) -> tuple[Path, Path]:
    """A self-signed certificate named like the printers' (CN = serial number), made with the openssl CLI."""
    if shutil.which('openssl') is None:
        missing('openssl', 'apt-get install openssl')
    cert, key = directory / 'printer.crt', directory / 'printer.key'
    subprocess.run(
        [
            'openssl',
            'req',
            '-x509',
            '-newkey',
            'ec',
            '-pkeyopt',
            'ec_paramgen_curve:prime256v1',
            '-nodes',
            '-keyout',
            str(key),
            '-out',
            str(cert),
            '-days',
            '2',
            '-subj',
            f'/CN={common_name}',
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class BambuBroker(Mosquitto):
    """The printer's broker: TLS for clients (like port 8883), a plain loopback listener for the fake printer."""

    def __init__(self, workdir: Path, cert: Path, key: Path, access_code: str) -> None:
        super().__init__(workdir)
        if shutil.which('mosquitto_passwd') is None:
            missing('mosquitto_passwd', 'apt-get install mosquitto')
        self.inner_port = free_port()
        passwords = workdir / 'passwd'
        subprocess.run(
            ['mosquitto_passwd', '-b', '-c', str(passwords), 'bblp', access_code], check=True, capture_output=True
        )
        self.conf.write_text(
            '\n'.join(
                [
                    f'user {getpass.getuser()}',  # as root, mosquitto drops to a user that cannot read the files
                    'per_listener_settings false',
                    'allow_anonymous false',
                    f'password_file {passwords}',
                    'persistence false',
                    f'listener {self.port} 127.0.0.1',
                    f'certfile {cert}',
                    f'keyfile {key}',
                    f'listener {self.inner_port} 127.0.0.1',
                ]
            )
            + '\n'
        )

    def start(self) -> None:
        super().start()
        wait_port(self.inner_port)


class FakeBambuPrinter:
    """Runs as an MQTT client of the broker, like the printer's own firmware does."""

    def __init__(
        self, broker: BambuBroker, serial: str, access_code: str, ftps: ImplicitFtpsServer, print_seconds: float = 3.0
    ) -> None:
        self.broker, self.serial, self.access_code, self.ftps = broker, serial, access_code, ftps
        self.print_seconds = print_seconds
        self.requests: list[dict[str, Any]] = []
        self.gcode: list[str] = []
        self.answer_commands = True
        self.state: dict[str, Any] = {
            'gcode_state': 'IDLE',
            'mc_percent': 0,
            'mc_remaining_time': 0,
            'layer_num': 0,
            'total_layer_num': 0,
            'nozzle_temper': AMBIENT,
            'nozzle_target_temper': 0,
            'bed_temper': AMBIENT,
            'bed_target_temper': 0,
            'subtask_name': '',
            'gcode_file': '',
            'print_error': 0,
            'wifi_signal': '-42dBm',
            'mc_print_stage': '1',
        }
        self._sent: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._progress = 0.0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._connected.wait(), 10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def fail(self, code: int = 0x07008011) -> None:
        """The printer reports an error and gives up the job (e.g. 0700-8011, filament ran out)."""
        self.state.update(gcode_state='FAILED', print_error=code, nozzle_target_temper=0, bed_target_temper=0)

    async def _run(self) -> None:
        """Stays connected through broker restarts, as the printer does."""
        while True:
            try:
                async with aiomqtt.Client(
                    '127.0.0.1',
                    self.broker.inner_port,
                    username='bblp',
                    password=self.access_code,
                    identifier=f'printer-{self.serial}',
                ) as client:
                    await client.subscribe(f'device/{self.serial}/request')
                    self._connected.set()
                    ticker = asyncio.create_task(self._tick(client))
                    try:
                        async for message in client.messages:
                            await self._handle(client, json.loads(message.payload))  # type: ignore[arg-type]
                    finally:
                        ticker.cancel()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    async def _tick(self, client: aiomqtt.Client) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            self._step(now - last)
            last = now
            diff = {k: v for k, v in self.state.items() if self._sent.get(k) != v}
            if diff and self._sent:  # nothing before the first pushall
                await self._report(client, diff)

    def _step(self, dt: float) -> None:
        for actual, target in (('nozzle_temper', 'nozzle_target_temper'), ('bed_temper', 'bed_target_temper')):
            goal = self.state[target] or AMBIENT
            self.state[actual] = round(self.state[actual] + (goal - self.state[actual]) * min(1.0, dt * 4), 1)
        if self.state['gcode_state'] == 'PREPARE':
            self.state['gcode_state'] = 'RUNNING'
        elif self.state['gcode_state'] == 'RUNNING':
            self._progress = min(1.0, self._progress + dt / self.print_seconds)
            self.state.update(
                mc_percent=int(self._progress * 100),
                layer_num=max(1, int(self._progress * 20)),
                mc_remaining_time=round((1 - self._progress) * self.print_seconds / 60),
            )
            if self._progress >= 1.0:
                self.state.update(gcode_state='FINISH', nozzle_target_temper=0, bed_target_temper=0)

    async def _report(self, client: aiomqtt.Client, fields: dict[str, Any]) -> None:
        self._sent.update(fields)
        body = {'command': 'push_status', 'msg': 1, 'sequence_id': str(int(time.time() * 1000))} | fields
        await client.publish(f'device/{self.serial}/report', json.dumps({'print': body}))

    async def _handle(self, client: aiomqtt.Client, request: dict[str, Any]) -> None:
        self.requests.append(request)
        if 'pushing' in request:
            self._sent = {}
            await self._report(client, dict(self.state))
            return
        body = request.get('print') or {}
        reason = self._command(body)
        if self.answer_commands:
            answer = body | {'result': 'failed' if reason else 'success', 'reason': reason}
            await client.publish(f'device/{self.serial}/report', json.dumps({'print': answer}))

    def _start(self, body: dict[str, Any]) -> str:
        if body['command'] == 'gcode_file':
            name, subtask = str(body.get('param', '')).removeprefix('/sdcard/'), ''
        elif body.get('param') == 'Metadata/plate_1.gcode':
            name, subtask = str(body.get('url', '')).removeprefix('file:///sdcard/'), body.get('subtask_name', '')
        else:
            return 'no such plate'
        if name not in self.ftps.files:
            return f'file {name} not found'
        self._progress = 0.0
        self.state.update(gcode_state='PREPARE', print_error=0, subtask_name=subtask, gcode_file=name)
        self.state.update(mc_percent=0, layer_num=0, total_layer_num=20, nozzle_target_temper=220, bed_target_temper=55)
        return ''

    def _command(self, body: dict[str, Any]) -> str:
        """Carries out one print.* command; returns the refusal reason, or '' when done."""
        command, state = body.get('command'), self.state['gcode_state']
        if command == 'pause' and state == 'RUNNING':
            self.state['gcode_state'] = 'PAUSE'
        elif command == 'resume' and state == 'PAUSE':
            self.state['gcode_state'] = 'RUNNING'
        elif command == 'stop' and state in ('RUNNING', 'PAUSE', 'PREPARE'):
            self.state.update(gcode_state='FAILED', print_error=CANCELLED, nozzle_target_temper=0, bed_target_temper=0)
        elif command in ('project_file', 'gcode_file') and state not in ('RUNNING', 'PAUSE', 'PREPARE'):
            return self._start(body)
        elif command == 'gcode_line':
            for line in str(body.get('param', '')).splitlines():
                self.gcode.append(line)
                if match := re.match(r'(M104|M140)\s+S(\d+)', line):
                    key = 'nozzle_target_temper' if match[1] == 'M104' else 'bed_target_temper'
                    self.state[key] = int(match[2])
        else:
            return f'{command} not possible in state {state}'
        return ''
