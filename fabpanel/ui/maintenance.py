"""Maintenance (maintainers and admins): plans with the hours used since their last intervention and what is due;
interventions recorded by hand and their history; plans kept by admins."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi.responses import RedirectResponse
from nicegui import ui
from starlette.requests import Request

from fabpanel.core.protocol import LCD_WIDTH
from fabpanel.i18n import N_, Translator
from fabpanel.services.auth import CurrentUser
from fabpanel.services.maintenance import (
    PER_PAGE,
    InterventionRow,
    MaintenanceError,
    MaintenanceService,
    PlanInput,
    PlanRow,
    is_web_link,
    lcd_warning,
)

from .components import aria, confirm, download_xlsx, empty, hours_text
from .history import field_error, fresh_user, input_value, parse_local, when_text
from .layout import frame, nav_registered, page_language
from .session import administers, maintains, page_user

if TYPE_CHECKING:
    from fabpanel.app import Panel

ERRORS = {
    'forbidden': N_('Your role does not allow this.'),
    'not_found': N_('This plan no longer exists.'),
    'machine_required': N_('Choose a machine.'),
    'machine_fixed': N_('This plan has interventions on its machine: it cannot move to another one.'),
    'hours_positive': N_('Enter a number of hours greater than 0.'),
    'description_required': N_('Describe what has to be done.'),
    'description_long': N_('At most 200 characters.'),
    'text_invalid': N_('This text holds characters that cannot be shown.'),
    'lcd_long': N_('At most 16 characters: that is all the board can show.'),
    'url_invalid': N_('Enter a web address starting with http:// or https://, or nothing.'),
    'in_future': N_('The time cannot be in the future.'),
    'time_invalid': N_('Enter a date and time.'),
    'note_long': N_('At most 500 characters.'),
    'lcd_not_ascii': N_('The board may not show accented letters or symbols correctly.'),
}
Acting = Callable[[], Awaitable[CurrentUser | None]]


def _error(_: Translator, code: str) -> str:
    return _(ERRORS[code]) if code in ERRORS else code


@dataclass(kw_only=True, slots=True)
class _View:
    due_only: bool = False
    machine_id: int | None = None
    page: int = 0
    # the interventions list below the plans
    plan_id: int | None = None
    log_machine_id: int | None = None
    log_page: int = 0


def _plan_card(_: Translator, p: PlanRow, admin: bool, actions: dict[str, Callable[[PlanRow], Any]]) -> None:
    style = 'w-full p-3 gap-1 ' + ('bg-amber-50 border-l-4 border-amber-600' if p.due else '')
    with ui.card().classes(style).props(f'data-plan={p.id} data-due={str(p.due).lower()}').mark(f'plan-{p.id}'):
        with ui.row().classes('w-full items-start justify-between gap-2 no-wrap'):
            with ui.column().classes('gap-0 min-w-0'):
                ui.label(p.machine_name).classes('font-semibold wrap-anywhere')
                ui.label(p.description).classes('wrap-anywhere')
            if p.due:
                ui.badge(_('Due'), color='orange-9').mark('due-badge')
            else:
                ui.label(_('{hours} left').format(hours=hours_text(_, p.hours_left))).classes(
                    'text-sm text-green-800 whitespace-nowrap')
        ui.label(_('Every {every} · {used} used since the last intervention').format(
            every=hours_text(_, p.hours_between), used=hours_text(_, p.used_hours))).classes('text-sm')
        last = (_('Last intervention: {when}').format(when=when_text(p.last_intervention))
                if p.last_intervention else _('No intervention yet'))
        ui.label(last).classes('text-sm text-slate-600')
        if p.lcd_text:
            ui.label(_('Board shows: {text}').format(text=p.lcd_text)).classes('text-sm text-slate-600 wrap-anywhere')
        if is_web_link(p.instructions_url):
            ui.link(_('Instructions'), p.instructions_url, new_tab=True).props('rel="noopener noreferrer"').classes(
                'text-sm').mark(f'instructions-{p.id}')
        with ui.row().classes('w-full gap-1'):
            ui.button(_('Record intervention'), icon='build', on_click=lambda: actions['record'](p)).props(
                'flat dense no-caps').mark(f'record-{p.id}')
            ui.button(_('History'), icon='history', on_click=lambda: actions['history'](p)).props(
                'flat dense no-caps').mark(f'history-{p.id}')
            if admin:
                ui.button(_('Edit'), icon='edit', on_click=lambda: actions['edit'](p)).props(
                    'flat dense no-caps').mark(f'edit-{p.id}')
                ui.button(_('Delete'), icon='delete', on_click=lambda: actions['delete'](p)).props(
                    'flat dense no-caps color=negative').mark(f'delete-plan-{p.id}')


def _intervention_card(_: Translator, r: InterventionRow) -> None:
    with ui.card().classes('w-full p-3 gap-1').props(f'data-intervention={r.id}').mark(f'intervention-{r.id}'):
        with ui.row().classes('w-full items-start justify-between gap-2 no-wrap'):
            with ui.column().classes('gap-0 min-w-0'):
                ui.label(f'{r.machine_name} · {r.plan_description}').classes('font-semibold wrap-anywhere')
                ui.label(r.member_name or _('Nobody known')).classes('wrap-anywhere')
            ui.badge(_('By hand') if r.source == 'manual' else _('On the board'), color='blue-grey-6')
        ui.label(when_text(r.at)).classes('text-sm text-slate-600')
        if r.note:
            ui.label(r.note).classes('text-sm whitespace-pre-line wrap-anywhere')


def _pager(_: Translator, turn: Callable[[int], Any], marker: str) -> tuple[ui.button, ui.label, ui.button]:
    with ui.row().classes('w-full items-center justify-center gap-2'):
        previous = aria(ui.button(icon='chevron_left', on_click=lambda: turn(-1)).props(
            'flat round').mark(f'{marker}-previous'), _('Previous page'))
        label = ui.label().mark(f'{marker}-page')
        following = aria(ui.button(icon='chevron_right', on_click=lambda: turn(1)).props(
            'flat round').mark(f'{marker}-next'), _('Next page'))
    return previous, label, following


def _set_pager(_: Translator, pager: tuple[ui.button, ui.label, ui.button], page: int, total: int) -> int:
    """Shows page `page` (clamped) of `total` rows; returns the page really shown."""
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    page = min(page, pages - 1)
    previous, label, following = pager
    label.text = _('Page {page} of {pages}').format(page=page + 1, pages=pages)
    previous.set_enabled(page > 0)
    following.set_enabled(page + 1 < pages)
    return page


async def _record_dialog(_: Translator, service: MaintenanceService, acting: Acting, p: PlanRow) -> bool:
    """Ask for the note and time of an intervention done by hand; True once it is recorded."""
    default = input_value(datetime.now().astimezone())
    with ui.dialog() as dialog, ui.card().classes('w-full max-w-md'):
        ui.label(_('Record an intervention')).classes('text-lg font-semibold')
        ui.label(f'{p.machine_name} · {p.description}').classes('wrap-anywhere')
        at = ui.input(_('Done at'), value=default).props('type=datetime-local stack-label').classes(
            'w-full').mark('at')
        at_error = field_error().mark('at-error')
        note = ui.textarea(_('Note')).props('autogrow counter maxlength=500').classes('w-full').mark('note')
        note_error = field_error().mark('note-error')
        with ui.row().classes('w-full justify-end gap-2'):
            ui.button(_('Cancel'), on_click=lambda: dialog.submit(False)).props('flat').mark('cancel')
            ui.button(_('Record'), on_click=lambda: save()).props('color=primary').mark('record-save')

    async def save() -> None:
        at_error.text = note_error.text = ''
        when = None if at.value == default else parse_local(at.value)  # untouched: now, to the second
        if at.value != default and when is None:
            at_error.text = _error(_, 'time_invalid')
            return
        current = await acting()
        if current is None:
            dialog.submit(False)
            return
        try:
            await service.record_intervention(current, p.id, when, note.value or '')
        except MaintenanceError as e:
            if not e.fields:
                ui.notify(_error(_, e.code), type='negative')
                dialog.submit(False)
                return
            at_error.text = _error(_, e.fields['at']) if 'at' in e.fields else ''
            note_error.text = _error(_, e.fields['note']) if 'note' in e.fields else ''
            return
        dialog.submit(True)

    done = await dialog
    dialog.delete()
    return bool(done)


async def _plan_dialog(_: Translator, service: MaintenanceService, acting: Acting, machines: dict[int, str],
                       plan: PlanRow | None) -> bool:
    """Create (plan None) or edit a plan; True once saved."""
    with ui.dialog() as dialog, ui.card().classes('w-full max-w-md'):
        ui.label(_('New maintenance plan') if plan is None else _('Edit the plan')).classes('text-lg font-semibold')
        machine = ui.select(machines, label=_('Machine'), value=plan.machine_id if plan else None,
                            with_input=True).classes('w-full').mark('plan-machine')
        errors = {'machine': field_error().mark('machine-error')}
        hours = ui.number(_('Every how many hours of use'), value=plan.hours_between if plan else None,
                          min=0).classes('w-full').mark('plan-hours')
        errors['hours'] = field_error().mark('hours-error')
        description = ui.input(_('What has to be done'), value=plan.description if plan else '').classes(
            'w-full').mark('plan-description')
        errors['description'] = field_error().mark('description-error')
        lcd = ui.input(_('Text on the board (16 characters)'), value=plan.lcd_text if plan else '').props(
            'counter').classes('w-full').mark('plan-lcd')
        errors['lcd'] = field_error().mark('lcd-error')
        lcd_hint = ui.label().classes('text-amber-800 text-sm').mark('lcd-hint')
        url = ui.input(_('Instructions (web address)'), value=plan.instructions_url if plan else '').props(
            'type=url').classes('w-full').mark('plan-url')
        errors['url'] = field_error().mark('url-error')
        with ui.row().classes('w-full justify-end gap-2'):
            ui.button(_('Cancel'), on_click=lambda: dialog.submit(False)).props('flat').mark('cancel')
            ui.button(_('Save'), on_click=lambda: save()).props('color=primary').mark('plan-save')

    def hint() -> None:
        text = lcd.value or ''
        if len(text.strip()) > LCD_WIDTH:
            n = len(text.strip())
            lcd_hint.text = _.ngettext('{count} character: the board shows only 16.',
                                       '{count} characters: the board shows only 16.', n).format(count=n)
        else:
            warning = lcd_warning(text)
            lcd_hint.text = _error(_, warning) if warning else ''

    lcd.on_value_change(hint)
    hint()

    async def save() -> None:
        for label in errors.values():
            label.text = ''
        data = PlanInput(machine_id=machine.value, hours_between=hours.value, description=description.value or '',
                         lcd_text=lcd.value or '', instructions_url=url.value or '')
        current = await acting()
        if current is None:
            dialog.submit(False)
            return
        try:
            if plan is None:
                await service.create_plan(current, data)
            else:
                await service.update_plan(current, plan.id, data)
        except MaintenanceError as e:
            if not e.fields:
                ui.notify(_error(_, e.code), type='negative')
                dialog.submit(False)
                return
            for key, code in e.fields.items():
                errors[key].text = _error(_, code)
            return
        dialog.submit(True)

    done = await dialog
    dialog.delete()
    return bool(done)


def register(panel: Panel) -> None:
    service = MaintenanceService(panel.engine, panel.boards)
    nav_registered('/maintenance')

    @ui.page('/maintenance')
    async def maintenance(request: Request) -> RedirectResponse | None:
        user = await page_user(request, panel.auth, maintains)
        if isinstance(user, RedirectResponse):
            return user
        _ = page_language(request, user)
        acting = fresh_user(panel.auth, request, maintains, _)
        acting_admin = fresh_user(panel.auth, request, administers, _)
        admin = user.may_administer
        view = _View()
        machines = await service.machines(user)
        with frame(_('Maintenance'), _, path='/maintenance', user=user):
            with ui.row().classes('w-full items-end gap-3'):
                machine = ui.select(machines, label=_('Machine'), with_input=True, clearable=True).classes(
                    'w-full sm:w-64').mark('machine')
                due_only = ui.checkbox(_('Due only')).mark('due-only')
                ui.space()
                if admin:
                    ui.button(_('New plan'), icon='add', on_click=lambda: edit(None)).props('no-caps').mark(
                        'new-plan')
            plans_list = ui.column().classes('w-full gap-2')
            plans_pager = _pager(_, lambda step: turn_plans(step), 'plans')
            ui.label(_('Interventions')).classes('text-xl font-semibold text-slate-800 mt-4')
            with ui.row().classes('w-full items-end gap-3'):
                log_machine = ui.select(machines, label=_('Machine'), with_input=True, clearable=True).classes(
                    'w-full sm:w-64').mark('log-machine')
                log_plan = ui.label().classes('text-slate-700 wrap-anywhere min-w-0').mark('log-plan')
                all_plans = ui.button(_('All plans'), on_click=lambda: pick_plan(None)).props(
                    'flat dense no-caps').mark('all-plans')
                ui.space()
                ui.button(_('Export (xlsx)'), icon='download', on_click=lambda: export()).props('flat no-caps').mark(
                    'export')
            log_list = ui.column().classes('w-full gap-2')
            log_pager = _pager(_, lambda step: turn_log(step), 'log')

        async def show_plans() -> None:
            current = await acting()
            if current is None:
                return
            view.machine_id, view.due_only = machine.value, bool(due_only.value)
            rows, total = await service.plans(current, view.due_only, view.machine_id, page=view.page)
            view.page = _set_pager(_, plans_pager, view.page, total)
            if not rows and total:
                rows, total = await service.plans(current, view.due_only, view.machine_id, page=view.page)
            plans_list.clear()
            with plans_list:
                if not rows:
                    empty(_('Nothing is due.') if view.due_only else _('No maintenance plans yet.'))
                for p in rows:
                    _plan_card(_, p, admin, {'record': record, 'history': history, 'edit': edit, 'delete': delete})

        async def show_log() -> None:
            current = await acting()
            if current is None:
                return
            view.log_machine_id = log_machine.value
            rows, total = await service.interventions(current, view.plan_id, view.log_machine_id, page=view.log_page)
            view.log_page = _set_pager(_, log_pager, view.log_page, total)
            if not rows and total:
                rows, total = await service.interventions(current, view.plan_id, view.log_machine_id,
                                                          page=view.log_page)
            log_list.clear()
            with log_list:
                if not rows:
                    empty(_('No interventions recorded.'))
                for r in rows:
                    _intervention_card(_, r)

        async def refilter_plans() -> None:
            view.page = 0
            await show_plans()

        async def refilter_log() -> None:
            view.log_page = 0
            await show_log()

        async def turn_plans(step: int) -> None:
            view.page = max(view.page + step, 0)
            await show_plans()

        async def turn_log(step: int) -> None:
            view.log_page = max(view.log_page + step, 0)
            await show_log()

        async def pick_plan(p: PlanRow | None) -> None:
            view.plan_id = p.id if p else None
            log_plan.text = _('Plan: {plan}').format(plan=f'{p.machine_name} · {p.description}') if p else ''
            all_plans.set_visibility(p is not None)
            await refilter_log()

        all_plans.set_visibility(False)
        machine.on_value_change(refilter_plans)
        due_only.on_value_change(refilter_plans)
        log_machine.on_value_change(refilter_log)

        async def record(p: PlanRow) -> None:
            if await _record_dialog(_, service, acting, p):
                ui.notify(_('Intervention recorded.'), type='positive')
                await show_plans()
                await show_log()

        async def history(p: PlanRow) -> None:
            await pick_plan(p)

        async def edit(p: PlanRow | None) -> None:
            if await acting_admin() is None:
                return
            if await _plan_dialog(_, service, acting_admin, machines, p):
                ui.notify(_('Plan saved.'), type='positive')
                await show_plans()

        async def delete(p: PlanRow) -> None:
            current = await acting_admin()
            if current is None:
                return
            try:
                count = await service.interventions_of(current, p.id)
            except MaintenanceError as e:
                ui.notify(_error(_, e.code), type='negative')
                return
            message = _('Delete the plan "{plan}" of {machine}?').format(plan=p.description, machine=p.machine_name)
            if count:
                message += '\n' + _.ngettext('Its recorded intervention is deleted with it.',
                                             'Its {count} recorded interventions are deleted with it.',
                                             count).format(count=count)
            if not await confirm(_, _('Delete this plan'), message, _('Delete')):
                return
            current = await acting_admin()
            if current is None:
                return
            try:
                await service.delete_plan(current, p.id)
            except MaintenanceError as e:
                ui.notify(_error(_, e.code), type='negative')
            else:
                ui.notify(_('Plan deleted.'), type='positive')
                if view.plan_id == p.id:
                    await pick_plan(None)
            await show_plans()
            await show_log()

        async def export() -> None:
            current = await acting()
            if current is None:
                return
            headers = [_('Date'), _('Machine'), _('Plan'), _('Member'), _('Source'), _('Note')]
            sources = {'manual': _('By hand'), 'board': _('On the board')}
            data = await service.export_interventions(current, headers, sources, view.plan_id, view.log_machine_id)
            download_xlsx(data, f'interventions-{datetime.now().astimezone():%Y%m%d-%H%M}')

        await show_plans()
        await show_log()
        return None
