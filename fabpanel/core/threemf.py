"""BambuStudio/OrcaSlicer print archives (`.gcode.3mf`): the plates, their G-code, figures and preview images.

A sliced 3MF is a zip holding `Metadata/plate_<n>.gcode` (+ `.md5`), `Metadata/slice_info.config` (XML: time,
grams and filaments per plate) and `Metadata/plate_<n>.png`. Everything in it is member input, so this module
reads the archive in memory or through a file object and never extracts anything to disk. Members are looked up
by exact names (a name with `../` is simply never read); their count, declared and actual sizes are bounded,
the G-code is streamed, and the XML may not declare entities.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO
from xml.etree import ElementTree

from fabpanel.core.gcode_extrusion import ExtrusionScanner
from fabpanel.core.gcode_meta import (
    HEAD_BYTES,
    TAIL_BYTES,
    GcodeMeta,
    MetaWarning,
    merge_scan,
    parse_meta,
    settle,
    split_head_tail,
)
from fabpanel.core.thumbnails import Thumbnail, ThumbnailError, decode_image

MAX_MEMBERS = 2000
MAX_DIRECTORY = 4 * 1024 * 1024  # central directory bytes
MAX_GCODE = 1024 * 1024 * 1024  # uncompressed plate G-code
MAX_CONFIG = 1024 * 1024
MAX_IMAGE = 4 * 1024 * 1024
MAX_RATIO = 1000  # deflate cannot do better than ~1032:1; beyond that a header lies
CHUNK = 1024 * 1024
SLICE_INFO = 'Metadata/slice_info.config'
_PLATE = re.compile(r'Metadata/plate_(\d{1,4})\.gcode')
_EOCD = b'PK\x05\x06'


class ArchiveError(ValueError):
    """Not a readable print archive: not a zip, too large, encrypted, duplicated or missing members."""


@dataclass(kw_only=True, slots=True)
class PlateFilament:
    slot: int  # 1-based filament id in the project
    material: str = ''
    colour: str = ''
    used_m: float | None = None
    used_g: float | None = None
    tray_info_idx: str = ''  # Bambu's filament preset id, e.g. GFL99


@dataclass(kw_only=True, slots=True)
class Plate:
    index: int
    gcode_member: str
    gcode_size: int
    gcode_md5: str | None = None  # upper-case hex as the slicer wrote it
    prediction_s: int | None = None
    weight_g: float | None = None
    printer_model_id: str = ''
    nozzle_diameters: str = ''
    filaments: list[PlateFilament] = field(default_factory=list)
    image: Thumbnail | None = None  # plate_<n>.png (512x512)
    small_image: Thumbnail | None = None  # plate_<n>_small.png


@dataclass(kw_only=True, slots=True)
class PrintArchive:
    client_version: str = ''
    plates: list[Plate] = field(default_factory=list)


def open_archive(source: bytes | BinaryIO) -> zipfile.ZipFile:
    """A zip reader over bytes or a seekable binary file, after checking the directory's size and members."""
    stream: BinaryIO = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    _check_directory(stream)
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise ArchiveError(f'not a readable zip archive: {error}') from error
    names = [info.filename for info in archive.infolist()]
    if len(names) > MAX_MEMBERS:
        raise ArchiveError('too many members')
    if len(set(names)) != len(names):
        raise ArchiveError('two members share a name')
    return archive


def read_archive(source: bytes | BinaryIO) -> PrintArchive:
    """The plates of a sliced 3MF with their figures and images (the G-code itself is read by `iter_member`)."""
    archive = open_archive(source)
    result = PrintArchive()
    plates_info: dict[int, dict[str, object]] = {}
    if _has(archive, SLICE_INFO):
        result.client_version, plates_info = parse_slice_info(read_member(archive, SLICE_INFO, MAX_CONFIG))
    for info in archive.infolist():
        match = _PLATE.fullmatch(info.filename)
        if match is None:
            continue
        index = int(match.group(1))
        plate = Plate(index=index, gcode_member=info.filename, gcode_size=info.file_size)
        _fill_plate(plate, plates_info.get(index, {}))
        plate.gcode_md5 = _md5_member(archive, f'{info.filename}.md5')
        plate.image = _image(archive, f'Metadata/plate_{index}.png')
        plate.small_image = _image(archive, f'Metadata/plate_{index}_small.png')
        result.plates.append(plate)
    if not result.plates:
        raise ArchiveError('no plate G-code in the archive (was the project sliced and exported as .gcode.3mf?)')
    result.plates.sort(key=lambda p: p.index)
    return result


