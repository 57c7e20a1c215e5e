"""One machine (admins): live status and hour counter, remote start / stop, edit, block, delete or restore,
its board, maintenance plans, authorized members and recent uses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi.responses import RedirectResponse
from nicegui import ui
from starlette.requests import Request

from fabpanel.core.remote import Refusal, RemoteRefused
from fabpanel.i18n import Translator
from fabpanel.live.state import BoardInfo, MachineLive
from fabpanel.services.machines import CardChoice, MachineRow, MachineService, Refused

from .components import confirm, empty, hours_text
from .layout import frame, page_language
from .machine_tile import since_text, status_labels
from .machines import (
    Actor,
    admin_actor,
    duration,
    error_label,
    name_input,
    pager,
    refusal_text,
    remote_text,
    when,
)
from .session import administers, page_user

if TYPE_CHECKING:
    from fabpanel.app import Panel

SECTION = 'text-base font-semibold text-slate-700'
WRAP = '[overflow-wrap:anywhere]'  # long words wrap instead of widening a phone's page
Handler = Callable[[], Awaitable[None]]


async def choose_card(_: Translator, cards: list[CardChoice]) -> str | None:
    with ui.dialog() as dialog, ui.card().classes('max-w-md'):
        ui.label(_('Which of your cards should the board see?')).classes('text-lg font-semibold')
        choice = ui.radio({c.uid: c.label for c in cards}, value=cards[0].uid).mark('card-choice')
        with ui.row().classes('w-full justify-end gap-2'):
            ui.button(_('Cancel'), on_click=lambda: dialog.submit(None)).props('flat').mark('cancel')
            ui.button(_('Use this card'), on_click=lambda: dialog.submit(choice.value)).mark('use-card')
    result = await dialog
    dialog.delete()
    return result


def _now_card(_: Translator, m: MachineLive, send: Handler, stop: Handler, block: Handler, unblock: Handler) -> None:
    labels = status_labels(_)
    with ui.card().classes('w-full'):
        ui.label(_('Now')).classes(SECTION)
        with ui.row().classes('items-center gap-3'):
            ui.label().bind_text_from(m, 'status', backward=lambda s: labels.get(s, s)).classes(
                'text-lg font-semibold').mark('live-status')
            with ui.row().classes('items-center gap-1').bind_visibility_from(m, 'user_first_name', backward=bool):
                ui.icon('person')
                ui.label().bind_text_from(m, 'user_first_name').classes('[overflow-wrap:anywhere]').mark('live-user')
                ui.label().bind_text_from(m, 'in_use_since', backward=lambda s: since_text(s, _)).classes(
                    'text-sm text-slate-500')
        ui.label().bind_text_from(m, 'online', backward=lambda on: _('Board online') if on else _(
            'Board offline: not heard in the last 90 seconds')).classes('text-sm text-slate-600').mark('board-online')
        with ui.row().classes('items-baseline gap-2'):
            ui.label(_('Hour counter')).classes('text-sm text-slate-500')
            ui.label().bind_text_from(m, 'usage_hours', backward=lambda h: hours_text(_, h)).classes(
                'text-2xl font-semibold tabular-nums').mark('hour-counter')
        with ui.row().classes('gap-2'):
            ui.button(_('Remote start'), icon='play_arrow', on_click=send).bind_enabled_from(m, 'online').mark(
                'remote-start')
            ui.button(_('Remote stop'), icon='stop', on_click=stop).props('color=negative outline').bind_enabled_from(
                m, 'online').mark('remote-stop')
            ui.button(_('Block'), icon='block', on_click=block).props('outline').bind_visibility_from(
                m, 'blocked', backward=lambda b: not b).mark('block')
            ui.button(_('Unblock'), icon='lock_open', on_click=unblock).props('outline').bind_visibility_from(
                m, 'blocked').mark('unblock')


def _board_card(_: Translator, board: BoardInfo | None) -> None:
    with ui.card().classes('w-full'):
        ui.label(_('Board')).classes(SECTION)
        if board is None:
            empty(_('No board has announced itself for this machine yet.'))
            return
        for label, attr, fmt in ((_('Serial'), 'serial', str), (_('IP address'), 'ip', str),
                                 (_('Firmware'), 'firmware', str), (_('Free memory'), 'heap', lambda h: f'{h:,} B'),
                                 (_('Last seen'), 'last_seen', when)):
            with ui.row().classes('w-full gap-2 no-wrap'):
                ui.label(label).classes('text-sm text-slate-500 w-28 shrink-0')
                ui.label().bind_text_from(board, attr, backward=fmt).classes('text-sm break-all min-w-0').mark(
                    f'board-{attr}')


async def _plans_card(_: Translator, machines: MachineService, machine_id: int) -> None:
    plans = await machines.plans(machine_id)
    with ui.card().classes('w-full'):
        ui.label(_('Maintenance plans')).classes(SECTION)
        if not plans:
            empty(_('No maintenance plans.'))
        for p in plans:
            with ui.row().classes('w-full items-baseline justify-between gap-2'):
                ui.label(p.description).classes('[overflow-wrap:anywhere] min-w-0')
                status = (_('Due now') if p.due else _('{hours} left').format(hours=hours_text(_, p.hours_left)))
                ui.label(_('every {hours}').format(hours=hours_text(_, p.hours_between)) + ' · ' + status).classes(
                    'text-sm ' + ('text-amber-800 font-semibold' if p.due else 'text-slate-500'))
        ui.link(_('Plans and interventions'), '/maintenance').classes('text-sm')


async def _authorized_card(_: Translator, panel: Panel, machines: MachineService, machine_id: int) -> None:
    summary = await machines.authorized(machine_id)
    rule = panel.boards.rules.machines.get(machine_id)
    with ui.card().classes('w-full'):
        ui.label(_('Authorized members')).classes(SECTION)
        if rule is not None and not rule.authorization_required:
            ui.label(_('Its machine type needs no authorization: every active member with a card may use it.')
                     ).classes('text-sm text-slate-600')
        ui.label(_('Authorized members: {count}').format(count=summary.total)).mark('authorized-count')
        if summary.names:
            ui.label(', '.join(summary.names) + (' …' if summary.total > len(summary.names) else '')).classes(
                'text-sm text-slate-600 [overflow-wrap:anywhere]')
        ui.link(_('Manage authorizations'), f'/authorizations?machine={machine_id}').classes('text-sm')


async def _uses_card(_: Translator, machines: MachineService, machine_id: int) -> None:
    state = {'page': 0}

    @ui.refreshable
    async def uses() -> None:
        page = await machines.uses(machine_id, state['page'])
        state['page'] = page.page
        if not page.rows:
            empty(_('Not used yet.'))
        for u in page.rows:
            with ui.row().classes('w-full items-baseline gap-x-4 gap-y-0 border-b border-slate-100 py-1').mark('use'):
                ui.label(when(u.start)).classes('text-sm tabular-nums')
                ui.label(duration(u.duration_s) if u.end is not None else _('in progress')).classes(
                    'text-sm tabular-nums w-16')
                ui.label(u.member_name or _('unknown card')).classes('text-sm [overflow-wrap:anywhere] min-w-0 grow')
                if u.unauthorized:
                    ui.label(_('without authorization')).classes('text-sm text-red-700 font-semibold')
                if u.replay:
                    ui.label(_('sent late by the board')).classes('text-sm text-slate-500')
        pager(_, page, go, marker='uses')

    async def go(number: int) -> None:
        state['page'] = number
        await uses.refresh()

    with ui.card().classes('w-full'):
        ui.label(_('Recent uses')).classes(SECTION)
        await uses()


def _details_card(_: Translator, row: MachineRow, types: list[tuple[int, str]], save: Handler, delete: Handler
                  ) -> tuple[ui.input, ui.select, ui.label, ui.label]:
    with ui.card().classes('w-full'):
        ui.label(_('Details')).classes(SECTION)
        name = name_input(_, row.name)
        name_error = error_label()
        kind = ui.select(dict(types), value=row.type_id, label=_('Machine type')).classes('w-full').mark(
            'machine-type')
        kind_error = error_label()
        with ui.row().classes('w-full justify-between gap-2'):
            ui.button(_('Delete the machine'), icon='delete', on_click=delete).props('color=negative flat').mark(
                'delete-machine')
            ui.button(_('Save'), on_click=save).mark('save-machine')
    return name, kind, name_error, kind_error


class MachinePage:
    """One browser's view of one machine: the page's parts and what its buttons do."""

    def __init__(self, panel: Panel, machines: MachineService, _: Translator, actor: Actor, row: MachineRow) -> None:
        self.panel, self.machines, self._, self.actor, self.row = panel, machines, _, actor, row

    async def build(self) -> None:
        _, row = self._, self.row
        with ui.row().classes('items-baseline gap-3'):
            self.title = ui.label(row.name).classes('text-xl font-semibold min-w-0 ' + WRAP).mark('machine-title')
            self.type_label = ui.label(row.type_name).classes('text-slate-500 [overflow-wrap:anywhere]')
        live = self.panel.live.machines.get(row.id)
        if row.deleted_at is not None or live is None:
            with ui.card().classes('w-full bg-red-50'):
                ui.label(_('This machine was deleted on {when}: it is not on the dashboard and its board is told '
                           '"Invalid machine ID".').format(when=when(row.deleted_at))).classes(WRAP)
                ui.button(_('Restore the machine'), icon='restore', on_click=self.restore).mark('restore-machine')
        else:
            self.live = live
            with ui.element('div').classes('grid grid-cols-1 md:grid-cols-2 gap-4 w-full'):
                _now_card(_, live, self.start, self.stop, self.block, self.unblock)
                self.form = _details_card(_, row, await self.machines.types(), self.save, self.delete)
                _board_card(_, self.panel.live.boards.get(row.id))
                await _plans_card(_, self.machines, row.id)
                await _authorized_card(_, self.panel, self.machines, row.id)
        await _uses_card(_, self.machines, row.id)

    # ---- actions ---------------------------------------------------------------------------------------------------
    async def save(self) -> None:
        if (user := await self.actor()) is None:
            return
        name, kind, name_error, kind_error = self.form
        name_error.text = kind_error.text = ''
        try:
            await self.machines.update(user, self.row.id, name.value or '', kind.value)
        except Refused as e:
            (kind_error if e.field == 'type' else name_error).text = refusal_text(self._, e)
            return
        self.row.name, self.row.type_id = ' '.join((name.value or '').split()), kind.value
        self.title.text = self.row.name
        self.type_label.text = kind.options.get(kind.value, '') if isinstance(kind.options, dict) else ''
        ui.notify(self._('Saved.'), type='positive')

    async def _blocked(self, blocked: bool) -> None:
        if (user := await self.actor()) is None:
            return
        try:
            await self.machines.set_blocked(user, self.row.id, blocked)
        except Refused as e:
            ui.notify(refusal_text(self._, e), type='negative')
            return
        ui.notify(self._('Blocked: nobody can start it.') if blocked else self._('Unblocked.'), type='positive')

    async def block(self) -> None:
        _ = self._
        if await self.actor() is not None and await confirm(_, _('Block {name}?').format(name=self.row.name),
                         _('Boards refuse every new start on this machine until it is unblocked (members whose role '
                           'may use every machine still can). A use in progress is not interrupted.'),
                         _('Block')):
            await self._blocked(True)

    async def unblock(self) -> None:
        await self._blocked(False)

    async def delete(self) -> None:
        _ = self._
        if await self.actor() is None:
            return
        d = await self.machines.dependents(self.row.id)
        message = _('Uses recorded: {uses}\nMaintenance plans: {plans}\nAuthorizations: {auths}\n\n'
                    'The machine leaves the dashboard and its board is told "Invalid machine ID". Its history, plans '
                    'and authorizations are kept and come back if the machine is restored.').format(
            uses=d.uses, plans=d.plans, auths=d.authorizations)
        if d.in_use:
            message = _('Someone is using it right now.') + '\n' + message
        if not await confirm(_, _('Delete {name}?').format(name=self.row.name), message, _('Delete')):
            return
        if (user := await self.actor()) is None:
            return
        try:
            await self.machines.delete(user, self.row.id)
        except Refused as e:
            ui.notify(refusal_text(_, e), type='negative')
            return
        ui.notify(_('Machine deleted.'), type='positive')
        ui.navigate.to('/machines')

    async def restore(self) -> None:
        if (user := await self.actor()) is None:
            return
        try:
            await self.machines.restore(user, self.row.id)
        except Refused as e:
            ui.notify(refusal_text(self._, e), type='negative')
            return
        ui.notify(self._('Machine restored.'), type='positive')
        ui.navigate.reload()

    async def start(self) -> None:
        await self._remote('start')

    async def stop(self) -> None:
        await self._remote('stop')

    async def _remote(self, command: str) -> None:
        _ = self._
        if (user := await self.actor()) is None:
            return
        cards = await self.machines.cards_of(user.member_id)
        if not cards:
            ui.notify(remote_text(_, Refusal.NO_CARD), type='warning', multi_line=True)
            return
        uid = cards[0].uid if len(cards) == 1 else await choose_card(_, cards)
        if uid is None:
            return
        current = self.live.user_first_name
        if command == 'stop' and not await confirm(
                _, _('Stop {name}?').format(name=self.row.name),
                (_('{member} is using it: their use ends now and the board switches the machine off.').format(
                    member=current) if current else _('The board logs out whoever is using it and switches the '
                                                      'machine off.')), _.pgettext('remote command', 'Stop')):
            return
        if command == 'start' and current and not await confirm(
                _, _('Start {name}?').format(name=self.row.name),
                _('{member} is using it: the board logs them out first, then starts it with your card.').format(
                    member=current), _.pgettext('remote command', 'Start'), danger=False):
            return
        try:
            await self.machines.remote(user, self.row.id, command, uid)
        except RemoteRefused as e:
            ui.notify(remote_text(_, e.code), type='negative', multi_line=True)
            return
        except Refused as e:
            ui.notify(refusal_text(_, e), type='negative')
            return
        ui.notify(_('Sent: the board checks your card and starts the machine.') if command == 'start'
                  else _('Sent: the board stops the machine.'), type='positive')


def register(panel: Panel, machines: MachineService) -> None:
    @ui.page('/machines/{machine_id}')
    async def machine_page(request: Request, machine_id: int) -> RedirectResponse | None:
        user = await page_user(request, panel.auth, administers)
        if isinstance(user, RedirectResponse):
            return user
        _ = page_language(request, user)
        row = await machines.get(machine_id)
        with frame(_('Machine {id}').format(id=machine_id), _, path='/machines', user=user):
            ui.link(_('All machines'), '/machines').classes('text-sm')
            if row is None:
                empty(_('There is no machine {id}.').format(id=machine_id))
                return None
            await MachinePage(panel, machines, _, admin_actor(panel, request, _), row).build()
        return None
