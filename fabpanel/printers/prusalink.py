"""Prusa printers through PrusaLink (API v1, HTTP digest auth): status polled every two seconds (PrusaLink has no
push channel), uploads to the USB drive, job control. PrusaLink offers no G-code console and no temperature
endpoint, so those commands are refused and the capabilities say so."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import aiohttp

from fabpanel.core.printers import (
    Capabilities,
    Heater,
    JobOutcome,
    JobProgress,
    PrinterConfig,
    PrinterReport,
    PrinterState,
    Temperature,
)
from fabpanel.printers.driver import CommandRefused, DriverListener, PrinterDriver, PrinterError, PrinterUnavailable

log = logging.getLogger(__name__)

DEFAULT_USER = 'maker'  # what Prusa printers ship with
STATES = {
    'IDLE': PrinterState.IDLE,
    'READY': PrinterState.IDLE,  # "ready to print" was confirmed on the printer (Prusa Connect queue)
    'BUSY': PrinterState.IDLE,  # busy with something that is not a job (calibration, menu): a job says PRINTING
    'FINISHED': PrinterState.IDLE,
    'STOPPED': PrinterState.IDLE,
    'PRINTING': PrinterState.PRINTING,
    'PAUSED': PrinterState.PAUSED,
    'ATTENTION': PrinterState.PAUSED,  # the job waits for a person (filament runout, crash detection)
    'ERROR': PrinterState.ERROR,
}
ACTIVE = frozenset({'PRINTING', 'PAUSED', 'ATTENTION'})
ENDINGS = {'FINISHED': JobOutcome.DONE, 'STOPPED': JobOutcome.CANCELLED, 'ERROR': JobOutcome.FAILED}
NO_CONSOLE = 'PrusaLink has no G-code console or temperature control: use the printer screen'


def remote_file_name(name: str) -> str:
    """A plain file name for the printer's storage: no directories, nothing to climb out with."""
    base = PurePosixPath(name.replace('\\', '/')).name.strip()
    if base in ('', '.', '..'):
        raise PrinterError('the file needs a name')
    return base


