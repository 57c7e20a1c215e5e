"""Klipper printers through Moonraker: JSON-RPC 2.0 over its websocket for state and commands, HTTP for uploads."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp

from fabpanel.core.printers import (
    Capabilities,
    JobOutcome,
    JobProgress,
    PrinterConfig,
    PrinterReport,
    PrinterState,
    Temperature,
)
from fabpanel.printers.driver import CommandRefused, DriverListener, PrinterDriver, PrinterError, PrinterUnavailable

log = logging.getLogger(__name__)

# None asks for every field of the object; lists keep the diffs Moonraker pushes small
SUBSCRIPTION: dict[str, list[str] | None] = {
    'print_stats': None,
    'virtual_sdcard': ['progress', 'is_active'],
    'extruder': ['temperature', 'target'],
    'heater_bed': ['temperature', 'target'],
    'webhooks': ['state', 'state_message'],
}
ACTIVE = {'printing': PrinterState.PRINTING, 'paused': PrinterState.PAUSED}
ENDINGS = {
    'complete': JobOutcome.DONE,
    'cancelled': JobOutcome.CANCELLED,
    'error': JobOutcome.FAILED,
    'standby': JobOutcome.CANCELLED,
}  # standby after printing: SDCARD_RESET_FILE dropped the job


def merge(into: dict[str, Any], diff: dict[str, Any]) -> None:
    """Apply one notify_status_update diff: only changed fields arrive, nested dicts (print_stats.info) too."""
    for key, value in diff.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def _rpc_error(error: dict[str, Any]) -> PrinterError:
    """Moonraker 0.11 answers a missing or wrong key on the websocket with -32602 'Unauthorized' / 'Invalid API
    Key' (older ones, and proxies, with 401)."""
    message = str(error.get('message', 'refused'))
    if error.get('code') in (401, 403) or message.startswith(('Unauthorized', 'Invalid API Key')):
        return PrinterUnavailable(f'Moonraker refused the API key ({message})')
    return CommandRefused(message)


def remote_file_name(name: str) -> str:
    """A plain file name for the printer's storage: no directories, nothing to climb out with."""
    base = PurePosixPath(name.replace('\\', '/')).name.strip()
    if base in ('', '.', '..'):
        raise PrinterError('the file needs a name')
    return base


