"""The usage history (admins): filtered, paged uses with totals; close or delete a wrong record; xlsx export."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from fastapi.responses import RedirectResponse
from nicegui import ui
from starlette.requests import Request

from fabpanel.core.history import Preset, check_period, period_bounds, preset_dates
from fabpanel.i18n import N_, Translator
from fabpanel.services.auth import AuthService, CurrentUser
from fabpanel.services.history import PER_PAGE, HistoryError, HistoryService, UseFilter, UseRow

from .components import aria, confirm, download_xlsx, empty, hours_text
from .layout import frame, nav_registered, page_language
from .session import COOKIE, Permission, administers, page_user

if TYPE_CHECKING:
    from fabpanel.app import Panel
    from fabpanel.core.history import CounterEffect

ERRORS = {
    'forbidden': N_('Your role does not allow this.'),
    'not_found': N_('This record no longer exists.'),
    'already_closed': N_('This use is already closed.'),
    'before_start': N_('The end cannot be before the start.'),
    'in_future': N_('The time cannot be in the future.'),
    'period_reversed': N_('The period ends before it starts.'),
    'time_invalid': N_('Enter a date and time.'),
}
PRESETS = ((Preset.TODAY, N_('Today')), (Preset.WEEK, N_('7 days')), (Preset.MONTH, N_('30 days')))


# ---- small helpers the maintenance pages share -------------------------------------------------------------------
def when_text(at: datetime | None) -> str:
    return at.astimezone().strftime('%Y-%m-%d %H:%M') if at is not None else ''


def input_value(at: datetime) -> str:
    """A time as a datetime-local input wants it (server-local, to the minute)."""
    return at.astimezone().strftime('%Y-%m-%dT%H:%M')


def parse_local(text: str | None) -> datetime | None:
    """What a datetime-local input holds, as an aware time (server-local); None when it is not a time."""
    try:
        return datetime.fromisoformat((text or '').strip()).astimezone()
    except ValueError:
        return None


def parse_day(text: str | None) -> date | None | str:
    """A date input's value; '' when empty; the text itself when it is not a date."""
    text = (text or '').strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return text


def field_error() -> ui.label:
    return ui.label().classes('text-red-700 text-sm').props('role=alert')


def fresh_user(auth: AuthService, request: Request, allowed: Permission, _: Translator
               ) -> Callable[[], Awaitable[CurrentUser | None]]:
    """Who is acting now: every action handler asks again (a role may have changed since the page opened)."""
    token = request.cookies.get(COOKIE)

    async def current() -> CurrentUser | None:
        user = await auth.session_user(token)
        if user is None or user.must_change_password or not allowed(user):
            message = ERRORS['forbidden']
            ui.notify(_(message), type='negative')
            return None
        return user

    return current


def counter_text(_: Translator, effect: CounterEffect) -> str:
    if effect.changes:
        return _("{machine}'s hour counter goes from {before} to {after}.").format(
            machine=effect.machine_name, before=hours_text(_, effect.before_h), after=hours_text(_, effect.after_h))
    return _("{machine}'s hour counter stays at {hours}.").format(machine=effect.machine_name,
                                                                  hours=hours_text(_, effect.before_h))


# ---- the page ------------------------------------------------------------------------------------------------------
@dataclass(kw_only=True, slots=True)
class _View:
    member_id: int | None = None
    machine_id: int | None = None
    first: date | None = None
    last: date | None = None
    open_only: bool = False
    page: int = 0
    shown: int = 0  # counts reloads: an older, slower one never overwrites a newer one

    def filter(self) -> UseFilter:
        start, until = period_bounds(self.first, self.last)
        return UseFilter(member_id=self.member_id, machine_id=self.machine_id, start=start, until=until,
                         open_only=self.open_only)


def _use_text(_: Translator, r: UseRow) -> str:
    if r.open:
        return _('since {start} · last seen {seen}').format(start=when_text(r.start), seen=when_text(r.last_seen))
    return f'{when_text(r.start)} → {when_text(r.end)} · {hours_text(_, (r.duration_s or 0) / 3600)}'


