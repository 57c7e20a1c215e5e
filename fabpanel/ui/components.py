"""Small pieces pages share: confirmation dialogs, downloads, empty states."""

from __future__ import annotations

from nicegui import ui

from fabpanel.i18n import Translator


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
