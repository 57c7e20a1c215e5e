"""Filament arithmetic and the spool ledger's decisions: length <-> grams, weigh-ins, what a finished or failed
job takes off which spool, low stock, the reorder list and per-member usage. Pure: no I/O, no clock."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from fabpanel.core.printers import JobOutcome

MAX_GROSS_G = 20_000.0  # no filament spool a lab puts on a kitchen scale weighs more
WEIGH_TOLERANCE_G = 30.0  # scale error and spool-to-spool variation of the empty weight
OVERFILL_FACTOR = 1.10  # a spool may hold a little more than its label says, not much more
MIN_DIAMETER_MM, MAX_DIAMETER_MM = 0.5, 5.0
MIN_DENSITY, MAX_DENSITY = 0.5, 20.0  # g/cm3: foams and fillers up to metal-filled filament


class SpoolError(ValueError):
    """A number the ledger refuses; `code` says which rule (pages translate it)."""

    def __init__(self, code: str, **info: float) -> None:
        super().__init__(code)
        self.code = code
        self.info = info


# ---- length <-> grams -----------------------------------------------------------------------------------------


def _check_filament(diameter_mm: float, density_g_cm3: float) -> None:
    if not MIN_DIAMETER_MM <= diameter_mm <= MAX_DIAMETER_MM:
        raise SpoolError('diameter_out_of_range', value=diameter_mm)
    if not MIN_DENSITY <= density_g_cm3 <= MAX_DENSITY:
        raise SpoolError('density_out_of_range', value=density_g_cm3)


def grams_per_mm(diameter_mm: float, density_g_cm3: float) -> float:
    _check_filament(diameter_mm, density_g_cm3)
    area_mm2 = math.pi * (diameter_mm / 2) ** 2
    return area_mm2 * density_g_cm3 / 1000.0  # mm3 -> cm3


def grams_for_length(length_mm: float, diameter_mm: float, density_g_cm3: float) -> float:
    if length_mm < 0 or not math.isfinite(length_mm):
        raise SpoolError('length_out_of_range', value=length_mm)
    return length_mm * grams_per_mm(diameter_mm, density_g_cm3)


def length_for_grams(grams: float, diameter_mm: float, density_g_cm3: float) -> float:
    if grams < 0 or not math.isfinite(grams):
        raise SpoolError('grams_out_of_range', value=grams)
    return grams / grams_per_mm(diameter_mm, density_g_cm3)


# ---- weigh-in ---------------------------------------------------------------------------------------------------


@dataclass(kw_only=True, slots=True, frozen=True)
class WeighIn:
    remaining_g: float
    clamped: bool = False  # the scale read a little under the empty spool: taken as empty


def weigh_in(gross_g: float, empty_spool_g: float, initial_g: float) -> WeighIn:
    """Remaining filament from the gross weight on a scale. A reading a little under the empty spool is an empty
    spool; one far under it, or far over what the spool held new, is a wrong spool or a wrong number: refused."""
    if not math.isfinite(gross_g) or not 0 < gross_g <= MAX_GROSS_G:
        raise SpoolError('gross_out_of_range', value=gross_g, max=MAX_GROSS_G)
    if not math.isfinite(empty_spool_g) or not 0 <= empty_spool_g < MAX_GROSS_G:
        raise SpoolError('empty_weight_out_of_range', value=empty_spool_g)
    net = gross_g - empty_spool_g
    if net < -WEIGH_TOLERANCE_G:
        raise SpoolError('below_empty_spool', value=gross_g, empty=empty_spool_g)
    if net > initial_g * OVERFILL_FACTOR + WEIGH_TOLERANCE_G:
        raise SpoolError('above_full_spool', value=gross_g, full=empty_spool_g + initial_g)
    if net < 0:
        return WeighIn(remaining_g=0.0, clamped=True)
    return WeighIn(remaining_g=round(net, 1))


def remaining_after(remaining_g: float, used_g: float) -> float:
    """A spool never goes below empty: more usage than stock means the stock was off (a weigh-in corrects it)."""
    return max(0.0, remaining_g - used_g)


# ---- what a job takes -------------------------------------------------------------------------------------------


class UsageFlag(StrEnum):
    NONE = ''
    PROGRESS_UNKNOWN = 'progress_unknown'  # failed/cancelled with no progress: nothing deducted, check by weighing
    GRAMS_UNKNOWN = 'grams_unknown'  # the file said nothing about filament (e.g. a job started at the printer)


@dataclass(kw_only=True, slots=True, frozen=True)
class Deduction:
    spool_id: int
    grams: float
    flag: UsageFlag = UsageFlag.NONE


def part_printed(outcome: JobOutcome, progress: float | None) -> float | None:
    """Fraction of the planned filament a job used: all of it when done, the printed part otherwise, None when
    that part is unknown."""
    if outcome == JobOutcome.DONE:
        return 1.0
    if progress is None or not math.isfinite(progress):
        return None
    return min(1.0, max(0.0, progress))


def spool_grams(planned_per_extruder: Sequence[float], spools: Mapping[int, int]) -> dict[int, float]:
    """Planned grams per spool from the slicer's grams per extruder (tool index) and the spool loaded on each
    tool. Two tools fed from one spool add up; a tool with no spool loaded is nobody's stock."""
    out: dict[int, float] = {}
    for tool, grams in enumerate(planned_per_extruder):
        spool_id = spools.get(tool)
        if spool_id is not None and grams > 0 and math.isfinite(grams):
            out[spool_id] = out.get(spool_id, 0.0) + grams
    return out


