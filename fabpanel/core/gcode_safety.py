"""G-code safety: refuse (never clamp) heater targets above a printer's limits and firmware-changing commands
for anyone but staff. Used on every path that sends G-code: files before a print, the console, preheat.

The parser reads a line the way the most permissive firmware could: Marlin (`N10 M104 S400*71`, `M104S400`,
`M 104`, lower case, spaces between letter and value, hex values through strtof), Klipper (`KEY=value`
commands, no parenthesis comments, exponents through float()). Where firmwares differ the stricter reading
wins: every occurrence of a target parameter is checked (also inside parentheses, which only some firmwares
treat as comments), and `S4e2` counts as 400.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from operator import methodcaller

from fabpanel.core.printers import Heater, PrinterLimits

MAX_LINE = 1024  # characters before a ';' comment; Marlin itself takes 96, Klipper macro calls stay far below
MAX_CODE = 9999  # no firmware defines higher numbers; an 8-bit Marlin would wrap M65640 around to M104

# Marlin/RepRap-style commands that change stored settings, the firmware, the SD card or what the printer runs
# next without it passing through this check. M500-M502/M92/M301/M304/M906/M302/M211/M42/M28/M30/M928/M997
# are from the security notes; the others are added for the same reasons (see FIRMWARE_REASONS).
FIRMWARE_REASONS: dict[int, str] = {
    500: 'stores settings in EEPROM',
    501: 'reloads settings from EEPROM',
    502: 'resets settings to defaults',
    997: 'updates the firmware',
    92: 'changes steps per unit',
    301: 'changes the nozzle PID',
    304: 'changes the bed PID',
    309: 'changes the chamber PID',
    906: 'changes stepper motor currents',
    907: 'changes stepper motor currents',
    302: 'allows cold extrusion',
    211: 'changes software endstops',
    121: 'disables endstops',
    42: 'drives a pin directly',
    43: 'drives pins for debugging',
    260: 'sends raw I2C data',
    28: 'writes a file to the SD card',
    30: 'deletes a file on the SD card',
    928: 'logs to the SD card',
    23: 'selects an SD file that is not checked',
    24: 'starts an SD file that is not checked',
    32: 'starts an SD file that is not checked',
    98: 'runs a macro file that is not checked',
    145: 'changes the preheat presets',
    143: 'changes a heater maximum',
    305: 'changes thermistor settings',
    306: 'changes the heater model (MPC)',
    575: 'changes the serial speed',
    851: 'changes the probe offset',
    999: 'restarts the firmware after a stop',
}
for _n in range(810, 820):  # M810-M819 store G-code macros that run later, unchecked
    FIRMWARE_REASONS[_n] = 'defines a G-code macro'

KLIPPER_FIRMWARE: dict[str, str] = {
    'SAVE_CONFIG': 'writes the printer configuration',
    'FIRMWARE_RESTART': 'restarts the firmware',
    'RESTART': 'restarts the firmware',
    'SET_KINEMATIC_POSITION': 'overrides the homed position',
    'FORCE_MOVE': 'moves a stepper without limits',
    'SET_STEPPER_ENABLE': 'switches steppers directly',
    'SET_TMC_CURRENT': 'changes stepper motor currents',
    'SET_TMC_FIELD': 'changes stepper driver registers',
    'SDCARD_PRINT_FILE': 'starts a file that is not checked',
    'TUNING_TOWER': 'rewrites a command per height',
    'SET_PID': 'changes a heater PID',
    'MANUAL_STEPPER': 'moves a stepper without limits',
}

# parameters that set a target, per command: {command: (heater or None to read from E, parameter letters)}
HEATER_PARAMS: dict[int, tuple[Heater | None, str]] = {
    104: (Heater.NOZZLE, 'SRB'),
    109: (Heater.NOZZLE, 'SRB'),  # B: AUTOTEMP maximum
    140: (Heater.BED, 'SR'),
    190: (Heater.BED, 'SR'),
    141: (Heater.CHAMBER, 'SR'),
    191: (Heater.CHAMBER, 'SR'),
    303: (None, 'S'),  # PID autotune: E-1 bed, E-2 chamber, else a hotend
}
KLIPPER_TARGETS = {'SET_HEATER_TEMPERATURE', 'PID_CALIBRATE', 'MPC_CALIBRATE'}

_NUMBER = r'[-+]?(?:0x[0-9a-f]*\.?[0-9a-f]*(?:p[-+]?\d+)?|(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)'
_FLAGS = re.IGNORECASE | re.ASCII
_COMMAND = re.compile(r'\s*(?:n\s*\d+\s*)?(?:([gmt])\s*(\d+)(?:\.\d+)?|([a-z_][a-z0-9_]*))', _FLAGS)
_PARAM = re.compile(r'([a-z])\s*(' + _NUMBER + ')', _FLAGS)
_KEY_VALUE = re.compile(r'([a-z_][a-z0-9_]*)\s*=\s*("[^"]*"|\S*)', _FLAGS)
_PARENS = re.compile(r'\([^)]*(?:\)|$)')
_CHECKSUM = re.compile(r'\*\s*\d*\s*$')
_LINE_END = re.compile(r'\r\n?|\n')  # Marlin ends a line at either; nothing else splits a line


def _candidate_pattern(line_start: bytes) -> re.Pattern[bytes]:
    """Where a line worth parsing starts: a watched M-code, a Klipper command, T, anything odd; not blank lines,
    comments, moves (G0/G1/...) or other M-codes (M73, M106, M204...), which are almost every line of a file."""
    watched = '|'.join(str(n) for n in sorted({*FIRMWARE_REASONS, *HEATER_PARAMS}, reverse=True)).encode()
    return re.compile(
        line_start
        + rb'(?>[ \t]*(?:[Nn][ \t]*\d+[ \t]*)?)(?:[Mm][ \t]*0*(?:'
        + watched
        + rb'|\d{5})(?![0-9])|[^GgMm; \t\r\n]|[GgMm][ \t]*[^\d \t])',
        re.MULTILINE,
    )


_CANDIDATE = _candidate_pattern(rb'^')
# a lone \r starts a line too ('G1 X0\rM104 S400' is two lines to Marlin); slower, so only where one occurs
_CANDIDATE_CR = _candidate_pattern(rb'(?:^|(?<=\r))')
BATCH = 4096  # lines joined into one buffer for the candidate search
_ENDS_LINE = methodcaller('endswith', b'\n')


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a line may not be sent. `code`: too_hot, staff_only, bad_value, line_too_long."""

    line_no: int
    code: str
    reason: str  # English, for logs and staff; pages translate `code` with `command`, `value`, `limit`
    command: str = ''
    value: float | None = None
    limit: float | None = None


