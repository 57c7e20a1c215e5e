"""A print job's metadata from its G-code: slicer, time, filament per extruder (mm, cm3, g), material, nozzle,
layers, temperatures, printer model and thumbnails, with warnings where figures were computed or disagree.

Pure: the caller reads the file. `parse_meta(head, tail)` needs only the first and last bytes of a file
(slicers write their figures there), so a 50 MB file is read in milliseconds; `merge_scan` adds what a full
pass of `gcode_extrusion.ExtrusionScanner` found (filament from the moves when the slicer wrote no figure,
layer count, the body's hottest targets). The slicer's figures are trusted over the computed ones; a large
difference is only reported. `with_densities` recomputes grams from the densities of the loaded spools.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from fabpanel.core import gcode_slicers as sl
from fabpanel.core.gcode_extrusion import OTHER_TOOL, ExtrusionScanner, ExtrusionTotals
from fabpanel.core.thumbnails import Thumbnail, extract_thumbnails

HEAD_BYTES = 1024 * 1024  # thumbnails and the BambuStudio/Cura header sit at the top
TAIL_BYTES = 256 * 1024  # the PrusaSlicer figures and config sit at the end
MAX_COMMENT = 64 * 1024  # longer comment lines are skipped
DEFAULT_DIAMETER = 1.75
# g/cm3 when neither the file nor a spool says (typical datasheet values); the result is flagged
DEFAULT_DENSITY = {
    'PLA': 1.24,
    'PETG': 1.27,
    'PET': 1.27,
    'ABS': 1.04,
    'ASA': 1.07,
    'TPU': 1.21,
    'FLEX': 1.21,
    'PA': 1.14,
    'NYLON': 1.14,
    'PC': 1.20,
    'PVA': 1.23,
    'HIPS': 1.04,
    'PP': 0.90,
    'PVB': 1.08,
}
FALLBACK_MATERIAL = 'PLA'
BELOW_FIGURE = 0.9  # computed < 90 % of the slicer figure: the body was cut or edited
ABOVE_FIGURE, ABOVE_SLACK_MM = 1.25, 150.0  # start G-code purges add a fixed length the slicers leave out
_SETTLED = {
    'filament_computed',
    'grams_computed',
    'density_assumed',
    'diameter_assumed',
    'extrusion_below_figure',
    'extrusion_above_figure',
    'extrusion_unreadable',
}


@dataclass(frozen=True, slots=True)
class MetaWarning:
    """Something to show next to the figures. Pages translate `code` with `info`; `text()` is for logs."""

    code: str
    info: tuple[tuple[str, object], ...] = ()

    def text(self) -> str:
        details = ', '.join(f'{k}={v}' for k, v in self.info)
        return f'{self.code} ({details})' if details else self.code


@dataclass(kw_only=True, slots=True)
class SlicerFigures:
    """Filament figures exactly as the slicer wrote them (per extruder), before any fallback."""

    mm: list[float] = field(default_factory=list)
    cm3: list[float] = field(default_factory=list)
    g: list[float] = field(default_factory=list)


@dataclass(kw_only=True, slots=True)
class GcodeMeta:
    slicer: str = ''
    slicer_version: str = ''
    printer_model: str = ''
    estimated_time_s: int | None = None
    filament_mm: list[float] = field(default_factory=list)  # per extruder: the slicer's, else computed
    filament_cm3: list[float] = field(default_factory=list)
    filament_g: list[float] = field(default_factory=list)
    filament_source: str = ''  # 'slicer', 'computed' (from the moves) or '' (unknown)
    grams_source: str = ''  # 'slicer', 'file_density', 'default_density' or 'spool'
    computed_mm: float | None = None  # net extrusion of the whole body, when it was scanned
    computed_mm_by_tool: dict[int, float] = field(default_factory=dict)
    materials: list[str] = field(default_factory=list)
    colours: list[str] = field(default_factory=list)
    filament_diameter_mm: float | None = None
    densities: list[float] = field(default_factory=list)  # g/cm3 from the file (0 = the profile had none)
    nozzle_diameter_mm: float | None = None
    layer_height_mm: float | None = None
    first_layer_height_mm: float | None = None
    layer_count: int | None = None
    max_z_mm: float | None = None
    first_layer_nozzle_c: float | None = None
    first_layer_bed_c: float | None = None
    max_nozzle_c: float | None = None
    max_bed_c: float | None = None
    thumbnails: list[Thumbnail] = field(default_factory=list)
    figures: SlicerFigures = field(default_factory=SlicerFigures)
    scanned: bool = False  # the whole body went through ExtrusionScanner
    warnings: list[MetaWarning] = field(default_factory=list)

    @property
    def total_mm(self) -> float | None:
        return round(sum(self.filament_mm), 2) if self.filament_mm else None

    @property
    def total_g(self) -> float | None:
        return round(sum(self.filament_g), 2) if self.filament_g else None

    def warning_codes(self) -> list[str]:
        return [w.code for w in self.warnings]


def parse_meta(head: bytes, tail: bytes = b'') -> GcodeMeta:
    """Metadata from a file's first bytes and (when the file is longer than `head`) its last bytes."""
    if _looks_binary(head):
        return GcodeMeta(warnings=[MetaWarning('not_gcode')])
    found = sl.read_comments(_comment_lines(head) + _comment_lines(tail))
    meta = _from_comments(found)
    meta.thumbnails, unreadable = extract_thumbnails(head)
    if unreadable:
        meta.warnings.append(MetaWarning('thumbnail_unreadable', (('count', unreadable),)))
    _body_temperatures(meta, head, tail)
    return settle(meta)