def iter_member(archive: zipfile.ZipFile, name: str, limit: int = MAX_GCODE) -> Iterator[bytes]:
    """A member's bytes in chunks, stopping with ArchiveError past `limit` whatever its header declares."""
    info = _info(archive, name, limit)
    total = 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(CHUNK):
                total += len(chunk)
                if total > limit or total > info.file_size:
                    raise ArchiveError(f'{name} is larger than allowed or than it declares')
                yield chunk
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:  # CRC or data errors
        if isinstance(error, ArchiveError):
            raise
        raise ArchiveError(f'{name} cannot be read: {error}') from error


def read_member(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    return b''.join(iter_member(archive, name, limit))


def md5_of(chunks: Iterator[bytes], sink: list[bytes] | None = None) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    for chunk in chunks:
        digest.update(chunk)
        if sink is not None:
            sink.append(chunk)
    return digest.hexdigest().upper()


def parse_slice_info(data: bytes) -> tuple[str, dict[int, dict[str, object]]]:
    """slice_info.config -> (client version, {plate index: {'meta': {key: value}, 'filaments': [attrs]}})."""
    if b'<!DOCTYPE' in data.upper() or b'<!ENTITY' in data.upper():
        raise ArchiveError('slice_info.config declares a DTD')
    try:
        root = ElementTree.fromstring(data)  # noqa: S314 - no DTD (checked above), bounded size
    except ElementTree.ParseError as error:
        raise ArchiveError(f'slice_info.config is not valid XML: {error}') from error
    version = ''
    for item in root.iter('header_item'):
        if item.get('key') == 'X-BBL-Client-Version':
            version = (item.get('value') or '')[:40]
    plates: dict[int, dict[str, object]] = {}
    for element in root.iter('plate'):
        meta = {m.get('key', ''): m.get('value', '') for m in element.findall('metadata')}
        filaments = [dict(f.attrib) for f in element.findall('filament')][:64]
        try:
            index = int(meta.get('index', '0'))
        except ValueError:
            continue
        plates[index] = {'meta': meta, 'filaments': filaments}
    return version, plates


def _fill_plate(plate: Plate, info: dict[str, object]) -> None:
    meta = info.get('meta', {})
    assert isinstance(meta, dict)
    prediction = _float(meta.get('prediction'))
    plate.prediction_s = int(prediction) if prediction is not None and 0 <= prediction < 10**8 else None
    plate.weight_g = _float(meta.get('weight'))
    plate.printer_model_id = str(meta.get('printer_model_id', ''))[:40]
    plate.nozzle_diameters = str(meta.get('nozzle_diameters', ''))[:40]
    for attrs in info.get('filaments', []):  # type: ignore[union-attr]
        slot = _float(attrs.get('id'))
        plate.filaments.append(
            PlateFilament(
                slot=int(slot) if slot is not None and 0 < slot < 1000 else 0,
                material=attrs.get('type', '')[:40],
                colour=attrs.get('color', '')[:16],
                used_m=_float(attrs.get('used_m')),
                used_g=_float(attrs.get('used_g')),
                tray_info_idx=attrs.get('tray_info_idx', '')[:40],
            )
        )


def _check_directory(stream: BinaryIO) -> None:
    """Refuse an archive whose central directory is huge before zipfile loads all of it into memory."""
    try:
        size = stream.seek(0, io.SEEK_END)
        start = max(0, size - 65_557)
        stream.seek(start)
        tail = stream.read(size - start)
    except (OSError, ValueError) as error:
        raise ArchiveError(f'cannot read the archive: {error}') from error
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) < at + 22:
        raise ArchiveError('not a zip archive')
    entries, directory = struct.unpack('<HI', tail[at + 10 : at + 16])
    if entries == 0xFFFF or directory == 0xFFFFFFFF:  # ZIP64: the real figures sit in the ZIP64 record
        entries, directory = _zip64_figures(tail, at)
    if entries > MAX_MEMBERS or directory > MAX_DIRECTORY:
        raise ArchiveError('too many members')
    stream.seek(0)


