"""What a printer is and reports, in plain dataclasses every driver, the fleet and the pages share."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class PrinterState(StrEnum):
    OFFLINE = 'offline'  # no connection (unplugged, powered off, unreachable)
    CONNECTING = 'connecting'
    IDLE = 'idle'  # connected, ready for a job
    PRINTING = 'printing'
    PAUSING = 'pausing'
    PAUSED = 'paused'
    CANCELLING = 'cancelling'
    ERROR = 'error'  # the printer reports a fault (thermal runaway, kill, firmware error); needs a person


ACTIVE_STATES = frozenset({PrinterState.PRINTING, PrinterState.PAUSING, PrinterState.PAUSED,
                           PrinterState.CANCELLING})


class JobOutcome(StrEnum):
    DONE = 'done'
    FAILED = 'failed'  # the printer or firmware reported an error
    CANCELLED = 'cancelled'  # a person (or the printer's own menu) cancelled it
    INTERRUPTED = 'interrupted'  # the connection was lost or the host restarted mid-print: never resumed silently


class Heater(StrEnum):
    NOZZLE = 'nozzle'
    BED = 'bed'
    CHAMBER = 'chamber'


@dataclass(kw_only=True, slots=True)
class Temperature:
    actual: float | None = None
    target: float | None = None


@dataclass(kw_only=True, slots=True)
class JobProgress:
    file_name: str = ''  # as the printer knows it (display only: never used as a local path)
    fraction: float | None = None  # 0..1
    elapsed_s: float | None = None
    remaining_s: float | None = None  # the printer's or slicer's estimate when it has one
    layer: int | None = None
    layer_count: int | None = None


@dataclass(kw_only=True, slots=True)
class PrinterReport:
    """One snapshot of what a printer says about itself. Drivers send a fresh one whenever something changed."""

    state: PrinterState = PrinterState.OFFLINE
    nozzle: Temperature = field(default_factory=Temperature)
    bed: Temperature = field(default_factory=Temperature)
    chamber: Temperature | None = None
    job: JobProgress | None = None  # set while a job is active (printing, paused, ...)
    message: str = ''  # the printer's last status or error text (member-visible: rendered as text only)
    firmware: str = ''
    at: datetime | None = None  # when the printer said this (used to show stale data with its age)
    # how the printer's previous job ended and its file, where the printer tells (network printers): the fleet
    # uses it to settle a job that ended while the host was away
    last_outcome: JobOutcome | None = None
    last_file: str = ''


@dataclass(kw_only=True, slots=True)
class Capabilities:
    upload: bool = True
    start: bool = True
    pause: bool = True
    resume: bool = True
    cancel: bool = True
    emergency_stop: bool = True
    gcode: bool = True  # the staff console can send raw G-code
    set_temperature: bool = True
    temperature_autoreport: bool = False  # Marlin M155: the printer pushes temperatures, no polling needed
    host_streaming: bool = False  # the host sends each line (USB); a host restart interrupts the job


@dataclass(kw_only=True, slots=True, frozen=True)
class PrinterLimits:
    """Per-printer safety limits, enforced on every path that can heat a printer."""

    max_nozzle_c: float = 260.0
    max_bed_c: float = 110.0
    max_chamber_c: float = 60.0

    def max_for(self, heater: Heater) -> float:
        return {Heater.NOZZLE: self.max_nozzle_c, Heater.BED: self.max_bed_c,
                Heater.CHAMBER: self.max_chamber_c}[heater]


class PrinterKind(StrEnum):
    MARLIN = 'marlin'  # USB serial, host-streamed
    OCTOPRINT = 'octoprint'
    MOONRAKER = 'moonraker'
    PRUSALINK = 'prusalink'
    BAMBU = 'bambu'
    SIMULATED = 'simulated'


@dataclass(kw_only=True, slots=True)
class PrinterConfig:
    """How to reach one printer and what it can print; built from the database row."""

    id: int
    name: str
    kind: PrinterKind
    # marlin: a stable path such as /dev/serial/by-id/usb-..., or 'serial:<USB serial number>';
    # network kinds: base URL (http://host:port) or, for Bambu, the host name / IP
    address: str = ''
    baudrate: int = 115200
    api_key: str = ''  # OctoPrint / Moonraker API key; PrusaLink password; Bambu access code
    username: str = ''  # PrusaLink digest user
    serial_number: str = ''  # Bambu printer serial (its MQTT topics carry it)
    tls_fingerprint: str = ''  # Bambu: SHA-256 of the printer's certificate (hex), pinned when set
    limits: PrinterLimits = field(default_factory=PrinterLimits)
    nozzle_diameter_mm: float = 0.4
    build_volume_mm: tuple[float, float, float] = (220.0, 220.0, 250.0)
    materials: tuple[str, ...] = ('PLA', 'PETG')
    tags: tuple[str, ...] = ()