class PrusaLinkDriver(PrinterDriver):
    kind = 'prusalink'
    capabilities = Capabilities(gcode=False, set_temperature=False)
    poll_interval = 2.0
    failures_before_lost = 3  # Wi-Fi printers miss a poll now and then: three in a row is a lost connection
    storage = 'usb'  # MK4 / XL / MINI / Core One keep jobs on the USB drive

    def __init__(self, config: PrinterConfig, listener: DriverListener) -> None:
        super().__init__(config, listener)
        self._session: aiohttp.ClientSession | None = None
        self._poller: asyncio.Task[None] | None = None
        self._poke = asyncio.Event()
        self._closed = asyncio.Event()
        self._closed.set()
        self._firmware = ''
        self._state = ''  # the PrusaLink state we last acted on
        self._job_id: int | None = None
        self._file_names: dict[int, str] = {}
        self._last_file = ''  # the file of the latest job seen, for last_outcome
        self._last: PrinterReport | None = None
        self._answered = 0.0  # monotonic: the last status PrusaLink answered

    @property
    def base_url(self) -> str:
        address = self.config.address.strip().rstrip('/')
        return address if '://' in address else f'http://{address}'

    async def connect(self) -> PrinterReport:
        await self.close()
        digest = aiohttp.DigestAuthMiddleware(self.config.username or DEFAULT_USER, self.config.api_key)
        self._session = aiohttp.ClientSession(middlewares=(digest,), timeout=aiohttp.ClientTimeout(total=10))
        try:
            version = await self._json('GET', '/api/version')
            self._firmware = ' '.join(
                str(part) for part in ('PrusaLink', version.get('server'), version.get('firmware')) if part
            )
            report = await self._refresh(force=True)
        except PrinterError as error:
            await self.close()
            raise PrinterUnavailable(str(error)) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            await self.close()
            raise PrinterUnavailable(f'cannot reach PrusaLink at {self.base_url}: {error or "timeout"}') from None
        self._closed.clear()
        self._poller = asyncio.create_task(self._poll(), name=f'prusalink-{self.config.id}')
        return report

    async def alive(self) -> bool:
        """Polled every poll_interval, reported only on change: alive while the polls are answered."""
        recent = time.monotonic() - self._answered < self.poll_interval * self.failures_before_lost
        return recent and not self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        poller, session = self._poller, self._session
        self._poller = self._session = None
        if poller is not None and poller is not asyncio.current_task():
            poller.cancel()
        if session is not None:
            await session.close()
        self._closed.set()

    # --- HTTP -------------------------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """One request; returns (status, parsed JSON or text). 401 and unreachable become PrinterUnavailable."""
        session = self._session
        if session is None:
            raise PrinterUnavailable('not connected to PrusaLink')
        async with session.request(method, f'{self.base_url}{path}', **kwargs) as response:
            if response.status in (401, 403):
                raise PrinterUnavailable(
                    f'PrusaLink refused the user name or password (HTTP {response.status}); '
                    'check the user and password on the printer screen (Settings > Network > PrusaLink)'
                )
            if response.content_type == 'application/json':
                return response.status, await response.json()
            return response.status, (await response.text())[:300]

    async def _json(self, method: str, path: str) -> dict[str, Any]:
        status, body = await self._request(method, path)
        if status != 200 or not isinstance(body, dict):
            raise PrinterError(f'PrusaLink answered HTTP {status} to {path}')
        return body

    async def _command(self, method: str, path: str, done: tuple[int, ...] = (204,), **kwargs: Any) -> None:
        try:
            status, body = await self._request(method, path, **kwargs)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise PrinterUnavailable(f'PrusaLink did not answer: {error or "timeout"}') from None
        if status in done:
            self._poke.set()  # show the effect now, not at the next poll
            return
        detail = body.get('message') or body.get('title') if isinstance(body, dict) else body
        if status in (404, 409):
            raise CommandRefused(f'PrusaLink refused ({status}): {detail or "the printer is busy"}')
        raise PrinterError(f'PrusaLink answered HTTP {status}: {detail}')

    # --- polling ----------------------------------------------------------------------------------------------

    async def _poll(self) -> None:
        failures = 0
        try:
            while True:
                try:
                    await asyncio.wait_for(self._poke.wait(), self.poll_interval)
                except TimeoutError:
                    pass
                self._poke.clear()
                try:
                    await self._refresh()
                    failures = 0
                except PrinterUnavailable as error:
                    log.warning('printer %s: %s', self.config.id, error)
                    return
                except (aiohttp.ClientError, TimeoutError, OSError, PrinterError) as error:
                    failures += 1
                    if failures >= self.failures_before_lost:
                        log.info('printer %s: PrusaLink unreachable (%s)', self.config.id, error or 'timeout')
                        return
        finally:
            if self._poller is asyncio.current_task():  # not a poller that close() cancelled before a reconnect
                self._closed.set()

    async def _refresh(self, force: bool = False) -> PrinterReport:
        status = await self._json('GET', '/api/v1/status')
        self._answered = time.monotonic()
        printer, job = status.get('printer') or {}, status.get('job') or {}
        state = str(printer.get('state', '')).upper()
        job_id = job.get('id')
        if job_id is not None and job_id not in self._file_names and (name := await self._file_name(job_id)):
            self._file_names[job_id] = name
        self._last_file = self._file_names.get(job_id, self._last_file)
        message = str((printer.get('status_printer') or {}).get('message') or '')
        self._state_changed(state, message)
        self._job_id = job_id if state in ACTIVE else None
        report = self._build(printer, job, state, message)
        if force or self._last is None or replace(report, at=None) != replace(self._last, at=None):
            self._last = report
            self.listener.report(report)
        return report

    def _state_changed(self, state: str, message: str) -> None:
        """End the job when the printer left an active state. The state seen before survives a reconnect, so a
        job that ended while the printer was out of reach is still announced."""
        if state == self._state:
            return
        previous, self._state = self._state, state
        if previous not in ACTIVE or state in ACTIVE:
            return
        outcome = ENDINGS.get(state, JobOutcome.INTERRUPTED)
        reason = ''
        if outcome == JobOutcome.FAILED:
            reason = message or 'the printer reported an error'
        elif outcome == JobOutcome.INTERRUPTED:
            reason = f'the printer reports {state or "no state"} and no job any more'
        self.listener.job_ended(outcome, reason)

    async def _file_name(self, job_id: int) -> str:
        status, body = await self._request('GET', '/api/v1/job')
        if status != 200 or not isinstance(body, dict) or body.get('id') != job_id:
            return ''
        file = body.get('file') or {}
        return str(file.get('display_name') or file.get('name') or '')

    def _build(self, printer: dict[str, Any], job: dict[str, Any], state: str, message: str) -> PrinterReport:
        progress = None
        if state in ACTIVE:
            fraction = job.get('progress')
            progress = JobProgress(
                file_name=self._file_names.get(job.get('id', -1), ''),
                fraction=fraction / 100 if fraction is not None else None,
                elapsed_s=job.get('time_printing'),
                remaining_s=job.get('time_remaining'),
            )
        if state == 'ATTENTION' and not message:
            message = 'the printer needs attention'
        ended = ENDINGS.get(state)  # FINISHED / STOPPED stay until the next job or a tap on the printer screen
        return PrinterReport(
            state=STATES.get(state, PrinterState.IDLE),
            nozzle=Temperature(actual=printer.get('temp_nozzle'), target=printer.get('target_nozzle')),
            bed=Temperature(actual=printer.get('temp_bed'), target=printer.get('target_bed')),
            job=progress,
            message=message,
            firmware=self._firmware,
            at=datetime.now(UTC),
            last_outcome=ended,
            last_file=self._last_file if ended else '',
        )

    # --- commands ---------------------------------------------------------------------------------------------

    def _file_path(self, name: str) -> str:
        return f'/api/v1/files/{self.storage}/{quote(name)}'

    async def upload(self, local_path: Path, remote_name: str) -> str:
        name = remote_file_name(remote_name)
        handle = await asyncio.to_thread(local_path.open, 'rb')
        headers = {'Content-Type': 'text/x.gcode', 'Overwrite': '?1', 'Print-After-Upload': '?0'}
        try:  # streamed from disk in chunks; PrusaLink wants the raw body (no multipart) on PUT
            await self._command(
                'PUT',
                self._file_path(name),
                done=(201, 204),
                data=handle,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120),
            )
        finally:
            await asyncio.to_thread(handle.close)
        return name

    async def start(self, remote_name: str) -> None:
        await self._command('POST', self._file_path(remote_file_name(remote_name)))

    def _active_job(self) -> int:
        if self._job_id is None:
            raise CommandRefused('the printer has no active job')
        return self._job_id

    async def pause(self) -> None:
        await self._command('PUT', f'/api/v1/job/{self._active_job()}/pause')

    async def resume(self) -> None:
        await self._command('PUT', f'/api/v1/job/{self._active_job()}/resume')

    async def cancel(self) -> None:
        await self._command('DELETE', f'/api/v1/job/{self._active_job()}')

    async def emergency_stop(self) -> None:
        """PrusaLink has no kill command: the nearest is stopping the job at once (the firmware then turns the
        heaters off and parks). Refused when no job runs; the printer's own reset button is the real e-stop."""
        if self._job_id is None:
            raise CommandRefused('PrusaLink has no emergency stop and no job is running: use the printer reset button')
        await self.cancel()

    async def send_gcode(self, lines: Sequence[str]) -> list[str]:
        raise CommandRefused(NO_CONSOLE)

    async def set_temperature(self, heater: Heater, target: float) -> None:
        raise CommandRefused(NO_CONSOLE)
