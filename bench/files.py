"""Files benchmark (../shared/BENCHMARKS.md): a 50 MB G-code built by repeating a sample body between the
sample's real header and footer; metadata time (target < 1 s) and the full policy scan in MB/s (>= 20 MB/s).

The policy scan is `services.gcode_files.scan_file_sync`: one read of the file feeding the extrusion scanner and
`core.gcode_safety.scan`. Each figure is the best of --repeat runs (the machine is shared).
Run: flock -x /tmp/bench.lock .venv/bin/python -m bench.files [--mb 50] [--repeat 3] [--cpu 0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from fabpanel.core.printers import PrinterLimits
from fabpanel.services.gcode_files import _chunks, _extrusion, read_metadata, scan_file_sync

SAMPLES = Path(__file__).resolve().parents[2] / 'shared' / 'samples' / 'gcode'
# (sample, line that starts the body, line that starts the footer): the body is the layers, repeated
WORKLOADS = {
    'prusaslicer-2.6.1': ('prusaslicer-2.6.1_small-benchmark.gcode', b';LAYER_CHANGE', b'; Filament-specific end'),
    'bambustudio': ('bambustudio-02.04.00.70_testqube.gcode', b'; CHANGE_LAYER', b'; MACHINE_END_GCODE_START'),
    'cura-2.3.1 (no figure)': ('cura-2.3.1_puzzle-all.gcode', b';LAYER:0', b';End of Gcode'),
}


def build(sample: str, body_start: bytes, footer_start: bytes, size: int, target: Path) -> int:
    data = (SAMPLES / sample).read_bytes()
    start = data.index(b'\n' + body_start) + 1
    end = data.index(b'\n' + footer_start, start) + 1
    header, body, footer = data[:start], data[start:end], data[end:]
    with target.open('wb') as out:
        out.write(header)
        written = len(header) + len(footer)
        while written < size:  # each copy starts with an E reset, as a slicer's layer change may
            out.write(b'G92 E0\n' + body)
            written += len(body) + 7
        out.write(footer)
    return written


def extrusion_only(path: Path) -> object:
    with path.open('rb') as stream:
        return _extrusion(_chunks(stream))


def best(repeat: int, run) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--mb', type=float, default=50)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--cpu', type=int, default=None, help='pin to this core (the panel gets one core)')
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    limits = PrinterLimits(max_nozzle_c=300, max_bed_c=120)  # staff=True below: every line goes through the check
    rows = []
    with tempfile.TemporaryDirectory(prefix='fabpanel-files-') as tmp:
        for name, (sample, body_start, footer_start) in WORKLOADS.items():
            path = Path(tmp) / 'job.gcode'
            size = build(sample, body_start, footer_start, int(args.mb * 1e6), path)
            meta_s, meta = best(args.repeat, lambda path=path: asyncio.run(read_metadata(path)))
            extrusion_s, _ = best(args.repeat, lambda path=path: extrusion_only(path))
            member = scan_file_sync(path, limits, staff=False)  # the verdict for a member's upload
            policy_s, scan = best(args.repeat, lambda path=path: scan_file_sync(path, limits, staff=True))  # every line
            rows.append((name, size, meta_s, meta, extrusion_s, policy_s, scan, member))
            path.unlink()
    print(
        f'Files benchmark: {args.mb:g} MB G-code per workload, best of {args.repeat}; targets: metadata < 1 s, '
        'policy scan >= 20 MB/s'
    )
    for name, size, meta_s, meta, extrusion_s, policy_s, scan, member in rows:
        verdict = (
            f'{member.refusal.code} {member.refusal.command} line {member.refusal.line_no}'
            if member.refusal
            else 'none'
        )
        mb = size / 1e6
        print(
            f'{name}: {mb:.1f} MB, metadata {meta_s * 1000:.0f} ms (filament {meta.filament_source}, '
            f'{meta.total_mm} mm), extrusion scan alone {mb / extrusion_s:.1f} MB/s, '
            f'policy scan (extrusion + gcode_safety) {mb / policy_s:.1f} MB/s '
            f'(computed {scan.meta.computed_mm} mm; member upload refused: {verdict})'
        )


if __name__ == '__main__':
    main()
