"""Members and their cards (admins): the searchable, paged list with its xlsx export, the new-member form and
one member's page (details, cards, disable, delete, password link)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

from fastapi.responses import RedirectResponse
from nicegui import ui
from starlette.requests import Request

from fabpanel.core.members import LANGUAGES, MemberInput, Status
from fabpanel.i18n import LANGUAGES as LANGUAGE_NAMES
from fabpanel.i18n import N_, Translator
from fabpanel.services.auth import AuthService, CurrentUser
from fabpanel.services.members import CardRow, MemberError, MemberQuery, MemberRow, MemberService

from .components import confirm, download_xlsx, empty
from .layout import frame, nav_registered, page_language
from .session import COOKIE, administers, page_user

if TYPE_CHECKING:
    from fabpanel.app import Panel

SOMETHING_WRONG = N_('Something went wrong.')
ERRORS = {
    'forbidden': N_('Your role does not allow this.'),
    'not_found': N_('This member does not exist.'),
    'deleted': N_('This member was deleted.'),
    'self_lockout': N_('You cannot disable or delete your own account.'),
    'no_email': N_('This member has no e-mail address.'),
    'disabled': N_('This member is disabled: enable them first.'),
    'no_machine': N_('Choose a machine.'),
    'invalid': N_('Please correct the marked fields.'),
}
PROBLEMS = {
    'required': N_('This field is required.'),
    'too_long': N_('Too long: at most 80 characters.'),
    'bad_email': N_('This is not an e-mail address.'),
    'taken': N_('Another member already uses this e-mail address.'),
    'bad_language': N_('Choose a language from the list.'),
    'bad_role': N_('Choose a role from the list.'),
    'self_lockout': N_('You cannot take away your own admin role.'),
    'bad_card': N_('A card id is 1 to 32 hexadecimal characters (0-9, a-f); spaces, ":" and "-" are ignored.'),
    'card_theirs': N_('This member already has this card.'),
}
STATUS_NAMES = {Status.ACTIVE.value: N_('Active'), Status.DISABLED.value: N_('Disabled'),
                Status.DELETED.value: N_('Deleted')}
STATUS_COLORS = {Status.ACTIVE: 'positive', Status.DISABLED: 'grey-7', Status.DELETED: 'negative'}
EXPORT_HEADERS = (N_('Id'), N_('First name'), N_('Last name'), N_('E-mail'), N_('Language'), N_('Role'),
                  N_('Status'), N_('Cards'), N_('Created'))
MAX_DB_ID = 2**31 - 1


# ---- pieces the enrolment page shares ------------------------------------------------------------------------------
def error_text(_: Translator, e: MemberError) -> str:
    if e.code == 'card_in_use':
        return _('This card is already in use by {name}.').format(name=e.owner or '?')
    for problem in e.problems.values():
        if problem in PROBLEMS:
            return _(PROBLEMS[problem])
    return _(ERRORS.get(e.code, SOMETHING_WRONG))


def problem_text(_: Translator, e: MemberError, field: str) -> str:
    if field == 'card' and e.code == 'card_in_use':
        return error_text(_, e)
    problem = e.problems.get(field)
    return _(PROBLEMS.get(problem, N_('Something went wrong.'))) if problem else ''


def when_text(at: datetime | None) -> str:
    return at.astimezone().strftime('%d/%m/%Y %H:%M') if at is not None else ''


def field_error(marker: str) -> ui.label:
    return ui.label().classes('text-red-700 text-sm').props('role=alert').mark(marker)


def acting(auth: AuthService, request: Request, _: Translator) -> Callable[[], Awaitable[CurrentUser | None]]:
    """Who is acting now: every action handler asks again (the role may have changed since the page opened)."""
    token = request.cookies.get(COOKIE)

    async def current() -> CurrentUser | None:
        user = await auth.session_user(token)
        if user is None or user.must_change_password or not administers(user):
            message = ERRORS['forbidden']
            ui.notify(_(message), type='negative')
            return None
        return user

    return current


def card_chip(_: Translator, card: CardRow | str, *, board_ok: bool | None = None) -> None:
    """A card id in a fixed-width font; ids no board can send are marked as such (never padded)."""
    uid = card.uid if isinstance(card, CardRow) else card
    ok = card.board_ok if isinstance(card, CardRow) else bool(board_ok)
    with ui.row().classes('items-center gap-1 no-wrap'):
        ui.label(uid).classes('font-mono text-sm bg-slate-100 rounded px-1 break-all')
        if not ok:
            ui.badge(_('cannot match a board'), color='warning').props('outline').mark('not-a-board-id')


def status_badge(_: Translator, status: Status) -> None:
    ui.badge(_(STATUS_NAMES[status.value]), color=STATUS_COLORS[status]).mark(f'status-{status.value}')


class MemberForm:
    """The member fields with a message under each; `card` adds a first card (new members only)."""

    def __init__(self, _: Translator, roles: list[tuple[int, str]], m: MemberRow | None = None, *,
                 default_role: int | None = None, card: str | None = None) -> None:
        self._ = _
        self.errors: dict[str, ui.label] = {}
        with ui.element('div').classes('grid grid-cols-1 sm:grid-cols-2 gap-x-4 gap-y-1 w-full'):
            self.first_name = self._field('first_name', ui.input(_('First name'), value=m.first_name if m else ''))
            self.last_name = self._field('last_name', ui.input(_('Last name'), value=m.last_name if m else ''))
            self.email = self._field('email', ui.input(_('E-mail (optional)'), value=m.email if m else '').props(
                'type=email autocomplete=off'))
            languages = {code: LANGUAGE_NAMES.get(code, '') or _('Browser language') for code in LANGUAGES}
            self.language = self._field('language', ui.select(languages, label=_('Language'),
                                                              value=m.language if m else ''))
            self.role = self._field('role_id', ui.select(dict(roles), label=_('Role'),
                                                         value=m.role_id if m else default_role))
            self.card = self.card_label = None
            if card is not None:
                self.card = self._field('card', ui.input(_('Card id (optional)'), value=card).props(
                    'autocomplete=off'))
                self.card_label = self._field('card_label', ui.input(_('Card label (optional)')))

    def _field(self, name: str, element: ui.input | ui.select) -> ui.input | ui.select:
        with ui.column().classes('gap-0 w-full'):
            element.classes('w-full').mark(name)
            self.errors[name] = field_error(f'{name}-error')
        return element

    def data(self) -> MemberInput:
        return MemberInput(first_name=self.first_name.value or '', last_name=self.last_name.value or '',
                           email=self.email.value or '', language=self.language.value or '',
                           role_id=self.role.value)

    def show(self, e: MemberError | None) -> None:
        for name, label in self.errors.items():
            label.text = problem_text(self._, e, name) if e is not None else ''


# ---- the list ------------------------------------------------------------------------------------------------------
def _member_row(_: Translator, m: MemberRow) -> None:
    with ui.link(target=f'/members/{m.id}').classes(
            'w-full no-underline text-inherit bg-white rounded-lg shadow-sm px-3 py-2 hover:bg-slate-50').props(
            f'data-member={m.id}').mark(f'member-{m.id}'):
        with ui.element('div').classes('grid grid-cols-1 sm:grid-cols-12 gap-x-3 gap-y-1 w-full items-center'):
            ui.label(m.name).classes('sm:col-span-3 font-semibold break-words text-slate-900')
            ui.label(m.email or '—').classes('sm:col-span-3 text-slate-600 text-sm break-all')
            ui.label(m.role_name).classes('sm:col-span-2 text-sm break-words text-slate-700')
            with ui.row().classes('sm:col-span-1'):
                status_badge(_, m.status)
            with ui.row().classes('sm:col-span-3 gap-1'):
                if not m.cards:
                    ui.label(_('no card')).classes('text-slate-500 text-sm italic')
                for card in m.cards:
                    card_chip(_, card)


def _list_page(service: MemberService, auth: AuthService) -> None:
    @ui.page('/members')
    async def members_list(request: Request, q: str = '') -> RedirectResponse | None:
        user = await page_user(request, auth, administers)
        if isinstance(user, RedirectResponse):
            return user
        _ = page_language(request, user)
        current = acting(auth, request, _)
        roles = await service.roles(user)
        query = MemberQuery(text=q[:200])
        seq = [0]
        with frame(_('Members'), _, path='/members', user=user):
            with ui.row().classes('w-full items-end gap-2'):
                search = ui.input(_('Search name, e-mail or card'), value=query.text).props(
                    'clearable debounce=300 type=search').classes('grow min-w-[12rem]').mark('search')
                role = ui.select({0: _('All roles'), **dict(roles)}, value=0, label=_('Role')).classes(
                    'w-40').mark('role-filter')
                status = ui.select({'': _('Active and disabled'), **{k: _(v) for k, v in STATUS_NAMES.items()}},
                                   value='', label=_('Status')).classes('w-44').mark('status-filter')
                cards = ui.select({'': _('With or without card'), 'yes': _('With a card'), 'no': _('Without card')},
                                  value='', label=_('Cards')).classes('w-48').mark('card-filter')
            with ui.row().classes('w-full items-center gap-2'):
                ui.button(_('New member'), icon='person_add', on_click=lambda: ui.navigate.to('/members/new')).mark(
                    'new-member')
                export = ui.button(_('Export xlsx'), icon='download').props('outline').mark('export')
                ui.space()
                count = ui.label().classes('text-slate-600').mark('count')
            box = ui.column().classes('w-full gap-2')
            with ui.row().classes('w-full items-center justify-center gap-2'):
                prev = ui.button(icon='chevron_left').props('flat round aria-label=Previous').mark('prev-page')
                where = ui.label().mark('page')
                nxt = ui.button(icon='chevron_right').props('flat round aria-label=Next').mark('next-page')

        def read_filters() -> None:
            query.text = search.value or ''
            query.role_id = role.value or None
            query.status = Status(status.value or '')
            query.has_card = {'yes': True, 'no': False}.get(cards.value or '')

        async def show(actor: CurrentUser | None = None) -> None:
            actor = actor or await current()
            if actor is None:
                return
            seq[0] += 1
            mine = seq[0]
            read_filters()
            try:
                page = await service.search(actor, query)
            except MemberError as e:
                ui.notify(error_text(_, e), type='negative')
                return
            if mine != seq[0]:
                return  # a newer search already answered
            query.page = page.page
            box.clear()
            with box:
                if not page.rows:
                    empty(_('No members match.'))
                for m in page.rows:
                    _member_row(_, m)
            count.text = _('Found: {count}').format(count=page.total)
            where.text = _('Page {page} of {pages}').format(page=page.page, pages=page.pages)
            prev.set_enabled(page.page > 1)
            nxt.set_enabled(page.page < page.pages)

        async def refilter() -> None:
            query.page = 1
            await show()

        async def turn(step: int) -> None:
            query.page += step
            await show()

        async def download() -> None:
            actor = await current()
            if actor is None:
                return
            read_filters()
            try:
                data = await service.export_xlsx(actor, query, [_(h) for h in EXPORT_HEADERS],
                                                 {k: _(v) for k, v in STATUS_NAMES.items()})
            except MemberError as e:
                ui.notify(error_text(_, e), type='negative')
                return
            download_xlsx(data, f'members-{datetime.now().astimezone():%Y%m%d-%H%M}')

        for element in (search, role, status, cards):
            element.on_value_change(refilter)
        prev.on_click(lambda: turn(-1))
        nxt.on_click(lambda: turn(1))
        export.on_click(download)
        await show(user)
        return None


# ---- one member ----------------------------------------------------------------------------------------------------
def _new_page(service: MemberService, auth: AuthService) -> None:
    @ui.page('/members/new')
    async def new_member(request: Request, card: str = '') -> RedirectResponse | None:
        user = await page_user(request, auth, administers)
        if isinstance(user, RedirectResponse):
            return user
        _ = page_language(request, user)
        current = acting(auth, request, _)
        roles = await service.roles(user)
        default_role = await service.default_role_id(user)
        with frame(_('New member'), _, path='/members', user=user), ui.card().classes('w-full max-w-3xl'):
            form = MemberForm(_, roles, default_role=default_role, card=card[:64])
            ui.label(_('Members choose their password themselves: after saving, send them a password link.')).classes(
                'text-sm text-slate-600')
            error = field_error('form-error')

            async def save() -> None:
                actor = await current()
                if actor is None:
                    return
                assert form.card is not None and form.card_label is not None
                try:
                    member_id = await service.create(actor, form.data(), card=form.card.value or '',
                                                     card_label=form.card_label.value or '')
                except MemberError as e:
                    form.show(e)
                    error.text = error_text(_, e)
                    return
                ui.navigate.to(f'/members/{member_id}')

            with ui.row().classes('gap-2'):
                ui.button(_('Create member'), icon='save', on_click=save).mark('save')
                ui.button(_('Cancel'), on_click=lambda: ui.navigate.to('/members')).props('flat')
        return None


def _cards_section(_: Translator, m: MemberRow, service: MemberService,
                   current: Callable[[], Awaitable[CurrentUser | None]], reload: Callable[[], Awaitable[None]]) -> None:
    with ui.card().classes('w-full gap-2'):
        ui.label(_('Cards')).classes('text-lg font-semibold')
        if not m.cards:
            empty(_('No card yet: this member cannot use any machine with a card.'))
        for card in m.cards:
            with ui.row().classes('w-full items-center justify-between gap-2 border-b border-slate-100 py-1').mark(
                    f'card-{card.id}'):
                with ui.column().classes('gap-0 min-w-0'):
                    card_chip(_, card)
                    detail = _('added {when}').format(when=when_text(card.created_at))
                    ui.label(f'{card.label} · {detail}' if card.label else detail).classes(
                        'text-sm text-slate-600 break-words max-w-full')

                async def revoke(card: CardRow = card) -> None:
                    if not await confirm(_, _('Revoke this card?'), _(
                            'The card {card} stops working on every machine at once. Past uses made with it stay in '
                            'the history. If it is shown to a board again, it appears among the new cards.').format(
                            card=card.uid), _('Revoke the card')):
                        return
                    actor = await current()
                    if actor is None:
                        return
                    try:
                        await service.remove_card(actor, card.id)
                    except MemberError as e:
                        ui.notify(error_text(_, e), type='negative')
                        return
                    ui.notify(_('The card was revoked.'), type='positive')
                    await reload()

                ui.button(_('Revoke'), icon='block', on_click=revoke).props('flat color=negative').mark(
                    f'revoke-{card.id}')
        with ui.row().classes('w-full items-start gap-2'):
            uid = ui.input(_('New card id')).props('autocomplete=off').classes('grow min-w-[10rem]').mark('new-card')
            label = ui.input(_('Label (optional)')).classes('grow min-w-[10rem]').mark('new-card-label')

            async def add() -> None:
                actor = await current()
                if actor is None:
                    return
                try:
                    await service.add_card(actor, m.id, uid.value or '', label.value or '')
                except MemberError as e:
                    error.text = error_text(_, e)
                    return
                ui.notify(_('The card was added.'), type='positive')
                await reload()

            ui.button(_('Add card'), icon='add_card', on_click=add).classes('self-center').mark('add-card')
        error = field_error('card-error')
        ui.label(_('No card at hand? The "New cards" page binds the next card shown on a machine.')).classes(
            'text-sm text-slate-600')


def _account_section(_: Translator, m: MemberRow, service: MemberService,
                     current: Callable[[], Awaitable[CurrentUser | None]], reload: Callable[[], Awaitable[None]]
                     ) -> None:
    async def run(action: Callable[[CurrentUser], Awaitable[None]], done: str) -> None:
        actor = await current()
        if actor is None:
            return
        try:
            await action(actor)
        except MemberError as e:
            ui.notify(error_text(_, e), type='negative')
            return
        ui.notify(done, type='positive')
        await reload()

    async def send_link() -> None:
        await run(lambda a: service.send_password_link(a, m.id),
                  _('A link to choose a password was sent to {email}.').format(email=m.email))

    async def disable() -> None:
        if await confirm(_, _('Disable {name}?').format(name=m.name), _(
                'Their cards stop working on every machine at once and they can no longer sign in. Nothing is '
                'deleted: you can enable them again at any time.'), _('Disable')):
            await run(lambda a: service.set_disabled(a, m.id, True), _('The member was disabled.'))

    async def enable() -> None:
        await run(lambda a: service.set_disabled(a, m.id, False), _('The member was enabled.'))

    async def delete() -> None:
        if not await confirm(_, _('Delete {name}?').format(name=m.name), _(
                'Their cards stop working at once and are removed, their e-mail address is cleared and they can no '
                'longer sign in. Their name stays in the usage history. This cannot be undone.'), _('Delete')):
            return
        actor = await current()
        if actor is None:
            return
        try:
            await service.delete(actor, m.id)
        except MemberError as e:
            ui.notify(error_text(_, e), type='negative')
            return
        ui.notify(_('The member was deleted.'), type='positive')
        ui.navigate.to('/members')

    with ui.card().classes('w-full gap-2'):
        ui.label(_('Account')).classes('text-lg font-semibold')
        with ui.row().classes('gap-2'):
            link = ui.button(_('Send a password link'), icon='mail', on_click=send_link).props('outline').mark(
                'send-link')
            link.set_enabled(bool(m.email) and not m.disabled)
            if m.disabled:
                ui.button(_('Enable'), icon='check_circle', on_click=enable).props('outline').mark('enable')
            else:
                ui.button(_('Disable'), icon='block', on_click=disable).props('outline color=warning').mark('disable')
            ui.button(_('Delete'), icon='delete', on_click=delete).props('outline color=negative').mark('delete')


def _member_page(service: MemberService, auth: AuthService) -> None:
    @ui.page('/members/{member_id:int}')
    async def member_page(request: Request, member_id: int) -> RedirectResponse | None:
        user = await page_user(request, auth, administers)
        if isinstance(user, RedirectResponse):
            return user
        _ = page_language(request, user)
        current = acting(auth, request, _)
        roles = await service.roles(user)
        with frame(_('Member'), _, path='/members', user=user):
            ui.link(_('← All members'), '/members').classes('text-sm')
            box = ui.column().classes('w-full gap-4 max-w-3xl')

        async def reload(actor: CurrentUser | None = None) -> None:
            actor = actor or await current()
            if actor is None:
                return
            try:
                m = await service.get(actor, member_id if 0 < member_id <= MAX_DB_ID else 0)
            except MemberError as e:
                box.clear()
                with box:
                    empty(error_text(_, e))
                return
            box.clear()
            with box:
                _member_body(_, m, roles, service, current, reload)

        await reload(user)
        return None


def _member_body(_: Translator, m: MemberRow, roles: list[tuple[int, str]], service: MemberService,
                 current: Callable[[], Awaitable[CurrentUser | None]], reload: Callable[[], Awaitable[None]]) -> None:
    with ui.row().classes('w-full items-center gap-2'):
        ui.label(m.name).classes('text-xl font-semibold break-words min-w-0 max-w-full').mark('member-name')
        status_badge(_, m.status)
    if m.deleted_at is not None:
        ui.label(_('Deleted on {when}. Their usage history is kept.').format(when=when_text(m.deleted_at))).classes(
            'text-slate-600')
        return
    with ui.card().classes('w-full gap-2'):
        ui.label(_('Details')).classes('text-lg font-semibold')
        form = MemberForm(_, roles, m)
        ui.label(_('Member since {when}').format(when=when_text(m.created_at))).classes('text-sm text-slate-600')

        async def save() -> None:
            actor = await current()
            if actor is None:
                return
            try:
                await service.update(actor, m.id, form.data())
            except MemberError as e:
                form.show(e)
                ui.notify(error_text(_, e), type='negative')
                return
            form.show(None)
            ui.notify(_('Saved.'), type='positive')
            await reload()

        ui.button(_('Save'), icon='save', on_click=save).mark('save')
    _cards_section(_, m, service, current, reload)
    _account_section(_, m, service, current, reload)


def register(panel: Panel) -> None:
    """/members (list and export), /members/new and /members/<id>; admins only."""
    service = MemberService(panel.engine, panel.boards, panel.auth)
    nav_registered('/members')
    _list_page(service, panel.auth)
    _new_page(service, panel.auth)
    _member_page(service, panel.auth)