def _number(text: str) -> float:
    text = text.strip().strip('"').lower()
    sign = -1.0 if text.startswith('-') else 1.0
    body = text.lstrip('+-')
    if body.startswith('0x'):
        return sign * float.fromhex(body if body != '0x' else '0x0')
    return float(text)


def _heater_for_klipper(name: str) -> Heater | None:
    name = name.strip('"').lower()
    if name.startswith('extruder'):
        return Heater.NOZZLE
    if name == 'heater_bed':
        return Heater.BED
    return None  # a heater_generic: held to the lowest limit below


def _limit(limits: PrinterLimits, heater: Heater | None) -> float:
    if heater is None:
        return min(limits.max_nozzle_c, limits.max_bed_c, limits.max_chamber_c)
    return limits.max_for(heater)


def _too_hot(line_no: int, command: str, value: float, heater: Heater | None, limit: float) -> Refusal:
    what = heater.value if heater is not None else 'heater'
    return Refusal(
        line_no,
        'too_hot',
        f"{command}: {what} {value:g} °C is above this printer's limit of {limit:g} °C",
        command=command,
        value=value,
        limit=limit,
    )


def _check_marlin(
    letter: str, number: int, rest: str, limits: PrinterLimits, staff: bool, line_no: int
) -> Refusal | None:
    if letter != 'M':
        return None
    command = f'M{number}'
    reason = FIRMWARE_REASONS.get(number)
    if reason is not None and not staff:
        return Refusal(line_no, 'staff_only', f'{command} {reason}: staff only', command=command)
    spec = HEATER_PARAMS.get(number)
    if spec is None:
        return None
    heater, letters = spec
    params = [(p.upper(), v) for p, v in _PARAM.findall(rest)]
    if heater is None:  # M303: E picks the heater
        e = [_number(v) for p, v in params if p == 'E']
        heater = Heater.BED if -1 in e else Heater.CHAMBER if -2 in e else Heater.NOZZLE
    limit = limits.max_for(heater)
    for p, v in params:
        if p in letters:
            value = _number(v)
            if not value <= limit:  # also refuses nan
                return _too_hot(line_no, command, value, heater, limit)
    return None


def _klipper_targets(name: str, params: dict[str, str]) -> list[tuple[str, Heater | None]]:
    """(parameter, heater) pairs of a Klipper command that set a temperature."""
    if name in KLIPPER_TARGETS:
        return [('TARGET', _heater_for_klipper(params.get('HEATER', '')))]
    # macros such as PRINT_START EXTRUDER_TEMP=215 BED=60: a heuristic, but slicers pass temperatures this way
    found: list[tuple[str, Heater | None]] = []
    for key in params:
        if any(word in key for word in ('EXTRUDER', 'NOZZLE', 'HOTEND')):
            found.append((key, Heater.NOZZLE))
        elif 'BED' in key:
            found.append((key, Heater.BED))
        elif 'CHAMBER' in key:
            found.append((key, Heater.CHAMBER))
    return found


