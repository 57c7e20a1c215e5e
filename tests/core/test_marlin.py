"""The Marlin protocol: line numbers and checksums as the firmware computes them, every answer parsed to its event."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fabpanel.core.marlin import (
    Action,
    Busy,
    Capability,
    ErrorKind,
    FirmwareError,
    FirmwareInfo,
    Message,
    Ok,
    Position,
    Reading,
    Resend,
    Start,
    TemperatureReport,
    Temperatures,
    Wait,
    checksum,
    merge_temperatures,
    numbered,
    numbered_bytes,
    parse_bytes,
    parse_line,
    strip_comment,
)


def test_numbered_matches_known_marlin_lines() -> None:
    # N0 M110 N0*125 is the line OctoPrint sends at every connect; the others worked out by hand
    assert numbered(0, 'M110 N0') == 'N0 M110 N0*125'
    assert numbered(1, 'M105') == 'N1 M105*38'
    assert numbered(3, 'G28 ; home all') == 'N3 G28*16'
    assert numbered_bytes(1, b'M105') == b'N1 M105*38\n'


def test_checksum_is_the_xor_of_every_byte() -> None:
    assert checksum(b'') == 0
    assert checksum(b'N1 M105') == ord('N') ^ ord('1') ^ ord(' ') ^ ord('M') ^ ord('1') ^ ord('0') ^ ord('5')


def test_strip_comment() -> None:
    assert strip_comment('G1 X10 ; move') == 'G1 X10'
    assert strip_comment('; only a comment') == ''
    assert strip_comment('  M104 S200  \r') == 'M104 S200'


@given(st.integers(min_value=0, max_value=10**9), st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126)))
def test_numbered_always_verifies(n: int, cmd: str) -> None:
    line = numbered(n, cmd)
    body, _, cs = line.rpartition('*')
    assert body.startswith(f'N{n} ')
    assert int(cs) == checksum(body.encode())
    assert ';' not in body
    assert numbered_bytes(n, strip_comment(cmd).encode()) == (line + '\n').encode()


def test_ok_variants() -> None:
    assert parse_line('ok') == Ok()
    assert parse_line('ok\r\n') == Ok()
    assert parse_line('ok N12 P15 B3') == Ok(line=12)
    event = parse_line('ok T:210.0 /210.0 B:60.0 /60.0 @:127 B@:0')
    assert isinstance(event, Ok) and event.temperatures is not None
    assert event.temperatures.tools == (Reading(actual=210.0, target=210.0),)
    assert event.temperatures.bed == Reading(actual=60.0, target=60.0)


def test_resend_variants() -> None:
    assert parse_line('Resend: 5') == Resend(line=5)
    assert parse_line('Resend:5') == Resend(line=5)
    assert parse_line('rs 17') == Resend(line=17)
    assert parse_line('rs N17') == Resend(line=17)


def test_busy_wait_start() -> None:
    assert parse_line('echo:busy: processing') == Busy(reason='processing')
    assert parse_line('busy: paused for user') == Busy(reason='paused for user')
    assert parse_line('wait') == Wait()
    assert parse_line('start') == Start()


def test_temperature_reports() -> None:
    event = parse_line(' T:210.0 /210.0 B:60.0 /60.0 @:127 B@:0')
    assert isinstance(event, TemperatureReport)
    assert event.temperatures.tools == (Reading(actual=210.0, target=210.0),)
    assert not event.temperatures.waiting
    multi = parse_line('T:200.1 /200.0 B:55.0 /60.0 T0:200.1 /200.0 T1:24.0 /0.0 C:30.5 /40.0 @:0 B@:0 @0:0 @1:0')
    assert isinstance(multi, TemperatureReport)
    assert multi.temperatures.tools == (Reading(actual=200.1, target=200.0), Reading(actual=24.0, target=0.0))
    assert multi.temperatures.chamber == Reading(actual=30.5, target=40.0)
    heating = parse_line('T:150.3 E:0 W:?')
    assert isinstance(heating, TemperatureReport)
    assert heating.temperatures.waiting and heating.temperatures.tools == (Reading(actual=150.3),)


def test_heating_report_keeps_known_targets_and_bed() -> None:
    known = Temperatures(tools=(Reading(actual=100.0, target=200.0),), bed=Reading(actual=60.0, target=60.0))
    waiting = Temperatures(tools=(Reading(actual=150.3),), waiting=True)
    merged = merge_temperatures(known, waiting)
    assert merged.tools == (Reading(actual=150.3, target=200.0),)
    assert merged.bed == Reading(actual=60.0, target=60.0) and merged.waiting
    assert merge_temperatures(merged, known) == known


def test_actions() -> None:
    assert parse_line('//action:pause') == Action(name='pause')
    assert parse_line('//action:resume') == Action(name='resume')
    assert parse_line('//action:cancel') == Action(name='cancel')
    assert parse_line('//action:notification Filament runout') == Action(
        name='notification', argument='Filament runout'
    )


def test_errors_are_classified() -> None:
    runaway = parse_line('Error:Thermal Runaway, system stopped! Heater_ID: 0')
    assert runaway == FirmwareError(message='Thermal Runaway, system stopped! Heater_ID: 0', kind=ErrorKind.FATAL)
    assert parse_line('Error:Printer halted. kill() called!') == FirmwareError(
        message='Printer halted. kill() called!', kind=ErrorKind.FATAL
    )
    assert parse_line('Error:checksum mismatch, Last Line: 5') == FirmwareError(
        message='checksum mismatch, Last Line: 5', kind=ErrorKind.LINE, last_line=5
    )
    line_no = parse_line('Error:Line Number is not Last Line Number+1, Last Line: 41')
    assert isinstance(line_no, FirmwareError) and line_no.kind is ErrorKind.LINE and line_no.last_line == 41
    assert parse_line('Error:MINTEMP triggered, system stopped! Heater_ID: bed').kind is ErrorKind.FATAL
    other = parse_line('Error:Probing failed')
    assert isinstance(other, FirmwareError) and other.kind is ErrorKind.OTHER


def test_firmware_info_and_capabilities() -> None:
    info = parse_line(
        'FIRMWARE_NAME:Marlin 2.1.2.1 (Github) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin '
        'PROTOCOL_VERSION:1.0 MACHINE_TYPE:Ender-3 V2 EXTRUDER_COUNT:1 UUID:cede2a2f-41a2'
    )
    assert isinstance(info, FirmwareInfo)
    assert info.name == 'Marlin 2.1.2.1 (Github)'
    assert info.fields['MACHINE_TYPE'] == 'Ender-3 V2' and info.fields['EXTRUDER_COUNT'] == '1'
    assert parse_line('Cap:AUTOREPORT_TEMP:1') == Capability(name='AUTOREPORT_TEMP', enabled=True)
    assert parse_line('Cap:EMERGENCY_PARSER:0') == Capability(name='EMERGENCY_PARSER', enabled=False)


def test_position_and_plain_messages() -> None:
    assert parse_line('X:10.00 Y:20.50 Z:0.30 E:-1.20 Count X:800 Y:1640 Z:120') == Position(
        x=10.0, y=20.5, z=0.3, e=-1.2
    )
    assert parse_line('echo:Unknown command: "M9999"') == Message(text='echo:Unknown command: "M9999"')
    assert parse_line('') == Message(text='')


@given(st.binary(max_size=300))
def test_parse_bytes_never_raises(raw: bytes) -> None:
    parse_bytes(raw)


@given(st.text(max_size=300))
def test_parse_line_never_raises(line: str) -> None:
    parse_line(line)


PIECES = [
    'ok',
    'T:',
    'B:',
    'T0:',
    'Error:',
    'Resend:',
    'rs',
    '//action:',
    'X:',
    ' Y:',
    'Cap:',
    'FIRMWARE_NAME:',
    '1',
    '-',
    '.',
    '/',
    ' ',
    '9' * 12,
    'e5',
    'N',
    'W:',
    'busy:',
]


@given(st.lists(st.sampled_from(PIECES), max_size=20))
def test_protocol_shaped_noise_never_raises(parts: list[str]) -> None:
    parse_line(''.join(parts))
