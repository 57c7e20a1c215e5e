"""The Marlin serial protocol, pure: number and checksum outgoing lines, parse what the firmware answers.

No I/O here. The driver (fabpanel/printers/marlin.py) feeds received lines in and writes the lines built here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import reduce
from operator import xor

MAX_LINE = 96  # Marlin's MAX_CMD_SIZE: longer lines are truncated by the firmware (and then fail the checksum)


# ---- outgoing ----------------------------------------------------------------------------------------------------
def checksum(data: bytes) -> int:
    """Marlin's line checksum: the XOR of every byte before the `*`."""
    return reduce(xor, data, 0)


def strip_comment(line: str) -> str:
    """The command part of a G-code line: no `;` comment, no surrounding white space ('' for blank lines)."""
    cut = line.find(';')
    return (line if cut < 0 else line[:cut]).strip()


def strip_comment_bytes(line: bytes) -> bytes:
    cut = line.find(b';')
    return (line if cut < 0 else line[:cut]).strip()


def numbered(n: int, cmd: str) -> str:
    """`N{n} {cmd}*{checksum}` for a command (its comment stripped), as Marlin expects it on the wire."""
    body = f'N{n} {strip_comment(cmd)}'
    return f'{body}*{checksum(body.encode())}'


def numbered_bytes(n: int, cmd: bytes) -> bytes:
    """The hot path of numbered(): an already stripped command in, the wire line (with newline) out."""
    body = b'N%d %s' % (n, cmd)
    return b'%s*%d\n' % (body, reduce(xor, body, 0))


# ---- incoming ----------------------------------------------------------------------------------------------------
@dataclass(kw_only=True, slots=True, frozen=True)
class Reading:
    actual: float
    target: float | None = None


@dataclass(kw_only=True, slots=True, frozen=True)
class Temperatures:
    tools: tuple[Reading, ...] = ()  # by extruder index (T0, T1, ...); a lone `T:` is tool 0
    bed: Reading | None = None
    chamber: Reading | None = None
    waiting: bool = False  # an M109/M190 heat-up line (`W:`): the firmware is busy heating, not stuck


@dataclass(kw_only=True, slots=True, frozen=True)
class Ok:
    line: int | None = None  # ADVANCED_OK `ok N12 P15 B3`
    temperatures: Temperatures | None = None  # M105 answers `ok T:...`


@dataclass(kw_only=True, slots=True, frozen=True)
class Resend:
    line: int


@dataclass(kw_only=True, slots=True, frozen=True)
class Busy:
    reason: str = ''  # 'processing', 'paused for user', ...


@dataclass(kw_only=True, slots=True, frozen=True)
class Wait:
    """Marlin (NO_TIMEOUTS) idles with nothing to do: an `ok` we wait for may be lost."""


@dataclass(kw_only=True, slots=True, frozen=True)
class TemperatureReport:
    temperatures: Temperatures


@dataclass(kw_only=True, slots=True, frozen=True)
class Action:
    name: str  # pause, resume, cancel, paused, resumed, disconnect, notification, prompt_begin, ...
    argument: str = ''


class ErrorKind(StrEnum):
    LINE = 'line'  # checksum / line number trouble: a Resend follows, the job goes on
    FATAL = 'fatal'  # the firmware stopped (kill(), thermal runaway, MINTEMP/MAXTEMP): the job failed
    OTHER = 'other'  # reported, the job goes on


@dataclass(kw_only=True, slots=True, frozen=True)
class FirmwareError:
    message: str
    kind: ErrorKind
    last_line: int | None = None


@dataclass(kw_only=True, slots=True, frozen=True)
class FirmwareInfo:
    name: str  # 'Marlin 2.1.2.1 (Github)'
    fields: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(kw_only=True, slots=True, frozen=True)
class Capability:
    name: str
    enabled: bool


@dataclass(kw_only=True, slots=True, frozen=True)
class Start:
    """The firmware (re)started: a fresh boot, a reset button, a brown-out. Line numbers start over."""


@dataclass(kw_only=True, slots=True, frozen=True)
class Position:
    x: float
    y: float
    z: float
    e: float


@dataclass(kw_only=True, slots=True, frozen=True)
class Message:
    """Anything else (`echo:` lines, M117 text, unknown output); shown in the console as text."""

    text: str


Event = (
    Ok
    | Resend
    | Busy
    | Wait
    | TemperatureReport
    | Action
    | FirmwareError
    | FirmwareInfo
    | Capability
    | Start
    | Position
    | Message
)

OK = Ok()
_NUM = r'(-?\d+(?:\.\d*)?)'
_TEMP = re.compile(r'(?<!\S)(T\d{0,2}|B|C)\s*:\s*' + _NUM + r'(?:\s*/\s*' + _NUM + ')?')
_OK_LINE = re.compile(r'N(\d{1,10})')
_RESEND = re.compile(r'^(?:Resend|rs)\s*:?\s*N?:?\s*(\d{1,10})', re.IGNORECASE)
_LAST_LINE = re.compile(r'Last Line:\s*(\d{1,10})')
_POSITION = re.compile(r'^X:\s*' + _NUM + r'\s+Y:\s*' + _NUM + r'\s+Z:\s*' + _NUM + r'\s+E:\s*' + _NUM)
_FIELD = re.compile(r'([A-Z][A-Z0-9_]*):(.*?)(?=\s+[A-Z][A-Z0-9_]*:|$)')
_LINE_ERRORS = ('checksum mismatch', 'line number', 'no checksum', 'last line', 'format error', 'expected line')
_FATAL_ERRORS = (
    'kill() called',
    'halted',
    'system stopped',
    'thermal runaway',
    'mintemp',
    'maxtemp',
    'heating failed',
    'stopped due to errors',
    'printer stopped',
)


