"""Pure rules of the usage history: filter periods, closing or deleting a use by hand, and what either does to
the machine's hour counter (which must always equal the closed uses it has counted, and never go below 0)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from enum import StrEnum

# a clock a little ahead of the server's must not make "now" look like the future
FUTURE_TOLERANCE = timedelta(minutes=2)


class Preset(StrEnum):
    TODAY = 'today'
    WEEK = '7d'
    MONTH = '30d'


def preset_dates(preset: Preset, today: date) -> tuple[date, date]:
    """The first and last day (both included) of a preset period ending today."""
    days = {Preset.TODAY: 1, Preset.WEEK: 7, Preset.MONTH: 30}[preset]
    return today - timedelta(days=days - 1), today


def period_bounds(first: date | None, last: date | None, tz: tzinfo | None = None
                  ) -> tuple[datetime | None, datetime | None]:
    """Calendar days -> [from, until) as aware datetimes: `last` is included up to its midnight. Without `tz` the
    days are the server's local ones (with that date's own UTC offset, so summer time is right)."""

    def midnight(day: date) -> datetime:
        naive = datetime.combine(day, time(0))
        return naive.replace(tzinfo=tz) if tz is not None else naive.astimezone()

    start = midnight(first) if first is not None else None
    until = midnight(last + timedelta(days=1)) if last is not None else None
    return start, until


def check_period(first: date | None, last: date | None) -> str | None:
    """An error code, or None when the period makes sense."""
    if first is not None and last is not None and last < first:
        return 'period_reversed'
    return None


def check_close_time(start: datetime, end: datetime, now: datetime) -> str | None:
    """An error code when an open use cannot end at `end`, else None."""
    if end < start:
        return 'before_start'
    if end > now + FUTURE_TOLERANCE:
        return 'in_future'
    return None


def close_duration(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0)


@dataclass(kw_only=True, slots=True, frozen=True)
class CounterEffect:
    """What a change to one use does to its machine's hour counter (seconds before and after)."""

    machine_name: str
    before_s: float
    after_s: float

    @property
    def before_h(self) -> float:
        return self.before_s / 3600

    @property
    def after_h(self) -> float:
        return self.after_s / 3600

    @property
    def changes(self) -> bool:
        return abs(self.after_s - self.before_s) >= 0.5


def counter_after_close(counter_s: float, start: datetime, end: datetime) -> float:
    """Closing an open use adds its duration (the counter holds closed uses only)."""
    return max(counter_s, 0.0) + close_duration(start, end)


def counter_after_delete(counter_s: float, duration_s: float | None) -> float:
    """Deleting a closed use takes its duration off again; an open one never counted. Never below 0."""
    return max(counter_s - (duration_s or 0.0), 0.0)
