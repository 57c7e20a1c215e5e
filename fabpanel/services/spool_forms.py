"""What pages send and get back for vendors, filaments and spools, and how each form is checked."""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from fabpanel.core import spools as core
from fabpanel.services.auth import CurrentUser
from fabpanel.services.machines import Refused, clean_name

TEXT_MAX = 80
MATERIAL_MAX = 32
CODE_ALPHABET = '23456789ABCDEFGHJKLMNPQRSTUVWXYZ'  # no 0/O, 1/I: a person may type the code off the label
CODE_LENGTH = 10  # 32^10: not guessable from another spool's label
COLOUR = re.compile(r'#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?')
MAX_SPOOL_G = 20_000.0
MAX_EMPTY_SPOOL_G = 5_000.0
MAX_PRICE_PER_KG = 10_000.0


def require_stock_keeper(actor: CurrentUser | None) -> CurrentUser:
    """Spool stock is kept by admins and staff (maintainers, print approvers)."""
    if actor is None or not (actor.may_administer or actor.may_maintain or actor.may_approve_prints):
        raise Refused('forbidden')
    return actor


def new_code() -> str:
    return ''.join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def clean_code(code: str | None) -> str:
    """A code as typed or scanned: case and surrounding blanks do not matter, anything else is not a code."""
    text = (code or '').strip().upper()
    if not text or len(text) > 16 or any(c not in CODE_ALPHABET for c in text):
        raise Refused('spool_not_found')
    return text


@dataclass(kw_only=True, slots=True)
class VendorForm:
    name: str = ''


@dataclass(kw_only=True, slots=True)
class FilamentForm:
    vendor_id: int | None = None
    name: str = ''
    material: str = 'PLA'
    colour_hex: str = ''
    diameter_mm: float = 1.75
    density_g_cm3: float = 1.24
    price_per_kg: float | None = None
    low_stock_grams: float = 0.0


@dataclass(kw_only=True, slots=True)
class SpoolForm:
    filament_id: int | None = None
    initial_grams: float = 1000.0
    remaining_grams: float | None = None  # None: a new, full spool
    empty_spool_grams: float = 0.0
    lot: str = ''
    location: str = ''  # shelf


@dataclass(kw_only=True, slots=True)
class VendorRow:
    id: int
    name: str


@dataclass(kw_only=True, slots=True)
class FilamentRow:
    id: int
    vendor_id: int
    vendor: str
    name: str  # member-visible text everywhere below: render as text only
    material: str
    colour_hex: str
    diameter_mm: float
    density_g_cm3: float
    price_per_kg: float | None
    low_stock_grams: float


@dataclass(kw_only=True, slots=True)
class SpoolRow:
    id: int
    code: str
    filament_id: int
    filament: str
    vendor: str
    material: str
    colour_hex: str
    diameter_mm: float
    initial_grams: float
    remaining_grams: float
    empty_spool_grams: float
    lot: str
    location: str  # the shelf; where it goes back to when unloaded
    printer_id: int | None  # loaded in this printer
    printer_name: str
    archived: bool
    remaining_m: float | None = field(default=None)  # metres left, for the label and the printer page


def _number(value: Any, name: str, low: float, high: float, *, low_open: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise Refused('number_required', name) from None
    if not math.isfinite(x) or x < low or x > high or (low_open and x == low):
        raise Refused('out_of_range', name, min=low, max=high)
    return x


def _text(value: str | None, name: str, max_length: int = TEXT_MAX) -> str:
    text = ' '.join((value or '').split())
    if len(text) > max_length:
        raise Refused('text_too_long', name, max=max_length)
    return text


def clean_vendor(form: VendorForm) -> dict[str, Any]:
    return {'name': clean_name(form.name)}


def clean_filament(form: FilamentForm) -> dict[str, Any]:
    if form.vendor_id is None:
        raise Refused('vendor_required', 'vendor_id')
    colour = (form.colour_hex or '').strip()
    if colour and not COLOUR.fullmatch(colour):
        raise Refused('colour_invalid', 'colour_hex')
    material = _text(form.material, 'material', MATERIAL_MAX).upper()
    if not material:
        raise Refused('material_required', 'material')
    out = {
        'vendor_id': int(form.vendor_id),
        'name': clean_name(form.name),
        'material': material,
        'colour_hex': colour.upper(),
        'diameter_mm': _number(form.diameter_mm, 'diameter_mm', core.MIN_DIAMETER_MM, core.MAX_DIAMETER_MM),
        'density_g_cm3': _number(form.density_g_cm3, 'density_g_cm3', core.MIN_DENSITY, core.MAX_DENSITY),
        'price_per_kg': None,
        'low_stock_grams': _number(form.low_stock_grams, 'low_stock_grams', 0, 1_000_000),
    }
    if form.price_per_kg is not None and form.price_per_kg != '':
        out['price_per_kg'] = _number(form.price_per_kg, 'price_per_kg', 0, MAX_PRICE_PER_KG)
    return out


def clean_spool(form: SpoolForm) -> dict[str, Any]:
    if form.filament_id is None:
        raise Refused('filament_required', 'filament_id')
    initial = _number(form.initial_grams, 'initial_grams', 0, MAX_SPOOL_G, low_open=True)
    remaining = initial if form.remaining_grams is None else form.remaining_grams
    return {
        'filament_id': int(form.filament_id),
        'initial_grams': initial,
        'remaining_grams': _number(remaining, 'remaining_grams', 0, initial * core.OVERFILL_FACTOR),
        'empty_spool_grams': _number(form.empty_spool_grams, 'empty_spool_grams', 0, MAX_EMPTY_SPOOL_G),
        'lot': _text(form.lot, 'lot'),
        'location': _text(form.location, 'location'),
    }


def filament_row(r: Any) -> FilamentRow:
    return FilamentRow(
        id=r.id,
        vendor_id=r.vendor_id,
        vendor=r.vendor,
        name=r.name,
        material=r.material,
        colour_hex=r.colour_hex,
        diameter_mm=r.diameter_mm,
        density_g_cm3=r.density_g_cm3,
        price_per_kg=r.price_per_kg,
        low_stock_grams=r.low_stock_grams,
    )


def spool_row(r: Any) -> SpoolRow:
    try:
        metres: float | None = round(core.length_for_grams(r.remaining_grams, r.diameter_mm, r.density_g_cm3) / 1000, 1)
    except core.SpoolError:
        metres = None
    return SpoolRow(
        id=r.id,
        code=r.code,
        filament_id=r.filament_id,
        filament=r.filament,
        vendor=r.vendor,
        material=r.material,
        colour_hex=r.colour_hex,
        diameter_mm=r.diameter_mm,
        initial_grams=r.initial_grams,
        remaining_grams=r.remaining_grams,
        empty_spool_grams=r.empty_spool_grams,
        lot=r.lot,
        location=r.location,
        printer_id=r.printer_id,
        printer_name=r.printer_name or '',
        archived=r.archived,
        remaining_m=metres,
    )
