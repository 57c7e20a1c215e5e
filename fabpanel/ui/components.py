"""Small pieces pages share: confirmation dialogs, downloads, empty states."""

from __future__ import annotations

from babel.numbers import format_decimal
from nicegui import ui
from nicegui.element import Element

from fabpanel.i18n import Translator


def hours_text(_: Translator, hours: float) -> str:
    """Hours in the reader's number format (1,234.5 h / 1.234,5 h)."""
    # one decimal, unless that would show a short plan (e.g. every 0.01 h) as 0.0
    pattern = '#,##0.0' if hours == 0 or abs(hours) >= 0.1 else '0.0##'
    return _('{hours} h').format(hours=format_decimal(hours, format=pattern, locale=_.lang))


def aria(element: Element, label: str) -> Element:
    """Name an icon-only control for screen readers, in the page's language (set as a prop value, so any
    text is safe: it is never parsed as a props string)."""
    element.props['aria-label'] = label
    return element


async def confirm(_: Translator, title: str, message: str, ok_label: str, danger: bool = True) -> bool:
    """Ask before a destructive action; the message says what will happen (e.g. the effect on hour counters)."""
    with ui.dialog() as dialog, ui.card().classes('max-w-md'):
        ui.label(title).classes('text-lg font-semibold')
        ui.label(message).classes('whitespace-pre-line wrap-anywhere')  # long member-typed names must not overflow
        with ui.row().classes('w-full justify-end gap-2'):
            ui.button(_('Cancel'), on_click=lambda: dialog.submit(False)).props('flat').mark('cancel')
            ui.button(ok_label, on_click=lambda: dialog.submit(True)).props(
                f'color={"negative" if danger else "primary"}').mark('confirm')
    result = await dialog
    dialog.delete()
    return bool(result)


def download_xlsx(data: bytes, name: str) -> None:
    ui.download.content(data, f'{name}.xlsx',
                        media_type='application/vnd.openxmlformats-officedocument.spreadsheetml.sheet')


def empty(text: str) -> None:
    ui.label(text).classes('text-slate-500 italic py-4')
