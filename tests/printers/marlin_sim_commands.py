"""The G-code commands the Marlin simulator (tests/printers/marlin_sim.py) understands, one small handler each.

A handler gets the printer and the command (bytes, no line number) and returns True when it answers the `ok`
itself: at once (M105 `ok T:...`) or when a command that holds the queue is done (G28, G4, M109, M190).
Unknown commands get a plain `ok`, as Marlin does for the many commands a simulator has no reason to model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.printers.marlin_sim import Printer

AMBIENT = 22.0
FIRMWARE = (
    'FIRMWARE_NAME:Marlin 2.1.2.1 (fabpanel sim) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin '
    'PROTOCOL_VERSION:1.0 MACHINE_TYPE:Sim Printer EXTRUDER_COUNT:1 UUID:00000000-0000-0000-0000-000000000000'
)
CAPS = (
    'EEPROM',
    'AUTOREPORT_POS',
    'PROGRESS',
    'PRINT_JOB',
    'HOST_ACTION_COMMANDS',
    'PROMPT_SUPPORT',
    'EMERGENCY_PARSER',
    'THERMAL_PROTECTION',
)


def temps_line(temps: dict[str, list[float]], waiting: bool = False) -> str:
    (t, tt), (b, bt) = temps['T'], temps['B']
    if waiting:
        return f' T:{t:.2f} E:0 W:?'
    return f' T:{t:.2f} /{tt:.2f} B:{b:.2f} /{bt:.2f} @:0 B@:0'


def words(cmd: bytes) -> dict[str, float]:
    out = {}
    for word in cmd.split()[1:]:
        try:
            out[chr(word[0]).upper()] = float(word[1:])
        except (ValueError, IndexError):
            pass
    return out


def move(p: Printer, cmd: bytes) -> bool:
    for axis, value in words(cmd).items():
        if axis in p.pos:
            relative = p.relative_e if axis == 'E' else p.relative
            p.pos[axis] = p.pos[axis] + value if relative else value
    return False


def mode(p: Printer, cmd: bytes) -> bool:
    code = cmd.split()[0].upper()
    if code in (b'G90', b'G91'):
        p.relative = p.relative_e = code == b'G91'  # G90/G91 set E too, as in Marlin 2
    else:
        p.relative_e = code == b'M83'
    return False


def set_position(p: Printer, cmd: bytes) -> bool:
    for axis, value in words(cmd).items():
        if axis in p.pos:
            p.pos[axis] = value
    return False


def home(p: Printer, cmd: bytes) -> bool:
    for axis in ('X', 'Y', 'Z'):
        p.pos[axis] = 0.0
    p.hold('home', 0.3)
    return True


def dwell(p: Printer, cmd: bytes) -> bool:
    w = words(cmd)
    seconds = w.get('S', w.get('P', 0.0) / 1000)
    if seconds <= 0:
        return False
    p.hold('dwell', seconds)
    return True


def heater(name: str, wait: bool) -> Callable[[Any, bytes], bool]:
    def handle(p: Printer, cmd: bytes) -> bool:
        w = words(cmd)
        target = w.get('S', w.get('R'))
        if target is not None:
            p.heat(name, target)
        if wait and target is not None and target > 0:
            p.hold(f'heat_{name}', 0.0)
            return True
        return False

    return handle


def report_temperatures(p: Printer, cmd: bytes) -> bool:
    p.update_temps()
    p.send(b'ok' + temps_line(p.temps).encode() + b'\n')
    return True


def report_position(p: Printer, cmd: bytes) -> bool:
    x, y, z, e = (p.pos[a] for a in 'XYZE')
    p.send(f'X:{x:.2f} Y:{y:.2f} Z:{z:.2f} E:{e:.2f} Count X:{int(x * 80)} Y:{int(y * 80)} Z:{int(z * 400)}\n'.encode())
    return False


def firmware_info(p: Printer, cmd: bytes) -> bool:
    caps = [*CAPS, 'AUTOREPORT_TEMP'] if p.sim.autoreport_cap else CAPS
    lines = [FIRMWARE] + [f'Cap:{c}:1' for c in caps] + (['Cap:AUTOREPORT_TEMP:0'] if not p.sim.autoreport_cap else [])
    p.send(('\n'.join(lines) + '\n').encode())
    return False


def autoreport(p: Printer, cmd: bytes) -> bool:
    if not p.sim.autoreport_cap:
        p.send(b'echo:Unknown command: "M155"\n')
        return False
    seconds = words(cmd).get('S', 0.0)
    p.autoreport = seconds
    p.next_report = (p.temps_at + seconds) if seconds > 0 else float('inf')
    return False


def echo(p: Printer, cmd: bytes) -> bool:
    text = cmd[4:].strip()
    if text.startswith(b'SIM:'):
        return False
    if text.startswith(b'A1 '):
        text = b'//' + text[3:].strip()
    p.send(b'%s\n' % (text if text.startswith(b'//') else b'echo:' + text))
    return False


HANDLERS: dict[bytes, Callable[[Any, bytes], bool]] = {
    b'G0': move,
    b'G1': move,
    b'G2': move,
    b'G3': move,
    b'G90': mode,
    b'G91': mode,
    b'M82': mode,
    b'M83': mode,
    b'G92': set_position,
    b'G28': home,
    b'G4': dwell,
    b'M104': heater('T', wait=False),
    b'M109': heater('T', wait=True),
    b'M140': heater('B', wait=False),
    b'M190': heater('B', wait=True),
    b'M105': report_temperatures,
    b'M114': report_position,
    b'M115': firmware_info,
    b'M155': autoreport,
    b'M118': echo,
}
