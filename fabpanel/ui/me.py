"""My lab (/me), phone first: a member's own machines (live status and what is still missing), authorizations,
usage, cards and language. The member is always the one signed in: nothing here takes a member id from the URL,
and every action checks again that the session still belongs to that member."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

from fastapi.responses import RedirectResponse
from nicegui import context, ui
from starlette.requests import Request

from fabpanel.i18n import LANGUAGES, Translator
from fabpanel.live.events import Event
from fabpanel.live.state import LiveState, MachineLive
from fabpanel.services.me import Basis, MachineNeeds, MeError, MeService, MonthTotals, Need, UsePage

from .components import empty
from .layout import frame, nav_registered, page_language
from .machine_tile import since_text, status_labels
from .session import COOKIE, page_user

if TYPE_CHECKING:
    from fabpanel.app import Panel

StillMe = Callable[[], Awaitable[bool]]


def day(dt: datetime | None) -> str:
    return dt.astimezone().strftime('%d/%m/%Y') if dt else ''


def moment(dt: datetime | None) -> str:
    return dt.astimezone().strftime('%d/%m/%Y %H:%M') if dt else ''


def duration(seconds: float, _: Translator) -> str:
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return _('{minutes} min').format(minutes=minutes)
    return _('{hours} h {minutes} min').format(hours=minutes // 60, minutes=f'{minutes % 60:02d}')


def follow(event: Event[None], callback: Callable[[None], object]) -> None:
    """Call back on this event while this browser's page exists."""
    event.subscribe(callback)
    context.client.on_delete(lambda: event.unsubscribe(callback))


def section(title: str, marker: str) -> ui.card:
    card = ui.card().classes('w-full gap-3').props(f'data-testid={marker}').mark(marker)
    with card:
        ui.label(title).classes('text-lg font-semibold text-slate-800')
    return card


# ---- machines: live status and what I still need --------------------------------------------------------------
def access_lines(item: MachineNeeds, _: Translator) -> list[tuple[str, str, str]]:
    """(icon, text, colour class) lines for what stands between the member and the machine."""
    lines = []
    for need in item.needs:
        if need is Need.BLOCKED:
            lines.append(('block', _('Blocked by the staff: it cannot be used for now.'), 'text-slate-700'))
        elif need is Need.INTRODUCTION:
            lines.append(('school', _('Not authorized yet: ask a staff member for an introduction.'), 'text-red-700'))
        elif need is Need.EXPIRED:
            lines.append(('event_busy', _('Your authorization expired on {date}: ask a staff member to renew it.')
                          .format(date=day(item.expires_at)), 'text-red-700'))
    if lines:
        return lines
    if item.basis is Basis.FREE_TO_USE:
        text = _('Free to use: no introduction needed.')
    elif item.basis is Basis.ALL_MACHINES:
        text = _('You may use it: your role may use every machine.')
    elif item.expires_at is not None:
        text = _('You may use it: authorized until {date}.').format(date=day(item.expires_at))
    else:
        text = _('You may use it: authorized.')
    return [('check_circle', text, 'text-green-800')]


def live_status(m: MachineLive, card: ui.card, _: Translator) -> None:
    labels = status_labels(_)

    def restyle(status: str) -> str:
        card.props(f'data-status={status}')
        return labels.get(status, status)

    ui.label().bind_text_from(m, 'status', backward=restyle).classes('fp-badge')


