"""The system page (/system, admins only): gateway health and boards bound live, the database, the process and
the recent log lines (personal data masked by fabpanel.logbuffer)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi.responses import RedirectResponse
from nicegui import context, ui
from starlette.requests import Request

from fabpanel import logbuffer
from fabpanel.i18n import N_, Translator
from fabpanel.live.state import GatewayHealth, LiveState
from fabpanel.services import system
from fabpanel.services.system import BoardRow

from .components import empty
from .layout import frame, nav_registered, page_language
from .session import COOKIE, administers, page_user

if TYPE_CHECKING:
    from fabpanel.app import Panel

LOG_REFRESH_S = 5.0
LOG_SHOWN = 300
LEVELS = {logging.NOTSET: N_('All levels'), logging.INFO: N_('Info and above'),
          logging.WARNING: N_('Warnings and errors'), logging.ERROR: N_('Errors only')}
LEVEL_CLASSES = {logging.WARNING: 'text-amber-800', logging.ERROR: 'text-red-700 font-semibold'}
ROW_LABELS = {'member': N_('Members'), 'card': N_('Cards'), 'machine': N_('Machines'),
              'authorization': N_('Authorizations'), 'use': N_('Uses'), 'intervention': N_('Interventions'),
              'unknown_card': N_('Unknown cards'), 'board': N_('Boards'), 'login_session': N_('Sessions')}
Check = Callable[[], Awaitable[bool]]


def moment(dt: datetime | None) -> str:
    return dt.astimezone().strftime('%d/%m/%Y %H:%M:%S') if dt else '—'


def size(n: int | None) -> str:
    if n is None:
        return '—'
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if n < 1024 or unit == 'GiB':
            return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
        n /= 1024  # type: ignore[assignment]
    return ''  # pragma: no cover


def uptime(seconds: float, _: Translator) -> str:
    minutes = int(seconds // 60)
    days, hours = minutes // 1440, minutes // 60 % 24
    if days:
        return _('{days} d {hours} h').format(days=days, hours=hours)
    return _('{hours} h {minutes} min').format(hours=hours, minutes=minutes % 60)


def section(title: str, marker: str) -> ui.card:
    card = ui.card().classes('w-full gap-3 min-w-0').props(f'data-testid={marker}').mark(marker)
    with card:
        ui.label(title).classes('text-lg font-semibold text-slate-800')
    return card


def fields() -> ui.element:
    return ui.element('div').classes('grid grid-cols-2 sm:grid-cols-4 gap-x-4 gap-y-2 w-full')


def field(label: str, marker: str = '') -> ui.label:
    """A small caption over a value; returns the value's label (to set or bind)."""
    with ui.column().classes('gap-0 min-w-0'):
        ui.label(label).classes('text-xs text-slate-500')
        value = ui.label().classes('font-medium break-words min-w-0')
        if marker:
            value.mark(marker)
    return value


# ---- gateway ---------------------------------------------------------------------------------------------------
def gateway_section(g: GatewayHealth, running: bool, _: Translator) -> None:
    with section(_('Board gateway'), 'gateway'):
        if not running:
            ui.label(_('The board gateway is not running in this process.')).classes('text-amber-800')
        with fields():
            field(_('Connection'), 'gateway-connected').bind_text_from(
                g, 'connected', backward=lambda c: _('Connected') if c else _('Not connected'))
            field(_('Broker')).bind_text_from(g, 'broker')
            for key, label in (('received', _('Received')), ('processed', _('Processed')), ('replied', _('Replied')),
                               ('malformed', _('Malformed')), ('errors', _('Errors')), ('late', _('Too late')),
                               ('waited', _('Waited at the broker')), ('backlog', _('Backlog'))):
                field(label, f'gateway-{key}').bind_text_from(g, key, backward=str)
            field(_('Last processed')).bind_text_from(g, 'last_processed_at', backward=moment)
        with ui.row().classes('items-start gap-1 text-red-700 min-w-0 no-wrap').bind_visibility_from(
                g, 'last_error', backward=bool):
            ui.icon('error')
            # an error text can carry anything the broker library put in it: masked like the log
            ui.label().bind_text_from(g, 'last_error', backward=logbuffer.mask_private).classes('break-all min-w-0')


# ---- boards ----------------------------------------------------------------------------------------------------
BOARD_GRID = 'grid grid-cols-2 md:grid-cols-6 gap-x-4 gap-y-1 w-full py-2 border-b border-slate-200'


def boards_table(rows: list[BoardRow], _: Translator) -> None:
    """A table on wide screens; on phones each board becomes a small card of captioned fields."""
    if not rows:
        empty(_('No board has announced itself yet.'))
        return
    titles = (_('Machine'), _('Serial'), _('IP address'), _('Firmware'), _('Free heap'), _('Last seen'))
    with ui.element('div').classes(BOARD_GRID + ' max-md:hidden'):  # Quasar's .hidden would beat md:grid
        for title in titles:
            ui.label(title).classes('text-sm font-semibold text-slate-600')
    for r in rows:
        with ui.element('div').classes(BOARD_GRID + ' text-sm').props(f'data-board={r.machine_id}').mark(
                f'board-{r.machine_id}'):
            with ui.column().classes('gap-0 min-w-0 col-span-2 md:col-span-1'):
                ui.label(r.machine_name or _('(deleted machine)')).classes('font-medium break-words')
                ui.label(f'#{r.machine_id}').classes('text-xs text-slate-500')
            for title, key, backward in ((titles[1], 'serial', str), (titles[2], 'ip', str),
                                         (titles[3], 'firmware', str), (titles[4], 'heap', size),
                                         (titles[5], 'last_seen', moment)):
                with ui.column().classes('gap-0 min-w-0'):
                    ui.label(title).classes('text-xs text-slate-500 md:hidden')
                    ui.label().bind_text_from(r.info, key, backward=backward).classes('break-all')


