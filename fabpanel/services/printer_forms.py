"""The printer form and row the pages use, their validation, and the file check before a print."""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fabpanel.core.gcode_safety import Refusal, scan
from fabpanel.core.printers import PrinterKind, PrinterLimits
from fabpanel.db.loaders import aware
from fabpanel.printers.job_store import printer_t, split_words
from fabpanel.services.machines import Refused, clean_name

RANGES: dict[str, tuple[float, float]] = {
    'max_nozzle_c': (100, 500),
    'max_bed_c': (0, 150),
    'max_chamber_c': (0, 100),
    'nozzle_diameter_mm': (0.1, 2.0),
    'build_x_mm': (10, 2000),
    'build_y_mm': (10, 2000),
    'build_z_mm': (10, 2000),
}
BAUDRATES = (9600, 19200, 38400, 57600, 115200, 230400, 250000, 460800, 500000, 921600, 1000000)
HTTP_KINDS = (PrinterKind.OCTOPRINT, PrinterKind.MOONRAKER, PrinterKind.PRUSALINK)
WORDS_MAX = 255


@dataclass(kw_only=True, slots=True)
class PrinterForm:
    name: str = ''
    kind: PrinterKind | str | None = PrinterKind.SIMULATED
    address: str = ''  # see core.printers.PrinterConfig.address
    api_key: str = ''  # write-only: left empty on an update, the stored one is kept
    clear_api_key: bool = False  # ...unless this asks to remove it
    username: str = ''
    serial_number: str = ''
    tls_fingerprint: str = ''  # Bambu: SHA-256 of the printer's certificate, hex with or without colons
    baudrate: int = 115200
    max_nozzle_c: float | None = 260.0
    max_bed_c: float | None = 110.0
    max_chamber_c: float | None = 60.0
    nozzle_diameter_mm: float | None = 0.4
    build_x_mm: float | None = 220.0
    build_y_mm: float | None = 220.0
    build_z_mm: float | None = 250.0
    materials: Sequence[str] | str = ('PLA', 'PETG')
    tags: Sequence[str] | str = ()
    enabled: bool = True


@dataclass(kw_only=True, slots=True)
class PrinterRow:
    """A printer as pages see it: never its secret, only whether one is stored."""

    id: int
    name: str
    kind: str
    address: str
    has_secret: bool
    username: str
    serial_number: str
    tls_fingerprint: str  # Bambu: pinned certificate (64 hex digits) or ''
    baudrate: int
    max_nozzle_c: float
    max_bed_c: float
    max_chamber_c: float
    nozzle_diameter_mm: float
    build_x_mm: float
    build_y_mm: float
    build_z_mm: float
    materials: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    enabled: bool = True
    created_at: datetime | None = None
    limits: PrinterLimits = field(default_factory=PrinterLimits)


def row_of(r: Any) -> PrinterRow:
    return PrinterRow(
        id=r.id,
        name=r.name,
        kind=r.kind,
        address=r.address,
        has_secret=bool(r.api_key),
        username=r.username,
        serial_number=r.serial_number,
        tls_fingerprint=r.tls_fingerprint,
        baudrate=r.baudrate,
        max_nozzle_c=r.max_nozzle_c,
        max_bed_c=r.max_bed_c,
        max_chamber_c=r.max_chamber_c,
        nozzle_diameter_mm=r.nozzle_diameter_mm,
        build_x_mm=r.build_x_mm,
        build_y_mm=r.build_y_mm,
        build_z_mm=r.build_z_mm,
        materials=split_words(r.materials),
        tags=split_words(r.tags),
        enabled=r.enabled,
        created_at=aware(r.created_at),
        limits=PrinterLimits(max_nozzle_c=r.max_nozzle_c, max_bed_c=r.max_bed_c, max_chamber_c=r.max_chamber_c),
    )


def _number(value: Any, key: str) -> float:
    low, high = RANGES[key]
    try:
        number = float(str(value).strip().replace(',', '.')) if value is not None else math.nan
    except ValueError:
        number = math.nan
    if not low <= number <= high:  # also refuses nan
        raise Refused('bad_number', key, min=f'{low:g}', max=f'{high:g}')
    return number


def _words(value: Sequence[str] | str, key: str) -> str:
    words = split_words(value) if isinstance(value, str) else tuple(w.strip() for w in value if w and w.strip())
    text = ','.join(' '.join(w.replace(',', ' ').split()) for w in words)
    if len(text) > WORDS_MAX:
        raise Refused('too_long', key, max=WORDS_MAX)
    return text


