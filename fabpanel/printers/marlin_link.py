"""The Marlin line protocol over one serial port: numbered lines in a small window, resends, lost `ok` recovery.

MarlinLink is the asyncio Protocol on the port (pyserial-asyncio). It sends console/script commands first and
file lines (from a FileJob) otherwise, numbers and checksums each one, keeps a window of unacknowledged lines,
rewinds from its history ring when the firmware asks (`Resend:`), and probes the firmware when an `ok` does not
come. Everything else the firmware says goes to the driver as parsed events (fabpanel.core.marlin).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

from fabpanel.core.marlin import (
    Busy,
    ErrorKind,
    Event,
    FirmwareError,
    Ok,
    Resend,
    TemperatureReport,
    Wait,
    numbered_bytes,
    parse_bytes,
)

log = logging.getLogger(__name__)


@dataclass(kw_only=True, slots=True)
class MarlinSettings:
    # The window. OctoPrint keeps 1 line in flight: every line then costs a full round trip (USB latency plus
    # two wake-ups per side). Marlin reads lines from its 128-byte RX ring into a 4-command queue and answers
    # `ok` only when a command has run, so as long as the unacknowledged bytes stay below RX_BUFFER_SIZE its
    # ring can never overflow, whatever the firmware is busy with (the "character counting" grbl hosts use).
    # 120 bytes leaves room for an unnumbered M112 and is about 4 typical lines. Measured on the simulator's
    # ptys (bench/printers.py vs --window 1, 100k lines): 18,900 vs 13,600 lines/s for one printer, 4,900 vs
    # 3,300 each for ten, and 30 % less host CPU per line; on real USB, where a round trip costs a millisecond
    # or more, the gain is larger. Resends fall back to one line in flight until the firmware has caught up.
    window_bytes: int = 120
    window_lines: int = 8
    ok_timeout_s: float = 10.0  # without an ok or busy: Marlin's keep-alive says busy every 2 s
    max_timeouts: int = 3  # probes without any answer before the printer counts as gone
    history: int = 512  # lines kept for resends (the firmware never asks further back than the window)
    max_resends: int = 10  # one line rejected this often: the link is unusable (noise, wrong baud rate)
    handshake_timeout_s: float = 2.0
    handshake_attempts: int = 5
    poll_s: float = 2.0  # temperature report interval (M155 S2 or M105 polling)


class LineSource(Protocol):
    """A job's lines, already stripped: (command, file offset after the line)."""

    exhausted: bool

    def take(self) -> tuple[bytes, int] | None: ...


Entry = tuple[int, bytes, int, 'asyncio.Future[list[str]] | None']  # (line number, wire bytes, file offset, waiter)


