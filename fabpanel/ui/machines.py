"""The machines list (admins): search, pages, add a machine, deleted machines; plus what the admin pages of
machines, settings and authorizations share (the admin re-check, messages, pager, time formats)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi.responses import RedirectResponse
from nicegui import ui
from starlette.requests import Request

from fabpanel.core.remote import Refusal
from fabpanel.i18n import Translator
from fabpanel.services.auth import CurrentUser
from fabpanel.services.machines import MACHINE_ID_MAX, MachineRow, MachineService, Page, Refused, lcd_preview, parse_int

from .components import aria, empty, hours_text
from .layout import frame, nav_registered, page_language
from .machine_tile import status_labels
from .session import COOKIE, administers, page_user

if TYPE_CHECKING:
    from fabpanel.app import Panel

Actor = Callable[[], Awaitable[CurrentUser | None]]


# ---- shared by the admin pages ------------------------------------------------------------------------------------
def admin_actor(panel: Panel, request: Request, _: Translator) -> Actor:
    """Who is acting, checked again on the server for every action (a role may have changed since the page
    loaded; a handler must never be reachable by someone the page would refuse)."""
    token = request.cookies.get(COOKIE)

    async def actor() -> CurrentUser | None:
        user = await panel.auth.session_user(token)
        if user is None or user.must_change_password or not user.may_administer:
            ui.notify(_('Your session ended or your role no longer allows this: reload the page.'), type='negative')
            return None
        return user

    return actor


def refusal_text(_: Translator, e: Refused) -> str:
    info: dict[str, Any] = {'max': '', 'id': '', 'name': '', 'members': 0, 'machines': 0, 'deleted': 0, **e.info}
    texts = {
        'forbidden': _('Your role does not allow this.'),
        'name_required': _('Enter a name.'),
        'name_too_long': _('At most {max} characters.'),
        'bad_machine_id': _('The machine number is a whole number from 1 to {max}: the one set on its board.'),
        'machine_id_taken': _('Number {id} is already the machine "{name}".'),
        'machine_deleted': _('Number {id} belongs to the deleted machine "{name}": restore that one instead '
                             '(Show deleted machines).'),
        'machine_unknown': _('This machine does not exist or was deleted.'),
        'type_required': _('Choose a machine type.'),
        'type_unknown': _('This machine type was deleted meanwhile: reload the page.'),
        'role_unknown': _('This role was deleted meanwhile: reload the page.'),
        'name_taken': _('This name is already used.'),
        'default_needed': _('New members get the default role, so there is always one: make another role the '
                            'default instead.'),
        'last_admin': _('Nobody could administer the panel any more: at least one active member with a password '
                        'must keep a role that may administer.'),
        'role_default': _('New members get the default role: make another role the default before deleting this '
                          'one.'),
        'role_in_use': _('Members with this role: {members} (and {deleted} deleted). Move them to another role '
                         'first.'),
        'type_in_use': _('Machines of this type: {machines} (and {deleted} deleted). Move them to another type '
                         'first.'),
        'reassign_unknown': _('Choose where to move them.'),
        'bad_minutes': _('A whole number of minutes from 0 to {max}.'),
        'no_gateway': _('The board connection is not running: the command cannot be sent.'),
        'not_sent': _('The broker cannot be reached: the command was not sent. Try again.'),
        'choose_members': _('Choose at least one member.'),
        'choose_machines': _('Choose at least one machine.'),
        'member_unknown': _('A chosen member was deleted meanwhile: reload the page.'),
        'bad_date': _('Enter a date as YYYY-MM-DD.'),
        'expiry_past': _('This day is over: choose today or a later day.'),
        'authorization_unknown': _('This authorization was removed meanwhile.'),
    }
    return texts.get(e.code, _('This change was refused ({code}).')).format(code=e.code, **info)


def remote_text(_: Translator, code: Refusal) -> str:
    return {
        Refusal.NOT_ADMIN: _('Your role does not allow this.'),
        Refusal.BAD_COMMAND: _('Unknown command.'),
        Refusal.UNKNOWN_MACHINE: _('This machine does not exist or was deleted.'),
        Refusal.OFFLINE: _('The board of this machine was not heard in the last 90 seconds: a command would not '
                           'reach it.'),
        Refusal.MEMBER_INACTIVE: _('Your account is disabled.'),
        Refusal.NO_CARD: _('You have no card a board can read. A remote start works like tapping your own card: '
                           'enrol a card for yourself first.'),
        Refusal.CHOOSE_CARD: _('Choose which of your cards the board should see.'),
        Refusal.NOT_YOUR_CARD: _('That card is not yours.'),
    }[code]


def when(dt: datetime | None) -> str:
    return dt.astimezone().strftime('%d/%m/%Y %H:%M') if dt is not None else '—'


def duration(seconds: float | None) -> str:
    if seconds is None:
        return '—'
    minutes = int(round(seconds / 60))
    return f'{minutes // 60}:{minutes % 60:02d}'


def error_label() -> ui.label:
    """The message next to a form field (empty until a value is refused)."""
    return ui.label().classes('text-sm text-red-700').props('role=alert')


def pager(_: Translator, page: Page[Any], go: Callable[[int], Any], marker: str = 'pager') -> None:
    if page.pages <= 1:
        return
    with ui.row().classes('items-center gap-2'):
        prev = aria(ui.button(icon='chevron_left', on_click=lambda: go(page.page - 1)).props(
            'flat round dense').mark(f'{marker}-prev'), _('Previous page'))
        prev.set_enabled(page.page > 0)
        ui.label(_('Page {page} of {pages}').format(page=page.page + 1, pages=page.pages)).classes('text-sm')
        nxt = aria(ui.button(icon='chevron_right', on_click=lambda: go(page.page + 1)).props(
            'flat round dense').mark(f'{marker}-next'), _('Next page'))
        nxt.set_enabled(page.page + 1 < page.pages)


def machine_service(panel: Panel) -> MachineService:
    return MachineService(panel.engine, panel.boards, panel.live, lambda: panel.gateway)


# ---- the machine form -------------------------------------------------------------------------------------------
async def machine_dialog(_: Translator, machines: MachineService, actor: Actor, types: list[tuple[int, str]],
                         machine_id: int | None = None) -> int | None:
    """Add a machine: its board's number, a name, a type. Returns the new machine's id, None when cancelled."""
    with ui.dialog() as dialog, ui.card().classes('w-full max-w-md'):
        ui.label(_('Add a machine')).classes('text-lg font-semibold')
        number = ui.input(_('Machine number (as set on its board, 1 to {max})').format(max=MACHINE_ID_MAX),
                          value=str(machine_id or '')).props('inputmode=numeric').classes('w-full').mark('machine-id')
        number_error = error_label()
        name = name_input(_)
        name_error = error_label()
        kind = ui.select(dict(types), label=_('Machine type')).classes('w-full').mark('machine-type')
        kind_error = error_label()
        blocked = ui.checkbox(_('Blocked (nobody can start it yet)')).mark('machine-blocked')

        async def save() -> None:
            if (user := await actor()) is None:
                return
            for label in (number_error, name_error, kind_error):
                label.text = ''
            try:
                new_id = parse_int(number.value)
                if new_id is None:
                    raise Refused('bad_machine_id', 'id', max=MACHINE_ID_MAX)
                await machines.create(user, new_id, name.value or '', kind.value, blocked=bool(blocked.value))
            except Refused as e:
                target = {'id': number_error, 'type': kind_error}.get(e.field, name_error)
                target.text = refusal_text(_, e)
                return
            dialog.submit(new_id)

        with ui.row().classes('w-full justify-end gap-2'):
            ui.button(_('Cancel'), on_click=lambda: dialog.submit(None)).props('flat').mark('cancel')
            ui.button(_('Add the machine'), on_click=save).mark('save-new-machine')
    result = await dialog
    dialog.delete()
    return result


def name_input(_: Translator, value: str = '') -> ui.input:
    """A machine name with a live hint of what the board's 16-character display will show."""
    field = ui.input(_('Name'), value=value).props('maxlength=80 counter').classes('w-full').mark('machine-name')
    hint = ui.label().classes('text-sm text-amber-800').mark('lcd-hint')

    def show(text: str | None) -> str:
        cut = lcd_preview(text or '')
        return _('The board display shows only 16 characters: "{shown}"').format(shown=cut) if cut else ''

    hint.bind_text_from(field, 'value', backward=show)
    hint.bind_visibility_from(field, 'value', backward=lambda v: lcd_preview(v or '') is not None)
    return field


