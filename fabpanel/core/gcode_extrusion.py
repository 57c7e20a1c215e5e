"""Filament used by a G-code body, worked out from its extrusion moves, plus the temperatures and layers it sets.

Pure and incremental: feed it bytes in chunks of any size, then `finish()`. It follows Marlin's rules: G90/G91
set every axis (E too) and clear an earlier M82/M83, M82/M83 set E alone, `G92 E` (or a bare `G92`) resets
the E position, `T<n>` moves the count to another tool, and firmware retracts (G10/G11) are ignored because
they retract and unretract the same length. The total is *net* filament: a retract and its unretract cancel.

Speed matters (the policy scan must run at 20 MB/s in pure Python), so it never loops over lines in Python:
regular expressions pick out the rare state-changing lines of a whole chunk, and between two of them the E
words of all moves are pulled out with one `findall` (relative: summed; absolute: only the last one counts).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

MAX_LINE = 64 * 1024  # longer lines are skipped (and counted): memory stays bounded on a file with no newlines
MAX_TOOLS = 64  # more distinct T numbers than this are counted under OTHER_TOOL
OTHER_TOOL = -1
LAYER_MARKERS = (b'\n;LAYER_CHANGE', b'\n;LAYER:', b'\n; CHANGE_LAYER')  # PrusaSlicer, Cura, BambuStudio/Orca

_NUMBER = rb'([-+]?(?:\d+\.?\d*|\.\d+))'
# Every pattern starts with a literal newline (each chunk is handled with one in front) so that the regex
# engine can jump between line starts instead of trying every byte.
_EVENT = re.compile(
    rb'\n(?:(G9[0-2]|M8[23]|M10[49]|M1[49]0)(?![0-9.])|T(\d{1,6})(?![0-9.])|(SET_HEATER_TEMPERATURE))'
    rb'([^\n;]*)'
)
# E values are taken loosely ([-+.0-9]+, about twice as fast to match) and read strictly by _to_float
_E_MOVE = re.compile(rb'\nG[0-3](?![0-9.])[^\n;E]*E[ \t]*([-+.0-9]+)')
_STRICT_NUMBER = re.compile(_NUMBER)
_BACKWARD_TRIES = 32  # absolute mode looks for the segment's last E move from its end, this many lines at most
_WORD = re.compile(rb'([A-Z])[ \t]*' + _NUMBER)
_KLIPPER_WORD = re.compile(rb'(HEATER|TARGET)=([\w.+-]+)')
_ODD_START = re.compile(rb'\n(?:[ \t]|N\d|G0\d)')  # indented, numbered or G01-style lines
_LINE_PREFIX = re.compile(rb'\n(?:[ \t]+(?:N\d+[ \t]*)?|N\d+[ \t]*)')
_LEADING_ZERO = re.compile(rb'\nG0+(\d)')  # G01 -> G1
_LOWER_START = re.compile(rb'\n[ \t]*(?:n\d+[ \t]*)?[gmt]\d')


@dataclass(kw_only=True, slots=True)
class ExtrusionTotals:
    mm_by_tool: dict[int, float] = field(default_factory=dict)  # net filament per T number, mm
    total_mm: float | None = None  # None when the sum is not a finite number (absurd E values)
    first_layer_nozzle_c: float | None = None  # target in force when the first layer starts
    first_layer_bed_c: float | None = None
    max_nozzle_c: float | None = None
    max_bed_c: float | None = None
    layer_count: int | None = None  # layer markers counted (the most frequent kind)
    lines: int = 0
    bytes: int = 0
    overlong_lines: int = 0


@dataclass(kw_only=True, slots=True)
class _State:
    e_relative_coords: bool = False  # G91
    e_mode: bool | None = None  # M83 -> True, M82 -> False, cleared by G90/G91 (Marlin)
    position: float = 0.0
    tool: int = 0
    nozzle_c: float | None = None
    bed_c: float | None = None


class ExtrusionScanner:
    """Feed chunks of a G-code file; `finish()` gives the totals. Memory is bounded by MAX_LINE plus one chunk."""

    def __init__(self, *, max_line: int = MAX_LINE) -> None:
        self._max_line = max_line
        self._carry = b''
        self._skipping = False  # inside an overlong line: drop bytes until its newline
        self._state = _State()
        self._totals = ExtrusionTotals()
        self._marker: bytes | None = None
        self._layers = 0
        self._first_layer_seen = False
        self._upper: bool | None = None

    def feed(self, data: bytes) -> None:
        self._totals.bytes += len(data)
        cut = data.rfind(b'\n')
        if cut < 0:
            self._hold(data)
            return
        if self._skipping:
            head, self._skipping = b'', False
        else:
            head = self._carry
        self._carry = b''
        self._chunk(b'\n' + head + data[: cut + 1])
        self._hold(data[cut + 1 :])

    def finish(self) -> ExtrusionTotals:
        if self._carry and not self._skipping:
            self._chunk(b'\n' + self._carry + b'\n')
        self._carry = b''
        totals = self._totals
        total = sum(totals.mm_by_tool.values())
        totals.total_mm = round(total, 3) if math.isfinite(total) else None
        totals.mm_by_tool = {t: round(v, 3) if math.isfinite(v) else v for t, v in totals.mm_by_tool.items()}
        totals.layer_count = self._layers or None
        return totals

    def _hold(self, rest: bytes) -> None:
        if self._skipping:
            return
        if len(self._carry) + len(rest) > self._max_line:
            self._carry, self._skipping = b'', True
            self._totals.overlong_lines += 1
        else:
            self._carry += rest

    def _chunk(self, buf: bytes) -> None:
        """Account one run of whole lines; `buf` starts and ends with a newline."""
        self._totals.lines += buf.count(b'\n') - 1
        buf = self._normalise(buf)
        self._count_layers(buf)
        first_layer_at = len(buf) if self._first_layer_seen else _first_marker(buf)
        start = 0
        for event in _EVENT.finditer(buf):
            self._moves(buf, start, event.start())
            if not self._first_layer_seen and event.start() > first_layer_at:
                self._enter_first_layer()
            self._event(event)
            start = event.end()
        self._moves(buf, start, len(buf))
        if not self._first_layer_seen and first_layer_at < len(buf):
            self._enter_first_layer()

    def _normalise(self, buf: bytes) -> bytes:
        """Commands at their line start, upper case, without `N123` numbers (all rare in slicer output)."""
        if self._upper is None:  # hand-written files use lower case from their start G-code on: look once
            self._upper = _LOWER_START.search(buf) is not None
        if self._upper:
            buf = buf.upper()
        if _ODD_START.search(buf):
            buf = _LINE_PREFIX.sub(b'\n', buf)
            if _LEADING_ZERO.search(buf):
                buf = _LEADING_ZERO.sub(rb'\nG\1', buf)
        return buf

    def _count_layers(self, buf: bytes) -> None:
        if self._marker is None:
            counts = [buf.count(marker) for marker in LAYER_MARKERS]
            if max(counts):  # one slicer, one kind of marker: count only that kind from here on
                self._marker = LAYER_MARKERS[counts.index(max(counts))]
                self._layers = max(counts)
        else:
            self._layers += buf.count(self._marker)

    def _moves(self, buf: bytes, start: int, end: int) -> None:
        if end <= start:
            return
        state = self._state
        if state.e_mode is True or (state.e_mode is None and state.e_relative_coords):
            values = _E_MOVE.findall(buf, start, end)
            if not values:
                return
            try:
                delta = sum(map(float, values))
            except ValueError:  # '1.2.3', '-', '+.': read as firmware would, the leading number or nothing
                delta = sum(map(_to_float, values))
            state.position += delta
        else:
            last = _last_e(buf, start, end)
            if last is None:
                return
            delta = last - state.position
            state.position = last
        tools = self._totals.mm_by_tool
        tools[state.tool] = tools.get(state.tool, 0.0) + delta

    def _event(self, event: re.Match[bytes]) -> None:
        code, tool, klipper, rest = event.groups()
        state = self._state
        if tool is not None:
            number = int(tool)
            known = self._totals.mm_by_tool
            state.tool = number if number in known or len(known) < MAX_TOOLS else OTHER_TOOL
            return
        if klipper is not None:
            self._klipper_heater(rest)
            return
        if code in (b'G90', b'G91'):
            state.e_relative_coords, state.e_mode = code == b'G91', None
        elif code in (b'M82', b'M83'):
            state.e_mode = code == b'M83'
        elif code == b'G92':
            words = dict(_WORD.findall(rest))
            if b'E' in words:
                state.position = float(words[b'E'])
            elif not words:
                state.position = 0.0
        else:
            words = dict(_WORD.findall(rest))
            target = words.get(b'S') or words.get(b'R')
            if target is not None:
                self._set_target(code in (b'M104', b'M109'), float(target))

    def _klipper_heater(self, rest: bytes) -> None:
        words = dict(_KLIPPER_WORD.findall(rest))
        heater, target = words.get(b'HEATER', b'').upper(), words.get(b'TARGET')
        if target is None or heater not in (b'EXTRUDER', b'HEATER_BED'):
            return
        try:
            value = float(target)
        except ValueError:
            return
        self._set_target(heater == b'EXTRUDER', value)

    def _set_target(self, nozzle: bool, value: float) -> None:
        if not math.isfinite(value):
            return
        totals, state = self._totals, self._state
        if nozzle:
            state.nozzle_c = value
            totals.max_nozzle_c = value if totals.max_nozzle_c is None else max(totals.max_nozzle_c, value)
        else:
            state.bed_c = value
            totals.max_bed_c = value if totals.max_bed_c is None else max(totals.max_bed_c, value)

    def _enter_first_layer(self) -> None:
        self._first_layer_seen = True
        state, totals = self._state, self._totals
        totals.first_layer_nozzle_c = state.nozzle_c or None
        totals.first_layer_bed_c = state.bed_c or None


def _last_e(buf: bytes, start: int, end: int) -> float | None:
    """The E of the last extruding move in buf[start:end], searched from the end (absolute mode needs no more)."""
    for _ in range(_BACKWARD_TRIES):
        at = buf.rfind(b'E', start, end)
        if at < 0:
            return None
        line = buf.rfind(b'\n', start, at)
        if line < 0:
            break
        move = _E_MOVE.match(buf, line, end)
        if move is not None:
            return _to_float(move.group(1))
        end = line
    values = _E_MOVE.findall(buf, start, end)  # many E-bearing comments in a row: one pass instead
    return _to_float(values[-1]) if values else None


def _to_float(text: bytes) -> float:
    match = _STRICT_NUMBER.match(text)
    return float(match.group(1)) if match else 0.0


def _first_marker(buf: bytes) -> int:
    found = [at for at in (buf.find(m) for m in LAYER_MARKERS) if at >= 0]
    return min(found) if found else len(buf)


def scan_bytes(data: bytes) -> ExtrusionTotals:
    """The whole of a small body at once (tests, 3MF members already in memory)."""
    scanner = ExtrusionScanner()
    scanner.feed(data)
    return scanner.finish()
