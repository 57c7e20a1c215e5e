"""Bambu print archives: the sample .gcode.3mf, and archives built to attack the reader (zip bombs, lying
headers, too many or duplicated members, traversal names, entity declarations, encryption)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from fabpanel.core.threemf import ArchiveError, iter_member, open_archive, plate_meta, read_archive

SAMPLE = (
    Path(__file__).resolve().parents[3] / 'shared' / 'samples' / 'gcode' / 'bambustudio-02.04.00.70_testqube.gcode.3mf'
)
SLICE_INFO = (
    b'<?xml version="1.0"?><config><plate><metadata key="index" value="1"/>'
    b'<metadata key="prediction" value="100"/><filament id="1" type="PETG" used_m="1.5" used_g="4.5"/>'
    b'</plate></config>'
)


def archive(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w', compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return out.getvalue()


def test_sample_archive() -> None:
    result = read_archive(SAMPLE.read_bytes())
    assert result.client_version == '02.04.00.70' and [p.index for p in result.plates] == [1]
    plate = result.plates[0]
    assert (plate.gcode_member, plate.gcode_size, plate.prediction_s, plate.weight_g) == (
        'Metadata/plate_1.gcode',
        181_232,
        865,
        0.72,
    )
    assert plate.gcode_md5 == '1B1A944DC3D75907475DEB7225D36AB4'
    assert [(f.slot, f.material, f.colour, f.used_m, f.used_g, f.tray_info_idx) for f in plate.filaments] == [
        (1, 'PLA', '#FFFFFF', 0.24, 0.72, 'GFL99')
    ]
    assert plate.image is not None and (plate.image.width, plate.image.height, len(plate.image.data)) == (
        512,
        512,
        3698,
    )
    assert plate.small_image is not None and (plate.small_image.width, len(plate.small_image.data)) == (128, 1811)


def test_sample_plate_metadata_from_a_file_object() -> None:
    with SAMPLE.open('rb') as stream:
        _, plate, meta = plate_meta(stream)
    assert (meta.slicer, meta.estimated_time_s, meta.filament_mm, meta.filament_g) == (
        'BambuStudio',
        865,
        [241.03],
        [0.72],
    )
    assert meta.computed_mm == pytest.approx(362, abs=1) and meta.layer_count == 50
    assert [t.width for t in meta.thumbnails] == [512, 128] and meta.warnings == []


def test_md5_mismatch_and_figures_from_slice_info() -> None:
    gcode = b'; HEADER_BLOCK_START\n; OrcaSlicer 2.1.0\n; HEADER_BLOCK_END\nM83\nG1 X1 E1500\n'
    data = archive(
        [
            ('Metadata/plate_1.gcode', gcode),
            ('Metadata/plate_1.gcode.md5', b'0' * 32),
            ('Metadata/slice_info.config', SLICE_INFO),
        ]
    )
    _, _, meta = plate_meta(data)
    assert meta.slicer == 'OrcaSlicer' and meta.estimated_time_s == 100 and meta.materials == ['PETG']
    assert meta.filament_mm == [1500.0] and meta.filament_g == [4.5] and meta.grams_source == 'slicer'
    assert meta.warning_codes() == ['md5_mismatch', 'diameter_assumed']


def test_zip_bomb_member_is_refused_before_inflating() -> None:
    bomb = archive([('Metadata/plate_1.gcode', b'\x00' * (64 * 1024 * 1024))])
    assert len(bomb) < 200_000
    with pytest.raises(ArchiveError, match='larger than allowed'):
        plate_meta(bomb)


def test_member_over_the_limit_stops_streaming() -> None:
    data = archive([('Metadata/plate_1.gcode', b'G1 X1 E1\n' * 200_000)])
    with pytest.raises(ArchiveError):
        plate_meta(data, limit=100_000)


def test_header_that_lies_about_the_size() -> None:
    real = b'G1 X1 E1\n' * 1000
    data = bytearray(archive([('Metadata/plate_1.gcode', real)], zipfile.ZIP_STORED))
    # shrink the declared size in the local and central headers: zipfile then stops early and the CRC fails
    size = len(real).to_bytes(4, 'little')
    data = bytes(data).replace(size + size, (100).to_bytes(4, 'little') * 2)
    with pytest.raises(ArchiveError):
        list(iter_member(open_archive(data), 'Metadata/plate_1.gcode'))


def test_too_many_members_refused_from_the_directory_alone() -> None:
    data = archive([(f'm{i}', b'') for i in range(2500)], zipfile.ZIP_STORED)
    with pytest.raises(ArchiveError, match='too many'):
        open_archive(data)


def test_duplicate_names_refused() -> None:
    with pytest.warns(UserWarning):
        data = archive([('Metadata/plate_1.gcode', b'G1 E1\n'), ('Metadata/plate_1.gcode', b'M104 S999\n')])
    with pytest.raises(ArchiveError, match='share a name'):
        read_archive(data)


def test_traversal_names_are_never_read_or_written(tmp_path: Path) -> None:
    data = archive(
        [
            ('../../evil.gcode', b'M104 S999\n'),
            ('/etc/plate_1.gcode', b'x'),
            ('Metadata/../../Metadata/plate_2.gcode', b'x'),
            ('Metadata/plate_1.gcode', b'M83\nG1 E5\n'),
        ]
    )
    before = set(os.listdir(tmp_path))
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        result = read_archive(data)
        _, plate, meta = plate_meta(data)
    finally:
        os.chdir(cwd)
    assert [p.gcode_member for p in result.plates] == ['Metadata/plate_1.gcode'] and meta.computed_mm == 5
    assert set(os.listdir(tmp_path)) == before


def test_entities_in_slice_info_refused() -> None:
    laughs = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><config>&a;</config>'
    data = archive([('Metadata/plate_1.gcode', b'G1 E1\n'), ('Metadata/slice_info.config', laughs)])
    with pytest.raises(ArchiveError, match='DTD'):
        read_archive(data)


def test_encrypted_member_refused() -> None:
    data = bytearray(archive([('Metadata/plate_1.gcode', b'G1 E1\n')]))
    central = data.index(b'PK\x01\x02')
    data[6] |= 0x1  # zipfile cannot write the flag: set it in the local and the central header
    data[central + 8] |= 0x1
    with pytest.raises(ArchiveError, match='encrypted'):
        plate_meta(bytes(data))


@pytest.mark.parametrize(
    'data',
    [
        b'',
        b'not a zip',
        b'PK\x05\x06' + b'\x00' * 18,
        SAMPLE.read_bytes()[:20_000],
        archive([('readme.txt', b'hello')]),
    ],
)
def test_not_an_archive_or_no_plate(data: bytes) -> None:
    with pytest.raises(ArchiveError):
        plate_meta(data)