def _use_card(_: Translator, r: UseRow, close: Callable[[UseRow], Any], delete: Callable[[UseRow], Any]) -> None:
    style = 'fp-use w-full p-3 gap-1 ' + ('bg-amber-50 border-l-4 border-amber-500' if r.open else '')
    with ui.card().classes(style).props(f'data-use={r.id} data-open={str(r.open).lower()}').mark(f'use-{r.id}'):
        with ui.row().classes('w-full items-start justify-between gap-2'):
            with ui.column().classes('gap-0 min-w-0'):
                ui.label(r.machine_name).classes('font-semibold wrap-anywhere')
                who = r.member_name or _('Unknown card {card}').format(card=r.card)
                ui.label(who).classes('wrap-anywhere')
            with ui.row().classes('gap-1'):
                if r.open:
                    ui.badge(_('Open'), color='amber-9').mark('open-badge')
                if r.unauthorized:
                    ui.badge(_('Without authorization'), color='negative').mark('unauthorized-badge')
                if r.replay:
                    ui.badge(_('Sent late by the board'), color='grey-7')
        with ui.row().classes('w-full items-center justify-between gap-2'):
            ui.label(_use_text(_, r)).classes('text-sm text-slate-600 min-w-0')
            with ui.row().classes('gap-1'):
                if r.open:
                    ui.button(_('Close'), icon='stop_circle', on_click=lambda: close(r)).props(
                        'flat dense no-caps').mark(f'close-{r.id}')
                ui.button(_('Delete'), icon='delete', on_click=lambda: delete(r)).props(
                    'flat dense no-caps color=negative').mark(f'delete-{r.id}')


