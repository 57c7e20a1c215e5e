"""G-code metadata on every sample in ../shared/samples/gcode (figures from its SOURCES.md), the extrusion
accounting rules, and properties: arbitrary input never raises, chunking never changes the result, and the same
moves written in relative or absolute extrusion give the same filament."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabpanel.core.gcode_extrusion import MAX_LINE, ExtrusionScanner, scan_bytes
from fabpanel.core.gcode_meta import GcodeMeta, merge_scan, parse_meta, split_head_tail, with_densities

SAMPLES = Path(__file__).resolve().parents[3] / 'shared' / 'samples' / 'gcode'


def sample(name: str) -> bytes:
    path = SAMPLES / name
    if not path.exists():
        pytest.fail(f'sample file {path} is missing')
    return path.read_bytes()


def full(name: str) -> GcodeMeta:
    data = sample(name)
    return merge_scan(parse_meta(data), scan_bytes(data))


def test_every_sample_is_covered() -> None:
    names = {p.name for p in SAMPLES.glob('*.gcode')}
    assert names == {
        'prusaslicer-2.6.1_small-benchmark.gcode',
        'prusaslicer-2.2.0_messschieber-boden.gcode',
        'cura-4.5.0_schieberdeckel.gcode',
        'cura-2.3.1_puzzle-all.gcode',
        'bambustudio-02.04.00.70_testqube.gcode',
        'bambustudio-02.04.00.70_testqube-4color.gcode',
    }


def test_prusaslicer_261_trusts_the_footer_and_flags_the_cut_body() -> None:
    meta = parse_meta(sample('prusaslicer-2.6.1_small-benchmark.gcode'))
    assert (meta.slicer, meta.slicer_version, meta.printer_model) == ('PrusaSlicer', '2.6.1+MacOS-x64', 'MINI')
    assert meta.estimated_time_s == 38 * 60 + 43
    assert meta.filament_mm == [4282.06] and meta.filament_g == [12.77] and meta.filament_cm3 == [10.3]
    assert (meta.materials, meta.densities, meta.filament_diameter_mm) == (['PLA'], [1.24], 1.75)
    assert (meta.nozzle_diameter_mm, meta.layer_height_mm, meta.first_layer_height_mm) == (0.4, 0.3, 0.3)
    assert (meta.first_layer_nozzle_c, meta.first_layer_bed_c, meta.max_nozzle_c, meta.max_bed_c) == (205, 60, 205, 60)
    assert meta.thumbnails == [] and meta.warnings == []
    scanned = merge_scan(meta, scan_bytes(sample('prusaslicer-2.6.1_small-benchmark.gcode')))
    assert scanned.computed_mm == pytest.approx(69, abs=1)
    assert scanned.filament_mm == [4282.06] and scanned.filament_source == 'slicer'
    assert scanned.warning_codes() == ['extrusion_below_figure']
    assert scanned.layer_count == 2  # the two layers left in the body


def test_prusaslicer_220_density_zero_gives_flagged_grams_and_two_png_thumbnails() -> None:
    meta = full('prusaslicer-2.2.0_messschieber-boden.gcode')
    assert (meta.slicer, meta.slicer_version, meta.printer_model) == ('PrusaSlicer', '2.2.0+', '')
    assert meta.estimated_time_s == 13 * 60 + 47
    assert meta.filament_mm == [696.0] and meta.densities == [0.0]
    assert meta.computed_mm == pytest.approx(694, abs=1)
    assert meta.grams_source == 'default_density' and meta.warning_codes() == ['density_assumed']
    assert meta.filament_g == [pytest.approx(696.0 * 2.405 / 1000 * 1.24, abs=0.01)]
    assert (meta.layer_height_mm, meta.first_layer_height_mm, meta.nozzle_diameter_mm) == (0.3, 0.35, 0.4)
    assert meta.colours == ['#29B2B2'] and meta.max_nozzle_c == 200 and meta.max_bed_c is None
    assert [(t.width, t.height, t.format, len(t.data)) for t in meta.thumbnails] == [
        (16, 16, 'png', 732),
        (220, 124, 'png', 8007),
    ]
    spool = with_densities(meta, [1.27])  # the density comes from the spool record
    assert spool.grams_source == 'spool' and spool.warnings == []
    assert spool.filament_g == [pytest.approx(696.0 * 2.405 / 1000 * 1.27, abs=0.01)]


def test_cura_450_header_in_metres() -> None:
    meta = full('cura-4.5.0_schieberdeckel.gcode')
    assert (meta.slicer, meta.slicer_version) == ('Cura', '4.5.0')
    assert meta.estimated_time_s == 1010 and meta.filament_mm == [499.88] and meta.filament_source == 'slicer'
    assert (meta.layer_height_mm, meta.layer_count, meta.max_z_mm) == (0.1, 81, 8.3)
    assert meta.computed_mm == pytest.approx(509, abs=1)  # the start G-code's priming, within tolerance
    assert (meta.first_layer_nozzle_c, meta.first_layer_bed_c) == (200, 50)
    assert 'extrusion_above_figure' not in meta.warning_codes() and meta.thumbnails == []
    assert 'density_assumed' in meta.warning_codes()


def test_cura_231_without_figure_falls_back_to_the_moves() -> None:
    head_only = parse_meta(sample('cura-2.3.1_puzzle-all.gcode'))
    assert head_only.filament_mm == [] and head_only.filament_source == ''
    meta = full('cura-2.3.1_puzzle-all.gcode')
    assert (meta.slicer, meta.slicer_version, meta.estimated_time_s, meta.layer_count) == ('Cura', '2.3.1', 3485, 119)
    assert meta.filament_source == 'computed' and meta.filament_mm == [pytest.approx(3194, abs=2)]
    assert meta.filament_g == [pytest.approx(9.5, abs=0.1)]  # 1.75 mm and PLA's 1.24 g/cm3
    assert meta.filament_diameter_mm == 1.75 and meta.layer_height_mm == 0.2  # from ;SETTING_3
    assert (meta.first_layer_nozzle_c, meta.first_layer_bed_c) == (195, 50)
    assert meta.warning_codes() == ['filament_computed', 'density_assumed']


def test_bambustudio_single_colour() -> None:
    meta = full('bambustudio-02.04.00.70_testqube.gcode')
    assert (meta.slicer, meta.slicer_version, meta.printer_model) == ('BambuStudio', '02.04.00.70', 'Bambu Lab A1')
    assert meta.estimated_time_s == 14 * 60 + 25 and meta.layer_count == 50 and meta.max_z_mm == 10
    assert meta.filament_mm == [241.03] and meta.filament_g == [0.72] and meta.grams_source == 'slicer'
    assert meta.filament_cm3 == [pytest.approx(0.58, abs=0.01)]  # not the header's '579.74 cm^3'
    assert (meta.materials, meta.colours, meta.nozzle_diameter_mm) == (['PLA'], ['#FFFFFF'], 0.4)
    assert (meta.first_layer_nozzle_c, meta.first_layer_bed_c, meta.max_bed_c) == (220, 65, 65)
    assert meta.max_nozzle_c == 250  # the start G-code flushes at 250
    assert meta.computed_mm == pytest.approx(362, abs=1)  # start purge and flush included
    assert set(meta.computed_mm_by_tool) == {0, 1000} and meta.warnings == []


def test_bambustudio_four_colours_per_slot() -> None:
    meta = full('bambustudio-02.04.00.70_testqube-4color.gcode')
    assert meta.filament_mm == [74.87, 50.19, 90.87, 25.09]
    assert meta.filament_g == [0.22, 0.15, 0.27, 0.07] and meta.total_g == 0.71
    assert meta.colours == ['#FFFFFF', '#FFFF00', '#FF0000', '#0000FF'] and meta.materials == ['PLA'] * 4
    assert meta.estimated_time_s == 19 * 60 + 43
    tools = meta.computed_mm_by_tool
    for tool, mm in {0: 130, 1: 54, 2: 93, 3: 27, 1000: 68}.items():
        assert tools[tool] == pytest.approx(mm, abs=1)


def test_head_and_tail_only_give_the_same_figures() -> None:
    data = sample('prusaslicer-2.2.0_messschieber-boden.gcode')
    meta = parse_meta(*split_head_tail(data[:100_000], data[-30_000:], len(data)))
    whole = parse_meta(data)
    assert meta.filament_mm == whole.filament_mm == [696.0] and meta.estimated_time_s == whole.estimated_time_s
    assert len(meta.thumbnails) == 2


def test_a_head_cut_inside_a_figure_line_does_not_give_a_wrong_figure() -> None:
    data = b'G1 X1\n' * 10 + b'; filament used [mm] = 4282.06\n' + b'G1 X2\n' * 10
    cut = data.index(b'4282') + 2  # the head would say '42'
    head, tail = split_head_tail(data[:cut], data[-20:], len(data) + 1000)
    assert parse_meta(head, tail).filament_mm == []


ACCOUNTING = [
    ('absolute with resets', b'M82\nG92 E0\nG1 X1 E5\nG1 E4\nG1 E10\nG92 E0\nG1 E3\n', {0: 13}),
    ('relative', b'M83\nG1 X1 E5\nG1 E-1\nG1 E1\nG1 E2.5 ; comment E99\n', {0: 7.5}),
    ('G91 makes E relative', b'M82\nG1 E5\nG91\nG1 Z1 E2\nG90\nG92 E0\nG1 E1\n', {0: 8}),
    ('G90 after M83 is absolute again (Marlin)', b'M83\nG1 E5\nG90\nG1 E7\nG1 E9\n', {0: 9}),
    ('firmware retract ignored', b'M83\nG1 E5\nG10\nG11\nG1 E1\n', {0: 6}),
    ('tools', b'M83\nT0\nG1 E5\nT1\nG1 E2\nG1 E2\nT0\nG1 E1\n', {0: 6, 1: 4}),
    ('line numbers, checksums, indent, lower case', b'n10 m83*12\n  N11 G1 X1 E2*99\n\tg1 e3\n', {0: 5}),
    ('G01 and no spaces', b'M83\nG01 X1 E2\nG1E3\n', {0: 5}),
    ('bare G92 zeroes E', b'G1 E10\nG92\nG1 E3\n', {0: 13}),
    ('other E words are no moves', b'M83\nM17 E0.3\nM92 E93\nG1 E1\n;E55\n', {0: 1}),
]


@pytest.mark.parametrize(
    ('program', 'expected'), [(p, e) for _, p, e in ACCOUNTING], ids=[name for name, _, _ in ACCOUNTING]
)
def test_extrusion_accounting(program: bytes, expected: dict[int, float]) -> None:
    totals = scan_bytes(program)
    assert totals.mm_by_tool == pytest.approx(expected)


def test_temperatures_and_first_layer_from_the_body() -> None:
    program = (
        b'M140 S60\nM104 S215\nM190 S60\nM109 S215\n;LAYER:0\nM104 S230\n'
        b'SET_HEATER_TEMPERATURE HEATER=heater_bed TARGET=70\n'
    )
    totals = scan_bytes(program)
    assert (totals.first_layer_nozzle_c, totals.first_layer_bed_c) == (215, 60)
    assert (totals.max_nozzle_c, totals.max_bed_c, totals.layer_count) == (230, 70, 1)


def test_binary_junk_is_not_gcode() -> None:
    meta = parse_meta(bytes(range(256)) * 64)
    assert meta.warning_codes() == ['not_gcode'] and meta.filament_mm == []


def test_a_gigabyte_single_line_keeps_memory_bounded() -> None:
    chunk = b'G1 X1 ' + b'9' * (4 * 1024 * 1024 - 6)
    scanner = ExtrusionScanner()
    tracemalloc.start()
    for _ in range(256):  # 1 GiB without a newline
        scanner.feed(chunk)
    scanner.feed(b' E5\nM83\nG1 E2\n')
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    totals = scanner.finish()
    assert peak < 4 * MAX_LINE + 1024 * 1024
    assert totals.overlong_lines == 1 and totals.total_mm == 2


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=4000)
    | st.text(alphabet='GMTEXYZN0123456789.-+; \n\t\r=:[]m', max_size=2000).map(str.encode)
)
def test_parser_never_raises(data: bytes) -> None:
    meta = parse_meta(data, data[-500:])
    merge_scan(meta, scan_bytes(data))


@settings(max_examples=200, deadline=2000)
@given(
    data=st.text(alphabet='GMTE0123456789.-+ ;\n', max_size=1500).map(str.encode),
    cuts=st.lists(st.integers(min_value=0, max_value=1500), max_size=8),
)
def test_chunking_never_changes_the_result(data: bytes, cuts: list[int]) -> None:
    scanner = ExtrusionScanner()
    edges = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    for start, end in zip(edges, edges[1:], strict=False):
        scanner.feed(data[start:end])
    assert scanner.finish() == scan_bytes(data)


moves = st.lists(
    st.tuples(st.sampled_from([0, 1, 2]), st.integers(min_value=-500, max_value=5000), st.booleans()),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=2000)
@given(moves=moves)
def test_relative_and_absolute_give_the_same_total(moves: list[tuple[int, int, bool]]) -> None:
    """The same extrusion (deltas in 1/1000 mm, tool changes, G92 resets) written both ways."""
    relative, absolute, position = [b'M83'], [b'M82', b'G92 E0'], 0
    for tool, delta, reset in moves:
        text = f'{delta / 1000:.3f}'.encode()
        relative += [b'T%d' % tool, b'G1 X1 E' + text]
        position += delta
        absolute += [b'T%d' % tool, b'G1 X1 E' + f'{position / 1000:.3f}'.encode()]
        if reset:
            absolute.append(b'G92 E0')
            position = 0
    a, r = scan_bytes(b'\n'.join(absolute) + b'\n'), scan_bytes(b'\n'.join(relative) + b'\n')
    assert a.total_mm == pytest.approx(r.total_mm, abs=1e-6)
    assert a.total_mm == pytest.approx(sum(d for _, d, _ in moves) / 1000, abs=1e-6)
    assert a.mm_by_tool == pytest.approx(r.mm_by_tool, abs=1e-6)