def split_head_tail(head: bytes, tail: bytes, size: int) -> tuple[bytes, bytes]:
    """(head, tail) of whole lines for `parse_meta`: a head that stops inside a line (`; ... [mm] = 69`) would
    give a wrong figure. When the two reads overlap they are joined into the whole file."""
    if size <= len(head):
        return head, b''
    if size < len(head) + len(tail):
        return head + tail[len(head) + len(tail) - size :], b''
    return head[: head.rfind(b'\n') + 1], tail[tail.find(b'\n') + 1 :]


def merge_scan(meta: GcodeMeta, totals: ExtrusionTotals) -> GcodeMeta:
    """Add what a full pass over the body found; the slicer's own figures keep precedence."""
    meta = replace(meta, warnings=list(meta.warnings), scanned=True)
    meta.computed_mm = totals.total_mm
    meta.computed_mm_by_tool = dict(totals.mm_by_tool)
    meta.layer_count = meta.layer_count or totals.layer_count
    meta.first_layer_nozzle_c = meta.first_layer_nozzle_c or totals.first_layer_nozzle_c
    meta.first_layer_bed_c = meta.first_layer_bed_c or totals.first_layer_bed_c
    meta.max_nozzle_c = _max(meta.max_nozzle_c, totals.max_nozzle_c)
    meta.max_bed_c = _max(meta.max_bed_c, totals.max_bed_c)
    if totals.overlong_lines:
        meta.warnings.append(MetaWarning('overlong_lines', (('count', totals.overlong_lines),)))
    if totals.total_mm is None:
        meta.warnings.append(MetaWarning('extrusion_unreadable'))
    return settle(meta)


def with_densities(meta: GcodeMeta, densities: list[float]) -> GcodeMeta:
    """Grams recomputed with the densities of the spools that will print it (one per extruder, g/cm3)."""
    meta = replace(meta, warnings=list(meta.warnings))
    if meta.filament_cm3 and densities and all(d > 0 for d in densities):
        meta.filament_g = [round(v * densities[min(i, len(densities) - 1)], 2) for i, v in enumerate(meta.filament_cm3)]
        meta.grams_source = 'spool'
        meta.warnings = [w for w in meta.warnings if w.code not in ('grams_computed', 'density_assumed')]
    return meta


def settle(meta: GcodeMeta) -> GcodeMeta:
    """Fill mm/cm3/g from what is known, in order of trust, and say where a figure was worked out."""
    meta.warnings = [w for w in meta.warnings if w.code not in _SETTLED]
    figures, warn = meta.figures, meta.warnings.append
    diameter = meta.filament_diameter_mm or DEFAULT_DIAMETER
    area = math.pi * (diameter / 2) ** 2  # mm2: mm of filament * area = mm3
    meta.filament_source = 'slicer'
    if figures.mm:
        meta.filament_mm = list(figures.mm)
    elif figures.cm3:
        meta.filament_mm = [round(v * 1000 / area, 2) for v in figures.cm3]
    elif meta.computed_mm is not None:
        meta.filament_mm, meta.filament_source = _per_extruder(meta.computed_mm_by_tool), 'computed'
        warn(MetaWarning('filament_computed', (('mm', meta.computed_mm),)))
    else:
        meta.filament_mm, meta.filament_source = [], ''
    _check_against_figure(meta)
    meta.filament_cm3 = [round(v * area / 1000, 3) for v in meta.filament_mm]
    if not meta.filament_mm:
        meta.filament_g, meta.grams_source = [], ''
        return meta
    if meta.filament_diameter_mm is None:
        warn(MetaWarning('diameter_assumed', (('diameter', DEFAULT_DIAMETER),)))
    _grams(meta)
    return meta