class MoonrakerDriver(PrinterDriver):
    kind = 'moonraker'
    capabilities = Capabilities(temperature_autoreport=True)  # Moonraker pushes diffs: no polling
    call_timeout = 10.0
    probe_s = 5.0  # the liveness query's answer time
    gcode_timeout = 300.0  # printer.gcode.script answers when the script has run (G28, M190 ... take a while)

    def __init__(self, config: PrinterConfig, listener: DriverListener) -> None:
        super().__init__(config, listener)
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._closed = asyncio.Event()
        self._closed.set()
        self._status: dict[str, Any] = {}
        self._klippy = 'disconnected'
        self._klippy_lock = asyncio.Lock()  # ready / shutdown notifications are handled one after the other
        self._klippy_message = ''
        self._firmware = ''
        self._job_state = ''  # the print_stats.state we last acted on
        self._transition: PrinterState | None = None  # PAUSING / CANCELLING until Klipper confirms
        self._gcode_replies: list[str] | None = None
        self._last: PrinterReport | None = None

    @property
    def base_url(self) -> str:
        address = self.config.address.strip().rstrip('/')
        return address if '://' in address else f'http://{address}'

    def _headers(self) -> dict[str, str]:
        return {'X-Api-Key': self.config.api_key} if self.config.api_key else {}

    async def connect(self) -> PrinterReport:
        await self.close()
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        try:
            ws = await session.ws_connect(
                f'{self.base_url}/websocket',
                headers=self._headers(),
                heartbeat=15,
                timeout=aiohttp.ClientWSTimeout(ws_close=5),
                max_msg_size=0,
            )
        except aiohttp.WSServerHandshakeError as error:
            await session.close()
            if error.status in (401, 403):
                raise PrinterUnavailable(f'Moonraker refused the API key (HTTP {error.status})') from None
            raise PrinterUnavailable(f'Moonraker answered HTTP {error.status} on its websocket') from None
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            await session.close()
            raise PrinterUnavailable(f'cannot reach Moonraker at {self.base_url}: {error}') from None
        self._session, self._ws = session, ws
        self._closed.clear()
        self._reader = asyncio.create_task(self._read(ws), name=f'moonraker-{self.config.id}')
        try:
            await self._call('server.connection.identify', self._identity())
            info = await self._call('server.info')
            await self._klippy_changed(str(info.get('klippy_state', 'disconnected')))
        except PrinterUnavailable:
            await self.close()
            raise
        except PrinterError as error:
            await self.close()
            raise PrinterUnavailable(f'Moonraker did not complete the handshake: {error}') from None
        return self._emit(force=True)

    def _identity(self) -> dict[str, str]:
        """Newer Moonraker accepts the websocket without credentials and wants the key here instead."""
        identity = {'client_name': 'fabpanel', 'version': '0.1', 'type': 'other', 'url': 'https://fabpanel.invalid'}
        return identity | ({'api_key': self.config.api_key} if self.config.api_key else {})

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        ws, session, reader = self._ws, self._session, self._reader
        self._ws = self._session = self._reader = None
        for task in (*self._tasks, reader):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if ws is not None:
            await ws.close()
        if session is not None:
            await session.close()
        self._lost()

    # --- the websocket reader ---------------------------------------------------------------------------------

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                try:
                    self._dispatch(message.json())
                except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                    log.warning('printer %s: unreadable message from Moonraker ignored', self.config.id)
        finally:
            if self._ws is ws:
                log.info('printer %s: Moonraker connection lost', self.config.id)
                self._lost()

    def _lost(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(PrinterUnavailable('the connection to Moonraker was lost'))
        self._pending.clear()
        self._closed.set()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if 'id' in message:
            future = self._pending.pop(message['id'], None)
            if future is not None and not future.done():
                if 'error' in message:
                    future.set_exception(_rpc_error(message['error']))
                else:
                    future.set_result(message.get('result'))
            return
        method, params = message.get('method'), message.get('params') or []
        if method == 'notify_status_update':
            merge(self._status, params[0])
            self._status_changed()
        elif method == 'notify_gcode_response':
            for line in str(params[0]).splitlines():
                self.listener.console('<', line)
                if self._gcode_replies is not None:
                    self._gcode_replies.append(line)
        elif method in ('notify_klippy_ready', 'notify_klippy_shutdown', 'notify_klippy_disconnected'):
            self._spawn(self._klippy_changed(method.removeprefix('notify_klippy_')))

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning('printer %s: %s', self.config.id, task.exception())

    # --- state ------------------------------------------------------------------------------------------------

    async def _klippy_changed(self, state: str) -> None:
        """Klipper came up, shut down or went away: (re)subscribe, or end an active job as failed. The job state
        seen before survives a reconnect, so a job that ended while the connection was down is still announced."""
        async with self._klippy_lock:
            await self._klippy_now(state)

    async def _klippy_now(self, state: str) -> None:
        self._klippy = state
        if state == 'ready':
            info = await self._call('printer.info')
            self._firmware = f'Klipper {info.get("software_version", "")}'.strip()
            result = await self._call('printer.objects.subscribe', {'objects': SUBSCRIPTION})
            self._status = result.get('status', {})
            self._klippy_message = ''
            self._status_changed()
            return
        self._klippy_message = 'Klipper is starting' if state == 'startup' else 'Klipper is not connected'
        if state in ('shutdown', 'error'):
            self._klippy_message = await self._klippy_state_message(state)
        if self._job_state in ACTIVE:
            outcome = JobOutcome.FAILED if state in ('shutdown', 'error') else JobOutcome.INTERRUPTED
            self.listener.job_ended(outcome, self._klippy_message)
        self._job_state = ''
        self._emit()

    async def _klippy_state_message(self, state: str) -> str:
        try:
            info = await self._call('printer.info')
            return str(info.get('state_message') or f'Klipper {state}')
        except PrinterError:
            return f'Klipper {state}'

    def _print_stats(self) -> dict[str, Any]:
        return self._status.get('print_stats') or {}

    def _status_changed(self) -> None:
        stats = self._print_stats()
        state = stats.get('state', '')
        if state != self._job_state:
            previous, self._job_state, self._transition = self._job_state, state, None
            if previous in ACTIVE and state in ENDINGS:
                reason = str(stats.get('message') or '') if state == 'error' else ''
                self.listener.job_ended(ENDINGS[state], reason or ('print error' if state == 'error' else ''))
        self._emit()

    def _build(self) -> PrinterReport:
        now = datetime.now(UTC)
        if self._klippy != 'ready':
            state = PrinterState.ERROR if self._klippy in ('shutdown', 'error') else PrinterState.CONNECTING
            return PrinterReport(state=state, message=self._klippy_message, firmware=self._firmware, at=now)
        stats = self._print_stats()
        job_state = stats.get('state', '')
        state = ACTIVE.get(job_state, PrinterState.IDLE)
        ended = job_state != 'standby' and ENDINGS.get(job_state)  # Klipper keeps the last job's end until the next
        if self._transition is not None and state in (PrinterState.PRINTING, PrinterState.PAUSED):
            state = self._transition
        return PrinterReport(
            state=state,
            nozzle=self._temperature('extruder'),
            bed=self._temperature('heater_bed'),
            job=self._job(stats) if job_state in ACTIVE else None,
            message=str(stats.get('message') or ''),
            firmware=self._firmware,
            at=now,
            last_outcome=ended or None,
            last_file=str(stats.get('filename') or '') if ended else '',
        )

    def _temperature(self, heater: str) -> Temperature:
        values = self._status.get(heater) or {}
        return Temperature(actual=values.get('temperature'), target=values.get('target'))

    def _job(self, stats: dict[str, Any]) -> JobProgress:
        fraction = (self._status.get('virtual_sdcard') or {}).get('progress')
        elapsed = stats.get('print_duration')
        remaining = None
        if fraction and elapsed and fraction > 0.01:  # Moonraker gives no estimate: extrapolate from progress
            remaining = elapsed / fraction - elapsed
        info = stats.get('info') or {}
        return JobProgress(
            file_name=str(stats.get('filename') or ''),
            fraction=fraction,
            elapsed_s=elapsed,
            remaining_s=remaining,
            layer=info.get('current_layer'),
            layer_count=info.get('total_layer'),
        )

    def _emit(self, force: bool = False) -> PrinterReport:
        report = self._build()
        if force or self._last is None or replace(report, at=None) != replace(self._last, at=None):
            self._last = report
            self.listener.report(report)
        return report

    # --- commands ---------------------------------------------------------------------------------------------

    async def _call(self, method: str, params: dict[str, Any] | None = None, wait_s: float | None = None) -> Any:
        ws = self._ws
        if ws is None or ws.closed:
            raise PrinterUnavailable('not connected to Moonraker')
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await ws.send_json({'jsonrpc': '2.0', 'method': method, 'params': params or {}, 'id': request_id})
            return await asyncio.wait_for(future, wait_s or self.call_timeout)
        except TimeoutError:
            raise PrinterError(f'Moonraker did not answer {method} in time') from None
        except (aiohttp.ClientError, ConnectionError) as error:
            raise PrinterUnavailable(f'the connection to Moonraker failed: {error}') from None
        finally:
            self._pending.pop(request_id, None)

    async def alive(self) -> bool:
        """Moonraker pushes only changes, so an idle printer at a steady temperature says nothing: one small query
        to Moonraker itself (not to Klipper, which may be shut down and still be reported truthfully). A Klipper
        state notification that went missing is caught up on here."""
        info = await self._call('server.info', wait_s=self.probe_s)
        klippy = str(info.get('klippy_state', 'disconnected'))
        if klippy != self._klippy:
            self._spawn(self._klippy_changed(klippy))
        return True

    async def upload(self, local_path: Path, remote_name: str) -> str:
        session = self._session
        if session is None:
            raise PrinterUnavailable('not connected to Moonraker')
        name = remote_file_name(remote_name)
        handle = await asyncio.to_thread(local_path.open, 'rb')
        try:  # aiohttp reads the file in chunks (in its executor): large files never sit in memory
            form = aiohttp.FormData()
            form.add_field('root', 'gcodes')
            form.add_field('file', handle, filename=name, content_type='application/octet-stream')
            async with session.post(
                f'{self.base_url}/server/files/upload',
                data=form,
                headers=self._headers(),
                timeout=aiohttp.ClientTimeout(total=None, sock_read=120),
            ) as response:
                if response.status in (401, 403):
                    raise PrinterUnavailable(f'Moonraker refused the API key (HTTP {response.status})')
                if response.status >= 300:
                    text = (await response.text())[:200]
                    raise PrinterError(f'Moonraker refused the upload (HTTP {response.status}): {text}')
                body = await response.json()
        except aiohttp.ClientError as error:
            raise PrinterUnavailable(f'the upload to Moonraker failed: {error}') from None
        finally:
            await asyncio.to_thread(handle.close)
        return str((body.get('result') or body).get('item', {}).get('path') or name)

    async def start(self, remote_name: str) -> None:
        await self._call('printer.print.start', {'filename': remote_name})

    async def pause(self) -> None:
        await self._call('printer.print.pause', wait_s=60)
        self._set_transition(PrinterState.PAUSING)

    async def resume(self) -> None:
        await self._call('printer.print.resume', wait_s=60)

    async def cancel(self) -> None:
        await self._call('printer.print.cancel', wait_s=60)
        self._set_transition(PrinterState.CANCELLING)

    def _set_transition(self, state: PrinterState) -> None:
        """Klipper acknowledges before print_stats changes: show the in-between state until it does."""
        if self._print_stats().get('state') in ACTIVE:
            self._transition = state
            self._emit()

    async def emergency_stop(self) -> None:
        await self._call('printer.emergency_stop')

    async def send_gcode(self, lines: Sequence[str]) -> list[str]:
        script = '\n'.join(line.strip() for line in lines if line.strip())
        for line in script.splitlines():
            self.listener.console('>', line)
        self._gcode_replies = replies = []
        try:
            await self._call('printer.gcode.script', {'script': script}, wait_s=self.gcode_timeout)
        finally:
            self._gcode_replies = None
        return replies
