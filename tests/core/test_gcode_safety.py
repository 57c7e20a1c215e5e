"""G-code safety: heater limits and staff-only commands, however a line is written (tables and properties)."""

from __future__ import annotations

import io
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabpanel.core.gcode_safety import (
    FIRMWARE_REASONS,
    KLIPPER_FIRMWARE,
    MAX_LINE,
    Refusal,
    check_line,
    scan,
    scan_buffer,
)
from fabpanel.core.printers import PrinterLimits

LIMITS = PrinterLimits(max_nozzle_c=260, max_bed_c=110, max_chamber_c=60)


def refused(line: str | bytes, staff: bool = False) -> str | None:
    r = check_line(line, LIMITS, staff=staff)
    return None if r is None else r.code


@pytest.mark.parametrize(
    'line',
    [
        'M104 S400',
        'N10 M104 S400*93',
        'M104S400',
        'm104 s400',
        'M104 S4e2',  # strtod reads 400
        'M104 S0x190',  # so does a hex value
        'M 104 S 300',
        'M0104 S300',
        'M104 T1 S261',
        'M109 R300',
        'M104 S200 B400',  # AUTOTEMP maximum
        'M104 (S400) S200',  # parentheses are comments only on some firmwares
        'M104 S200 (x S400',  # ...and an unclosed one hides nothing either
        'M140 S111',
        'M190 R120',
        'M141 S61',
        'M191 S61',
        'M303 S300',
        'M303 E-1 S120 C8',
        'M303 E-2 S70',
        'G1 X0\rM104 S400',  # a lone CR ends a line on Marlin
        'SET_HEATER_TEMPERATURE HEATER=extruder TARGET=300',
        'set_heater_temperature heater=extruder1 target=261',
        'SET_HEATER_TEMPERATURE HEATER=heater_bed TARGET=120',
        'SET_HEATER_TEMPERATURE HEATER=chamber_heater TARGET=61',  # a generic heater: the lowest limit
        'SET_HEATER_TEMPERATURE HEATER=extruder TARGET=inf',
        'SET_HEATER_TEMPERATURE HEATER=extruder TARGET=nan',
        'PID_CALIBRATE HEATER=extruder TARGET=300',
        'PRINT_START EXTRUDER_TEMP=300 BED_TEMP=60',
        'START_PRINT BED=150',
        b'M104 S400\n',
        b'N3 m104s400*12\r\n',
    ],
)
def test_too_hot_is_refused(line: str | bytes) -> None:
    assert refused(line) == 'too_hot'
    assert refused(line, staff=True) == 'too_hot'  # limits hold for staff too


@pytest.mark.parametrize(
    'line',
    [
        'M104 S260',
        'M104 S215 ; set temperature to 400',
        'M109 S215 T0',
        'M104 S0',
        'M104 S-10',
        'M140 S110',
        'M190 S60',
        'M141 S40',
        'M303 S250',
        'M303 E-1 S100',
        'N12 M104 S200*77',
        'M104 I1',  # a preheat preset (staff set them)
        'M117 Printing M104 S400',  # a message, not a command
        'M1040 S400',  # another command
        'G1 X10 S400',
        'T0',
        'M106 S255',
        'M73 P50 R10',
        '; M104 S400',
        '',
        '   ',
        'SET_HEATER_TEMPERATURE HEATER=extruder TARGET=215',
        'SET_HEATER_TEMPERATURE HEATER=heater_bed',
        'PRINT_START EXTRUDER=extruder1 BED_TEMP=60',
        'BED_MESH_CALIBRATE PROFILE=default',
        'EXCLUDE_OBJECT_START NAME=part_1',
        'TEMPERATURE_WAIT SENSOR=heater_bed MINIMUM=60',
    ],
)
def test_safe_lines_pass(line: str) -> None:
    assert refused(line) is None


@pytest.mark.parametrize('code', sorted(FIRMWARE_REASONS))
def test_firmware_commands_are_for_staff(code: int) -> None:
    for line in (f'M{code}', f'N5 m{code} S1*3', f'M{code:04d}'):
        assert refused(line) == 'staff_only', line
        assert refused(line, staff=True) is None, line


@pytest.mark.parametrize('name', sorted(KLIPPER_FIRMWARE))
def test_klipper_firmware_commands_are_for_staff(name: str) -> None:
    assert refused(name) == 'staff_only'
    assert refused(name.lower() + ' FOO=1') == 'staff_only'
    assert refused(name, staff=True) is None


def test_required_firmware_commands_are_listed() -> None:
    for code in (500, 501, 502, 997, 92, 301, 304, 906, 302, 211, 42, 28, 30, 928):
        assert code in FIRMWARE_REASONS
    assert {'SAVE_CONFIG', 'FIRMWARE_RESTART'} <= set(KLIPPER_FIRMWARE)


def test_odd_lines() -> None:
    assert refused('M65640 S300') == 'bad_value'  # wraps around to M104 on an 8-bit Marlin
    assert refused('SET_HEATER_TEMPERATURE HEATER=extruder TARGET=hot') == 'bad_value'
    assert refused('M104 S200 ' + 'X' * MAX_LINE) == 'line_too_long'
    assert refused('M104 S200 ;' + 'x' * 10 * MAX_LINE) is None  # a long comment is fine
    assert refused('(note) M500') == 'staff_only'


def test_refusal_says_what_and_where() -> None:
    r = scan(['G28', 'M104 S215', 'G1 X1', 'M104 S300'], LIMITS, staff=False)
    assert r == Refusal(4, 'too_hot', r.reason, command='M104', value=300.0, limit=260.0)
    assert '300' in r.reason and '260' in r.reason
    r = scan(['M104 S215\n', 'M500\n'], LIMITS, staff=False)
    assert r is not None and (r.line_no, r.code, r.command) == (2, 'staff_only', 'M500')


