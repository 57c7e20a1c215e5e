"""Fixtures and helpers shared by the Marlin driver tests (import the `sim` fixture into a test module)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fabpanel.core.printers import PrinterConfig, PrinterKind
from fabpanel.printers.marlin import MarlinDriver
from fabpanel.printers.marlin_link import MarlinSettings
from tests.printers.conftest import RecordingListener
from tests.printers.marlin_sim_io import SimProcess

HANDSHAKE = ['M110 N0', 'M115', 'M155 S1', 'M105']  # poll_s=0.5 below: M155 takes whole seconds
FAST = MarlinSettings(ok_timeout_s=1.0, poll_s=0.5, handshake_timeout_s=1.0)
PARK = ['M400', 'M114', 'G91', 'G1 E-2 F2400', 'G90']  # then the lift and the move away
END = ['M104 S0', 'M140 S0', 'M107', 'G91', 'G1 E-2 F2400', 'G1 Z10 F600', 'G90', 'G1 X5 Y215 F6000', 'M84']

SimFactory = Callable[..., SimProcess]


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimFactory]:
    """Start Marlin simulators (separate processes, real ptys, --strict); stopped after the test."""
    started: list[SimProcess] = []

    def start(*faults: str, extra: tuple[str, ...] = (), name: str = 'usb-Marlin_sim-if00') -> SimProcess:
        process = SimProcess(
            tmp_path / name, faults=faults, record=tmp_path / f'{name}.rec', extra=('--strict', *extra)
        )
        started.append(process.start())
        return process

    yield start
    for process in started:
        process.stop()


def driver_for(address: Path | str, listener: RecordingListener, settings: MarlinSettings = FAST) -> MarlinDriver:
    config = PrinterConfig(id=1, name='Prusa sim', kind=PrinterKind.MARLIN, address=str(address))
    return MarlinDriver(config, listener, settings=settings)


async def print_file(driver: MarlinDriver, listener: RecordingListener, path: Path, within_s: float = 30.0) -> None:
    ended = len(listener.ended)
    await driver.start(await driver.upload(path, path.name))
    await listener.until(lambda: len(listener.ended) > ended, within_s, 'the job to end')


async def until_recorded(printer: SimProcess, command: str, within_s: float = 15.0) -> None:
    """Wait until the simulator has run the command (it records as it goes)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while command not in printer.recorded():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f'the printer never ran {command}; it ran {printer.recorded()[-5:]}')
        await asyncio.sleep(0.05)
