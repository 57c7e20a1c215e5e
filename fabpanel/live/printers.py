"""Live printer state: one bindable object per printer, and the last 30 minutes of temperatures for the charts."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime

from nicegui.binding import bindable_dataclass

CHART_WINDOW_S = 30 * 60
SAMPLE_EVERY_S = 2.0  # at most one chart point per printer this often: 900 points per half hour


@bindable_dataclass
class PrinterLive:
    id: int
    name: str = ''
    kind: str = ''
    state: str = 'offline'  # a core.printers.PrinterState value
    nozzle_actual: float | None = None
    nozzle_target: float | None = None
    bed_actual: float | None = None
    bed_target: float | None = None
    progress: float | None = None  # 0..100
    eta: datetime | None = None  # when the job should end
    layer: int | None = None
    layer_count: int | None = None
    file_name: str = ''
    printing_since: datetime | None = None
    started_by: str = ''  # first name of who started the job
    job_id: int | None = None
    message: str = ''  # printer's status / error text (render as text only)
    updated_at: datetime | None = None  # when the printer last reported; pages show the age when it is old
    stale: bool = False  # no report for a while although we think it is connected
    bed_clear: bool = True  # issue 5 uses this: a person confirmed the bed is empty


@dataclass(slots=True, frozen=True)
class Sample:
    t: float  # unix seconds
    nozzle: float | None
    nozzle_target: float | None
    bed: float | None
    bed_target: float | None


class TemperatureHistory:
    """A ring of samples covering CHART_WINDOW_S, one per SAMPLE_EVERY_S at most (server-wide, not per browser)."""

    def __init__(self) -> None:
        self.samples: deque[Sample] = deque(maxlen=int(CHART_WINDOW_S / SAMPLE_EVERY_S) + 1)

    def add(self, sample: Sample) -> bool:
        """Keep the sample if it is due; returns whether it was kept (then the charts append it)."""
        if self.samples and sample.t - self.samples[-1].t < SAMPLE_EVERY_S:
            return False
        self.samples.append(sample)
        while self.samples and sample.t - self.samples[0].t > CHART_WINDOW_S:
            self.samples.popleft()
        return True