def register(panel: Panel) -> None:
    service = HistoryService(panel.engine, panel.boards)
    nav_registered('/history')

    @ui.page('/history')
    async def history(request: Request) -> RedirectResponse | None:
        user = await page_user(request, panel.auth, administers)
        if isinstance(user, RedirectResponse):
            return user
        _ = page_language(request, user)
        acting = fresh_user(panel.auth, request, administers, _)
        view = _View()
        members = await service.members(user)
        machines = await service.machines(user)
        with frame(_('Usage history'), _, path='/history', user=user):
            with ui.card().classes('w-full gap-2'):
                with ui.row().classes('w-full items-end gap-3'):
                    member = ui.select({c.id: c.name + (' ' + _('(deleted)') if c.gone else '') for c in members},
                                       label=_('Member'), with_input=True, clearable=True).classes(
                        'w-full sm:w-56').mark('member')
                    machine = ui.select({c.id: c.name + (' ' + _('(deleted)') if c.gone else '') for c in machines},
                                        label=_('Machine'), with_input=True, clearable=True).classes(
                        'w-full sm:w-56').mark('machine')
                    first = ui.input(_('From')).props('type=date stack-label').classes('w-40').mark('from')
                    last = ui.input(_('To')).props('type=date stack-label').classes('w-40').mark('to')
                with ui.row().classes('w-full items-center gap-2'):
                    for preset, label in PRESETS:
                        ui.button(_(label), on_click=lambda p=preset: use_preset(p)).props(
                            'outline dense no-caps').mark(f'preset-{preset.value}')
                    open_only = ui.checkbox(_('Open uses only')).mark('open-only')
                    ui.space()
                    ui.button(_('Export (xlsx)'), icon='download', on_click=lambda: export()).props(
                        'flat no-caps').mark('export')
                period_error = field_error().mark('period-error')
            totals = ui.label().classes('text-slate-700 font-medium').mark('totals')
            listing = ui.column().classes('w-full gap-2')
            with ui.row().classes('w-full items-center justify-center gap-2'):
                previous = aria(ui.button(icon='chevron_left', on_click=lambda: turn(-1)).props(
                    'flat round').mark('previous'), _('Previous page'))
                page_label = ui.label().mark('page')
                following = aria(ui.button(icon='chevron_right', on_click=lambda: turn(1)).props(
                    'flat round').mark('next'), _('Next page'))

        def read_filters() -> bool:
            period_error.text = ''
            a, b = parse_day(first.value), parse_day(last.value)
            if isinstance(a, str) or isinstance(b, str):
                period_error.text = _('Enter dates as YYYY-MM-DD.')
                return False
            problem = check_period(a, b)
            if problem:
                period_error.text = _(ERRORS[problem])
                return False
            view.member_id, view.machine_id = member.value, machine.value
            view.first, view.last, view.open_only = a, b, bool(open_only.value)
            return True

        async def show() -> None:
            if not read_filters():
                return
            view.shown += 1
            mine = view.shown
            current = await acting()
            if current is None:
                return
            result = await service.uses(current, view.filter(), page=view.page)
            pages = max((result.total + PER_PAGE - 1) // PER_PAGE, 1)
            if view.page >= pages:
                view.page = pages - 1
                result = await service.uses(current, view.filter(), page=view.page)
            if mine != view.shown:
                return
            totals.text = _.ngettext('{count} use · {hours} · {open} open', '{count} uses · {hours} · {open} open',
                                     result.total).format(
                count=result.total, hours=hours_text(_, result.hours), open=result.open_count)
            page_label.text = _('Page {page} of {pages}').format(page=view.page + 1, pages=pages)
            previous.set_enabled(view.page > 0)
            following.set_enabled(view.page + 1 < pages)
            listing.clear()
            with listing:
                if not result.rows:
                    empty(_('No uses match.'))
                for r in result.rows:
                    _use_card(_, r, close, delete)

        async def refilter() -> None:
            view.page = 0
            await show()

        async def turn(step: int) -> None:
            view.page = max(view.page + step, 0)
            await show()

        async def use_preset(preset: Preset) -> None:
            a, b = preset_dates(preset, datetime.now().astimezone().date())
            first.value, last.value = a.isoformat(), b.isoformat()  # each change reloads; the newest one shows

        for element in (member, machine, first, last, open_only):
            element.on_value_change(refilter)

        async def export() -> None:
            current = await acting()
            if current is None or not read_filters():
                return
            headers = [_('Start'), _('End'), _('Machine'), _('Member'), _('Card'), _('Hours'), _('Open'),
                       _('Without authorization'), _('Sent late by the board')]
            data = await service.export(current, view.filter(), headers, yes=_('yes'))
            download_xlsx(data, f'uses-{datetime.now().astimezone():%Y%m%d-%H%M}')

        async def delete(r: UseRow) -> None:
            current = await acting()
            if current is None:
                return
            try:
                effect = await service.delete_effect(current, r.id)
            except HistoryError as e:
                ui.notify(_(ERRORS.get(e.code, e.code)), type='negative')
                await show()
                return
            what = _('Delete the use of {machine} by {who} ({when})?').format(
                machine=r.machine_name, who=r.member_name or _('Unknown card {card}').format(card=r.card),
                when=_use_text(_, r))
            if not await confirm(_, _('Delete this use'), f'{what}\n{counter_text(_, effect)}', _('Delete')):
                return
            current = await acting()
            if current is None:
                return
            try:
                done = await service.delete_use(current, r.id)
            except HistoryError as e:
                ui.notify(_(ERRORS.get(e.code, e.code)), type='negative')
            else:
                ui.notify(_('Deleted. ') + counter_text(_, done), type='positive')
            await show()

        async def close(r: UseRow) -> None:
            current = await acting()
            if current is None:
                return
            try:
                effect, last_heard = await service.close_effect(current, r.id)
            except HistoryError as e:
                ui.notify(_(ERRORS.get(e.code, e.code)), type='negative')
                await show()
                return
            default = input_value(last_heard)
            with ui.dialog() as dialog, ui.card().classes('w-full max-w-md'):
                ui.label(_('Close this use')).classes('text-lg font-semibold')
                ui.label(_('{machine}, {who}, since {start}.').format(
                    machine=r.machine_name, who=r.member_name or _('Unknown card {card}').format(card=r.card),
                    start=when_text(r.start))).classes('wrap-anywhere')
                at = ui.input(_('Ended at'), value=default).props('type=datetime-local stack-label').classes(
                    'w-full').mark('close-at')
                ui.label(_('By default the use ends when its board was last heard from.')).classes(
                    'text-sm text-slate-500')
                error = field_error().mark('close-error')
                consequence = ui.label(counter_text(_, effect)).classes('wrap-anywhere').mark('close-effect')
                with ui.row().classes('w-full justify-end gap-2'):
                    ui.button(_('Cancel'), on_click=lambda: dialog.submit(None)).props('flat').mark('cancel')
                    ok = ui.button(_('Close the use'), on_click=lambda: dialog.submit(('close', chosen()))).props(
                        'color=primary').mark('close-confirm')

            def chosen() -> datetime | None | bool:
                # untouched: None, the service takes the exact last sign of life (the field only shows minutes)
                return None if at.value == default else parse_local(at.value) or False

            async def changed() -> None:
                end = chosen()
                error.text = ''
                if end is False:
                    message = ERRORS['time_invalid']
                    error.text, consequence.text = _(message), ''
                    ok.disable()
                    return
                who = await acting()
                if who is None:
                    return
                try:
                    new_effect, _end = await service.close_effect(who, r.id, end or None)
                except HistoryError as e:
                    error.text, consequence.text = _(ERRORS.get(e.code, e.code)), ''
                    ok.disable()
                    return
                consequence.text = counter_text(_, new_effect)
                ok.enable()

            at.on_value_change(changed)
            answer = await dialog
            dialog.delete()
            if not answer or answer[1] is False:
                return
            end = answer[1]
            current = await acting()
            if current is None:
                return
            try:
                done = await service.close_use(current, r.id, end)
            except HistoryError as e:
                ui.notify(_(ERRORS.get(e.code, e.code)), type='negative')
            else:
                ui.notify(_('Closed. ') + counter_text(_, done), type='positive')
            await show()

        await show()
        return None