def parse_bytes(raw: bytes) -> Event:
    """parse_line() for a line as read from the port (any bytes: noise on the wire is not an error)."""
    return parse_line(raw.decode('utf-8', errors='replace'))


def parse_line(line: str) -> Event:
    """One received line as a typed event. Never raises: what is not understood comes back as a Message."""
    text = line.strip().replace('\x00', '')
    if text == 'ok':
        return OK
    try:
        return _parse(text)
    except (ValueError, OverflowError):  # digits the regexes let through but float() refuses: treat as text
        return Message(text=text)


def _parse(text: str) -> Event:
    low = text.lower()
    if low.startswith('ok'):
        return _ok(text)
    if low.startswith(('resend', 'rs ', 'rs:')) and (m := _RESEND.match(text)):
        return Resend(line=int(m.group(1)))
    if low.startswith(('error:', '!!')):
        return _error(text.split(':', 1)[1].strip() if ':' in text else text[2:].strip())
    if low.startswith(('echo:busy:', 'busy:')):
        return Busy(reason=text.split('busy:', 1)[1].strip() if 'busy:' in text else '')
    if text.startswith('//action:'):
        name, _, argument = text[len('//action:') :].strip().partition(' ')
        return Action(name=name.lower(), argument=argument.strip())
    if low == 'wait':
        return Wait()
    if low == 'start':
        return Start()
    if text.startswith('FIRMWARE_NAME:'):
        fields = {m.group(1): m.group(2).strip() for m in _FIELD.finditer(text)}
        return FirmwareInfo(name=fields.get('FIRMWARE_NAME', ''), fields=fields)
    if text.startswith('Cap:'):
        name, _, value = text[4:].partition(':')
        return Capability(name=name.strip().upper(), enabled=value.strip() == '1')
    if text.startswith(('T:', 'T0:', 'B:', 'C:')) and (temperatures := parse_temperatures(text)) is not None:
        return TemperatureReport(temperatures=temperatures)
    if text.startswith('X:') and (m := _POSITION.match(text)):
        x, y, z, e = (float(v) for v in m.groups())
        return Position(x=x, y=y, z=z, e=e)
    return Message(text=text)


def _ok(text: str) -> Ok:
    rest = text[2:].strip()
    if not rest:
        return OK
    m = _OK_LINE.match(rest)
    return Ok(line=int(m.group(1)) if m else None, temperatures=parse_temperatures(rest))


def _error(message: str) -> FirmwareError:
    low = message.lower()
    m = _LAST_LINE.search(message)
    last_line = int(m.group(1)) if m else None
    if any(marker in low for marker in _FATAL_ERRORS):
        kind = ErrorKind.FATAL
    elif any(marker in low for marker in _LINE_ERRORS):
        kind = ErrorKind.LINE
    else:
        kind = ErrorKind.OTHER
    return FirmwareError(message=message, kind=kind, last_line=last_line)


def merge_temperatures(old: Temperatures, new: Temperatures) -> Temperatures:
    """A report folded into what we knew: M109's `T:150.3 E:0 W:?` carries no target and no bed."""

    def merge(a: Reading | None, b: Reading | None) -> Reading | None:
        if b is None:
            return a
        if b.target is None and a is not None and a.target is not None:
            return Reading(actual=b.actual, target=a.target)
        return b

    count = max(len(old.tools), len(new.tools))
    tools = tuple(
        merge(old.tools[i] if i < len(old.tools) else None, new.tools[i] if i < len(new.tools) else None)
        for i in range(count)
    )
    return Temperatures(
        tools=tuple(t for t in tools if t is not None),
        bed=merge(old.bed, new.bed),
        chamber=merge(old.chamber, new.chamber),
        waiting=new.waiting,
    )


def parse_temperatures(text: str) -> Temperatures | None:
    """`T:210.0 /210.0 B:60.0 /60.0 @:127 B@:0`, multi-extruder `T0:` `T1:`, chamber `C:`; None without any."""
    tool: Reading | None = None
    tools: dict[int, Reading] = {}
    bed = chamber = None
    for key, actual, target in _TEMP.findall(text):
        reading = Reading(actual=float(actual), target=float(target) if target else None)
        if key == 'T':
            tool = reading
        elif key[0] == 'T':
            tools[int(key[1:])] = reading
        elif key == 'B':
            bed = reading
        else:
            chamber = reading
    if tools:
        ordered = tuple(tools[i] for i in sorted(tools))
    elif tool is not None:
        ordered = (tool,)
    else:
        ordered = ()
    if not ordered and bed is None and chamber is None:
        return None
    return Temperatures(tools=ordered, bed=bed, chamber=chamber, waiting=' W:' in text)
