"""Authorizations (admins): per machine (authorize many members at once) or per member (many machines at once),
with expiry days, expired ones marked, revocation, and the list as a spreadsheet."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from fastapi.responses import RedirectResponse
from nicegui import ui
from starlette.requests import Request

from fabpanel.i18n import Translator
from fabpanel.services.authorizations import AuthorizationService, AuthRow, Status, last_valid_day, parse_day
from fabpanel.services.exports import xlsx
from fabpanel.services.machines import Refused, parse_int

from .components import aria, confirm, download_xlsx, empty
from .layout import frame, nav_registered, page_language
from .machines import Actor, admin_actor, error_label, pager, refusal_text
from .session import administers, page_user

if TYPE_CHECKING:
    from fabpanel.app import Panel

WRAP = '[overflow-wrap:anywhere]'  # long words (names without spaces) wrap instead of widening a phone's page


def day_text(d: date) -> str:
    return d.strftime('%d/%m/%Y')


def status_text(_: Translator, r: AuthRow) -> str:
    if r.expires_at is None:
        return _('No expiry')
    day = day_text(last_valid_day(r.expires_at))
    return (_('Expired: was valid until {day}') if r.expired else _('Valid until {day}')).format(day=day)


async def expiry_dialog(_: Translator, service: AuthorizationService, actor: Actor, r: AuthRow) -> bool:
    with ui.dialog() as dialog, ui.card().classes('w-full max-w-sm'):
        ui.label(_('Expiry of {member} on {machine}').format(member=r.member_name, machine=r.machine_name)).classes(
            'text-lg font-semibold [overflow-wrap:anywhere]')
        current = last_valid_day(r.expires_at).isoformat() if r.expires_at else ''
        day = ui.input(_('Valid until (last day)'), value=current).props('type=date').classes('w-full').mark(
            'expiry-date')
        error = error_label()

        async def save(clear: bool) -> None:
            if (user := await actor()) is None:
                return
            error.text = ''
            try:
                chosen = None if clear else parse_day(day.value)
                if chosen is None and not clear:
                    raise Refused('bad_date', 'expiry')
                await service.set_expiry(user, r.member_id, r.machine_id, chosen)
            except Refused as e:
                error.text = refusal_text(_, e)
                return
            dialog.submit(True)

        with ui.row().classes('w-full justify-end gap-2'):
            ui.button(_('Cancel'), on_click=lambda: dialog.submit(False)).props('flat').mark('cancel')
            ui.button(_('No expiry'), on_click=lambda: save(True)).props('outline').mark('clear-expiry')
            ui.button(_('Save'), on_click=lambda: save(False)).mark('save-expiry')
    result = await dialog
    dialog.delete()
    return bool(result)


class AuthorizationsPage:
    """One browser's authorizations page: one machine's members, or one member's machines."""

    def __init__(self, panel: Panel, service: AuthorizationService, _: Translator, actor: Actor,
                 machine_id: int | None, member_id: int | None) -> None:
        self.panel, self.service, self._, self.actor = panel, service, _, actor
        self.machine_id, self.member_id = machine_id, member_id
        self.page = 0
        self.search: ui.input | None = None
        self.status: ui.toggle | None = None

    @property
    def by_member(self) -> bool:
        return self.member_id is not None

    def filters(self) -> dict[str, Any]:
        status: Status = self.status.value if self.status is not None else 'all'
        return {'machine_id': None if self.by_member else self.machine_id, 'member_id': self.member_id,
                'search': (self.search.value or '') if self.search is not None else '', 'status': status}

    async def build(self, member_name: str) -> None:
        _ = self._
        if self.by_member:
            ui.label(_('Machines {member} may use').format(member=member_name)).classes(
                'text-lg font-semibold [overflow-wrap:anywhere]').mark('member-title')
            ui.link(_('Back to authorizations by machine'), '/authorizations').classes('text-sm')
            choices = dict(await self.service.machines())
        else:
            machines = dict(await self.service.machines())
            if not machines:
                empty(_('No machines yet.'))
                return
            if self.machine_id not in machines:
                self.machine_id = next(iter(machines))
            with ui.row().classes('w-full items-center gap-3'):
                ui.select(machines, value=self.machine_id, label=_('Machine'), with_input=True,
                          on_change=lambda e: self.open_machine(e.value)).classes(
                    'grow min-w-[14rem]').mark('machine')
                ui.link(_('Machine page'), f'/machines/{self.machine_id}').classes('text-sm')
            rule = self.panel.boards.rules.machines.get(self.machine_id)
            if rule is not None and not rule.authorization_required:
                ui.label(_('Its machine type needs no authorization: every active member with a card may use it.')
                         ).classes('text-sm text-amber-800')
            choices = dict(await self.service.members())
        self.add_form(choices)
        with ui.row().classes('w-full items-center gap-3'):
            self.search = ui.input(_('Search by name or e-mail') if not self.by_member else _('Search by machine'),
                                   on_change=self.filtered).props('clearable debounce=300 type=search').classes(
                'grow min-w-[12rem]').mark('search')
            self.status = ui.toggle({'all': _('All'), 'active': _('Valid'), 'expired': _('Expired')}, value='all',
                                    on_change=self.filtered).mark('status')
            ui.button(_('Spreadsheet'), icon='download', on_click=self.export).props('outline').mark('export')
        await self.listing()

    def add_form(self, choices: dict[int, str]) -> None:
        _ = self._
        with ui.card().classes('w-full'):
            ui.label(_('Authorize machines') if self.by_member else _('Authorize members')).classes('font-semibold')
            with ui.row().classes('w-full items-start gap-3'):
                with ui.column().classes('grow min-w-[14rem] gap-0'):
                    self.chosen = ui.select(choices, multiple=True, with_input=True,
                                            label=_('Machines') if self.by_member else _('Members')).props(
                        'use-chips').classes('w-full').mark('add-machines' if self.by_member else 'add-members')
                    self.chosen_error = error_label()
                with ui.column().classes('gap-0'):
                    self.expiry = ui.input(_('Valid until (optional)')).props('type=date').mark('add-expiry')
                    self.expiry_error = error_label()
                ui.button(_('Authorize'), icon='verified_user', on_click=self.grant).mark('grant')

    @ui.refreshable_method
    async def listing(self) -> None:
        _ = self._
        page = await self.service.list(datetime.now(UTC), page=self.page, **self.filters())
        self.page = page.page
        if not page.rows:
            empty(_('No authorizations match.'))
        with ui.column().classes('w-full gap-0'):
            for r in page.rows:
                self.row(r)
        pager(_, page, self.go)

    def row(self, r: AuthRow) -> None:
        _ = self._
        key = f'{r.member_id}-{r.machine_id}'
        with ui.row().classes('w-full items-center gap-x-3 gap-y-0 no-wrap border-b border-slate-100 py-2').props(
                f'data-expired={str(r.expired).lower()}').mark(f'auth-{key}'):
            with ui.column().classes('gap-0 min-w-0 grow'):
                if self.by_member:
                    ui.link(r.machine_name, f'/authorizations?machine={r.machine_id}').classes(WRAP)
                else:
                    ui.link(r.member_name, f'/authorizations?member={r.member_id}').classes(WRAP)
                notes = [status_text(_, r)]
                if r.member_disabled:
                    notes.append(_('member disabled'))
                if r.member_may_use_all:
                    notes.append(_('the role allows every machine anyway'))
                ui.label(' · '.join(notes)).classes(
                    'text-sm ' + ('text-red-700 font-semibold' if r.expired else 'text-slate-500')).mark(
                    f'status-{key}')
            with ui.row().classes('gap-1 shrink-0'):
                aria(ui.button(icon='event', on_click=lambda r=r: self.edit_expiry(r)).props(
                    'flat round dense').mark(f'expiry-{key}'), _('Change the expiry date'))
                aria(ui.button(icon='person_remove', on_click=lambda r=r: self.revoke(r)).props(
                    'flat round dense color=negative').mark(f'revoke-{key}'), _('Revoke'))

    # ---- actions ---------------------------------------------------------------------------------------------------
    def open_machine(self, value: Any) -> None:
        if isinstance(value, int):  # an id from the options, never text from the browser in the address
            ui.navigate.to(f'/authorizations?machine={value}')

    async def go(self, number: int) -> None:
        self.page = number
        await self.listing.refresh()

    async def filtered(self) -> None:
        self.page = 0
        await self.listing.refresh()

    async def grant(self) -> None:
        _ = self._
        if (user := await self.actor()) is None:
            return
        self.chosen_error.text = self.expiry_error.text = ''
        picked = [v for v in (self.chosen.value or []) if isinstance(v, int)]
        try:
            expiry = parse_day(self.expiry.value)
            members, machines = (([self.member_id], picked) if self.by_member else (picked, [self.machine_id]))
            done = await self.service.grant(user, members, machines, expiry)
        except Refused as e:
            (self.expiry_error if e.field == 'expiry' else self.chosen_error).text = refusal_text(_, e)
            return
        self.chosen.value = []
        ui.notify(_('Authorized: {added} new, {renewed} renewed.').format(added=done.added, renewed=done.renewed),
                  type='positive')
        await self.listing.refresh()

    async def edit_expiry(self, r: AuthRow) -> None:
        if await self.actor() is not None and await expiry_dialog(self._, self.service, self.actor, r):
            ui.notify(self._('Expiry saved.'), type='positive')
            await self.listing.refresh()

    async def revoke(self, r: AuthRow) -> None:
        _ = self._
        if await self.actor() is None or not await confirm(
                _, _('Revoke this authorization?'),
                _('{member} may no longer use {machine}: boards refuse the card there from now on.').format(
                    member=r.member_name, machine=r.machine_name), _('Revoke')):
            return
        if (user := await self.actor()) is None:
            return
        try:
            await self.service.revoke(user, r.member_id, r.machine_id)
        except Refused as e:
            ui.notify(refusal_text(_, e), type='negative')
        else:
            ui.notify(_('Authorization revoked.'), type='positive')
        await self.listing.refresh()

    async def export(self) -> None:
        _ = self._
        if await self.actor() is None:
            return
        rows = await self.service.export_rows(datetime.now(UTC), **self.filters())
        data = xlsx(_('Authorizations'),
                    [_('Member'), _('Machine'), _('Status'), _('Valid until'), _('Authorized on')],
                    [[r.member_name, r.machine_name,
                      _('Expired') if r.expired else _('Valid'),
                      last_valid_day(r.expires_at) if r.expires_at else None,
                      r.created_at] for r in rows])
        scope = f'member-{self.member_id}' if self.by_member else f'machine-{self.machine_id}'
        download_xlsx(data, f'authorizations-{scope}')


def register(panel: Panel) -> None:
    nav_registered('/authorizations')
    service = AuthorizationService(panel.engine, panel.boards)

    @ui.page('/authorizations')
    async def authorizations_page(request: Request, machine: str = '', member: str = '') -> RedirectResponse | None:
        user = await page_user(request, panel.auth, administers)
        if isinstance(user, RedirectResponse):
            return user
        _ = page_language(request, user)
        member_id = parse_int(member) if member else None
        with frame(_('Authorizations'), _, path='/authorizations', user=user):
            member_name = await service.member_name(member_id) if member_id is not None else None
            if member_id is not None and member_name is None:
                empty(_('There is no such member.'))
                ui.link(_('Back to authorizations by machine'), '/authorizations').classes('text-sm')
                return None
            view = AuthorizationsPage(panel, service, _, admin_actor(panel, request, _),
                                      parse_int(machine) if machine else None, member_id)
            await view.build(member_name or '')
        return None