def job_deductions(outcome: JobOutcome, planned: Mapping[int, float | None], progress: float | None) -> list[Deduction]:
    """One deduction per spool the job ran on. DONE takes the planned grams; FAILED, CANCELLED and INTERRUPTED
    take progress x planned; when progress or the plan is unknown nothing is taken and the entry is flagged (it
    is still written, so the job counts as settled and a replay finds it)."""
    fraction = part_printed(outcome, progress)
    out = []
    for spool_id, grams in sorted(planned.items()):
        if grams is None or not math.isfinite(grams) or grams <= 0:
            out.append(Deduction(spool_id=spool_id, grams=0.0, flag=UsageFlag.GRAMS_UNKNOWN))
        elif fraction is None:
            out.append(Deduction(spool_id=spool_id, grams=0.0, flag=UsageFlag.PROGRESS_UNKNOWN))
        else:
            out.append(Deduction(spool_id=spool_id, grams=round(grams * fraction, 2)))
    return out


# ---- stock ----------------------------------------------------------------------------------------------------


@dataclass(kw_only=True, slots=True, frozen=True)
class FilamentStockIn:
    filament_id: int
    name: str  # member-visible text: render as text only
    vendor: str = ''
    threshold_g: float = 0.0  # 0: no low-stock warning for this filament
    spool_net_g: float = 1000.0  # filament on one new spool, for the reorder count
    price_per_kg: float | None = None


@dataclass(kw_only=True, slots=True, frozen=True)
class SpoolStockIn:
    filament_id: int
    remaining_g: float
    archived: bool = False


@dataclass(kw_only=True, slots=True, frozen=True)
class Stock:
    filament: FilamentStockIn
    remaining_g: float
    spools: int  # spools in stock (not archived)

    @property
    def low(self) -> bool:
        return self.filament.threshold_g > 0 and self.remaining_g < self.filament.threshold_g


@dataclass(kw_only=True, slots=True, frozen=True)
class Reorder:
    stock: Stock
    spools: int  # new spools that bring the filament back to its threshold
    cost: float | None  # at the filament's price per kg, when known


def stock(filaments: Iterable[FilamentStockIn], spools: Iterable[SpoolStockIn]) -> list[Stock]:
    """Remaining grams per filament over its spools still in use, in the filaments' order."""
    grams: dict[int, float] = {}
    counts: dict[int, int] = {}
    for s in spools:
        if not s.archived:
            grams[s.filament_id] = grams.get(s.filament_id, 0.0) + max(0.0, s.remaining_g)
            counts[s.filament_id] = counts.get(s.filament_id, 0) + 1
    return [
        Stock(filament=f, remaining_g=round(grams.get(f.filament_id, 0.0), 1), spools=counts.get(f.filament_id, 0))
        for f in filaments
    ]


def low_stock(stocks: Iterable[Stock]) -> list[Stock]:
    return [s for s in stocks if s.low]


def reorder_list(stocks: Iterable[Stock]) -> list[Reorder]:
    """What to order: enough new spools to bring each low filament back to its threshold, by vendor and name."""
    out = []
    for s in low_stock(stocks):
        per_spool = s.filament.spool_net_g if s.filament.spool_net_g > 0 else 1000.0
        count = max(1, math.ceil((s.filament.threshold_g - s.remaining_g) / per_spool))
        price = s.filament.price_per_kg
        cost = None if price is None else round(count * per_spool / 1000.0 * price, 2)
        out.append(Reorder(stock=s, spools=count, cost=cost))
    return sorted(out, key=lambda r: (r.stock.filament.vendor.casefold(), r.stock.filament.name.casefold()))


# ---- usage per member ----------------------------------------------------------------------------------------


@dataclass(kw_only=True, slots=True, frozen=True)
class UsageIn:
    member_id: int | None  # None: a job started at the printer, nobody's
    grams: float
    at: datetime
    price_per_kg: float | None = None
    material: str = ''


@dataclass(kw_only=True, slots=True)
class MemberUsage:
    member_id: int | None
    grams: float = 0.0
    cost: float = 0.0
    jobs_without_price: int = 0  # entries whose filament has no price: their grams are not in `cost`
    by_material: dict[str, float] | None = None


def member_usage(usages: Iterable[UsageIn], start: datetime, end: datetime) -> list[MemberUsage]:
    """Grams and material cost per member over [start, end), most grams first."""
    if end <= start:
        raise SpoolError('empty_period')
    out: dict[int | None, MemberUsage] = {}
    for u in usages:
        if not start <= u.at < end:
            continue
        row = out.setdefault(u.member_id, MemberUsage(member_id=u.member_id, by_material={}))
        row.grams += u.grams
        if u.price_per_kg is None:
            row.jobs_without_price += u.grams > 0
        else:
            row.cost += u.grams / 1000.0 * u.price_per_kg
        assert row.by_material is not None
        row.by_material[u.material] = row.by_material.get(u.material, 0.0) + u.grams
    for row in out.values():
        row.grams, row.cost = round(row.grams, 2), round(row.cost, 2)
    return sorted(out.values(), key=lambda r: (-r.grams, r.member_id is None, r.member_id or 0))
