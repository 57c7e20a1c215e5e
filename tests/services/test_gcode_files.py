"""The file adapter on real files: head/tail metadata, the fallback scan, the single-pass policy scan (extrusion +
gcode_safety) with its line numbers across chunk boundaries, a 3MF, and a file that is one 200 MB line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fabpanel.core.printers import PrinterLimits
from fabpanel.services import gcode_files
from fabpanel.services.gcode_files import read_metadata, scan_file

SAMPLES = Path(__file__).resolve().parents[3] / 'shared' / 'samples' / 'gcode'
LIMITS = PrinterLimits(max_nozzle_c=260, max_bed_c=110)


async def test_metadata_from_head_and_tail_of_a_large_file(tmp_path: Path) -> None:
    data = (SAMPLES / 'prusaslicer-2.2.0_messschieber-boden.gcode').read_bytes()
    cut = data.index(b'; filament used [mm]')
    path = tmp_path / 'job'  # no extension: the content decides
    path.write_bytes(data[:cut] + b'G1 X1 Y1\n' * 400_000 + data[cut:])
    meta = await read_metadata(path)
    assert meta.filament_mm == [696.0] and not meta.scanned and len(meta.thumbnails) == 2


async def test_fallback_scan_when_no_figure(tmp_path: Path) -> None:
    path = tmp_path / 'job'
    shutil.copy(SAMPLES / 'cura-2.3.1_puzzle-all.gcode', path)
    meta = await read_metadata(path)
    assert meta.scanned and meta.filament_source == 'computed' and meta.total_mm == pytest.approx(3194, abs=2)


async def test_policy_scan_reports_the_line_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gcode_files, 'READ_CHUNK', 4096)  # many chunk boundaries
    body = b'M83\n' + b'G1 X1 Y2 E0.5\n' * 5000 + b'M104 S300\n' + b'G1 X1 E0.5\n' * 10
    path = tmp_path / 'job'
    path.write_bytes(body)
    result = await scan_file(path, LIMITS, staff=False)
    assert result.refusal is not None and result.refusal.line_no == 5002 and result.refusal.code == 'too_hot'
    assert result.meta.computed_mm == pytest.approx(2505)  # the whole file, also after the refused line
    assert (await scan_file(path, PrinterLimits(max_nozzle_c=310), staff=False)).refusal is None


async def test_policy_scan_of_a_3mf(tmp_path: Path) -> None:
    path = tmp_path / 'upload'
    shutil.copy(SAMPLES / 'bambustudio-02.04.00.70_testqube.gcode.3mf', path)
    result = await scan_file(path, LIMITS, staff=True)
    assert result.refusal is None and result.meta.filament_g == [0.72]
    assert result.meta.computed_mm == pytest.approx(362, abs=1) and result.bytes == 181_232


async def test_one_huge_line_gives_empty_metadata_and_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / 'job'
    with path.open('wb') as out:
        out.write(b'G1 X1 ')
        chunk = b'9' * (4 * 1024 * 1024)
        for _ in range(50):
            out.write(chunk)
        out.write(b' E5\nM104 S999\n')
    meta = await read_metadata(path, full_scan=True)
    assert meta.filament_mm == [] or meta.computed_mm == 0
    assert 'overlong_lines' in meta.warning_codes()
    result = await scan_file(path, LIMITS, staff=False)
    assert result.refusal is not None and result.refusal.line_no in (1, 2)


async def test_binary_junk(tmp_path: Path) -> None:
    path = tmp_path / 'job'
    path.write_bytes(bytes(range(256)) * 1000)
    meta = await read_metadata(path)
    assert meta.warning_codes() == ['not_gcode'] and not meta.scanned