def _grams(meta: GcodeMeta) -> None:
    figures, count = meta.figures, len(meta.filament_mm)
    if len(figures.g) == count and sum(figures.g) > 0:
        meta.filament_g, meta.grams_source = list(figures.g), 'slicer'
        return
    densities = [meta.densities[min(i, len(meta.densities) - 1)] if meta.densities else 0.0 for i in range(count)]
    if all(d > 0 for d in densities):
        meta.grams_source = 'file_density'
        meta.warnings.append(MetaWarning('grams_computed', (('density', densities[0]),)))
    else:
        materials = [meta.materials[min(i, len(meta.materials) - 1)] if meta.materials else '' for i in range(count)]
        densities = [d if d > 0 else default_density(m) for d, m in zip(densities, materials, strict=True)]
        meta.grams_source = 'default_density'
        meta.warnings.append(
            MetaWarning('density_assumed', (('material', materials[0] or FALLBACK_MATERIAL), ('density', densities[0])))
        )
    meta.filament_g = [round(v * d, 2) for v, d in zip(meta.filament_cm3, densities, strict=True)]


def default_density(material: str) -> float:
    name = material.strip().upper()
    for key in sorted(DEFAULT_DENSITY, key=len, reverse=True):  # 'PETG' before 'PET', 'PLA-CF' -> 'PLA'
        if name.startswith(key):
            return DEFAULT_DENSITY[key]
    return DEFAULT_DENSITY[FALLBACK_MATERIAL]


def _check_against_figure(meta: GcodeMeta) -> None:
    if meta.filament_source != 'slicer' or meta.computed_mm is None or not meta.filament_mm:
        return
    figure, computed = sum(meta.filament_mm), meta.computed_mm
    info = (('computed_mm', round(computed, 1)), ('figure_mm', round(figure, 1)))
    if computed < figure * BELOW_FIGURE:
        meta.warnings.append(MetaWarning('extrusion_below_figure', info))
    elif computed > figure * ABOVE_FIGURE + ABOVE_SLACK_MM:
        meta.warnings.append(MetaWarning('extrusion_above_figure', info))


def _per_extruder(by_tool: dict[int, float]) -> list[float]:
    """Computed mm per extruder T0..Tn. Special tools (BambuStudio's T1000 start purge, T255 unload, tools
    beyond the count) push the filament already loaded, so they are billed to the first extruder."""
    normal = {t: v for t, v in by_tool.items() if 0 <= t < 256 and t != OTHER_TOOL}
    count = max(normal, default=0) + 1
    result = [max(normal.get(t, 0.0), 0.0) for t in range(count)]
    result[0] += max(sum(v for t, v in by_tool.items() if t not in normal), 0.0)
    return [round(v, 2) for v in result]


def _from_comments(found: dict[str, str]) -> GcodeMeta:
    meta = GcodeMeta(slicer=found.get('slicer', ''), slicer_version=found.get('slicer_version', ''))
    meta.printer_model = (sl.pick(found, 'printer_model', 'target_machine.name', 'cura.machine_name') or '').strip('"')[
        :200
    ]
    meta.estimated_time_s = sl.duration(
        sl.pick(found, 'estimated_printing_time_(normal_mode)', 'total_estimated_time', 'time', 'print.time')
    )
    meta.figures = _figures(found)
    meta.materials = sl.strings(sl.pick(found, 'filament_type', 'cura.material_type'))
    meta.colours = sl.strings(sl.pick(found, 'filament_colour', 'extruder_colour'))
    meta.densities = sl.numbers(sl.pick(found, 'filament_density'))
    meta.filament_diameter_mm = _positive(sl.number(sl.pick(found, 'filament_diameter', 'cura.material_diameter')))
    meta.nozzle_diameter_mm = _positive(
        sl.number(sl.pick(found, 'nozzle_diameter', 'cura.machine_nozzle_size', 'extruder_train.0.nozzle.diameter'))
    )
    meta.layer_height_mm = _positive(sl.number(sl.pick(found, 'layer_height', 'cura.layer_height')))
    first = sl.pick(found, 'first_layer_height', 'initial_layer_print_height', 'cura.layer_height_0')
    if first and first.strip().endswith('%') and meta.layer_height_mm:  # PrusaSlicer allows '50%'
        meta.first_layer_height_mm = round(meta.layer_height_mm * (sl.number(first) or 0) / 100, 4) or None
    else:
        meta.first_layer_height_mm = _positive(sl.number(first))
    count = sl.number(sl.pick(found, 'layer_count', 'total_layer_number'))
    meta.layer_count = int(count) if count is not None and 0 < count < 10**7 else None
    meta.max_z_mm = _positive(sl.number(sl.pick(found, 'max_z_height', 'maxz', 'print.size.max.z')))
    _config_temperatures(meta, found)
    return meta