# ---- the list ---------------------------------------------------------------------------------------------------
def _machine_row(panel: Panel, m: MachineRow, _: Translator) -> None:
    live = panel.live.machines.get(m.id)
    labels = status_labels(_)
    with ui.link(target=f'/machines/{m.id}').classes(
            'w-full no-underline text-inherit rounded-lg bg-white shadow-sm px-3 py-2 hover:bg-slate-50').props(
            f'data-machine-row={m.id}'):
        with ui.row().classes('w-full items-center gap-x-4 gap-y-1 no-wrap'):
            ui.label(f'#{m.id}').classes('text-slate-500 tabular-nums w-14 shrink-0')
            with ui.column().classes('gap-0 min-w-0 grow'):
                ui.label(m.name).classes('font-semibold [overflow-wrap:anywhere] min-w-0')
                ui.label(m.type_name).classes('text-sm text-slate-500 [overflow-wrap:anywhere] min-w-0')
            with ui.column().classes('gap-0 items-end shrink-0'):
                if m.deleted_at is not None:
                    ui.label(_('Deleted {when}').format(when=when(m.deleted_at))).classes('text-sm text-red-700')
                elif live is not None:
                    ui.label(labels.get(live.status, live.status)).classes('text-sm font-medium')
                ui.label(hours_text(_, m.hours)).classes('text-sm text-slate-500 tabular-nums')


