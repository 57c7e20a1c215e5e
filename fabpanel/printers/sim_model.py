"""The simulated printer's physics and files: first-order heaters and what a G-code file tells about a job."""

from __future__ import annotations

import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from fabpanel.core.printers import Heater

AMBIENT_C = 22.0
FIRMWARE_MAX_C = {Heater.NOZZLE: 300.0, Heater.BED: 120.0, Heater.CHAMBER: 70.0}
SECONDS_PER_LINE = 0.02  # without a slicer estimate: about what a printer does with short moves
_ESTIMATE_PRUSA = re.compile(r';\s*estimated printing time.*?=\s*(?:(\d+)d\s*)?(?:(\d+)h\s*)?(?:(\d+)m\s*)?(\d+)s')
_ESTIMATE_CURA = re.compile(r';TIME:(\d+)')
_LAYERS = re.compile(r';(?:LAYER_COUNT:|\s*total layer number:\s*)(\d+)')
_TEMP = re.compile(r'^M(104|109|140|190)\s.*?S(\d+(?:\.\d+)?)', re.IGNORECASE)


@dataclass(kw_only=True, slots=True)
class SimHeater:
    """Heats towards `t_max` with time constant `tau_heat` while below target, holds the target, cools towards
    ambient with `tau_cool`: a nozzle reaches 200 °C in about 60 s, a bed 60 °C in about 90 s."""

    actual: float = AMBIENT_C
    target: float = 0.0
    t_max: float = 290.0
    tau_heat: float = 55.0
    tau_cool: float = 120.0
    heating: bool = True  # False after a thermal runaway: the heater no longer heats

    def step(self, dt: float, rng: random.Random) -> None:
        if self.heating and self.target > self.actual:
            self.actual = min(self.target, self.t_max - (self.t_max - self.actual) * math.exp(-dt / self.tau_heat))
        else:
            floor = self.target if self.heating and self.target > AMBIENT_C else AMBIENT_C
            self.actual = max(floor, floor + (self.actual - floor) * math.exp(-dt / self.tau_cool))
        if self.target and abs(self.actual - self.target) < 0.5:
            self.actual = self.target + rng.uniform(-0.3, 0.3)  # a controller holding its target

    def near_target(self) -> bool:
        return not self.target or abs(self.actual - self.target) < 2.0


@dataclass(kw_only=True, slots=True)
class SimFile:
    lines: int
    duration_s: float  # simulated seconds
    layers: int
    nozzle_c: float = 215.0
    bed_c: float = 60.0


@dataclass(kw_only=True, slots=True)
class SimJob:
    name: str
    file: SimFile
    printed_s: float = 0.0  # simulated seconds of printing so far (heating not counted)
    started: float = field(default_factory=time.monotonic)


def _seconds(parts: list[int]) -> int:
    """Cura's seconds, or PrusaSlicer's days, hours, minutes, seconds."""
    if len(parts) == 1:
        return parts[0]
    days, hours, minutes, seconds = parts
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def read_file(path: Path) -> SimFile:
    """Line count, slicer estimate, layers and first temperatures of a G-code file (blocking: run in a thread)."""
    lines, estimate, layers, changes = 0, None, None, 0
    temps: dict[str, float] = {}
    with path.open('r', encoding='utf-8', errors='replace') as f:
        for line in f:
            lines += 1
            if line.startswith(';'):
                if estimate is None and (m := _ESTIMATE_PRUSA.match(line) or _ESTIMATE_CURA.match(line)):
                    parts = [int(g or 0) for g in m.groups()]
                    estimate = (
                        parts[0] if len(parts) == 1 else ((parts[0] * 24 + parts[1]) * 60 + parts[2]) * 60 + parts[3]
                    )
                elif layers is None and (m := _LAYERS.match(line)):
                    layers = int(m.group(1))
                elif line.startswith((';LAYER_CHANGE', ';LAYER:')):
                    changes += 1
            elif (m := _TEMP.match(line)) and m.group(1) not in temps:
                temps[m.group(1)] = float(m.group(2))
    duration = float(estimate) if estimate else max(20.0, lines * SECONDS_PER_LINE)
    return SimFile(
        lines=lines,
        duration_s=duration,
        layers=layers or changes or max(1, lines // 500),
        nozzle_c=temps.get('104', temps.get('109', 215.0)),
        bed_c=temps.get('140', temps.get('190', 60.0)),
    )
