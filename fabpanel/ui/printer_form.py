"""What the printer pages share: the re-checked actor, the service's refusals as messages, and the admin's
add / edit dialog (checked here for clear messages, then again by the service)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from nicegui import ui
from starlette.requests import Request

from fabpanel.core.printers import PrinterKind
from fabpanel.i18n import N_, Translator
from fabpanel.services.auth import CurrentUser
from fabpanel.services.machines import Refused
from fabpanel.services.printer_forms import BAUDRATES, RANGES, PrinterForm

from .machines import error_label
from .printer_refusals import heater_labels, printer_refusal
from .session import COOKIE

if TYPE_CHECKING:
    from fabpanel.app import Panel
    from fabpanel.services.printers import PrinterRow, PrinterService

__all__ = ['Actor', 'PrinterDialog', 'heater_labels', 'kind_labels', 'printer_refusal', 'user_actor']

Actor = Callable[[], Awaitable[CurrentUser | None]]
NUMBERS = (
    ('max_nozzle_c', N_('Max nozzle °C')),
    ('max_bed_c', N_('Max bed °C')),
    ('max_chamber_c', N_('Max chamber °C')),
    ('nozzle_diameter_mm', N_('Nozzle mm')),
    ('build_x_mm', N_('X mm')),
    ('build_y_mm', N_('Y mm')),
    ('build_z_mm', N_('Z mm')),
)


def user_actor(
    panel: Panel, request: Request, _: Translator, allowed: Callable[[CurrentUser], bool] = lambda _u: True
) -> Actor:
    """Who is acting, read again from the session for every action (a role may have changed since the page
    loaded). The service checks the role once more for each command."""
    token = request.cookies.get(COOKIE)

    async def actor() -> CurrentUser | None:
        user = await panel.auth.session_user(token)
        if user is None or user.must_change_password or not allowed(user):
            ui.notify(_('Your session ended or your role no longer allows this: reload the page.'), type='negative')
            return None
        return user

    return actor


def kind_labels(_: Translator) -> dict[str, str]:
    return {
        PrinterKind.MARLIN: _('Marlin (USB)'),
        PrinterKind.OCTOPRINT: 'OctoPrint',
        PrinterKind.MOONRAKER: 'Klipper / Moonraker',
        PrinterKind.PRUSALINK: 'PrusaLink',
        PrinterKind.BAMBU: _('Bambu Lab (LAN mode)'),
        PrinterKind.SIMULATED: _('Simulated'),
    }


def _words(text: str | None) -> tuple[str, ...]:
    return tuple(w for w in (part.strip() for part in (text or '').split(',')) if w)


class PrinterDialog:
    """Add or edit one printer. The secret (API key / password / access code) is write-only: the page never
    receives it; left empty on an edit, the stored one is kept."""

    def __init__(self, _: Translator, printers: PrinterService, actor: Actor, row: PrinterRow | None) -> None:
        self._, self.printers, self.actor, self.row = _, printers, actor, row
        self.fields: dict[str, ui.input] = {}
        self.errors: dict[str, ui.label] = {}

    async def run(self) -> int | None:
        """Returns the printer's id once saved, None when cancelled."""
        _, row = self._, self.row
        with ui.dialog() as self.dialog, ui.card().classes('w-full max-w-lg'):
            ui.label(_('Edit the printer') if row else _('Add a printer')).classes('text-lg font-semibold')
            self._text('name', _('Name'), row.name if row else '', 'maxlength=80')
            self.kind = (
                ui.select(kind_labels(_), label=_('Kind'), value=row.kind if row else PrinterKind.SIMULATED)
                .classes('w-full')
                .mark('printer-kind')
            )
            self.errors['kind'] = error_label().mark('error-kind')
            self._text('address', _('Address'), row.address if row else '', 'maxlength=500')
            self.fields['address'].props['hint'] = _(
                'USB: /dev/serial/by-id/... or serial:NUMBER · network: '
                'http://host:port · Bambu: host name · simulated: optional'
            )
            self.baudrate = (
                ui.select(list(BAUDRATES), label=_('Baud rate (USB)'), value=row.baudrate if row else 115200)
                .classes('w-full')
                .mark('printer-baudrate')
            )
            self.baudrate.bind_visibility_from(self.kind, 'value', backward=lambda k: k == PrinterKind.MARLIN)
            self._secret()
            with ui.row().classes('w-full gap-2 no-wrap'):
                self._text('username', _('User (PrusaLink)'), row.username if row else '', 'maxlength=80')
                self._text('serial_number', _('Serial (Bambu)'), row.serial_number if row else '', 'maxlength=64')
            self._text(
                'tls_fingerprint',
                _('Certificate fingerprint (SHA-256, optional)'),
                row.tls_fingerprint if row else '',
                'maxlength=100 autocomplete=off spellcheck=false',
            )
            # a prop value, not a props string: a translation with quotes stays text
            self.fields['tls_fingerprint'].props['hint'] = _(
                'Pins the printer certificate: the access code is sent only to the printer that shows it'
            )
            self.fields['tls_fingerprint'].bind_visibility_from(
                self.kind, 'value', backward=lambda k: k == PrinterKind.BAMBU
            )
            with ui.element('div').classes('grid grid-cols-2 sm:grid-cols-3 gap-x-2 w-full'):
                for key, label in NUMBERS:
                    self._text(key, _(label), f'{getattr(row or PrinterForm(), key):g}', 'inputmode=decimal')
            self._text(
                'materials',
                _('Materials (comma-separated)'),
                ', '.join(row.materials) if row else 'PLA, PETG',
                'maxlength=200',
            )
            self._text('tags', _('Tags (comma-separated)'), ', '.join(row.tags) if row else '', 'maxlength=200')
            self.enabled = ui.checkbox(
                _('Enabled (the fleet connects to it)'), value=row.enabled if row else True
            ).mark('printer-enabled')
            with ui.row().classes('w-full justify-end gap-2'):
                ui.button(_('Cancel'), on_click=lambda: self.dialog.submit(None)).props('flat').mark('cancel')
                ui.button(_('Save') if row else _('Add the printer'), on_click=self.save).mark('save-printer')
        result = await self.dialog
        self.dialog.delete()
        return result

    def _secret(self) -> None:
        _, row = self._, self.row
        self._text('api_key', _('API key / password / access code'), '', 'type=password autocomplete=new-password')
        self.clear_secret = None
        if row is not None and row.has_secret:
            # a prop value, not a props string: a translation with quotes stays text
            self.fields['api_key'].props['hint'] = _('One is stored: leave empty to keep it')
            self.clear_secret = ui.checkbox(_('Remove the stored one')).mark('printer-clear-secret')

    def _text(self, key: str, label: str, value: str, props: str = '') -> None:
        self.fields[key] = ui.input(label, value=value).props(props).classes('w-full min-w-0').mark(f'printer-{key}')
        self.errors[key] = error_label().mark(f'error-{key}')

    def _values(self) -> PrinterForm | None:
        """The form, or None with a message under each field that is not right."""
        _, f = self._, self.fields
        for label in self.errors.values():
            label.text = ''
        name, address, kind = (
            ' '.join((f['name'].value or '').split()),
            (f['address'].value or '').strip(),
            self.kind.value,
        )
        if not name:
            self.errors['name'].text = _('Enter a name.')
        if not kind:
            self.errors['kind'].text = _('Choose the kind of printer.')
        elif kind != PrinterKind.SIMULATED and not address:
            self.errors['address'].text = _('Enter the address of the printer.')
        numbers: dict[str, float] = {}
        for key, _label in NUMBERS:
            low, high = RANGES[key]
            try:
                numbers[key] = float((f[key].value or '').strip().replace(',', '.'))
            except ValueError:
                numbers[key] = float('nan')
            if not low <= numbers[key] <= high:  # also catches nan
                self.errors[key].text = _('A number from {min} to {max}.').format(min=f'{low:g}', max=f'{high:g}')
        if any(label.text for label in self.errors.values()):
            return None
        return PrinterForm(
            name=name,
            kind=kind,
            address=address,
            api_key=f['api_key'].value or '',
            clear_api_key=bool(self.clear_secret and self.clear_secret.value),
            username=f['username'].value or '',
            serial_number=f['serial_number'].value or '',
            tls_fingerprint=(f['tls_fingerprint'].value or '') if kind == PrinterKind.BAMBU else '',
            baudrate=int(self.baudrate.value or 115200),
            materials=_words(f['materials'].value),
            tags=_words(f['tags'].value),
            enabled=bool(self.enabled.value),
            **numbers,
        )

    async def save(self) -> None:
        form = self._values()
        if form is None or (user := await self.actor()) is None:
            return
        try:
            if self.row is None:
                printer_id = await self.printers.create(user, form)
            else:
                printer_id = self.row.id
                await self.printers.update(user, printer_id, form)
        except Refused as e:
            (self.errors.get(e.field) or self.errors['name']).text = printer_refusal(self._, e)
            return
        self.dialog.submit(printer_id)
