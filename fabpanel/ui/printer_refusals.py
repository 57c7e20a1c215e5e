"""The printer service's refusals as translated messages: one per `Refused` code, and for G-code safety one per
`Refusal.code` (the core's English reason stays in the logs; pages show their own words with the numbers)."""

from __future__ import annotations

from typing import Any

from fabpanel.core.gcode_safety import MAX_LINE
from fabpanel.i18n import Translator
from fabpanel.services.machines import Refused

from .machines import refusal_text


def heater_labels(_: Translator) -> dict[str, str]:
    return {'nozzle': _('Nozzle'), 'bed': _('Bed'), 'chamber': _('Chamber')}


def _texts(_: Translator) -> dict[str, str]:
    return {
        'printer_unknown': _('This printer does not exist or was deleted.'),
        'printer_busy': _('The printer is busy with a job: wait until it ends (or cancel it) first.'),
        'too_hot': _('{heater}: at most {max} °C on this printer.'),
        'one_line': _('Send one line at a time.'),
        'line_too_long': _('At most {max} characters.'),
        'not_connected': _('The printer is not connected.'),
        'not_printing': _('No job is running.'),
        'not_paused': _('The job is not paused.'),
        'not_your_job': _('Only staff or the member who started the job may do this.'),
        'not_supported': _('This printer cannot do that.'),
        'printer_refused': _('The printer refused: {reason}'),
        'address_required': _('Enter the address of the printer.'),
        'bad_address': _(
            'This address does not fit the kind of printer (USB: /dev/serial/by-id/... or '
            'serial:NUMBER; network: http://host:port; Bambu: host name; simulated: sim://name).'
        ),
        'bambu_needs_serial_and_code': _('A Bambu printer needs its serial number and access code.'),
        'bad_fingerprint': _(
            "The certificate fingerprint is the printer certificate's SHA-256: 64 hexadecimal digits "
            '(colons allowed). Leave it empty to not check the certificate.'
        ),
        'bad_number': _('A number from {min} to {max}.'),
        'too_long': _('At most {max} characters.'),
        'kind_required': _('Choose the kind of printer.'),
        'file_missing': _('The file is no longer there: upload it again.'),
        'file_too_large': _('The file is too large to print from here.'),
        'binary_gcode': _('Binary G-code (.bgcode) cannot be checked here: slice to plain G-code instead.'),
        'no_gcode': _('This 3MF holds no sliced G-code: slice the plate and export it again.'),
        'unreadable_file': _('The file cannot be read: it is damaged or not a G-code or 3MF file.'),
    }


def gcode_refusal(_: Translator, info: dict[str, Any]) -> str:
    """A G-code safety refusal (Refused('gcode_refused', line, check, command, value, limit, reason))."""
    check, command = info.get('check', ''), str(info.get('command') or '')
    numbers = {'line': info.get('line', ''), 'command': command}
    if check == 'too_hot' and info.get('value') is not None and info.get('limit') is not None:
        text = _('Line {line}: {command} asks for {value} °C; this printer allows at most {limit} °C.')
        return text.format(**numbers, value=f'{info["value"]:g}', limit=f'{info["limit"]:g}')
    if check == 'staff_only':
        text = _(
            'Line {line}: {command} changes the printer itself (settings, firmware or storage): '
            'only staff may send it, in a maintenance job.'
        )
        return text.format(**numbers)
    if check == 'bad_value':
        if command:
            return _('Line {line}: {command} has a value that cannot be read safely.').format(**numbers)
        return _('Line {line}: a command no printer firmware defines.').format(**numbers)
    if check == 'line_too_long':
        return _('Line {line} is longer than {max} characters.').format(**numbers, max=MAX_LINE)
    return _('Refused, line {line}: {reason}').format(**numbers, reason=info.get('reason', ''))


def printer_refusal(_: Translator, e: Refused) -> str:
    if e.code == 'gcode_refused':
        return gcode_refusal(_, e.info)
    info: dict[str, Any] = {'max': '', 'min': '', 'line': '', 'reason': '', 'kind': '', **e.info}
    info['heater'] = heater_labels(_).get(str(info.get('heater', e.field)), info.get('heater', ''))
    text = _texts(_).get(e.code)
    return text.format(**info) if text else refusal_text(_, e)
