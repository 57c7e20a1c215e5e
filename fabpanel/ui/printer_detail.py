"""One printer (/printers/{id}): its live tile in large, controls by role and state (pause, resume, cancel,
emergency stop, preheat and cool down within the printer's limits), the temperature chart, the staff G-code
console and recent jobs. Every action is checked again by the service; its refusal is shown."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi.responses import RedirectResponse
from nicegui import context, ui
from starlette.requests import Request

from fabpanel.core.printers import ACTIVE_STATES, Heater, PrinterState
from fabpanel.i18n import Translator
from fabpanel.live.events import Event
from fabpanel.live.printers import PrinterLive
from fabpanel.printers.driver import PrinterError
from fabpanel.services.auth import CurrentUser
from fabpanel.services.machines import Refused

from .components import confirm, empty
from .layout import frame, page_language
from .machines import duration, when
from .printer_chart import temperature_chart
from .printer_console import console_card
from .printer_form import Actor, printer_refusal, user_actor
from .printer_tile import TILE_CSS, PrinterTiles
from .session import page_user

if TYPE_CHECKING:
    from fabpanel.app import Panel
    from fabpanel.services.printers import PrinterRow, PrinterService

SECTION = 'text-base font-semibold text-slate-700'
PRESETS = (('PLA', 210.0, 60.0), ('PETG', 240.0, 80.0))  # (material, nozzle °C, bed °C)
ROW = 'w-full items-baseline gap-x-4 gap-y-0 border-b border-slate-100 py-1'
OFF_STATES = (PrinterState.OFFLINE, PrinterState.CONNECTING)


def outcome_labels(_: Translator) -> dict[str, str]:
    return {'done': _('Done'), 'failed': _('Failed'), 'cancelled': _('Cancelled'), 'interrupted': _('Interrupted')}


class PrinterPage:
    """One browser's view of one printer: its parts and what its buttons do."""

    def __init__(
        self,
        panel: Panel,
        printers: PrinterService,
        hub: PrinterTiles,
        _: Translator,
        user: CurrentUser,
        actor: Actor,
        row: PrinterRow,
        live: PrinterLive,
    ) -> None:
        self.panel, self.printers, self.hub, self._ = panel, printers, hub, _
        self.user, self.actor, self.row, self.live = user, actor, row, live
        self.own_jobs: set[int] = set()  # jobs of this printer the signed-in member started

    async def build(self) -> None:
        _, row = self._, self.row
        await self._load_own_jobs()
        with ui.element('div').classes('grid grid-cols-1 lg:grid-cols-2 gap-4 w-full'):
            with ui.column().classes('w-full gap-4 min-w-0'):
                self.hub.tile(self.live, _, large=True, link=False)
                self._controls()
            with ui.card().classes('w-full min-w-0 gap-1'):
                ui.label(_('Temperatures, last 30 minutes')).classes(SECTION)
                temperature_chart(self.panel.live, row.id, _)
        if self.user.is_staff:
            console_card(self.panel.live, row.id, _, self._console)
        await self._jobs()

    # ---- controls --------------------------------------------------------------------------------------------------
    def _controls(self) -> None:
        _, staff, limits = self._, self.user.is_staff, self.row
        with ui.card().classes('w-full gap-3'):
            ui.label(_('Controls')).classes(SECTION)
            with ui.row().classes('gap-2'):
                pause = ui.button(_('Pause'), icon='pause', on_click=self.pause).props('outline').mark('pause')
                resume = ui.button(_('Resume'), icon='play_arrow', on_click=self.resume).mark('resume')
                cancel = (
                    ui.button(_('Cancel the job'), icon='cancel', on_click=self.cancel)
                    .props('outline color=negative')
                    .mark('cancel-job')
                )
                stop = (
                    ui.button(_('Emergency stop'), icon='dangerous', on_click=self.emergency_stop)
                    .props('color=negative')
                    .mark('emergency-stop')
                )
            heat = ui.column().classes('w-full gap-2')
            with heat:
                with ui.row().classes('gap-2'):
                    for material, nozzle, bed in PRESETS:
                        ui.button(
                            _('Preheat {material} ({nozzle}/{bed} °C)').format(
                                material=material, nozzle=f'{nozzle:g}', bed=f'{bed:g}'
                            ),
                            icon='local_fire_department',
                            on_click=lambda n=nozzle, b=bed: self.heat(n, b),
                        ).props('outline').mark(f'preheat-{material.lower()}')
                    ui.button(_('Cool down'), icon='ac_unit', on_click=lambda: self.heat(0.0, 0.0)).props(
                        'outline'
                    ).mark('cool-down')
                with ui.row().classes('w-full items-start gap-2'):
                    self.nozzle_in = _degrees_input(
                        _('Nozzle °C (max {max})').format(max=f'{limits.max_nozzle_c:g}'),
                        limits.max_nozzle_c,
                        'target-nozzle',
                    )
                    self.bed_in = _degrees_input(
                        _('Bed °C (max {max})').format(max=f'{limits.max_bed_c:g}'), limits.max_bed_c, 'target-bed'
                    )
                    ui.button(_('Set'), on_click=self.custom).mark('set-targets')
            none = ui.label(
                _('No controls for you right now: staff, or the member who started the job, can pause or cancel it.')
            ).classes('text-sm text-slate-500')

        def update() -> None:
            state, mine = self.live.state, staff or self.live.job_id in self.own_jobs
            pause.visible = mine and state == PrinterState.PRINTING
            resume.visible = mine and state == PrinterState.PAUSED
            cancel.visible = mine and state in ACTIVE_STATES
            stop.visible = staff and state not in OFF_STATES
            heat.visible = staff and state not in OFF_STATES
            none.visible = not any(e.visible for e in (pause, resume, cancel, stop, heat))

        update()
        self._follow(self.panel.live.events.printer_changed, lambda printer_id: update())

    def _follow(self, event: Event[Any], callback: Callable[[Any], Any]) -> None:
        """Call back with this printer's events while this browser's page exists (a few staff at most look at
        one printer: a per-page subscription is cheap here, unlike on the tiles)."""
        printer_id = self.row.id

        def mine(arg: Any) -> Any:
            return callback(arg) if (arg if isinstance(arg, int) else arg[0]) == printer_id else None

        event.subscribe(mine)
        context.client.on_delete(lambda: event.unsubscribe(mine))

    async def _load_own_jobs(self) -> None:
        if self.user.is_staff:
            return
        jobs = await self.printers.jobs(self.row.id, 5)
        self.own_jobs = {j.id for j in jobs if j.member_id == self.user.member_id and j.outcome is None}

    async def _do(self, command: Callable[[CurrentUser], Awaitable[Any]], done: str) -> None:
        if (user := await self.actor()) is None:
            return
        try:
            await command(user)
        except Refused as e:
            ui.notify(printer_refusal(self._, e), type='negative', multi_line=True)
            return
        except PrinterError as e:  # the printer's own answer, fit to show (as text)
            ui.notify(
                self._('The printer refused: {reason}').format(reason=str(e)[:200]), type='negative', multi_line=True
            )
            return
        ui.notify(done, type='positive')

    async def pause(self) -> None:
        await self._do(lambda u: self.printers.pause(u, self.row.id), self._('Pausing.'))

    async def resume(self) -> None:
        await self._do(lambda u: self.printers.resume(u, self.row.id), self._('Resuming.'))

    async def cancel(self) -> None:
        _ = self._
        file_name = self.live.file_name or _('the current job')
        if await confirm(
            _,
            _('Cancel {file}?').format(file=file_name),
            _(
                'The job stops and cannot be resumed; the printer runs its safe end (heaters off, head '
                'away from the part).'
            ),
            _('Cancel the job'),
        ):
            await self._do(lambda u: self.printers.cancel(u, self.row.id), _('Cancelling.'))

    async def emergency_stop(self) -> None:
        _ = self._
        if await confirm(
            _,
            _('Emergency stop {name}?').format(name=self.row.name),
            _(
                'Heaters and motors stop at once and the job is lost. The printer may need a reset '
                '(power it off and on) before it prints again.'
            ),
            _('Emergency stop'),
        ):
            await self._do(lambda u: self.printers.emergency_stop(u, self.row.id), _('Emergency stop sent.'))

    async def heat(self, nozzle: float, bed: float) -> None:
        async def both(user: CurrentUser) -> None:
            await self.printers.set_temperature(user, self.row.id, Heater.NOZZLE, nozzle)
            await self.printers.set_temperature(user, self.row.id, Heater.BED, bed)

        await self._do(both, self._('Cooling down.') if nozzle == bed == 0 else self._('Heating.'))

    async def custom(self) -> None:
        _ = self._
        targets = [
            (h, _parse(field.value))
            for h, field in ((Heater.NOZZLE, self.nozzle_in), (Heater.BED, self.bed_in))
            if (field.value or '').strip()
        ]
        if not targets or any(t is None for _h, t in targets):
            ui.notify(_('Enter a temperature in °C (0 switches the heater off).'), type='warning')
            return

        async def each(user: CurrentUser) -> None:
            for heater, target in targets:
                await self.printers.set_temperature(user, self.row.id, heater, float(target or 0))

        await self._do(each, _('Targets set.'))

    async def _console(self, line: str) -> list[str] | None:
        if (user := await self.actor()) is None:
            return None
        try:
            return await self.printers.console(user, self.row.id, line)  # Refused goes to the console's log
        except PrinterError as e:
            raise Refused('printer_refused', line=1, reason=str(e)[:200]) from e

    # ---- recent jobs -----------------------------------------------------------------------------------------------
    async def _jobs(self) -> None:
        _, outcomes = self._, outcome_labels(self._)

        @ui.refreshable
        async def listing() -> None:
            jobs = await self.printers.jobs(self.row.id, 20)
            if not jobs:
                empty(_('No jobs yet.'))
            for j in jobs:
                with ui.row().classes(ROW).mark('job'):
                    ui.label(when(j.started_at)).classes('text-sm tabular-nums')
                    ui.label(j.file_name).classes('text-sm [overflow-wrap:anywhere] min-w-0 grow')
                    ui.label(j.started_by or _('at the printer')).classes('text-sm [overflow-wrap:anywhere]')
                    ui.label(duration(j.duration_s)).classes('text-sm tabular-nums')
                    ui.label(outcomes.get(j.outcome, j.outcome) if j.outcome else _('in progress')).classes(
                        'text-sm font-medium'
                    ).props(f'data-outcome={j.outcome or "active"}')
                    if j.reason and j.outcome in ('failed', 'interrupted'):
                        ui.label(j.reason[:200]).classes('text-sm text-red-700 w-full [overflow-wrap:anywhere]')

        with ui.card().classes('w-full'):
            ui.label(_('Recent jobs')).classes(SECTION)
            await listing()

        async def changed(_arg: tuple[Any, ...]) -> None:
            await self._load_own_jobs()
            await listing.refresh()

        self._follow(self.panel.live.events.job_started, changed)
        self._follow(self.panel.live.events.job_ended, changed)