def register(panel: Panel) -> None:
    nav_registered('/machines')
    machines = machine_service(panel)

    @ui.page('/machines')
    async def machines_page(request: Request, q: str = '') -> RedirectResponse | None:
        user = await page_user(request, panel.auth, administers)
        if isinstance(user, RedirectResponse):
            return user
        _ = page_language(request, user)
        actor = admin_actor(panel, request, _)
        state = {'page': 0, 'deleted': False}

        def unknown_boards() -> None:
            heard = sorted(i for i in panel.live.unknown_boards if i not in panel.live.machines)
            if not heard:
                return
            with ui.card().classes('w-full bg-amber-50'):
                ui.label(_('Boards heard from that have no machine here yet:')).classes('font-medium')
                with ui.row().classes('gap-2'):
                    for machine_id in heard[:20]:
                        ui.button(_('Add machine {id}').format(id=machine_id), icon='add',
                                  on_click=lambda i=machine_id: add(i)).props('outline dense').mark(
                            f'add-unknown-{machine_id}')

        @ui.refreshable
        async def listing() -> None:
            page = await machines.list(search.value or '', state['page'], deleted=state['deleted'])
            state['page'] = page.page
            if not page.rows:
                empty(_('No machine matches.') if search.value else _('No machines yet.'))
            with ui.column().classes('w-full gap-2'):
                for m in page.rows:
                    _machine_row(panel, m, _)
            pager(_, page, go)

        async def go(number: int) -> None:
            state['page'] = number
            await listing.refresh()

        async def filter_changed() -> None:
            state['page'] = 0
            state['deleted'] = bool(deleted.value)
            await listing.refresh()

        async def add(machine_id: int | None = None) -> None:
            if await actor() is None:
                return
            new_id = await machine_dialog(_, machines, actor, await machines.types(), machine_id)
            if new_id is not None:
                ui.notify(_('Machine {id} added.').format(id=new_id), type='positive')
                ui.navigate.to(f'/machines/{new_id}')

        with frame(_('Machines'), _, path='/machines', user=user):
            with ui.row().classes('w-full items-center gap-3'):
                search = ui.input(_('Search by name, type or number'), value=q[:80]).props(
                    'clearable debounce=300 type=search').classes('grow min-w-[12rem]').mark('search')
                deleted = ui.switch(_('Show deleted machines')).mark('show-deleted')
                ui.button(_('Add a machine'), icon='add', on_click=lambda: add()).mark('add-machine')
            unknown_boards()
            await listing()

        search.on_value_change(filter_changed)
        deleted.on_value_change(filter_changed)
        return None

    from .machine_detail import register as register_detail

    register_detail(panel, machines)
