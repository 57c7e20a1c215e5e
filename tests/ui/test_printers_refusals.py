"""Every refusal the printer service can raise has a message of its own, marked for translation: the codes are read
from the service's source, so a new `Refused('...')` without a message fails here. G-code safety refusals are
shown in the page's words per check, with the line and numbers, never as the core's English reason."""

from __future__ import annotations

import ast
import gettext
import inspect
from pathlib import Path

import pytest

from fabpanel.core.gcode_safety import MAX_LINE, check_line
from fabpanel.core.printers import PrinterLimits
from fabpanel.i18n import Translator, gettext_for
from fabpanel.services import machines, printer_forms, printers
from fabpanel.services.machines import Refused
from fabpanel.services.printers import refused_gcode
from fabpanel.ui.machines import refusal_text
from fabpanel.ui.printer_refusals import printer_refusal

MARK = '⟦'


class Marking(gettext.NullTranslations):
    """Returns every message it is asked to translate with a mark, so a text that skipped `_()` shows."""

    def gettext(self, message: str) -> str:
        return MARK + message

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return MARK + (singular if n == 1 else plural)


def _codes_in(tree: ast.AST, returned_by: dict[str, set[str]]) -> set[str]:
    codes: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'Refused' and node.args):
            continue
        first = node.args[0]
        if isinstance(first, ast.Name):  # a code returned by a check function: its string returns
            assert first.id in returned_by, f'Refused({first.id}) at line {node.lineno}: where do its codes come from?'
            codes |= returned_by[first.id]
            continue
        found = _literal(first)
        codes |= found
    return codes


def _literal(expr: ast.expr) -> set[str]:
    """The codes an argument can be: a string, or either branch of a conditional."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return {expr.value}
    if isinstance(expr, ast.IfExp):
        return _literal(expr.body) | _literal(expr.orelse)
    return set()


def _returned_strings(module: object, function: str) -> set[str]:
    tree = ast.parse(inspect.getsource(getattr(module, function)))
    return {
        n.value.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Return) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
    }


def service_codes() -> set[str]:
    """Every code services/printers.py and printer_forms.py raise, and those of the machines helpers they call."""
    returned = {'refusal': _returned_strings(printer_forms, 'scan_file')}
    codes: set[str] = set()
    for module in (printers, printer_forms):
        codes |= _codes_in(ast.parse(Path(inspect.getfile(module)).read_text()), returned)
    for helper in ('clean_name', 'require_admin'):
        codes |= _codes_in(ast.parse(inspect.getsource(getattr(machines, helper))), {})
    return codes


def test_the_source_scan_finds_the_codes() -> None:
    codes = service_codes()
    # a sample of each way a code is written: literal, conditional, returned by scan_file, raised by a helper
    assert {'printer_busy', 'not_paused', 'binary_gcode', 'no_gcode', 'unreadable_file', 'name_required'} <= codes
    assert {'bad_fingerprint', 'gcode_refused', 'file_too_large', 'forbidden'} <= codes


@pytest.mark.parametrize('code', sorted(service_codes()))
def test_every_refusal_has_its_own_translated_message(code: str) -> None:
    _ = Translator('xx', Marking())
    info = {'max': 9, 'min': 1, 'reason': 'r', 'line': 3, 'check': 'too_hot', 'value': 300.0, 'limit': 250.0}
    text = printer_refusal(_, Refused(code, 'nozzle', **info))
    generic = refusal_text(_, Refused('no-such-code'))
    assert text.startswith(MARK), f'{code}: {text!r} is not marked for translation'
    assert text != generic.replace('no-such-code', code), f'{code} falls back to the generic message'
    assert '{' not in text and code not in text, text


@pytest.mark.parametrize(
    ('line', 'staff', 'expected'),
    [
        ('M104 S400', True, 'Line 1: M104 asks for 400 °C; this printer allows at most 250 °C.'),
        ('M500', False, 'Line 1: M500 changes the printer itself'),
        ('SET_HEATER_TEMPERATURE HEATER=extruder TARGET=hot', True, 'Line 1: SET_HEATER_TEMPERATURE has a value'),
        ('M65640', True, 'Line 1: a command no printer firmware defines.'),  # an 8-bit Marlin would run M104
        ('G1 X' + '1' * (MAX_LINE + 5), True, f'Line 1 is longer than {MAX_LINE} characters.'),
    ],
)
def test_gcode_refusals_are_shown_per_check(line: str, staff: bool, expected: str) -> None:
    refusal = check_line(line, PrinterLimits(max_nozzle_c=250), staff=staff)
    assert refusal is not None
    english = gettext_for('en')
    assert printer_refusal(english, refused_gcode(refusal)).startswith(expected)
    marked = printer_refusal(Translator('xx', Marking()), refused_gcode(refusal))
    assert marked.startswith(MARK) and refusal.reason not in marked  # the page's words, not the core's reason
