"""Spreadsheet exports (xlsx) of what a page shows, safe to open in any office suite."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from io import BytesIO
from typing import Any

from openpyxl import Workbook
from openpyxl.utils import get_column_letter

_FORMULA_START = ('=', '+', '-', '@', '\t', '\r')


def cell(value: Any) -> Any:
    """A value as a cell. Text that a spreadsheet would run as a formula (a member could type
    `=HYPERLINK(...)` as a name) is stored as plain text; times lose their zone (xlsx has none)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone().replace(tzinfo=None)
    return value


def xlsx(sheet: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    wb = Workbook(write_only=False)
    ws = wb.active
    ws.title = sheet[:31]
    ws.append([str(h) for h in headers])
    widths = [len(str(h)) for h in headers]
    for row in rows:
        values = [cell(v) for v in row]
        ws.append(values)
        for i, v in enumerate(values[:len(widths)]):
            widths[i] = max(widths[i], min(len(str(v)) if v is not None else 0, 60))
    for i, w in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = w + 2
    ws.freeze_panes = 'A2'
    out = BytesIO()
    wb.save(out)
    return out.getvalue()
