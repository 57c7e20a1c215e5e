"""Reading stored print files (`.gcode` and Bambu `.gcode.3mf`) without blocking the event loop.

`read_metadata` reads only a G-code's head and tail (milliseconds, whatever the size) and falls back to a full
streaming pass over the body when the slicer wrote no filament figure. `scan_file` is the upload's policy pass:
one read of the file feeds both the extrusion scanner and `gcode_safety.scan`, so the body is read once.
The file is recognised by its first bytes, never by its name (names are member input).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fabpanel.core import gcode_safety
from fabpanel.core.gcode_extrusion import ExtrusionScanner, ExtrusionTotals
from fabpanel.core.gcode_meta import HEAD_BYTES, TAIL_BYTES, GcodeMeta, merge_scan, parse_meta, split_head_tail
from fabpanel.core.printers import PrinterLimits
from fabpanel.core.threemf import iter_member, open_archive, plate_meta

log = logging.getLogger(__name__)
READ_CHUNK = 4 * 1024 * 1024
MAX_POLICY_LINE = 64 * 1024  # a longer line is handed on cut (the safety check refuses it as too long)
ZIP_MAGIC = b'PK\x03\x04'


@dataclass(kw_only=True, slots=True)
class FileScan:
    """The outcome of the full pass: metadata with computed figures, and the first line refused, if any."""

    meta: GcodeMeta
    refusal: gcode_safety.Refusal | None
    bytes: int
    seconds: float


async def read_metadata(path: Path, *, full_scan: bool | None = None) -> GcodeMeta:
    """Metadata of a stored file. full_scan: None = only when the slicer wrote no filament figure."""
    return await asyncio.to_thread(read_metadata_sync, path, full_scan=full_scan)


async def scan_file(path: Path, limits: PrinterLimits, *, staff: bool) -> FileScan:
    """Metadata from a full pass plus the policy check of every line, off the event loop."""
    return await asyncio.to_thread(scan_file_sync, path, limits, staff=staff)


def read_metadata_sync(path: Path, *, full_scan: bool | None = None) -> GcodeMeta:
    with path.open('rb') as stream:
        if stream.read(4) == ZIP_MAGIC:
            return plate_meta(stream, full_scan=full_scan is not False)[2]  # a zip member is streamed anyway
        size = os.fstat(stream.fileno()).st_size
        meta = parse_meta(*_head_and_tail(stream, size))
        if full_scan or (full_scan is None and needs_scan(meta)):
            stream.seek(0)
            meta = merge_scan(meta, _extrusion(_chunks(stream)))
    return meta


def needs_scan(meta: GcodeMeta) -> bool:
    """No filament figure in the head or tail (old Cura, hand-written files): only the moves can tell."""
    return not (meta.figures.mm or meta.figures.cm3) and 'not_gcode' not in meta.warning_codes()


def scan_file_sync(path: Path, limits: PrinterLimits, *, staff: bool) -> FileScan:
    started = time.perf_counter()
    with path.open('rb') as stream:
        if stream.read(4) == ZIP_MAGIC:
            _, plate, meta = plate_meta(stream, full_scan=False)
            stream.seek(0)
            chunks = iter_member(open_archive(stream), plate.gcode_member)
            size = plate.gcode_size
        else:
            size = os.fstat(stream.fileno()).st_size
            meta = parse_meta(*_head_and_tail(stream, size))
            stream.seek(0)
            chunks = _chunks(stream)
        scanner = ExtrusionScanner()
        refusal = _policy_pass(chunks, scanner, limits, staff)
        meta = merge_scan(meta, scanner.finish())
    seconds = time.perf_counter() - started
    if refusal is not None:
        log.info('print file refused at line %d: %s', refusal.line_no, refusal.code)
    return FileScan(meta=meta, refusal=refusal, bytes=size, seconds=seconds)


def _head_and_tail(stream: BinaryIO, size: int) -> tuple[bytes, bytes]:
    stream.seek(0)
    head = stream.read(HEAD_BYTES)
    tail = b''
    if size > len(head):
        stream.seek(max(size - TAIL_BYTES, 0))
        tail = stream.read(TAIL_BYTES)
    return split_head_tail(head, tail, size)


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(READ_CHUNK):
        yield chunk


def _extrusion(chunks: Iterator[bytes]) -> ExtrusionTotals:
    scanner = ExtrusionScanner()
    for chunk in chunks:
        scanner.feed(chunk)
    return scanner.finish()


def _policy_pass(
    chunks: Iterator[bytes], scanner: ExtrusionScanner, limits: PrinterLimits, staff: bool
) -> gcode_safety.Refusal | None:
    """Feed every chunk to the extrusion scanner and its whole lines to the safety check; the first refusal."""
    refusal, line_no = None, 1
    for buffer in _line_buffers(chunks, scanner):
        if refusal is None:
            refusal = gcode_safety.scan_buffer(buffer, line_no, limits, staff)
            line_no += buffer.count(b'\n')
    return refusal


def _line_buffers(chunks: Iterator[bytes], scanner: ExtrusionScanner) -> Iterator[bytes]:
    """Runs of whole lines ending in \\n, while the same chunks feed the extrusion scanner. A line longer than
    MAX_POLICY_LINE is handed on cut (the check refuses it), so one huge line never sits in memory."""
    carry, skipping = b'', False
    for chunk in chunks:
        scanner.feed(chunk)
        cut = chunk.rfind(b'\n')
        if cut < 0:
            carry = b'' if skipping else carry + chunk
        else:
            start = chunk.find(b'\n') + 1 if skipping else 0  # the end of a line already handed on cut
            buffer = (b'' if skipping else carry) + chunk[start : cut + 1]
            if buffer:
                yield buffer
            carry, skipping = chunk[cut + 1 :], False
        if len(carry) > MAX_POLICY_LINE:
            yield carry[:MAX_POLICY_LINE] + b'\n'
            carry, skipping = b'', True
    if carry and not skipping:
        yield carry + b'\n'
