"""The printers page (/printers): a live tile per printer for anyone signed in; admins add, edit and delete
printers (a dialog, see printer_form.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi.responses import RedirectResponse
from nicegui import context, ui
from starlette.requests import Request

from fabpanel.i18n import Translator
from fabpanel.live.printers import PrinterLive
from fabpanel.services.machines import Refused

from .components import aria, confirm, empty
from .dashboard import add_section
from .layout import frame, nav_registered, page_language
from .printer_form import Actor, PrinterDialog, printer_refusal, user_actor
from .printer_tile import TILE_CSS, dashboard_section, hub_of
from .session import page_user

if TYPE_CHECKING:
    from fabpanel.app import Panel
    from fabpanel.services.printers import PrinterService

__all__ = ['hub_of', 'register']  # hub_of: the panel's tile hub, for other pages that show printer tiles


# ---- the list ---------------------------------------------------------------------------------------------------
async def _delete(
    _: Translator, printers: PrinterService, actor: Actor, live: PrinterLive | None, printer_id: int
) -> None:
    name = live.name if live else str(printer_id)
    if await actor() is None or not await confirm(
        _,
        _('Delete {name}?').format(name=name),
        _('The fleet disconnects from it and it leaves this page. Its job history is kept.'),
        _('Delete'),
    ):
        return
    if (admin := await actor()) is None:
        return
    try:
        await printers.delete(admin, printer_id)
    except Refused as e:
        ui.notify(printer_refusal(_, e), type='negative', multi_line=True)
        return
    ui.notify(_('Printer deleted.'), type='positive')


def register(panel: Panel) -> None:
    nav_registered('/printers')
    hub = hub_of(panel)
    add_section(panel.live, dashboard_section(panel.live, hub))  # the printers on this panel's dashboard and kiosk

    @ui.page('/printers')
    async def printers_page(request: Request) -> RedirectResponse | None:
        user = await page_user(request, panel.auth)
        if isinstance(user, RedirectResponse):
            return user
        _ = page_language(request, user)
        printers: PrinterService = panel.printers
        actor = user_actor(panel, request, _, lambda u: u.may_administer)
        ui.add_css(TILE_CSS)

        @ui.refreshable
        def tiles() -> None:
            if not panel.live.printers:
                empty(_('No printers yet.'))
                return
            with ui.element('div').classes('fp-grid w-full'):
                for p in sorted(panel.live.printers.values(), key=lambda p: p.name.lower()):
                    card = hub.tile(p, _)
                    if user.may_administer:
                        with card, ui.row().classes('w-full justify-end gap-1'):
                            aria(
                                ui.button(icon='edit', on_click=lambda i=p.id: edit(i))
                                .props('flat round dense')
                                .mark(f'edit-printer-{p.id}'),
                                _('Edit'),
                            )
                            aria(
                                ui.button(icon='delete', on_click=lambda i=p.id: delete(i))
                                .props('flat round dense color=negative')
                                .mark(f'delete-printer-{p.id}'),
                                _('Delete'),
                            )

        # dialogs and messages live outside the grid: a reload of the grid (any admin's change, here or elsewhere)
        # must not delete a dialog someone is filling in, nor the place a message is shown from
        async def add() -> None:
            with anchor:
                if await actor() is None:
                    return
                if await PrinterDialog(_, printers, actor, None).run() is not None:
                    ui.notify(_('Printer added.'), type='positive')

        async def edit(printer_id: int) -> None:
            with anchor:
                if await actor() is None:
                    return
                row = await printers.get(printer_id)
                if row is None:
                    ui.notify(_('This printer does not exist or was deleted.'), type='negative')
                elif await PrinterDialog(_, printers, actor, row).run() is not None:
                    ui.notify(_('Saved.'), type='positive')

        async def delete(printer_id: int) -> None:
            with anchor:
                await _delete(_, printers, actor, panel.live.printers.get(printer_id), printer_id)

        with frame(_('Printers'), _, path='/printers', user=user):
            # holds the add button and, outside the grid, the dialogs (members have neither)
            anchor = ui.row().classes('w-full items-center gap-2')
            anchor.visible = user.may_administer
            with anchor:
                ui.button(_('Add a printer'), icon='add', on_click=add).mark('add-printer')
            tiles()

        def reloaded(_none: None) -> None:
            tiles.refresh()

        # printers added, edited or removed (here or elsewhere): rebuild this browser's grid while it exists
        panel.live.events.printers_reloaded.subscribe(reloaded)
        context.client.on_delete(lambda: panel.live.events.printers_reloaded.unsubscribe(reloaded))
        return None

    from .printer_detail import register as register_detail

    register_detail(panel, hub)
