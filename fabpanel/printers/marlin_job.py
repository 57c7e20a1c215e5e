"""A host-streamed Marlin job: the file's lines read lazily off the event loop, and the pause/resume/cancel scripts.

FileJob keeps at most a few 64 KB chunks of the file in memory (a 50 MB file is never loaded), strips comments
in a worker thread, and tracks what a resume must restore: positioning modes, the feed rate, the slicer's
remaining time (M73 R) and the layer.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fabpanel.core.marlin import Position
from fabpanel.core.printers import JobProgress

CHUNK = 64 * 1024
LOW_WATER = 1500  # lines left when the next chunk is read (one chunk is ~2,000-3,000 lines)
_LAYER_MARKERS = (b';LAYER:', b';LAYER_CHANGE', b'; CHANGE_LAYER')
_LAYER_COUNT = re.compile(rb';LAYER_COUNT:\s*(\d+)|; total layer number:\s*(\d+)|; total layers count = (\d+)')
_FEED = re.compile(rb'F(\d+(?:\.\d*)?)')
_M73_R = re.compile(rb'R(\d+)')
_MODES = frozenset({b'G90', b'G91', b'M82', b'M83'})


class FileJob:
    """The lines of one G-code file for MarlinLink: `take()` is called once per line on the event loop."""

    def __init__(self, path: Path, name: str, on_ready: Callable[[], None]) -> None:
        self.path, self.name, self.on_ready = path, name, on_ready
        self.size = 0
        self.exhausted = False
        self.relative = False  # G91 in force
        self.relative_e = False  # M83 in force
        self.feedrate: float | None = None  # last F of a G0-G3 move
        self.remaining_min: int | None = None  # slicer's M73 R
        self.layer = 0
        self.layer_count: int | None = None
        self.lines_sent = 0
        self._buf: deque[tuple[bytes, int]] = deque()
        self._file: BinaryIO | None = None
        self._carry = b''
        self._read_pos = 0
        self._eof = False
        self._reading: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._file, self.size = await asyncio.to_thread(self._open)
        await self._refill()
        if self._buf and (m := _LAYER_COUNT.search(self._first)):
            self.layer_count = int(next(g for g in m.groups() if g))

    def _open(self) -> tuple[BinaryIO, int]:
        f = open(self.path, 'rb')  # noqa: SIM115 - closed by close()
        return f, os.fstat(f.fileno()).st_size

    def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
        if self._file is not None:
            self._file.close()  # a plain close() of a regular file does not block
            self._file = None

    def take(self) -> tuple[bytes, int] | None:
        buf = self._buf
        if len(buf) < LOW_WATER and self._reading is None and not self._eof:
            self._reading = asyncio.get_running_loop().create_task(self._refill())
        while buf:
            item = buf.popleft()
            cmd = item[0]
            if not cmd:  # a layer marker
                self.layer += 1
                continue
            self.lines_sent += 1
            head = cmd[:3]
            if head in _MODES:
                self._mode(head)
            elif head == b'M73' and (m := _M73_R.search(cmd)):
                self.remaining_min = int(m.group(1))
            if cmd[0] == 71 and b'F' in cmd and (m := _FEED.search(cmd)):  # 71: 'G'
                self.feedrate = float(m.group(1))
            return item
        if self._eof and self._reading is None:
            self.exhausted = True
        return None

    def _mode(self, head: bytes) -> None:
        if head in (b'G90', b'G91'):
            self.relative = self.relative_e = head == b'G91'  # in Marlin 2, G90/G91 set the extruder too
        else:
            self.relative_e = head == b'M83'

    async def _refill(self) -> None:
        try:
            if self._file is None:
                return
            lines, self._carry, self._eof, self._first = await asyncio.to_thread(
                _read_chunk, self._file, self._carry, self._read_pos, self.size
            )
            self._read_pos += CHUNK
            self._buf.extend(lines)
        finally:
            self._reading = None
        self.on_ready()

    def progress(self, offset: int, started: float) -> JobProgress:
        """Where the job is: bytes acknowledged of the file's size, the slicer's M73 estimate or a linear one."""
        fraction = min(1.0, offset / self.size) if self.size else 1.0
        elapsed = time.monotonic() - started
        if self.remaining_min is not None:
            remaining: float | None = self.remaining_min * 60.0
        else:
            remaining = elapsed * (1 - fraction) / fraction if fraction > 0.01 else None
        return JobProgress(
            file_name=self.name,
            fraction=fraction,
            elapsed_s=elapsed,
            remaining_s=remaining,
            layer=self.layer or None,
            layer_count=self.layer_count,
        )


def _read_chunk(
    f: BinaryIO, carry: bytes, read_pos: int, size: int
) -> tuple[list[tuple[bytes, int]], bytes, bool, bytes]:
    """One chunk as (command, file offset after it); runs in a worker thread."""
    data = f.read(CHUNK)
    eof = len(data) < CHUNK
    pos = read_pos - len(carry)
    data = carry + data
    raw_lines = data.split(b'\n')
    carry = b'' if eof else raw_lines.pop()
    out: list[tuple[bytes, int]] = []
    append = out.append
    for raw in raw_lines:
        pos += len(raw) + 1
        cut = raw.find(b';')
        if cut >= 0:
            if cut == 0 and raw.startswith(_LAYER_MARKERS):
                append((b'', pos))
            raw = raw[:cut]
        cmd = raw.strip()
        if cmd:
            append((cmd, pos if pos < size else size))
    return out, carry, eof, data[:4096] if read_pos == 0 else b''


@dataclass(kw_only=True, slots=True, frozen=True)
class ParkSettings:
    retract_mm: float = 2.0
    lift_mm: float = 10.0
    park_x: float = 5.0
    park_y_margin: float = 5.0  # the bed is presented at Y max minus this margin
    travel_f: float = 6000.0
    z_f: float = 600.0
    e_f: float = 2400.0


def park_script(pos: Position, park: ParkSettings, volume: tuple[float, float, float]) -> list[str]:
    """Retract, lift Z (within the build volume) and move the head away from the part."""
    z = min(pos.z + park.lift_mm, volume[2])
    return [
        'G91',
        f'G1 E-{park.retract_mm:g} F{park.e_f:g}',
        'G90',
        f'G1 Z{z:.3f} F{park.z_f:g}',
        f'G1 X{park.park_x:g} Y{volume[1] - park.park_y_margin:g} F{park.travel_f:g}',
    ]


def resume_script(
    pos: Position,
    job: FileJob,
    park: ParkSettings,
    nozzle: float | None,
    bed: float | None,
) -> list[str]:
    """Heat back to the job's targets, return above the part, lower, unretract, restore modes and feed rate."""
    lines = []
    if bed:
        lines.append(f'M140 S{bed:g}')
    if nozzle:
        lines.append(f'M109 S{nozzle:g}')
    if bed:
        lines.append(f'M190 S{bed:g}')
    lines += [
        'G90',
        f'G1 X{pos.x:.3f} Y{pos.y:.3f} F{park.travel_f:g}',
        f'G1 Z{pos.z:.3f} F{park.z_f:g}',
        'G91',
        f'G1 E{park.retract_mm:g} F{park.e_f:g}',
        'G91' if job.relative else 'G90',
        'M83' if job.relative_e else 'M82',
    ]
    if job.feedrate:
        lines.append(f'G1 F{job.feedrate:g}')
    return lines


def end_script(park: ParkSettings, volume: tuple[float, float, float]) -> list[str]:
    """After a cancel: heaters and fan off, retract, lift, present the bed, motors off."""
    return [
        'M104 S0',
        'M140 S0',
        'M107',
        'G91',
        f'G1 E-{park.retract_mm:g} F{park.e_f:g}',
        f'G1 Z{park.lift_mm:g} F{park.z_f:g}',
        'G90',
        f'G1 X{park.park_x:g} Y{volume[1] - park.park_y_margin:g} F{park.travel_f:g}',
        'M84',
    ]
