"""A PrusaLink stand-in built from PrusaLink's OpenAPI (API v1): HTTP digest auth that really challenges and checks
the answer, status / job / files endpoints, and a small simulated print with error injection."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from typing import Any

from aiohttp import web

from tests.support import free_port

AMBIENT = 22.0
REALM = 'Printer API'


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


class FakePrusaLink:
    """One printer on a free loopback port. Tests steer it: error(), go_offline(), come_back()."""

    def __init__(self, *, user: str, password: str, print_seconds: float = 3.0) -> None:
        self.user, self.password, self.print_seconds = user, password, print_seconds
        self.port = free_port()
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []  # 'METHOD path' of every authorised request
        self.challenges = 0
        self.rejected = 0
        self._nonces: set[str] = set()
        self._expire_on_put = False
        self.state = 'IDLE'
        self.message = ''
        self.nozzle, self.bed = [AMBIENT, 0.0], [AMBIENT, 0.0]  # actual, target
        self.job: dict[str, Any] | None = None
        self._next_job = 100
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    async def start(self) -> None:
        app = web.Application(middlewares=[self._digest])
        app.router.add_get('/api/version', self._version)
        app.router.add_get('/api/v1/status', self._status)
        app.router.add_get('/api/v1/job', self._job)
        app.router.add_put('/api/v1/job/{id}/{action:pause|resume}', self._job_action)
        app.router.add_delete('/api/v1/job/{id}', self._job_stop)
        app.router.add_put('/api/v1/files/{storage}/{name}', self._upload)
        app.router.add_post('/api/v1/files/{storage}/{name}', self._print_file)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, '127.0.0.1', self.port).start()
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._run())

    async def go_offline(self) -> None:
        """The printer drops off the network (the simulation keeps printing)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def come_back(self) -> None:
        await self.start()

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        await self.go_offline()

    def expire_nonces_before_upload(self) -> None:
        """Printers forget nonces after a while: the next upload is challenged again, before its body is read."""
        self._expire_on_put = True

    def error(self, message: str = 'Thermal runaway detected on the hotend') -> None:
        self.state, self.message = 'ERROR', message
        self.nozzle[1] = self.bed[1] = 0.0

    # --- digest auth (RFC 7616 with MD5, as the printers use) -------------------------------------------------

    @web.middleware
    async def _digest(self, request: web.Request, handler: Any) -> web.StreamResponse:
        fields = dict(re.findall(r'(\w+)="?([^",]*)"?', request.headers.get('Authorization', '')))
        if self._expire_on_put and request.method == 'PUT':
            self._expire_on_put = False
            self._nonces.clear()
        if not request.headers.get('Authorization', '').startswith('Digest ') or not self._valid(request, fields):
            self.challenges += 1
            self.rejected += 'response' in fields
            nonce = secrets.token_hex(8)
            self._nonces.add(nonce)
            return web.json_response(
                {'title': 'Unauthorized'},
                status=401,
                headers={'WWW-Authenticate': f'Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=MD5'},
            )
        self.requests.append(f'{request.method} {request.path}')
        return await handler(request)

    def _valid(self, request: web.Request, fields: dict[str, str]) -> bool:
        if fields.get('username') != self.user or fields.get('nonce') not in self._nonces:
            return False
        if fields.get('realm') != REALM or fields.get('uri') != request.raw_path:
            return False
        ha1 = _md5(f'{self.user}:{REALM}:{self.password}')
        ha2 = _md5(f'{request.method}:{fields["uri"]}')
        nonce = fields['nonce']
        expected = _md5(f'{ha1}:{nonce}:{fields.get("nc")}:{fields.get("cnonce")}:auth:{ha2}')
        return fields.get('qop') == 'auth' and secrets.compare_digest(fields.get('response', ''), expected)

    # --- simulation -------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            dt, last = now - last, now
            for heater in (self.nozzle, self.bed):
                heater[0] += ((heater[1] or AMBIENT) - heater[0]) * min(1.0, dt * 4)
            if self.state == 'PRINTING' and self.job is not None:
                self.job['time_printing'] += dt
                self.job['progress'] = min(100.0, self.job['progress'] + 100 * dt / self.print_seconds)
                if self.job['progress'] >= 100.0:
                    self.state = 'FINISHED'
                    self.nozzle[1] = self.bed[1] = 0.0

    def _job_view(self) -> dict[str, Any] | None:
        if self.job is None or self.state not in ('PRINTING', 'PAUSED', 'ATTENTION'):
            return None
        done = self.job['progress'] / 100
        remaining = self.print_seconds * (1 - done)
        return {
            'id': self.job['id'],
            'progress': round(self.job['progress'], 1),
            'time_printing': int(self.job['time_printing']),
            'time_remaining': int(remaining),
        }

    # --- endpoints --------------------------------------------------------------------------------------------

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                'api': '2.0.0',
                'server': '2.1.2',
                'text': 'PrusaLink',
                'hostname': 'prusa-mk4',
                'firmware': '6.1.3+7898',
                'nozzle_diameter': 0.4,
            }
        )

    async def _status(self, request: web.Request) -> web.Response:
        printer = {
            'state': self.state,
            'temp_nozzle': round(self.nozzle[0], 1),
            'target_nozzle': self.nozzle[1],
            'temp_bed': round(self.bed[0], 1),
            'target_bed': self.bed[1],
            'axis_z': 0.2,
            'flow': 100,
            'speed': 100,
        }
        if self.message:
            printer['status_printer'] = {'ok': False, 'message': self.message}
        body: dict[str, Any] = {'storage': {'path': '/usb/', 'name': 'usb', 'read_only': False}, 'printer': printer}
        if job := self._job_view():
            body['job'] = job
        return web.json_response(body)

    async def _job(self, request: web.Request) -> web.Response:
        job = self._job_view()
        if job is None or self.job is None:
            return web.Response(status=204)
        name = self.job['name']
        file = {'name': name.upper()[:8], 'display_name': name, 'path': '/usb', 'size': len(self.files[name])}
        return web.json_response(job | {'state': self.state, 'file': file})

    def _current(self, request: web.Request) -> dict[str, Any]:
        if self.job is None or str(self.job['id']) != request.match_info['id']:
            raise web.HTTPNotFound()
        return self.job

    async def _job_action(self, request: web.Request) -> web.Response:
        self._current(request)
        action = request.match_info['action']
        if (action, self.state) not in {('pause', 'PRINTING'), ('resume', 'PAUSED')}:
            raise web.HTTPConflict()
        self.state = 'PAUSED' if action == 'pause' else 'PRINTING'
        return web.Response(status=204)

    async def _job_stop(self, request: web.Request) -> web.Response:
        self._current(request)
        if self.state not in ('PRINTING', 'PAUSED', 'ATTENTION'):
            raise web.HTTPConflict()
        self.state = 'STOPPED'
        self.nozzle[1] = self.bed[1] = 0.0
        return web.Response(status=204)

    async def _upload(self, request: web.Request) -> web.Response:
        name = request.match_info['name']
        if request.match_info['storage'] != 'usb' or request.headers.get('Overwrite') != '?1' and name in self.files:
            raise web.HTTPConflict()
        data = bytearray()
        while chunk := await request.content.read(65536):
            data += chunk
        if len(data) != request.content_length:
            raise web.HTTPBadRequest()
        self.files[name] = bytes(data)
        if request.headers.get('Print-After-Upload') == '?1':
            self._begin(name)
        return web.Response(status=201)

    async def _print_file(self, request: web.Request) -> web.Response:
        name = request.match_info['name']
        if name not in self.files:
            raise web.HTTPNotFound()
        if self.state in ('PRINTING', 'PAUSED', 'ATTENTION', 'BUSY', 'ERROR'):
            raise web.HTTPConflict()
        self._begin(name)
        return web.Response(status=204)

    def _begin(self, name: str) -> None:
        self._next_job += 1
        self.job = {'id': self._next_job, 'name': name, 'progress': 0.0, 'time_printing': 0.0}
        self.state, self.message = 'PRINTING', ''
        self.nozzle[1], self.bed[1] = 215.0, 60.0