class MarlinLink(asyncio.Protocol):
    def __init__(
        self,
        settings: MarlinSettings,
        on_event: Callable[[Event], None],
        on_lost: Callable[[Exception | None], None],
        console: Callable[[str, str], None],
    ) -> None:
        self.settings = settings
        self.on_event, self.on_lost, self.console = on_event, on_lost, console
        self.on_source_done: Callable[[], None] = lambda: None
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self._buf = b''
        self.next_n = 1
        self.inflight: deque[Entry] = deque()
        self.inflight_bytes = 0
        self.history: deque[Entry] = deque(maxlen=settings.history)
        self.resend_queue: deque[Entry] = deque()
        self.priority: deque[tuple[bytes, int, asyncio.Future[list[str]] | None]] = deque()
        self.candidate: tuple[bytes, int, asyncio.Future[list[str]] | None] | None = None
        self.source: LineSource | None = None
        self.source_paused = False
        self.swallow_ok = 0
        self.recovering = False
        self.recover_until = 0
        self.resend_from = -1
        self.stale = 0
        self.resend_counts: dict[int, int] = {}
        self.timeouts = 0
        self.last_progress = self.loop.time()
        self.heard_at = self.loop.time()  # the printer's last bytes (temperature reports arrive every poll_s)
        self.collected: list[str] = []
        self.job_offset = 0  # file offset after the last acknowledged job line
        self._drained: asyncio.Future[None] | None = None

    # ---- asyncio.Protocol ---------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail_waiters(ConnectionError('the printer connection was lost'))
        self.on_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.heard_at = self.loop.time()
        lines = (self._buf + data if self._buf else data).split(b'\n')
        self._buf = lines.pop()
        if len(self._buf) > 4096:  # a line that never ends is noise
            self._buf = b''
        inflight = self.inflight
        progress = False
        for raw in lines:
            if raw[-1:] == b'\r':
                raw = raw[:-1]
            if raw == b'ok':  # the hot path: one per streamed line
                progress = True
                if self.swallow_ok:
                    self.swallow_ok -= 1
                elif inflight:
                    entry = inflight.popleft()
                    self.inflight_bytes -= len(entry[1])
                    if entry[2] >= 0:
                        self.job_offset = entry[2]
                    if entry[3] is not None or self.recovering:
                        self.collected.append('ok')
                        self._acked(entry)
                    elif self.collected:
                        self.collected = []
            elif raw:
                progress = self._line(raw) or progress
        if progress:
            self.last_progress = self.loop.time()
            self.timeouts = 0
        self.pump()
        if not inflight:
            self._idle()

    # ---- sending ------------------------------------------------------------------------------------------------
    def pump(self) -> None:
        """Send what the window allows, in one write."""
        if self.transport is None:
            return
        inflight = self.inflight
        room = self.settings.window_bytes - self.inflight_bytes
        max_lines = 1 if self.recovering else self.settings.window_lines
        out = []
        while len(inflight) < max_lines:
            if self.resend_queue:
                entry = self.resend_queue[0]
                if inflight and len(entry[1]) > room:
                    break
                self.resend_queue.popleft()
            else:
                if self.candidate is None:
                    self.candidate = self._next_candidate()
                    if self.candidate is None:
                        break
                cmd, offset, waiter = self.candidate
                wire = numbered_bytes(self.next_n, cmd)
                if inflight and len(wire) > room:
                    break
                self.candidate = None
                entry = (self.next_n, wire, offset, waiter)
                self.next_n += 1
                self.history.append(entry)
                if offset < 0:
                    self.console('>', cmd.decode(errors='replace'))
            inflight.append(entry)
            self.inflight_bytes += len(entry[1])
            room -= len(entry[1])
            out.append(entry[1])
        if out:
            self.transport.write(out[0] if len(out) == 1 else b''.join(out))

    def kick(self) -> None:
        """New lines may be ready (a job started or resumed, a chunk was read): send them, or notice the end."""
        self.pump()
        if not self.inflight:
            self._idle()

    def _next_candidate(self) -> tuple[bytes, int, asyncio.Future[list[str]] | None] | None:
        if self.priority:
            return self.priority.popleft()
        if self.source is not None and not self.source_paused:
            item = self.source.take()
            if item is not None:
                return item[0], item[1], None
        return None

    def command(self, cmd: str) -> asyncio.Future[list[str]]:
        """Queue one command ahead of the job's lines; the future gets what the printer answered, ending in ok."""
        waiter: asyncio.Future[list[str]] = self.loop.create_future()
        self.priority.append((cmd.strip().encode(), -1, waiter))
        self.pump()
        return waiter

    def write_now(self, data: bytes) -> None:
        """Bypass numbering and window (M112: Marlin's emergency parser acts on it as the bytes arrive)."""
        if self.transport is not None:
            self.transport.write(data)

    def reset_numbering(self) -> None:
        """After M110 N0 (sent unnumbered by the handshake) or a firmware restart: line 1 is next."""
        self.next_n = 1
        self.history.clear()
        self.resend_queue.clear()
        self.inflight.clear()
        self.inflight_bytes = 0
        self.swallow_ok = 0
        self.recovering = False
        self.resend_counts.clear()

    def drop_source(self) -> None:
        """Stop the job's lines now (cancel): nothing more of the file is sent, lines in flight finish."""
        self.source = None
        if self.candidate is not None and self.candidate[1] >= 0:
            self.candidate = None
        self.resend_queue = deque(e for e in self.resend_queue if e[2] < 0)

    def forget_inflight(self) -> None:
        """The firmware stopped (kill, M112): nothing in flight will be answered."""
        self.inflight.clear()
        self.inflight_bytes = 0
        self.resend_queue.clear()
        self.priority.clear()
        self.candidate = None
        self._fail_waiters(ConnectionError('the printer stopped'))

    async def drain(self) -> None:
        """Return once every line sent so far (and any held-back job line) is acknowledged."""
        while self.inflight or self.resend_queue or (self.candidate is not None and self.candidate[1] >= 0):
            self._drained = self.loop.create_future()
            await self._drained

    # ---- receiving ----------------------------------------------------------------------------------------------
    def _line(self, raw: bytes) -> bool:
        """A line other than a bare ok; True when it shows the firmware is working on our lines."""
        event = parse_bytes(raw)
        text = raw.decode(errors='replace')
        self.console('<', text)
        if isinstance(event, Ok):
            self.collected.append(text)
            self._ok_with_payload()
            if event.temperatures is not None:
                self.on_event(TemperatureReport(temperatures=event.temperatures))
            return True
        if isinstance(event, Resend):
            self._resend(event.line)
            return True
        if len(self.collected) < 100:
            self.collected.append(text)
        if isinstance(event, Busy):
            return True
        if isinstance(event, Wait):
            if self.inflight:  # Marlin idles while we wait for an ok: it is lost
                self.recover('the printer is idle while lines are unanswered')
            return False
        if isinstance(event, FirmwareError) and event.kind is ErrorKind.LINE:
            return True  # a Resend follows
        self.on_event(event)
        return isinstance(event, TemperatureReport) and event.temperatures.waiting

    def _ok_with_payload(self) -> None:
        if self.swallow_ok:
            self.swallow_ok -= 1
        elif self.inflight:
            entry = self.inflight.popleft()
            self.inflight_bytes -= len(entry[1])
            if entry[2] >= 0:
                self.job_offset = entry[2]
            self._acked(entry)

    def _acked(self, entry: Entry) -> None:
        if self.recovering and entry[0] >= self.recover_until:
            self.recovering = False
            self.stale = 0
        waiter = entry[3]
        if waiter is not None and not waiter.done():
            waiter.set_result(self.collected)
        self.collected = []

    def _resend(self, n: int) -> None:
        self.swallow_ok += 1  # Marlin answers `Resend: n` with an ok of its own
        if self.recovering and n == self.resend_from and self.stale > 0:
            self.stale -= 1  # caused by a line that was already on its way when we rewound
            return
        count = self.resend_counts[n] = self.resend_counts.get(n, 0) + 1
        first = self.history[0][0] if self.history else self.next_n
        if count > self.settings.max_resends or n < first:
            why = f'line {n} was rejected {count} times' if n >= first else f'line {n} is no longer in the history'
            self.forget_inflight()
            self.on_event(FirmwareError(message=f'resend failed: {why}', kind=ErrorKind.FATAL))
            return
        while self.inflight and self.inflight[0][0] < n:  # done (their ok was lost)
            self._acked(self.inflight.popleft())
        self.stale = sum(1 for e in self.inflight if e[0] > n)
        self.resend_queue = deque(islice(self.history, n - first, None))
        self.inflight.clear()
        self.inflight_bytes = 0
        self.recovering = bool(self.resend_queue)
        self.recover_until = self.next_n - 1
        self.resend_from = n
        log.info('resend from line %d (%d lines)', n, len(self.resend_queue))

    def recover(self, why: str) -> None:
        """No ok in time: presume the oks lost and probe with a numbered M105; the firmware answers ok (all was
        received) or `Resend: n` (lines were lost), which rewinds from the history like any resend."""
        self.timeouts += 1
        log.warning('%s; probing the printer (attempt %d)', why, self.timeouts)
        self.console('!', why)
        while self.inflight:
            self._acked(self.inflight.popleft())
        self.inflight_bytes = 0
        self.swallow_ok = 0
        self.priority.appendleft((b'M105', -1, None))
        self.last_progress = self.loop.time()
        self.pump()

    def check_timeout(self) -> bool:
        """Called by the driver's watchdog; False once the printer has not answered max_timeouts probes."""
        if (self.inflight or self.resend_queue) and self.loop.time() - self.last_progress > self.settings.ok_timeout_s:
            if self.timeouts >= self.settings.max_timeouts:
                return False
            self.recover('no answer from the printer')
        return True

    def _idle(self) -> None:
        if self.resend_queue or (self.candidate is not None and self.candidate[1] >= 0):
            return
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if self.source is not None and self.source.exhausted and self.candidate is None:
            self.source = None
            self.on_source_done()

    def _fail_waiters(self, exc: Exception) -> None:
        waiters = [e[3] for e in (*self.inflight, *self.resend_queue)] + [p[2] for p in self.priority]
        if self.candidate is not None:
            waiters.append(self.candidate[2])
        for waiter in waiters:
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(exc)