def machine_card(item: MachineNeeds, m: MachineLive | None, _: Translator) -> None:
    card = ui.card().classes('fp-tile w-full').props(
        f'data-machine={item.machine_id} data-status={m.status if m else "offline"}').mark(f'machine-{item.machine_id}')
    with card:
        with ui.row().classes('w-full items-start justify-between gap-2 no-wrap'):
            with ui.column().classes('gap-0 min-w-0'):
                ui.label(item.machine_name).classes('fp-tile-name')
                if item.type_name:
                    ui.label(item.type_name).classes('fp-tile-type')
            if m is not None:
                live_status(m, card, _)
        if m is not None:
            with ui.row().classes('items-center gap-1 text-sm min-w-0').bind_visibility_from(
                    m, 'user_first_name', backward=bool):
                ui.icon('person')
                ui.label().bind_text_from(m, 'user_first_name').classes('min-w-0 break-words')
                ui.label().bind_text_from(m, 'in_use_since', backward=lambda s: since_text(s, _)).classes(
                    'text-slate-500')
        for icon, text, colour in access_lines(item, _):
            with ui.row().classes(f'items-start gap-1 no-wrap text-sm {colour} min-w-0').mark('access'):
                ui.icon(icon).classes('text-base')
                ui.label(text).classes('min-w-0 break-words')
        if m is not None:  # maintenance comes and goes with uses: bound live, not read once
            with ui.row().classes('fp-tile-warn items-start gap-1 no-wrap').bind_visibility_from(m, 'maintenance_due'):
                ui.icon('build').classes('text-base')
                ui.label().bind_text_from(m, 'maintenance_text', backward=lambda t: _(
                    'Maintenance due: {what}. The machine may refuse cards until it is done.').format(what=t)).classes(
                    'min-w-0 break-words')


async def machines_section(service: MeService, live: LiveState, member_id: int, _: Translator) -> None:
    @ui.refreshable
    def machines(items: list[MachineNeeds]) -> None:
        if not items:
            empty(_('No machines yet.'))
        for item in items:
            machine_card(item, live.machines.get(item.machine_id), _)

    with section(_('Machines'), 'my-machines'):
        machines(await service.needs(member_id))

    async def reloaded(_none: None) -> None:
        # an admin changed machines or authorizations (reload_rules): read this member's view again
        machines.refresh(await service.needs(member_id))

    follow(live.events.machines_reloaded, reloaded)


# ---- authorizations, cards ---------------------------------------------------------------------------------------
async def authorizations_section(service: MeService, member_id: int, _: Translator) -> None:
    with section(_('My authorizations'), 'my-authorizations'):
        items = await service.authorizations(member_id)
        if not items:
            empty(_('You have no authorizations yet: ask a staff member for an introduction.'))
        for a in items:
            with ui.row().classes('w-full items-center justify-between gap-2 min-w-0 py-1 border-b border-slate-200'):
                ui.label(a.machine_name).classes('font-medium min-w-0 break-words')
                if a.expired:
                    ui.label(_('Expired on {date}').format(date=day(a.expires_at))).classes(
                        'text-sm font-semibold text-red-700').mark('expired')
                elif a.expires_at is not None:
                    ui.label(_('Until {date}').format(date=day(a.expires_at))).classes('text-sm text-slate-600')
                else:
                    ui.label(_('No expiry')).classes('text-sm text-slate-600')


async def cards_section(service: MeService, member_id: int, _: Translator) -> None:
    with section(_('My cards'), 'my-cards'):
        cards = await service.cards(member_id)
        if not cards:
            empty(_('You have no card yet: ask a staff member to enrol one.'))
        for c in cards:
            with ui.row().classes('w-full items-center justify-between gap-2 min-w-0 py-1 border-b border-slate-200'):
                with ui.row().classes('items-center gap-2 no-wrap min-w-0'):
                    ui.icon('contactless').classes('text-slate-500')
                    ui.label(c.shown).classes('font-mono')
                    if c.label:
                        ui.label(c.label).classes('text-sm text-slate-600 min-w-0 break-words')
                ui.label(_('since {date}').format(date=day(c.created_at))).classes('text-sm text-slate-500')


# ---- usage ---------------------------------------------------------------------------------------------------------
def totals_view(t: MonthTotals, _: Translator) -> None:
    with ui.column().classes('w-full gap-1 bg-slate-50 rounded p-3').mark('month-totals'):
        ui.label(_('This month: {time} (uses: {uses})').format(time=duration(t.seconds, _), uses=t.uses)).classes(
            'font-medium')
        for name, seconds in t.by_machine:
            with ui.row().classes('w-full justify-between gap-2 text-sm text-slate-600 min-w-0 no-wrap'):
                ui.label(name).classes('min-w-0 break-words')
                ui.label(duration(seconds, _)).classes('whitespace-nowrap')