def _zip64_figures(tail: bytes, eocd: int) -> tuple[int, int]:
    locator = eocd - 20
    if locator < 0 or tail[locator : locator + 4] != b'PK\x06\x07':
        raise ArchiveError('broken ZIP64 archive')
    record = tail.find(b'PK\x06\x06', max(0, locator - 4096), locator)
    if record < 0 or record + 56 > len(tail):
        raise ArchiveError('broken ZIP64 archive')
    entries, directory = struct.unpack('<QQ', tail[record + 32 : record + 48])
    return entries, directory


def _info(archive: zipfile.ZipFile, name: str, limit: int) -> zipfile.ZipInfo:
    try:
        info = archive.getinfo(name)
    except KeyError as error:
        raise ArchiveError(f'{name} is missing') from error
    if info.flag_bits & 0x1:
        raise ArchiveError(f'{name} is encrypted')
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ArchiveError(f'{name} uses an unsupported compression')
    if info.file_size > limit or info.file_size > max(info.compress_size, 1) * MAX_RATIO:
        raise ArchiveError(f'{name} is larger than allowed')
    return info


def _has(archive: zipfile.ZipFile, name: str) -> bool:
    return name in archive.NameToInfo


def _md5_member(archive: zipfile.ZipFile, name: str) -> str | None:
    if not _has(archive, name):
        return None
    text = read_member(archive, name, 256).decode('ascii', 'replace').strip().upper()
    return text if re.fullmatch(r'[0-9A-F]{32}', text) else None


def _image(archive: zipfile.ZipFile, name: str) -> Thumbnail | None:
    if not _has(archive, name):
        return None
    try:
        return decode_image(read_member(archive, name, MAX_IMAGE))
    except (ThumbnailError, ArchiveError):
        return None


def _float(value: object) -> float | None:
    try:
        number = float(str(value).replace(',', '.')) if value not in (None, '') else None
    except ValueError:
        return None
    return number if number is not None and number == number and abs(number) < 1e12 else None


def plate_meta(
    source: bytes | BinaryIO, plate_index: int | None = None, *, full_scan: bool = True, limit: int = MAX_GCODE
) -> tuple[PrintArchive, Plate, GcodeMeta]:
    """Read one plate (the first when None) in a single streamed pass: its G-code's metadata, the md5 check,
    and the archive's own figures and image where the G-code has none."""
    archive_info = read_archive(source)
    plates = {p.index: p for p in archive_info.plates}
    plate = plates.get(plate_index if plate_index is not None else archive_info.plates[0].index)
    if plate is None:
        raise ArchiveError(f'no plate {plate_index} in the archive')
    archive = open_archive(source if isinstance(source, bytes | bytearray) else _rewound(source))
    head, tail = bytearray(), bytearray()
    scanner = ExtrusionScanner() if full_scan else None
    digest = hashlib.md5(usedforsecurity=False)
    for chunk in iter_member(archive, plate.gcode_member, limit):
        digest.update(chunk)
        if len(head) < HEAD_BYTES:
            head += chunk[: HEAD_BYTES - len(head)]
        tail = (tail + chunk)[-TAIL_BYTES:]
        if scanner is not None:
            scanner.feed(chunk)
    size = plate.gcode_size
    meta = parse_meta(*split_head_tail(bytes(head), bytes(tail), size))
    if scanner is not None:
        meta = merge_scan(meta, scanner.finish())
    _archive_figures(meta, plate, digest.hexdigest().upper())
    return archive_info, plate, settle(meta)


def _archive_figures(meta: GcodeMeta, plate: Plate, md5: str) -> None:
    if plate.gcode_md5 is not None and plate.gcode_md5 != md5:
        meta.warnings.append(MetaWarning('md5_mismatch', (('member', plate.gcode_member),)))
    used_g = [f.used_g for f in plate.filaments]
    if not meta.figures.g and used_g and all(g is not None and g > 0 for g in used_g):
        meta.figures.g = [float(g) for g in used_g if g is not None]
    used_m = [f.used_m for f in plate.filaments]
    if not meta.figures.mm and used_m and all(m is not None and m > 0 for m in used_m):
        meta.figures.mm = [round(float(m) * 1000, 1) for m in used_m if m is not None]
    if meta.estimated_time_s is None:
        meta.estimated_time_s = plate.prediction_s
    if not meta.materials:
        meta.materials = [f.material for f in plate.filaments if f.material]
    for image in (plate.image, plate.small_image):
        if image is not None and image not in meta.thumbnails:
            meta.thumbnails.append(image)


def _rewound(stream: BinaryIO) -> BinaryIO:
    stream.seek(0)
    return stream
