"""Filament arithmetic, weigh-ins, job deductions, stock, reorder list and per-member usage (pure core)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabpanel.core.printers import JobOutcome
from fabpanel.core.spools import (
    FilamentStockIn,
    SpoolError,
    SpoolStockIn,
    UsageFlag,
    UsageIn,
    grams_for_length,
    job_deductions,
    length_for_grams,
    low_stock,
    member_usage,
    remaining_after,
    reorder_list,
    spool_grams,
    stock,
    weigh_in,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
diameters = st.sampled_from([1.75, 2.85, 3.0]) | st.floats(0.5, 5.0)
densities = st.floats(0.5, 20.0)


def test_grams_for_length_matches_the_slicer_figures() -> None:
    # PrusaSlicer: 1 m of 1.75 mm PLA (1.24 g/cm3) is 2.98 g; 1 m of 2.85 mm PETG (1.27) is 8.10 g
    assert grams_for_length(1000, 1.75, 1.24) == pytest.approx(2.98, abs=0.01)
    assert grams_for_length(1000, 2.85, 1.27) == pytest.approx(8.10, abs=0.01)
    assert length_for_grams(1000, 1.75, 1.24) == pytest.approx(335_284, abs=1)  # 1 kg spool: ~335 m


@given(st.floats(0, 1e7), diameters, densities)
def test_length_and_grams_are_inverse(length: float, diameter: float, density: float) -> None:
    grams = grams_for_length(length, diameter, density)
    assert grams >= 0
    assert length_for_grams(grams, diameter, density) == pytest.approx(length, rel=1e-9, abs=1e-6)


@pytest.mark.parametrize(
    ('length', 'diameter', 'density', 'code'),
    [
        (-1, 1.75, 1.24, 'length_out_of_range'),
        (math.nan, 1.75, 1.24, 'length_out_of_range'),
        (10, 0, 1.24, 'diameter_out_of_range'),
        (10, 1.75, 0, 'density_out_of_range'),
        (10, 17.5, 1.24, 'diameter_out_of_range'),
        (10, 1.75, 124, 'density_out_of_range'),
    ],
)
def test_nonsense_filament_numbers_are_refused(length: float, diameter: float, density: float, code: str) -> None:
    with pytest.raises(SpoolError) as e:
        grams_for_length(length, diameter, density)
    assert e.value.code == code


def test_weigh_in() -> None:
    assert weigh_in(1_180, 180, 1000).remaining_g == 1000
    assert weigh_in(430.04, 180, 1000).remaining_g == 250
    empty = weigh_in(170, 180, 1000)  # a bit under the empty spool: the scale or the spool varies: empty
    assert empty.remaining_g == 0 and empty.clamped
    for gross, code in [
        (100, 'below_empty_spool'),
        (1400, 'above_full_spool'),
        (0, 'gross_out_of_range'),
        (-5, 'gross_out_of_range'),
        (25_000, 'gross_out_of_range'),
        (math.inf, 'gross_out_of_range'),
    ]:
        with pytest.raises(SpoolError) as e:
            weigh_in(gross, 180, 1000)
        assert e.value.code == code, gross


@given(st.floats(-1e6, 1e6) | st.just(math.nan), st.floats(0, 2000), st.floats(1, 5000))
def test_weigh_in_is_never_negative_nor_above_a_full_spool(gross: float, empty: float, initial: float) -> None:
    try:
        result = weigh_in(gross, empty, initial)
    except SpoolError:
        return
    assert 0 <= result.remaining_g <= initial * 1.1 + 30 + 0.1


@given(st.floats(0, 1e5), st.floats(0, 1e5))
def test_remaining_never_goes_below_empty(remaining: float, used: float) -> None:
    after = remaining_after(remaining, used)
    assert after >= 0 and after <= remaining


def test_done_takes_the_planned_grams_failed_the_part_printed() -> None:
    planned = {7: 42.0}
    assert job_deductions(JobOutcome.DONE, planned, None)[0].grams == 42.0
    assert job_deductions(JobOutcome.DONE, planned, 0.3)[0].grams == 42.0  # done is done, whatever progress said
    for outcome in (JobOutcome.FAILED, JobOutcome.CANCELLED, JobOutcome.INTERRUPTED):
        (d,) = job_deductions(outcome, planned, 0.25)
        assert (d.spool_id, d.grams, d.flag) == (7, 10.5, UsageFlag.NONE)
        (d,) = job_deductions(outcome, planned, None)
        assert (d.grams, d.flag) == (0.0, UsageFlag.PROGRESS_UNKNOWN)
    (d,) = job_deductions(JobOutcome.DONE, {7: None}, None)
    assert (d.grams, d.flag) == (0.0, UsageFlag.GRAMS_UNKNOWN)
    assert job_deductions(JobOutcome.FAILED, planned, 7.5)[0].grams == 42.0  # a stray progress > 1 is capped


@given(
    st.sampled_from(list(JobOutcome)),
    st.dictionaries(st.integers(1, 9), st.floats(0, 5000) | st.none()),
    st.floats(-1, 2) | st.none(),
)
def test_a_job_never_takes_more_than_planned(
    outcome: JobOutcome, planned: dict[int, float | None], progress: float | None
) -> None:
    out = job_deductions(outcome, planned, progress)
    assert sorted(d.spool_id for d in out) == sorted(planned)  # one entry per spool, always
    for d in out:
        assert 0 <= d.grams <= (planned[d.spool_id] or 0) + 0.01


def test_multi_extruder_grams_per_spool() -> None:
    # tools 0 and 2 fed from spool 11, tool 1 from spool 12, tool 3 has nothing loaded
    assert spool_grams([10.0, 5.0, 2.5, 9.0], {0: 11, 1: 12, 2: 11}) == {11: 12.5, 12: 5.0}
    deductions = job_deductions(JobOutcome.FAILED, spool_grams([10.0, 5.0], {0: 11, 1: 12}), 0.5)
    assert [(d.spool_id, d.grams) for d in deductions] == [(11, 5.0), (12, 2.5)]


def filament(fid: int, threshold: float, **kw: object) -> FilamentStockIn:
    return FilamentStockIn(filament_id=fid, name=f'F{fid}', threshold_g=threshold, **kw)  # type: ignore[arg-type]


def test_low_stock_counts_only_spools_in_use() -> None:
    filaments = [
        filament(1, 1000, vendor='Prusament', price_per_kg=25.0),
        filament(2, 500, vendor='Bambu'),
        filament(3, 0),
        filament(4, 300, vendor='Prusament', spool_net_g=750),
    ]
    spools = [
        SpoolStockIn(filament_id=1, remaining_g=400),
        SpoolStockIn(filament_id=1, remaining_g=300),
        SpoolStockIn(filament_id=1, remaining_g=5000, archived=True),
        SpoolStockIn(filament_id=2, remaining_g=800),
        SpoolStockIn(filament_id=3, remaining_g=0),
    ]
    stocks = stock(filaments, spools)
    assert [(s.remaining_g, s.spools) for s in stocks] == [(700, 2), (800, 1), (0, 1), (0, 0)]
    assert [s.filament.filament_id for s in low_stock(stocks)] == [1, 4]  # 3 has no threshold: never low
    reorder = reorder_list(stocks)
    assert [(r.stock.filament.filament_id, r.spools, r.cost) for r in reorder] == [(1, 1, 25.0), (4, 1, None)]
    big = reorder_list(stock([filament(5, 3500)], [SpoolStockIn(filament_id=5, remaining_g=400)]))
    assert big[0].spools == 4  # 3100 g short of the threshold: four 1 kg spools


@given(st.lists(st.tuples(st.integers(1, 3), st.floats(-10, 3000), st.booleans()), max_size=30), st.floats(0, 5000))
def test_stock_is_the_sum_of_spools_in_use(spools: list[tuple[int, float, bool]], threshold: float) -> None:
    stocks = stock(
        [filament(f, threshold) for f in (1, 2, 3)],
        [SpoolStockIn(filament_id=f, remaining_g=g, archived=a) for f, g, a in spools],
    )
    for s in stocks:
        expected = sum(max(0, g) for f, g, a in spools if f == s.filament.filament_id and not a)
        assert s.remaining_g == pytest.approx(expected, abs=0.1)
        assert s.low == (threshold > 0 and s.remaining_g < threshold)
    for r in reorder_list(stocks):
        assert r.stock.remaining_g + r.spools * 1000 >= threshold


def test_member_usage_over_a_period() -> None:
    usages = [
        UsageIn(member_id=1, grams=100, at=T0, price_per_kg=20.0, material='PLA'),
        UsageIn(member_id=1, grams=50, at=T0 + timedelta(days=1), price_per_kg=30.0, material='PETG'),
        UsageIn(member_id=2, grams=400, at=T0 + timedelta(hours=2), price_per_kg=None, material='PLA'),
        UsageIn(member_id=None, grams=10, at=T0, price_per_kg=20.0, material='PLA'),
        UsageIn(member_id=1, grams=999, at=T0 - timedelta(seconds=1), price_per_kg=20.0),  # before the period
        UsageIn(member_id=1, grams=999, at=T0 + timedelta(days=7), price_per_kg=20.0),  # end is exclusive
    ]
    rows = member_usage(usages, T0, T0 + timedelta(days=7))
    assert [(r.member_id, r.grams, r.cost, r.jobs_without_price) for r in rows] == [
        (2, 400, 0.0, 1),
        (1, 150, 3.5, 0),
        (None, 10, 0.2, 0),
    ]
    assert rows[1].by_material == {'PLA': 100, 'PETG': 50}
    with pytest.raises(SpoolError):
        member_usage(usages, T0, T0)
