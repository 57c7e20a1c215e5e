"""Bambu Lab printers in LAN mode: state and commands over the printer's own MQTT broker (TLS, port 8883, user
`bblp`, the access code as password), uploads over implicit FTPS (port 990). Starting prints and changing
temperatures from outside need LAN-only mode with Developer Mode on recent firmware (Bambu's Authorization
Control); status reports work either way."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import aiomqtt

from fabpanel.core.printers import (
    Capabilities,
    JobOutcome,
    JobProgress,
    PrinterConfig,
    PrinterReport,
    PrinterState,
    Temperature,
)
from fabpanel.printers.bambu_ftps import USER, ImplicitFtps, PrinterTrust, store_file
from fabpanel.printers.driver import CommandRefused, DriverListener, PrinterDriver, PrinterError, PrinterUnavailable

log = logging.getLogger(__name__)

CANCELLED_BY_USER = 0x0300400C  # print_error the printer sets (with gcode_state FAILED) when a job is stopped
STATES = {
    'IDLE': PrinterState.IDLE,
    'FINISH': PrinterState.IDLE,
    'FAILED': PrinterState.IDLE,  # ERROR instead while print_error is set (cleared on the printer screen)
    'PREPARE': PrinterState.PRINTING,  # heating, levelling: the job has started
    'SLICING': PrinterState.PRINTING,
    'RUNNING': PrinterState.PRINTING,
    'PAUSE': PrinterState.PAUSED,
}
ACTIVE = frozenset({'PREPARE', 'SLICING', 'RUNNING', 'PAUSE'})
AUTH_CODES = {4, 5, 134, 135}  # MQTT 3.1.1 bad credentials / not authorised, and their MQTT 5 reason codes


def error_code(code: int) -> str:
    """print_error as Bambu Studio and the wiki show it: 0x0300400C -> '0300-400C'."""
    return f'{code >> 16:04X}-{code & 0xFFFF:04X}'


def ending(state: str, code: int) -> tuple[JobOutcome, str] | None:
    """How the last job ended, from gcode_state and print_error (which stay until the next job)."""
    if state == 'FINISH':
        return JobOutcome.DONE, ''
    if state != 'FAILED':
        return None
    if code == CANCELLED_BY_USER:
        return JobOutcome.CANCELLED, ''
    return JobOutcome.FAILED, f'print error {error_code(code)}' if code else 'the printer reports the print failed'


def remote_file_name(name: str) -> str:
    base = PurePosixPath(name.replace('\\', '/')).name.strip()
    if base in ('', '.', '..'):
        raise PrinterError('the file needs a name')
    return base


class BambuDriver(PrinterDriver):
    kind = 'bambu'
    capabilities = Capabilities(temperature_autoreport=True)
    mqtt_port = 8883
    ftps_port = 990
    first_report_s = 10.0
    reply_s = 3.0  # how long to wait for the printer's answer to a command (not every firmware answers)
    keepalive_s = 15  # MQTT pings while nothing else flows: a printer gone without a word is noticed in ~1.5x this
    # pushall makes the printer gather and send its whole state, which loads it: only after this long without a
    # word from it, as the one check beyond the keepalive that the printer itself (not only its broker) still answers
    pushall_every_s = 300.0
    ftps_class: type[ImplicitFtps] = ImplicitFtps

    def __init__(
        self, config: PrinterConfig, listener: DriverListener, *, ca_file: Path | None = None, fingerprint: str = ''
    ) -> None:
        """ca_file / fingerprint: how to trust the printer's certificate (see PrinterTrust); without either the link
        is encrypted but not authenticated."""
        super().__init__(config, listener)
        self.ca_file, self.fingerprint = ca_file, fingerprint
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._closed.set()
        self._full = asyncio.Event()
        self._print: dict[str, Any] = {}
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._sequence = itertools.count(20000 + secrets.randbelow(10000))  # apart from the slicer's numbers
        self._state = ''  # the gcode_state we last acted on
        self._last: PrinterReport | None = None
        self._heard = self._pushed = 0.0  # monotonic: the printer's last message, our last pushall

    @property
    def host(self) -> str:
        address = self.config.address.strip()
        return address.split('://', 1)[-1].strip('/')

    @property
    def serial(self) -> str:
        return self.config.serial_number.strip()

    @property
    def trust(self) -> PrinterTrust:
        return PrinterTrust(serial=self.serial, ca_file=self.ca_file, fingerprint=self.fingerprint)

    # --- connection -------------------------------------------------------------------------------------------

    async def connect(self) -> PrinterReport:
        await self.close()
        if not self.serial:
            raise PrinterUnavailable('a Bambu printer needs its serial number (its MQTT topics carry it)')
        client = aiomqtt.Client(
            self.host,
            port=self.mqtt_port,
            username=USER,
            password=self.config.api_key,
            identifier=f'fabpanel-{self.config.id}-{secrets.token_hex(4)}',
            tls_context=self.trust.context(),
            keepalive=self.keepalive_s,
            timeout=10,
        )
        try:
            await client.__aenter__()
        except aiomqtt.MqttCodeError as error:
            if getattr(error.rc, 'value', error.rc) in AUTH_CODES:
                raise PrinterUnavailable(
                    'the printer refused the access code (check LAN mode and the code on its screen)'
                ) from None
            raise PrinterUnavailable(f'cannot reach the printer at {self.host}:{self.mqtt_port}: {error}') from None
        except aiomqtt.MqttError as error:
            raise PrinterUnavailable(f'cannot reach the printer at {self.host}:{self.mqtt_port}: {error}') from None
        self._client, self._print = client, {}
        self._closed.clear()
        self._full.clear()
        try:
            await client.subscribe(f'device/{self.serial}/report')
            self._reader = asyncio.create_task(self._read(client), name=f'bambu-{self.config.id}')
            await self._push_all()
            await asyncio.wait_for(self._full.wait(), self.first_report_s)
        except TimeoutError:
            await self.close()
            raise PrinterUnavailable(f'no report from printer {self.serial}: check the serial number') from None
        except (PrinterError, aiomqtt.MqttError) as error:
            await self.close()
            raise PrinterUnavailable(str(error)) from None
        return self._emit(force=True)

    async def _push_all(self) -> None:
        self._pushed = time.monotonic()
        await self._publish({'pushing': {'command': 'pushall', 'version': 1, 'push_target': 1}}, answered=False)

    async def alive(self) -> bool:
        """The printer pushes only changes. The MQTT keepalive proves the connection (a dead one is closed within
        1.5 keepalives); after pushall_every_s of silence a pushall proves the printer answers, and a pushall left
        unanswered for first_report_s makes the printer silent."""
        if self._client is None or self._closed.is_set():
            return False
        now = time.monotonic()
        if self._pushed > self._heard:
            return now - self._pushed < self.first_report_s
        if now - self._heard >= self.pushall_every_s and now - self._pushed >= self.pushall_every_s:
            await self._push_all()
        return True

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        client, reader = self._client, self._reader
        self._client = self._reader = None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        if client is not None:
            try:
                await client.__aexit__(None, None, None)
            except aiomqtt.MqttError:
                pass
        self._lost()

    def _lost(self) -> None:
        for future in self._replies.values():
            if not future.done():
                future.set_exception(PrinterUnavailable('the connection to the printer was lost'))
        self._replies.clear()
        self._closed.set()

    async def _read(self, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                self._heard = time.monotonic()
                try:
                    data = json.loads(message.payload)  # type: ignore[arg-type]
                    self._dispatch(data.get('print') if isinstance(data, dict) else None)
                except (ValueError, TypeError, AttributeError):
                    log.warning('printer %s: unreadable report ignored', self.config.id)
        except aiomqtt.MqttError:
            log.info('printer %s: MQTT connection lost', self.config.id)
        finally:
            if self._client is client:
                self._lost()

    def _dispatch(self, body: Any) -> None:
        if not isinstance(body, dict):
            return
        if body.get('command') != 'push_status':  # the answer to a command, ours or another client's
            key = f'{body.get("command")}/{body.get("sequence_id")}'
            future = self._replies.pop(key, None)
            if future is not None and not future.done():
                future.set_result(body)
            return
        self._print.update(body)  # P1 and A1 send only what changed since the last report: merge
        if 'gcode_state' in self._print:
            self._full.set()
            self._state_changed()
            self._emit()

    # --- state ------------------------------------------------------------------------------------------------

    def _state_changed(self) -> None:
        state = str(self._print.get('gcode_state', ''))
        if state == self._state:
            return
        previous, self._state = self._state, state
        if previous not in ACTIVE or state in ACTIVE:
            return
        end = ending(state, int(self._print.get('print_error') or 0))
        self.listener.job_ended(*(end or (JobOutcome.INTERRUPTED, f'the printer went {state or "silent"} mid-job')))

    def _build(self) -> PrinterReport:
        data = self._print
        state = str(data.get('gcode_state', ''))
        code = int(data.get('print_error') or 0)
        printer_state = STATES.get(state, PrinterState.IDLE)
        message = ''
        if code and code != CANCELLED_BY_USER:
            message = f'print error {error_code(code)}'
            if state not in ACTIVE:
                printer_state = PrinterState.ERROR
        job = None
        file_name = str(data.get('subtask_name') or data.get('gcode_file') or '')
        if state in ACTIVE:
            remaining = data.get('mc_remaining_time')
            percent = data.get('mc_percent')
            job = JobProgress(
                file_name=file_name,
                fraction=percent / 100 if percent is not None else None,
                remaining_s=remaining * 60 if remaining is not None else None,
                layer=data.get('layer_num'),
                layer_count=data.get('total_layer_num'),
            )
        return PrinterReport(
            state=printer_state,
            nozzle=Temperature(actual=data.get('nozzle_temper'), target=data.get('nozzle_target_temper')),
            bed=Temperature(actual=data.get('bed_temper'), target=data.get('bed_target_temper')),
            job=job,
            message=message,
            at=datetime.now(UTC),
            last_outcome=end[0] if (end := ending(state, code)) else None,
            last_file=file_name if end else '',
        )

    def _emit(self, force: bool = False) -> PrinterReport:
        report = self._build()
        if force or self._last is None or replace(report, at=None) != replace(self._last, at=None):
            self._last = report
            self.listener.report(report)
        return report

    # --- commands ---------------------------------------------------------------------------------------------

    async def _publish(self, request: dict[str, Any], answered: bool = True) -> dict[str, Any] | None:
        """Send one request (QoS 1, as Bambu Studio sends commands); wait briefly for the printer's answer and
        refuse when it says failed. Printers that do not answer a command are taken at their word. pushall is
        answered by a full push_status report instead."""
        client = self._client
        if client is None:
            raise PrinterUnavailable('not connected to the printer')
        (body,) = request.values()
        body['sequence_id'] = str(next(self._sequence))
        key = f'{body["command"]}/{body["sequence_id"]}'  # Bambu Studio on the same printer counts on its own
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[key] = future
        try:
            await client.publish(f'device/{self.serial}/request', json.dumps(request), qos=1)
            if not answered:
                return None
            answer = await asyncio.wait_for(future, self.reply_s)
        except TimeoutError:
            return None
        except aiomqtt.MqttError as error:
            raise PrinterUnavailable(f'the printer connection failed: {error}') from None
        finally:
            self._replies.pop(key, None)
        if str(answer.get('result', '')).lower() == 'failed':
            raise CommandRefused(f'the printer refused: {answer.get("reason") or answer.get("command")}')
        return answer

    async def _print_command(self, command: str, **fields: Any) -> None:
        await self._publish({'print': {'command': command, **fields}})

    async def upload(self, local_path: Path, remote_name: str) -> str:
        name = remote_file_name(remote_name)
        await asyncio.to_thread(
            store_file, self.trust, (self.host, self.ftps_port), self.config.api_key, local_path, name, self.ftps_class
        )
        return name

    async def start(self, remote_name: str) -> None:
        """A sliced .3mf starts as a project (its first plate); plain G-code with gcode_file."""
        name = remote_file_name(remote_name)
        if not name.lower().endswith('.3mf'):
            await self._print_command('gcode_file', param=f'/sdcard/{name}')
            return
        await self._print_command(
            'project_file',
            param='Metadata/plate_1.gcode',
            url=f'file:///sdcard/{name}',
            subtask_name=name,  # shown on the printer and reported back: the name the fleet knows the job by
            project_id='0',
            profile_id='0',
            task_id='0',
            subtask_id='0',
            md5='',
            timelapse=False,
            bed_type='auto',
            bed_levelling=True,
            flow_cali=False,
            vibration_cali=False,
            layer_inspect=False,
            use_ams=False,
            ams_mapping='',
        )

    async def pause(self) -> None:
        await self._print_command('pause', param='')

    async def resume(self) -> None:
        await self._print_command('resume', param='')

    async def cancel(self) -> None:
        await self._print_command('stop', param='')

    async def emergency_stop(self) -> None:
        """LAN mode has no kill command: stop the job at once and turn every heater off."""
        await self.cancel()
        await self.send_gcode(['M104 S0', 'M140 S0'])

    async def send_gcode(self, lines: Sequence[str]) -> list[str]:
        clean = [line.strip() for line in lines if line.strip()]
        for line in clean:
            self.listener.console('>', line)
        await self._print_command('gcode_line', param=''.join(f'{line}\n' for line in clean))
        return []