def unknown_list(items: list[tuple[int, datetime]], _: Translator) -> None:
    if not items:
        return
    ui.label(_('Boards with a machine id the panel does not know')).classes('font-semibold text-amber-800')
    ui.label(_('Add a machine with this id to let the board work.')).classes('text-sm text-slate-600')
    for machine_id, at in items:
        with ui.row().classes('items-center gap-2 text-sm').mark(f'unknown-board-{machine_id}'):
            ui.icon('help').classes('text-amber-700')
            ui.label(_('Machine id {id}').format(id=machine_id)).classes('font-medium')
            ui.label(_('last heard {time}').format(time=moment(at))).classes('text-slate-500')


def boards_section(live: LiveState, _: Translator) -> Callable[[], None]:
    """Returns a function that rebuilds the lists when the set of boards changed (cheap to call often)."""
    shown: dict[str, Any] = {}

    @ui.refreshable
    def boards() -> None:
        rows = system.board_rows(live)
        unknown = system.unknown_boards(live)
        shown.update(ids=[(r.machine_id, id(r.info), r.machine_name) for r in rows], unknown=unknown)
        boards_table(rows, _)
        unknown_list(unknown, _)

    def check(*_args: object) -> None:
        rows = system.board_rows(live)
        if ([(r.machine_id, id(r.info), r.machine_name) for r in rows] != shown.get('ids')
                or system.unknown_boards(live) != shown.get('unknown')):
            boards.refresh()

    with section(_('Boards'), 'boards'):
        boards()
    # fields of known boards are bound; a new board, a reload (new objects) or a rename rebuilds the table
    for event in (live.events.board_seen, live.events.machines_reloaded):
        event.subscribe(check)
        context.client.on_delete(lambda event=event: event.unsubscribe(check))
    return check


# ---- database and process --------------------------------------------------------------------------------------
async def database_section(panel: Panel, allowed: Check, _: Translator) -> None:
    @ui.refreshable
    async def facts() -> None:
        db = await system.database_info(panel.engine, panel.settings.database.url)
        proc = system.process_info()
        with fields():
            field(_('Database')).text = db.backend
            field(_('Database size'), 'db-size').text = size(db.size_bytes)
        ui.label(_('Rows')).classes('text-sm font-semibold text-slate-600')
        with fields():
            for table, count in db.rows.items():
                field(_(ROW_LABELS.get(table, table)), f'rows-{table}').text = str(count)
        ui.label(_('Process')).classes('text-sm font-semibold text-slate-600')
        with fields():
            field(_('Uptime')).text = uptime(proc.uptime_s, _)
            field(_('Memory (RSS)'), 'rss').text = size(proc.rss_bytes)
            field(_('Python')).text = proc.python
            field(_('NiceGUI')).text = proc.nicegui

    async def refresh() -> None:
        if await allowed():
            await facts.refresh()

    with section(_('Database and process'), 'database'):
        await facts()
        ui.button(_('Refresh'), icon='refresh', on_click=refresh).props(
            'flat data-testid=refresh-database').mark('refresh-database')


# ---- log lines ---------------------------------------------------------------------------------------------------
def log_section(allowed: Check, _: Translator) -> Callable[[], None]:
    """Shows the buffered lines; returns a function that adds the lines logged since (cheap when none)."""
    buffer = logbuffer.installed()
    state = {'level': logging.NOTSET, 'seq': 0}
    with section(_('Recent log lines'), 'log'):
        if buffer is None:
            ui.label(_('This process does not collect log lines (it was not started from the command line).'))
            return lambda: None

        async def level_chosen(e: Any) -> None:
            if await allowed():
                lines.clear()
                state['level'], state['seq'] = e.value or logging.NOTSET, 0
                show()

        ui.radio({k: _(v) for k, v in LEVELS.items()}, value=logging.NOTSET, on_change=level_chosen).props(
            'inline data-testid=log-level').mark('log-level')
        lines = ui.log(max_lines=LOG_SHOWN).classes('w-full h-80 text-xs').props('data-testid=log-lines').mark(
            'log-lines')

    def show() -> None:
        if buffer.last_seq == state['seq']:
            return
        new = buffer.lines(after=state['seq'])  # other threads may log meanwhile: continue from what was read
        if not new:
            return
        state['seq'] = new[-1].seq
        for line in [line for line in new if line.levelno >= state['level']][-LOG_SHOWN:]:
            lines.push(line.text, classes=f'whitespace-pre-wrap break-words {LEVEL_CLASSES.get(line.levelno, "")}')

    show()
    return show


def register(panel: Panel) -> None:
    nav_registered('/system')

    @ui.page('/system')
    async def system_page(request: Request) -> RedirectResponse | None:
        user = await page_user(request, panel.auth, administers)
        if isinstance(user, RedirectResponse):
            return user
        _ = page_language(request, user)

        async def still_admin() -> bool:
            again = await panel.auth.session_user(request.cookies.get(COOKIE))
            return again is not None and administers(again)

        with frame(_('System'), _, path='/system', user=user):
            gateway_section(panel.live.gateway, panel.gateway is not None, _)
            check_boards = boards_section(panel.live, _)
            await database_section(panel, still_admin, _)
            more_lines = log_section(still_admin, _)

        async def tick() -> None:
            if not await still_admin():  # the role was taken away or the session ended: show nothing more
                timer.deactivate()
                ui.navigate.to('/forbidden')
                return
            check_boards()  # also picks up boards with unknown machine ids, which no event announces
            more_lines()

        timer = ui.timer(LOG_REFRESH_S, tick)  # a slow refresh, only while this page is open
        return None
