"""OctoPrint printers: commands over OctoPrint's REST API, state pushed over its SockJS websocket (polling when
the socket is down). OctoPrint streams the job itself, so a fabpanel restart does not interrupt a print."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp

from fabpanel.core.printers import ACTIVE_STATES, Capabilities, JobOutcome, PrinterConfig, PrinterReport, PrinterState
from fabpanel.printers.driver import CommandRefused, DriverListener, PrinterDriver, PrinterError, PrinterUnavailable
from fabpanel.printers.octoprint_state import apply_status, console_lines, state_from_text, status_from_rest

log = logging.getLogger(__name__)

_NETWORK_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)
_GCODE_SUFFIXES = ('.gcode', '.gco', '.g')


def _error_text(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:200]
    return str(data.get('error') or data)[:200] if isinstance(data, dict) else str(data)[:200]


class OctoPrintDriver(PrinterDriver):
    """One OctoPrint instance (its one printer). Authenticates with the configured API key (never logged)."""

    kind = 'octoprint'
    capabilities: ClassVar[Capabilities] = Capabilities(temperature_autoreport=True)
    poll_interval_s: ClassVar[float] = 2.0  # while the push socket is down
    socket_retry_s: ClassVar[float] = 10.0  # how long to poll before trying the socket again
    request_timeout_s: ClassVar[float] = 15.0
    heard_within_s: ClassVar[float] = 15.0  # OctoPrint pushes temperatures every few seconds while connected

    def __init__(self, config: PrinterConfig, listener: DriverListener) -> None:
        super().__init__(config, listener)
        address = config.address.strip().rstrip('/')
        self._base = address if '://' in address else f'http://{address}'
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._closed.set()
        self._heard = 0.0  # monotonic: OctoPrint's last push or answered poll
        self._report = PrinterReport()
        self._sent: PrinterReport | None = None  # the last report handed to the listener (without `at`)
        self._firmware = ''
        self._job_active = False
        self._pushing = True  # the push socket is (believed) open: log when that changes
        self._requested: set[str] = set()  # pause/resume/cancel asked through this driver, not yet confirmed

    # -- connection ------------------------------------------------------------------------------------------

    async def alive(self) -> bool:
        """OctoPrint pushes its state every few seconds (polled while the socket is down); only changes become
        reports, so a steady idle printer is quiet, and alive while OctoPrint keeps talking."""
        return not self._closed.is_set() and time.monotonic() - self._heard < self.heard_within_s

    async def connect(self) -> PrinterReport:
        await self.close()
        self._session = aiohttp.ClientSession(
            headers={'X-Api-Key': self.config.api_key},
            timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=30),
        )
        try:
            version = await self._request('GET', '/api/version')
            self._firmware = f'OctoPrint {version.get("server", "")}'.strip()
            connection = await self._request('GET', '/api/connection')
            text = str((connection.get('current') or {}).get('state') or '')
            problem = ''
            if state_from_text(text) in {PrinterState.OFFLINE, PrinterState.ERROR}:
                problem = await self._connect_printer(text)
            self._report = await self._poll()
            if problem and self._report.state in {PrinterState.OFFLINE, PrinterState.ERROR}:
                self._report = replace(self._report, message=problem)
        except BaseException:
            await self._close_session()
            raise
        self._job_active = self._report.state in ACTIVE_STATES
        self._requested.clear()
        self._sent = None
        self._closed.clear()
        self._task = asyncio.create_task(self._run(), name=f'octoprint-{self.config.id}')
        log.info('%s: connected to %s at %s', self.config.name, self._firmware, self._base)
        return self._stamped(self._report)

    async def _connect_printer(self, state_text: str) -> str:
        """OctoPrint runs but is not connected to its printer: ask it to (with its own saved port and baud rate).
        Returns why that failed, if it did; the printer shows OFFLINE until OctoPrint reports it connected."""
        log.info('%s: OctoPrint is not connected to its printer (%s), connecting it', self.config.name, state_text)
        try:
            await self._request('POST', '/api/connection', {'command': 'connect'})
        except PrinterUnavailable:
            raise
        except PrinterError as e:
            log.warning('%s: OctoPrint could not connect to its printer: %s', self.config.name, e)
            return f'OctoPrint could not connect to the printer: {e}'
        return ''

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._close_session()
        self._closed.set()

    async def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _run(self) -> None:
        """Listen on the push socket; when it drops, poll (which notices OctoPrint going away) and retry."""
        try:
            while True:
                try:
                    await self._listen()
                    reason = 'closed by OctoPrint'
                except (*_NETWORK_ERRORS, PrinterError, ValueError, KeyError) as e:
                    # even a refused login only costs the push: polling tells whether OctoPrint itself is gone
                    reason = f'{type(e).__name__}: {e}'
                if self._pushing:  # log the change once, not every retry
                    log.info('%s: OctoPrint push socket down (%s), polling', self.config.name, reason)
                    self._pushing = False
                await self._poll_for(self.socket_retry_s)
        except (*_NETWORK_ERRORS, PrinterError, ValueError, KeyError) as e:
            log.warning('%s: OctoPrint unreachable: %s', self.config.name, e)
        finally:
            self._closed.set()

    async def _listen(self) -> None:
        assert self._session is not None
        login = await self._request('POST', '/api/login', {'passive': True})
        url = self._base.replace('http', 'ws', 1) + '/sockjs/websocket'
        async with self._session.ws_connect(url, heartbeat=20) as ws:
            await ws.send_json({'auth': f'{login["name"]}:{login["session"]}'})
            await ws.send_json(
                {'subscribe': {'state': {'logs': True, 'messages': False}, 'events': True, 'plugins': False}}
            )
            if not self._pushing:
                log.info('%s: OctoPrint push socket open', self.config.name)
                self._pushing = True
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return
                self._heard = time.monotonic()
                data = json.loads(msg.data)
                if 'reauthRequired' in data:
                    return  # the session went stale: log in again
                self._on_message(data)

    def _on_message(self, data: dict[str, Any]) -> None:
        for kind in ('history', 'current'):
            if kind in data:
                payload = data[kind]
                for direction, line in console_lines(payload.get('logs') or []):
                    self.listener.console(direction, line)
                # `history` comes first after (re)connecting the socket: check for a job that ended meanwhile
                completion = (payload.get('progress') or {}).get('completion')
                self._update(apply_status(self._report, payload), resync=kind == 'history', completion=completion)
        if 'event' in data:
            event = data['event'] or {}
            self._on_event(str(event.get('type') or ''), event.get('payload') or {})

    def _on_event(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == 'PrintStarted':
            self._job_active = True
            self._requested.clear()
        elif kind in ('PrintPaused', 'PrintResumed'):
            self._job_active = True
            self._printer_side('pause' if kind == 'PrintPaused' else 'resume')
        elif kind == 'PrintDone':
            self._end(JobOutcome.DONE, '')
        elif kind == 'PrintFailed' and payload.get('reason') != 'cancelled':  # a cancel also sends PrintCancelled
            reason = str(payload.get('error') or self._report.message or 'the print failed on OctoPrint')
            self._end(JobOutcome.FAILED, reason)
        elif kind == 'PrintCancelled' and self._job_active:
            by_us = self._printer_side('cancel')
            self._end(JobOutcome.CANCELLED, 'cancelled' if by_us else 'cancelled on the printer or OctoPrint')
        elif kind == 'Error':
            self._update(replace(self._report, message=str(payload.get('error') or '')))

    def _printer_side(self, action: str) -> bool:
        """Whether we asked for `action`; when not, the printer (or someone on OctoPrint) did: tell the worker."""
        if action in self._requested:
            self._requested.discard(action)
            return True
        self.listener.action(action)
        return False

    def _end(self, outcome: JobOutcome, reason: str) -> None:
        if not self._job_active:
            return
        self._job_active = False
        self._requested.clear()
        log.info('%s: job ended: %s %s', self.config.name, outcome.value, reason)
        self.listener.job_ended(outcome, reason)

    def _update(self, report: PrinterReport, *, resync: bool = False, completion: float | None = None) -> None:
        if resync and self._job_active and report.state not in ACTIVE_STATES:
            # the job ended while no event could reach us: infer how from what OctoPrint shows now
            if report.state == PrinterState.ERROR:
                self._end(JobOutcome.FAILED, report.message or 'printer error')
            elif 'cancel' in self._requested or self._report.state == PrinterState.CANCELLING:
                self._end(JobOutcome.CANCELLED, 'cancelled')
            elif completion is not None and completion >= 99.9:
                self._end(JobOutcome.DONE, '')
            else:
                self._end(JobOutcome.INTERRUPTED, 'the job ended while fabpanel was not watching')
        if resync and report.state in ACTIVE_STATES:
            self._job_active = True
            # no PrintPaused / PrintResumed event reaches us while polling
            if report.state == PrinterState.PAUSED and self._report.state == PrinterState.PRINTING:
                self._printer_side('pause')
            elif report.state == PrinterState.PRINTING and self._report.state == PrinterState.PAUSED:
                self._printer_side('resume')
        self._report = report
        if report != self._sent:
            self._sent = report
            self.listener.report(self._stamped(report))

    def _stamped(self, report: PrinterReport) -> PrinterReport:
        return replace(report, firmware=self._firmware, at=datetime.now(UTC))

    async def _poll(self) -> PrinterReport:
        """What OctoPrint shows now, over REST (the push socket's payload shape)."""
        payload, _ = await self._poll_payload()
        return apply_status(self._report, payload)

    async def _poll_payload(self) -> tuple[dict[str, Any], float | None]:
        job = await self._request('GET', '/api/job')
        try:
            printer = await self._request('GET', '/api/printer')
        except CommandRefused:  # 409: OctoPrint is not connected to the printer
            printer = {}
        payload = status_from_rest(job, printer)
        self._heard = time.monotonic()
        return payload, payload['progress'].get('completion')

    async def _poll_for(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            payload, completion = await self._poll_payload()
            self._update(apply_status(self._report, payload), resync=True, completion=completion)
            if loop.time() >= deadline:
                return
            await asyncio.sleep(self.poll_interval_s)

    # -- HTTP --------------------------------------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, body: Any = None, *, data: Any = None, limit_s: float | None = None
    ) -> dict[str, Any]:
        if self._session is None:
            raise PrinterUnavailable('not connected to OctoPrint')
        limit = aiohttp.ClientTimeout(total=limit_s or self.request_timeout_s)
        try:
            async with self._session.request(method, self._base + path, json=body, data=data, timeout=limit) as resp:
                text = await resp.text()
                status = resp.status
        except _NETWORK_ERRORS as e:
            raise PrinterUnavailable(f'OctoPrint at {self._base} cannot be reached ({type(e).__name__})') from e
        if status in (401, 403):
            raise PrinterUnavailable('OctoPrint refused the API key')
        if status == 409:
            raise CommandRefused(_error_text(text) or 'OctoPrint refused this in its current state')
        if status >= 400:
            raise PrinterError(f'OctoPrint answered {status}: {_error_text(text)}')
        result = json.loads(text) if text.strip() else {}
        return result if isinstance(result, dict) else {'result': result}

    # -- commands ----------------------------------------------------------------------------------------------

    async def upload(self, local_path: Path, remote_name: str) -> str:
        name = remote_name if remote_name.lower().endswith(_GCODE_SUFFIXES) else f'{remote_name}.gcode'
        handle = await asyncio.to_thread(open, local_path, 'rb')
        try:
            form = aiohttp.FormData()
            # aiohttp reads the file in chunks off the event loop: the upload streams from disk
            form.add_field('file', handle, filename=name, content_type='application/octet-stream')
            answer = await self._request('POST', '/api/files/local', data=form, limit_s=3600)
        finally:
            await asyncio.to_thread(handle.close)
        try:
            return str(answer['files']['local']['path'])
        except (KeyError, TypeError) as e:
            raise PrinterError('OctoPrint did not confirm the upload') from e

    async def start(self, remote_name: str) -> None:
        self._requested.clear()
        await self._request('POST', f'/api/files/local/{quote(remote_name)}', {'command': 'select', 'print': True})

    async def pause(self) -> None:
        await self._job_command('pause', {'command': 'pause', 'action': 'pause'})

    async def resume(self) -> None:
        await self._job_command('resume', {'command': 'pause', 'action': 'resume'})

    async def cancel(self) -> None:
        await self._job_command('cancel', {'command': 'cancel'})

    async def _job_command(self, action: str, body: dict[str, str]) -> None:
        self._requested.add(action)
        try:
            await self._request('POST', '/api/job', body)
        except PrinterError:
            self._requested.discard(action)
            raise

    async def emergency_stop(self) -> None:
        # OctoPrint sends M112 ahead of its queue, turns the heaters off and closes the port
        await self._request('POST', '/api/printer/command', {'commands': ['M112']})

    async def send_gcode(self, lines: Sequence[str]) -> list[str]:
        # OctoPrint answers 204: the printer's replies arrive on the push socket (listener.console)
        await self._request('POST', '/api/printer/command', {'commands': list(lines)})
        return []
