"""A Moonraker stand-in built from Moonraker's API documents: JSON-RPC 2.0 on /websocket with subscriptions and
incremental notify_status_update diffs, multipart upload on /server/files/upload, and a small simulated print."""

from __future__ import annotations

import asyncio
import copy
import json
import math
import re
import time
from typing import Any

from aiohttp import WSMsgType, web

from tests.support import free_port

AMBIENT = 22.0


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class FakeMoonraker:
    """Serves one printer on a free loopback port. Tests steer it: shutdown(), fail(), drop(), restart_klippy()."""

    def __init__(self, api_key: str = '', print_seconds: float = 3.0) -> None:
        self.api_key, self.print_seconds = api_key, print_seconds
        self.port = free_port()
        self.files: dict[str, bytes] = {}
        self.calls: list[str] = []
        self.gcode: list[str] = []
        self.klippy_state, self.state_message = 'ready', 'Printer is ready'
        self.status: dict[str, Any] = {
            'print_stats': {'state': 'standby', 'filename': '', 'print_duration': 0.0, 'message': '', 'info': {}},
            'virtual_sdcard': {'progress': 0.0, 'is_active': False},
            'extruder': {'temperature': AMBIENT, 'target': 0.0},
            'heater_bed': {'temperature': AMBIENT, 'target': 0.0},
            'webhooks': {'state': 'ready', 'state_message': 'Printer is ready'},
        }
        self.hung = False  # the socket stays open but Moonraker neither answers nor pushes (see hang())
        self.clients: dict[web.WebSocketResponse, tuple[web.Request, dict[str, Any]]] = {}
        self.authorised: dict[web.WebSocketResponse, bool] = {}
        self._sent: dict[str, Any] = copy.deepcopy(self.status)
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get('/websocket', self._websocket)
        app.router.add_post('/server/files/upload', self._upload)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, '127.0.0.1', self.port).start()
        self._ticker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        self.drop()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._ticker = None

    # --- fault injection --------------------------------------------------------------------------------------

    def drop(self) -> None:
        """The network goes away: every websocket is cut without a close frame."""
        for request, _ in list(self.clients.values()):
            if request.transport is not None:
                request.transport.abort()

    def hang(self, hung: bool = True) -> None:
        """Moonraker stops answering calls and pushing updates while its socket stays open (a stuck host)."""
        self.hung = hung

    async def shutdown(self, message: str = "MCU 'mcu' shutdown: Timer too close") -> None:
        self.klippy_state, self.state_message = 'shutdown', message
        self.status['webhooks'] = {'state': 'shutdown', 'state_message': message}
        self._heaters_off()
        await self._notify('notify_klippy_shutdown')

    async def restart_klippy(self) -> None:
        self.klippy_state, self.state_message = 'ready', 'Printer is ready'
        self.status['webhooks'] = {'state': 'ready', 'state_message': 'Printer is ready'}
        self.status['print_stats'].update(state='standby', message='', filename='')
        await self._notify('notify_klippy_ready')

    def fail(self, message: str = 'Move out of range: 0.000 -12.000 0.300 [0.000]') -> None:
        self.status['print_stats'].update(state='error', message=message)
        self._heaters_off()

    # --- simulation -------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            self._step(now - last)
            last = now
            await self._broadcast_diff()

    def _step(self, dt: float) -> None:
        for heater in ('extruder', 'heater_bed'):
            values = self.status[heater]
            goal = values['target'] or AMBIENT
            values['temperature'] = round(values['temperature'] + (goal - values['temperature']) * min(1.0, dt * 4), 2)
        stats, sdcard = self.status['print_stats'], self.status['virtual_sdcard']
        if stats['state'] != 'printing':
            return
        stats['print_duration'] = round(stats['print_duration'] + dt, 3)
        sdcard['progress'] = round(min(1.0, sdcard['progress'] + dt / self.print_seconds), 4)
        stats['info']['current_layer'] = max(1, math.ceil(sdcard['progress'] * stats['info']['total_layer']))
        if sdcard['progress'] >= 1.0:
            stats['state'], sdcard['is_active'] = 'complete', False
            self._heaters_off()

    def _heaters_off(self) -> None:
        self.status['extruder']['target'] = self.status['heater_bed']['target'] = 0.0

    async def _broadcast_diff(self) -> None:
        if self.hung:
            return
        diff = _diff(self._sent, self.status)
        self._sent = copy.deepcopy(self.status)
        if diff:
            for ws, (_, objects) in list(self.clients.items()):
                part = _filtered(diff, objects)
                if part:
                    await _send(ws, {'jsonrpc': '2.0', 'method': 'notify_status_update', 'params': [part, time.time()]})

    async def _notify(self, method: str, params: list[Any] | None = None) -> None:
        for ws in list(self.clients):
            message = {'jsonrpc': '2.0', 'method': method} | ({'params': params} if params is not None else {})
            await _send(ws, message)

    # --- HTTP and JSON-RPC ------------------------------------------------------------------------------------

    def _check_key(self, request: web.Request) -> None:
        if self.api_key and request.headers.get('X-Api-Key') != self.api_key:
            raise web.HTTPUnauthorized(text='Unauthorized')

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        """Like Moonraker 0.11: the websocket always opens; methods need the key in the header or in identify."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.clients[ws] = (request, {})
        self.authorised[ws] = not self.api_key or request.headers.get('X-Api-Key') == self.api_key
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._rpc(ws, json.loads(message.data))
        finally:
            self.clients.pop(ws, None)
            self.authorised.pop(ws, None)
        return ws

    async def _rpc(self, ws: web.WebSocketResponse, request: dict[str, Any]) -> None:
        method, params = request['method'], request.get('params') or {}
        self.calls.append(method)
        if self.hung:
            return
        try:
            handler = getattr(self, 'rpc_' + method.replace('.', '_'), None)
            if handler is None:
                raise RpcError(404, f'Method not found: {method}')
            if not self.authorised[ws] and method != 'server.connection.identify':
                raise RpcError(-32602, 'Unauthorized')
            reply: dict[str, Any] = {'result': await handler(ws, params)}
        except RpcError as error:
            reply = {'error': {'code': error.code, 'message': str(error)}}
        await _send(ws, {'jsonrpc': '2.0', 'id': request['id']} | reply)

    def _need_klippy(self) -> None:
        if self.klippy_state != 'ready':
            raise RpcError(503, f'Klippy state: {self.klippy_state}')

    async def rpc_server_connection_identify(self, ws: Any, params: dict[str, Any]) -> dict[str, Any]:
        if 'api_key' in params:
            if params['api_key'] != self.api_key:
                raise RpcError(-32602, 'Invalid API Key')
            self.authorised[ws] = True
        return {'connection_id': id(ws)}

    async def rpc_server_info(self, ws: Any, params: dict[str, Any]) -> dict[str, Any]:
        return dict(klippy_connected=self.klippy_state != 'disconnected', klippy_state=self.klippy_state, warnings=[])

    async def rpc_printer_info(self, ws: Any, params: dict[str, Any]) -> dict[str, Any]:
        return dict(state=self.klippy_state, state_message=self.state_message, software_version='v0.12.0-fake')

    async def rpc_printer_objects_subscribe(self, ws: web.WebSocketResponse, params: dict[str, Any]) -> Any:
        objects = params['objects']
        self.clients[ws] = (self.clients[ws][0], objects)
        return {'eventtime': time.time(), 'status': _filtered(copy.deepcopy(self.status), objects)}

    async def rpc_printer_print_start(self, ws: Any, params: dict[str, Any]) -> str:
        self._need_klippy()
        stats = self.status['print_stats']
        if stats['state'] in ('printing', 'paused'):
            raise RpcError(400, 'Print already in progress')
        if params.get('filename') not in self.files:
            raise RpcError(400, f'Unable to open file {params.get("filename")}')
        stats.update(state='printing', filename=params['filename'], print_duration=0.0, message='')
        stats['info'] = {'current_layer': 1, 'total_layer': 20}
        self.status['virtual_sdcard'] = {'progress': 0.0, 'is_active': True}
        self.status['extruder']['target'], self.status['heater_bed']['target'] = 210.0, 60.0
        return 'ok'

    async def rpc_printer_print_pause(self, ws: Any, params: dict[str, Any]) -> str:
        return self._switch('printing', 'paused', 'Print not in progress')

    async def rpc_printer_print_resume(self, ws: Any, params: dict[str, Any]) -> str:
        return self._switch('paused', 'printing', 'Print is not paused, resume aborted')

    async def rpc_printer_print_cancel(self, ws: Any, params: dict[str, Any]) -> str:
        self._heaters_off()
        return self._switch('printing paused', 'cancelled', 'No print in progress')

    def _switch(self, expected: str, state: str, refusal: str) -> str:
        self._need_klippy()
        if self.status['print_stats']['state'] not in expected.split():
            raise RpcError(400, refusal)
        self.status['print_stats']['state'] = state
        self.status['virtual_sdcard']['is_active'] = state == 'printing'
        return 'ok'

    async def rpc_printer_emergency_stop(self, ws: Any, params: dict[str, Any]) -> str:
        self._later = asyncio.create_task(self.shutdown('Shutdown due to webhooks request'))  # after the reply
        return 'ok'

    async def rpc_printer_gcode_script(self, ws: Any, params: dict[str, Any]) -> str:
        self._need_klippy()
        for line in params['script'].splitlines():
            self.gcode.append(line)
            if match := re.match(r'(M104|M140)\s+S([\d.]+)', line.upper()):
                heater = 'extruder' if match[1] == 'M104' else 'heater_bed'
                self.status[heater]['target'] = float(match[2])
            elif line.upper().startswith('M115'):
                await self._notify('notify_gcode_response', ['FIRMWARE_NAME:Klipper FIRMWARE_VERSION:v0.12.0-fake'])
            elif not re.match(r'[GM]\d+', line.upper()):
                raise RpcError(400, f'Unknown command:"{line.split()[0].upper()}"')
        return 'ok'

    async def _upload(self, request: web.Request) -> web.Response:
        self._check_key(request)
        name, data, root = '', bytearray(), 'gcodes'
        async for part in await request.multipart():
            if part.name == 'root':
                root = await part.text()
            elif part.name == 'file':
                name = part.filename or ''
                while chunk := await part.read_chunk(65536):
                    data += chunk
        if root != 'gcodes' or not name:
            raise web.HTTPBadRequest(text='bad upload')
        self.files[name] = bytes(data)
        item = {'path': name, 'root': root, 'size': len(data), 'permissions': 'rw'}  # unwrapped, as the real one
        return web.json_response({'item': item, 'action': 'create_file', 'print_started': False}, status=201)


def _diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            if part := _diff(old[key], value):
                out[key] = part
        elif old.get(key, object()) != value:
            out[key] = copy.deepcopy(value)
    return out


def _filtered(status: dict[str, Any], objects: dict[str, list[str] | None]) -> dict[str, Any]:
    out = {}
    for name, fields in objects.items():
        if name in status:
            values = status[name]
            out[name] = values if fields is None else {k: v for k, v in values.items() if k in fields}
    return {k: v for k, v in out.items() if v}


async def _send(ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
    if not ws.closed:
        try:
            await ws.send_json(message)
        except (ConnectionError, RuntimeError):
            pass