def uses_view(p: UsePage, _: Translator) -> None:
    if not p.rows:
        empty(_('No uses yet.'))
    for u in p.rows:
        with ui.column().classes('w-full gap-0 py-1 border-b border-slate-200 min-w-0').mark('use'):
            with ui.row().classes('w-full justify-between gap-2 no-wrap min-w-0'):
                ui.label(u.machine_name).classes('font-medium min-w-0 break-words')
                ui.label(duration(u.duration_s, _) if u.duration_s is not None else _('in progress')).classes(
                    'text-sm whitespace-nowrap')
            ui.label(moment(u.start)).classes('text-sm text-slate-500')
            if u.unauthorized:
                ui.label(_('Used without authorization')).classes('text-sm text-red-700')


async def usage_section(service: MeService, member_id: int, still_me: StillMe, _: Translator) -> None:
    state = {'page': 1}

    @ui.refreshable
    def uses(p: UsePage) -> None:
        uses_view(p, _)
        if p.pages > 1:
            with ui.row().classes('w-full items-center justify-between gap-2'):
                ui.button(icon='chevron_left', on_click=lambda: turn(-1)).props(
                    'flat round aria-label=Previous data-testid=uses-prev').mark('uses-prev').set_enabled(p.page > 1)
                ui.label(_('Page {page} of {pages}').format(page=p.page, pages=p.pages)).classes('text-sm')
                ui.button(icon='chevron_right', on_click=lambda: turn(1)).props(
                    'flat round aria-label=Next data-testid=uses-next').mark('uses-next').set_enabled(p.page < p.pages)

    async def turn(step: int) -> None:
        if not await still_me():
            ui.navigate.to('/login')
            return
        p = await service.uses(member_id, state['page'] + step)
        state['page'] = p.page
        uses.refresh(p)

    with section(_('My usage'), 'my-usage'):
        totals_view(await service.month_totals(member_id), _)
        uses(await service.uses(member_id, 1))


# ---- language ------------------------------------------------------------------------------------------------------
def language_section(service: MeService, member_id: int, current: str, still_me: StillMe, _: Translator) -> None:
    options = {'': _('Same as the browser'), **LANGUAGES}
    with section(_('Language'), 'my-language'):

        async def chosen() -> None:
            error.text = ''
            if not await still_me():
                ui.navigate.to('/login')
                return
            try:
                await service.set_language(member_id, radio.value)
            except MeError:
                error.text = _('Choose one of the languages shown.')
                return
            ui.navigate.reload()  # every label of the page in the new language

        radio = ui.radio(options, value=current if current in options else '', on_change=chosen).props(
            'inline data-testid=language').mark('language')
        error = ui.label().classes('text-red-700 text-sm').props('role=alert')


def register(panel: Panel) -> None:
    service = MeService(panel.engine, panel.live)
    nav_registered('/me')

    @ui.page('/me')
    async def me(request: Request) -> RedirectResponse | None:
        user = await page_user(request, panel.auth)
        if isinstance(user, RedirectResponse):
            return user
        _ = page_language(request, user)
        member_id = user.member_id  # from the session: /me has no member in its URL

        async def still_me() -> bool:
            again = await panel.auth.session_user(request.cookies.get(COOKIE))
            return again is not None and again.member_id == member_id

        with frame(_('My lab'), _, path='/me', user=user), ui.column().classes('w-full max-w-3xl gap-4'):
            ui.label(_('Hello {name}!').format(name=user.first_name)).classes('text-base text-slate-600')
            await machines_section(service, panel.live, member_id, _)
            await authorizations_section(service, member_id, _)
            await usage_section(service, member_id, still_me, _)
            await cards_section(service, member_id, _)
            language_section(service, member_id, user.language, still_me, _)
        return None