def _check_klipper(name: str, rest: str, limits: PrinterLimits, staff: bool, line_no: int) -> Refusal | None:
    name = name.upper()
    reason = KLIPPER_FIRMWARE.get(name)
    if reason is not None and not staff:
        return Refusal(line_no, 'staff_only', f'{name} {reason}: staff only', command=name)
    params = {k.upper(): v for k, v in _KEY_VALUE.findall(rest)}
    strict = name in KLIPPER_TARGETS
    for key, heater in _klipper_targets(name, params):
        if key not in params:
            continue
        try:
            value = _number(params[key])
        except ValueError:
            if not strict:
                continue  # a macro parameter that is not a number (EXTRUDER=extruder1)
            return Refusal(line_no, 'bad_value', f'{name}: {key} is not a number', command=name)
        limit = _limit(limits, heater)
        if not (math.isfinite(value) and value <= limit):
            return _too_hot(line_no, name, value, heater, limit)
    return None


def _code_part(text: str, line_no: int) -> str | Refusal:
    end = text.find(';', 0, MAX_LINE + 1)
    if end < 0:
        if len(text) > MAX_LINE:
            return Refusal(line_no, 'line_too_long', f'line longer than {MAX_LINE} characters')
        end = len(text)
    return _CHECKSUM.sub('', text[:end])


def check_line(text: str | bytes, limits: PrinterLimits, *, staff: bool, line_no: int = 1) -> Refusal | None:
    """None when the line may be sent, else why not. A line end inside `text` starts another line (checked too)."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode('latin-1')  # never fails; non-ASCII bytes cannot form a command
    for part in _LINE_END.split(text):
        refusal = _check_one(part, limits, staff, line_no)
        if refusal is not None:
            return refusal
    return None


def _check_one(text: str, limits: PrinterLimits, staff: bool, line_no: int) -> Refusal | None:
    code = _code_part(text, line_no)
    if isinstance(code, Refusal):
        return code
    # the command is read without parenthesis comments (Marlin's PAREN_COMMENTS); parameters with them
    m = _COMMAND.match(_PARENS.sub(' ', code))
    if m is None:
        return None
    letter, number, name = m.group(1), m.group(2), m.group(3)
    try:
        if letter is not None:
            if int(number) > MAX_CODE:
                return Refusal(line_no, 'bad_value', f'no firmware defines {m.group(0).strip()}')
            start = _COMMAND.match(code)
            rest = code[start.end() :] if start is not None and start.group(1) else code
            return _check_marlin(letter.upper(), int(number), rest, limits, staff, line_no)
        return _check_klipper(name, code[m.end() :], limits, staff, line_no)
    except (ValueError, OverflowError):
        return Refusal(line_no, 'bad_value', 'a value that cannot be read', command=m.group(0).strip())


def scan_buffer(data: bytes, first_line: int, limits: PrinterLimits, staff: bool) -> Refusal | None:
    """The first refused line among the lines of `data` (whole lines joined by \\n, as read from a file);
    `first_line` is the number of its first line. For callers that read a file in chunks themselves."""
    line_no, counted = first_line, 0
    pattern = _CANDIDATE_CR if data.count(b'\r') != data.count(b'\r\n') else _CANDIDATE
    for m in pattern.finditer(data):
        pos = m.start()
        line_no += data.count(b'\n', counted, pos)
        counted = pos
        bound = pos + MAX_LINE + 2  # a longer line is refused whatever follows, so never read further
        end = min(
            e if (e := data.find(b'\n', pos, bound)) >= 0 else bound,
            e if (e := data.find(b'\r', pos, bound)) >= 0 else bound,
        )
        refusal = check_line(data[pos:end], limits, staff=staff, line_no=line_no)
        if refusal is not None:
            return refusal
    return None


def _as_buffer(batch: list[str | bytes]) -> bytes:
    """The batch as one buffer with exactly one \\n between lines, whether the lines kept their ends or not."""
    if isinstance(batch[0], bytes):  # lines read from a file: join them as they are when that is exact
        try:
            data = b''.join(batch)  # type: ignore[arg-type]
        except TypeError:  # bytes and str mixed
            pass
        else:
            if all(map(_ENDS_LINE, batch[:-1])) and data.count(b'\n') == len(batch) - (not data.endswith(b'\n')):
                return data
    as_bytes = [line if isinstance(line, bytes) else line.encode('utf-8', 'replace') for line in batch]
    # each item is one line: a line end at its end goes, one inside it stays (and starts a line of its own)
    return b'\n'.join(line[:-1] if line.endswith(b'\n') else line for line in as_bytes)


def scan(lines: Iterable[str | bytes], limits: PrinterLimits, *, staff: bool) -> Refusal | None:
    """The first line of a file (or console batch) that may not be sent, or None. Lines are numbered from 1.
    Lines go through in batches: one regex over each batch passes over moves, comments and blank lines in C."""
    it = iter(lines)
    first = 1
    while batch := list(islice(it, BATCH)):
        refusal = scan_buffer(_as_buffer(batch), first, limits, staff)
        if refusal is not None:
            return refusal
        first += len(batch)
    return None