def _address(kind: PrinterKind, address: str) -> str:
    address = (address or '').strip()
    if len(address) > 500 or any(c.isspace() for c in address):
        raise Refused('bad_address', 'address')
    if not address:
        if kind == PrinterKind.SIMULATED:
            return ''
        raise Refused('address_required', 'address')
    lower = address.lower()
    ok = {
        PrinterKind.MARLIN: lower.startswith(('/dev/', 'serial:')),
        PrinterKind.BAMBU: '://' not in lower and '/' not in lower,
        PrinterKind.SIMULATED: lower.startswith('sim://'),
    }.get(kind, lower.startswith(('http://', 'https://')))
    if not ok:
        raise Refused('bad_address', 'address', kind=kind.value)
    return address


def _fingerprint(value: str | None) -> str:
    """A SHA-256 certificate fingerprint as 64 lower-case hex digits: pasted with colons, spaces or in upper case
    (as openssl and browsers show it) it still fits; anything else is refused rather than silently not pinned."""
    text = ''.join((value or '').split()).replace(':', '').lower()
    if text and (len(text) != 64 or any(c not in '0123456789abcdef' for c in text)):
        raise Refused('bad_fingerprint', 'tls_fingerprint')
    return text


async def clean_form(conn: AsyncConnection, form: PrinterForm, old: Any | None) -> dict[str, Any]:
    """Column values from a form, or Refused naming the field; `old` is the row being edited."""
    name = clean_name(form.name)
    try:
        kind = PrinterKind(form.kind)
    except ValueError:
        raise Refused('kind_required', 'kind') from None
    values: dict[str, Any] = {
        'name': name,
        'kind': kind.value,
        'address': _address(kind, form.address),
        'username': ' '.join((form.username or '').split())[:80],
        'serial_number': ''.join((form.serial_number or '').split())[:64],
        'tls_fingerprint': _fingerprint(form.tls_fingerprint) if kind == PrinterKind.BAMBU else '',
        'enabled': bool(form.enabled),
    }
    values.update({key: _number(getattr(form, key), key) for key in RANGES})
    if kind == PrinterKind.MARLIN and form.baudrate not in BAUDRATES:
        raise Refused('bad_number', 'baudrate', min=BAUDRATES[0], max=BAUDRATES[-1])
    values['baudrate'] = int(form.baudrate) if form.baudrate in BAUDRATES else 115200
    values['materials'], values['tags'] = _words(form.materials, 'materials'), _words(form.tags, 'tags')
    secret = (form.api_key or '').strip()
    if len(secret) > 255:
        raise Refused('too_long', 'api_key', max=255)
    values['api_key'] = '' if form.clear_api_key else secret or (old.api_key if old is not None else '')
    if kind == PrinterKind.BAMBU and not (values['serial_number'] and values['api_key']):
        raise Refused('bambu_needs_serial_and_code', 'serial_number' if not values['serial_number'] else 'api_key')
    q = sa.select(printer_t.c.id).where(
        sa.func.lower(printer_t.c.name) == name.lower(), printer_t.c.deleted_at.is_(None)
    )
    if old is not None:
        q = q.where(printer_t.c.id != old.id)
    if (await conn.execute(q)).first() is not None:
        raise Refused('name_taken', 'name')
    return values


def scan_file(path: Path, limits: PrinterLimits, staff: bool, max_bytes: int) -> Refusal | str | None:
    """Check a file before a print (blocking: run in a thread). G-code is scanned line by line; a 3MF (zip)
    has every G-code inside it scanned; binary G-code cannot be read here and is refused with a code."""
    with path.open('rb') as f:
        head = f.read(4)
        f.seek(0)
        if head == b'GCDE':
            return 'binary_gcode'
        if head != b'PK\x03\x04':
            return scan(f, limits, staff=staff)
    try:
        with zipfile.ZipFile(path) as archive:
            members = [i for i in archive.infolist() if i.filename.lower().endswith('.gcode')]
            if not members:
                return 'no_gcode'
            if sum(i.file_size for i in members) > 4 * max_bytes:  # a zip bomb is not scanned
                return 'file_too_large'
            for info in members:
                with archive.open(info) as inner:
                    refusal = scan(inner, limits, staff=staff)
                if refusal is not None:
                    return refusal
    except zipfile.BadZipFile:
        return 'unreadable_file'
    return None
