"""Printable spool labels: a QR code of the spool's scan URL beside the filament's name, colour and lot.
Every text on the label is escaped: names and lots are typed by people and must stay text."""

from __future__ import annotations

import io
from urllib.parse import quote
from xml.sax.saxutils import escape

import segno

from fabpanel.services.spool_forms import COLOUR, SpoolRow

LABEL_W, LABEL_H = 62.0, 29.0  # mm: 62 mm continuous tape, the common label-printer width
QUIET = 2  # modules of white around the QR code (the label edge adds more)
FONT = 'DejaVu Sans, Arial, Helvetica, sans-serif'


def scan_url(base_url: str, code: str) -> str:
    return f'{base_url.rstrip("/")}/spools/scan/{quote(code, safe="")}'


def qr_path(data: str) -> tuple[str, int]:
    """The QR code as one SVG path of unit squares and its size in modules (quiet zone included)."""
    qr = segno.make(data, error='m', micro=False)
    parts = []
    size = 0
    for y, row in enumerate(qr.matrix_iter(scale=1, border=QUIET)):
        size = max(size, len(row))
        x = 0
        while x < len(row):  # one rectangle per run of dark modules keeps the path short
            if row[x]:
                start = x
                while x < len(row) and row[x]:
                    x += 1
                parts.append(f'M{start} {y}h{x - start}v1h{start - x}z')
            else:
                x += 1
    return ''.join(parts), size


def label_lines(spool: SpoolRow) -> list[str]:
    lines = [f'{spool.vendor} {spool.filament}'.strip(), f'{spool.material} {spool.diameter_mm:g} mm']
    if spool.lot:
        lines.append(f'Lot {spool.lot}')
    lines.append(f'{spool.initial_grams:g} g  #{spool.code}')
    return lines


def label_svg(spool: SpoolRow, url: str) -> str:
    path, modules = qr_path(url)
    side = LABEL_H  # the code fills the label's height
    x0 = side + 1.5
    text = []
    for i, line in enumerate(label_lines(spool)):
        size = 4.2 if i == 0 else 3.2
        y = 6.0 + i * 5.6
        weight = ' font-weight="bold"' if i == 0 else ''
        text.append(
            f'<text x="{x0}" y="{y}" font-size="{size}" font-family="{FONT}"{weight}>{escape(line[:40])}</text>'
        )
    swatch = ''
    if COLOUR.fullmatch(spool.colour_hex or ''):  # checked again here: only a validated colour reaches markup
        swatch = (
            f'<rect x="{LABEL_W - 7}" y="{LABEL_H - 7}" width="5" height="5" fill="{spool.colour_hex}" '
            f'stroke="#000" stroke-width="0.2"/>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{LABEL_W}mm" height="{LABEL_H}mm" '
        f'viewBox="0 0 {LABEL_W} {LABEL_H}">'
        f'<rect width="{LABEL_W}" height="{LABEL_H}" fill="#fff"/>'
        f'<svg x="0" y="0" width="{side}" height="{side}" viewBox="0 0 {modules} {modules}" '
        f'shape-rendering="crispEdges"><path d="{path}" fill="#000"/></svg>'
        f'{"".join(text)}{swatch}</svg>'
    )


def label_png(url: str, scale: int = 8) -> bytes:
    """The QR code alone as PNG (no font rasteriser here: the SVG label carries the text)."""
    buf = io.BytesIO()
    segno.make(url, error='m', micro=False).save(buf, kind='png', scale=scale, border=QUIET + 2)
    return buf.getvalue()