def _parse(text: str | None) -> float | None:
    try:
        return float((text or '').strip().replace(',', '.'))
    except ValueError:
        return None


def _degrees_input(label: str, maximum: float, marker: str) -> ui.input:
    field = ui.input(label).props('inputmode=decimal dense outlined').classes('w-36').mark(marker)
    field.props['max'] = maximum  # a hint for the browser; the service enforces the limit
    return field


def register(panel: Panel, hub: PrinterTiles) -> None:
    @ui.page('/printers/{printer_id}')
    async def printer_page(request: Request, printer_id: int) -> RedirectResponse | None:
        user = await page_user(request, panel.auth)
        if isinstance(user, RedirectResponse):
            return user
        _ = page_language(request, user)
        printers: PrinterService = panel.printers
        row = await printers.get(printer_id)
        live = panel.live.printers.get(printer_id)
        ui.add_css(TILE_CSS)
        # the page title stays ours (a printer's name is admin-typed text: shown as a label only)
        with frame(_('Printer {id}').format(id=printer_id), _, path='/printers', user=user):
            ui.link(_('All printers'), '/printers').classes('text-sm')
            if row is None or live is None:
                empty(_('There is no printer {id}.').format(id=printer_id))
                return None
            await PrinterPage(panel, printers, hub, _, user, user_actor(panel, request, _), row, live).build()
        return None
