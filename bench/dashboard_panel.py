"""Start the panel like `python main.py`, with some of the benchmark's simulated printers printing.

The simulated printers live in the panel's process (the fleet drives them there, fabpanel/printers/sim.py), so
the benchmark cannot press "start" from outside. As a member would at the printer's own screen, this starts a
long job on the printers listed in FABPANEL_BENCH_PRINTING (space-separated sim:// addresses) before the panel
starts: the fleet finds them printing when it connects. Nothing else of the panel changes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fabpanel.printers.sim import sim_printer  # noqa: E402

JOB_S = 4 * 3600.0  # longer than any run: the printers print from start to end
ENV = 'FABPANEL_BENCH_PRINTING'


def start_printing() -> None:
    for k, address in enumerate(os.environ.get(ENV, '').split()):
        sim_printer(address).start_outside(f'bench-part-{k}.gcode', duration_s=JOB_S, layers=400)


if __name__ in {'__main__', '__mp_main__'}:
    from fabpanel.cli import main

    start_printing()
    main()