def test_scan_counts_lines_across_batches_and_line_ends() -> None:
    lines = [b'G1 X1 Y1 E0.1\r\n'] * 10_000 + [b'M140 S200\r\n']
    r = scan(io.BytesIO(b''.join(lines)), LIMITS, staff=False)
    assert r is not None and r.line_no == 10_001
    # items without their line end, and an item holding two lines (its second line is checked and counted)
    r = scan(['G1 X1', 'G1 X2\nM104 S999', 'G1'], LIMITS, staff=False)
    assert r is not None and r.line_no == 3 and r.value == 999
    # a missing line end on one item does not glue it to the next (which would hide M104 behind G1)
    assert scan([b'G1 X1 ', b'M104 S400\n', b'a\nb\n'], LIMITS, staff=False) is not None


def test_scan_buffer_for_callers_that_read_chunks() -> None:
    data = b'G28\nM104 S200\n;x\rM104 S300\nG1\n'
    r = scan_buffer(data, 101, LIMITS, False)
    assert r is not None and r.line_no == 103 and r.value == 300
    assert scan_buffer(b'G1 X1\n' * 10, 1, LIMITS, False) is None


# ---- properties -----------------------------------------------------------------------------------------------

HEATERS = [
    ('M104', 'S', 260),
    ('M109', 'R', 260),
    ('M104', 'B', 260),
    ('M140', 'S', 110),
    ('M190', 'R', 110),
    ('M141', 'S', 60),
    ('M191', 'S', 60),
    ('M303 E-1', 'S', 110),
    ('M303', 'S', 260),
]


@st.composite
def written(draw: st.DrawFn, command: str, letter: str, value: float) -> str:
    """One of the many ways to write `command letter value` that a firmware reads the same."""
    case = draw(st.sampled_from([str.upper, str.lower]))
    space = draw(st.sampled_from(['', ' ', '  ', '\t']))
    number = draw(
        st.sampled_from([f'{value:g}', f'{value:.3f}', f'{value:g}'.rjust(6, '0') if value >= 0 else f'{value:g}'])
    )
    head = draw(st.sampled_from(['', 'N7 ', 'n123456 ']))
    tail = draw(st.sampled_from(['', ' ;c', '*42', ' T0', ' (note)']))
    if command.startswith('M303') and ' ' in command and not space:
        space = ' '  # M303E-1S120 reads the same, but keep the E parameter apart from the command
    return head + case(command.replace(' ', space or ' ') + space + letter) + number + tail


@given(st.data(), st.sampled_from(HEATERS), st.floats(min_value=-50, max_value=2000, allow_nan=False))
def test_property_limits_hold_however_written(data: st.DataObject, heater: tuple[str, str, int], value: float) -> None:
    command, letter, limit = heater
    value = round(value, 3)
    line = data.draw(written(command, letter, value))
    code = refused(line)
    assert code == (None if value <= limit else 'too_hot'), line


GCODE_CHARS = 'GMNTSRBEXYZF0123456789 .-+;()*\t\rexM_=HEATR'


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=GCODE_CHARS, max_size=40))
def test_property_the_fast_scan_never_hides_a_refused_line(line: str) -> None:
    """The batch prefilter passes over lines; it must never pass over one that check_line refuses."""
    assert (scan([line], LIMITS, staff=False) is None) == (check_line(line, LIMITS, staff=False) is None)
    assert (scan([line.encode() + b'\n'], LIMITS, staff=False) is None) == (refused(line) is None)


@given(st.binary(max_size=200))
def test_property_any_bytes_are_answered(raw: bytes) -> None:
    r = check_line(raw, LIMITS, staff=False)
    assert r is None or r.code in {'too_hot', 'staff_only', 'bad_value', 'line_too_long'}
    scan([raw], LIMITS, staff=False)


@given(
    st.lists(
        st.sampled_from(
            ['G1 X1 Y2 E0.5', ';LAYER:3', 'M73 P4', 'M106 S128', 'T0', 'M104 S200', 'EXCLUDE_OBJECT_END', '']
        ),
        max_size=60,
    ),
    st.integers(min_value=0, max_value=60),
    st.sampled_from(['\n', '\r\n', '\r']),
    st.sampled_from(['M104 S300', 'M500', 'SAVE_CONFIG', 'M140 S4e2']),
)
def test_property_scan_finds_the_bad_line(lines: list[str], where: int, end: str, bad: str) -> None:
    where = min(where, len(lines))
    lines = [*lines[:where], bad, *lines[where:]]
    r = scan([(line + end).encode() for line in lines], LIMITS, staff=False)
    assert r is not None and r.line_no == where + 1
    assert scan([line for line in lines if line != bad], LIMITS, staff=False) is None


def test_scan_speed() -> None:
    """Files are scanned before every print: a 20 MB file of typical sliced G-code in well under a second."""
    rng = random.Random(3)
    kinds = [b'G1 X%.3f Y%.3f E%.5f\n', b';TYPE:Perimeter\n', b'M204 P1500\n', b'G0 F9000 X%.3f Y%.3f\n']
    lines = []
    size = 0
    while size < 20_000_000:
        pattern = kinds[min(3, int(rng.random() ** 3 * 4))]
        line = pattern % tuple(rng.uniform(0, 200) for _ in range(pattern.count(b'%')))
        lines.append(line)
        size += len(line)
    data = b''.join(lines) + b'M104 S300\n'
    started = time.process_time()
    r = scan(io.BytesIO(data), LIMITS, staff=False)
    seconds = time.process_time() - started
    assert r is not None and r.line_no == len(lines) + 1
    assert seconds < 1.0, f'{len(data) / seconds / 1e6:.1f} MB/s'