def _figures(found: dict[str, str]) -> SlicerFigures:
    mm = sl.numbers(sl.pick(found, 'filament_used_[mm]', 'total_filament_length_[mm]'))
    if not mm and (cura := found.get('filament_used')):  # Cura writes metres: '0.49988m'
        mm = [round(v * 1000, 3) for v in sl.numbers(cura)]
    if not mm and (volume := found.get('extruder_train.0.material.volume_used')):  # Griffin: mm3
        mm = [round(v / (math.pi * (2.85 / 2) ** 2), 2) for v in sl.numbers(volume)]
    cm3 = sl.numbers(found.get('filament_used_[cm3]'))  # BambuStudio's '[cm^3]' line is really mm3: not read
    grams = sl.numbers(sl.pick(found, 'filament_used_[g]', 'total_filament_weight_[g]'))
    absurd = [v for v in mm + cm3 + grams if not 0 <= v < 10**8]
    return SlicerFigures() if absurd else SlicerFigures(mm=mm, cm3=cm3, g=grams)


def _config_temperatures(meta: GcodeMeta, found: dict[str, str]) -> None:
    nozzle_first = sl.numbers(
        sl.pick(
            found,
            'first_layer_temperature',
            'nozzle_temperature_initial_layer',
            'cura.material_print_temperature_layer_0',
            'extruder_train.0.initial_temperature',
            'temperature',
            'nozzle_temperature',
            'cura.material_print_temperature',
        )
    )
    nozzle_all = nozzle_first + sl.numbers(
        sl.pick(found, 'temperature', 'nozzle_temperature', 'cura.material_print_temperature')
    )
    bed_first_keys, bed_keys = sl.bed_keys(found)
    bed_first = sl.numbers(sl.pick(found, *bed_first_keys))
    bed_all = bed_first + sl.numbers(sl.pick(found, *bed_keys))
    meta.first_layer_nozzle_c = _positive(nozzle_first[0] if nozzle_first else None)
    meta.first_layer_bed_c = _positive(bed_first[0] if bed_first else None)
    meta.max_nozzle_c = _positive(max(nozzle_all, default=None))
    meta.max_bed_c = _positive(max(bed_all, default=None))


def _body_temperatures(meta: GcodeMeta, head: bytes, tail: bytes) -> None:
    """Targets the start and end G-code set (the slicer's config may not list them, as with old Cura)."""
    for part in (head, tail):
        scanner = ExtrusionScanner()
        scanner.feed(part)
        totals = scanner.finish()
        if part is head:
            meta.first_layer_nozzle_c = meta.first_layer_nozzle_c or totals.first_layer_nozzle_c
            meta.first_layer_bed_c = meta.first_layer_bed_c or totals.first_layer_bed_c
        meta.max_nozzle_c = _max(meta.max_nozzle_c, totals.max_nozzle_c)
        meta.max_bed_c = _max(meta.max_bed_c, totals.max_bed_c)


def _comment_lines(data: bytes) -> list[str]:
    text = data.decode('utf-8', 'replace')
    return [line.rstrip('\r') for line in text.split('\n') if line.startswith(';') and len(line) <= MAX_COMMENT]


def _looks_binary(head: bytes) -> bool:
    sample = head[:4096]
    return b'\x00' in sample or (len(sample) > 64 and sum(b < 9 or 13 < b < 32 for b in sample) > len(sample) // 10)


def _positive(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value > 0 else None


def _max(a: float | None, b: float | None) -> float | None:
    values = [v for v in (a, b) if v is not None and v > 0]
    return max(values) if values else None
