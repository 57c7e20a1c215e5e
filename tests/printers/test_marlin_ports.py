"""Unplugging and replugging USB printers: the job becomes interrupted, the driver survives and connects again,
and a by-id link that moves to another tty is followed (at reconnect, and noticed while connected)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fabpanel.core.printers import JobOutcome, PrinterState
from fabpanel.printers import serial_ports
from fabpanel.printers.driver import PrinterUnavailable
from tests.printers.conftest import RecordingListener
from tests.printers.marlin_fixtures import HANDSHAKE, SimFactory, driver_for, print_file, sim
from tests.printers.marlin_sim_io import executed, sample_gcode

__all__ = ['sim']  # the fixture


async def test_unplug_mid_print_interrupts_and_the_driver_connects_again(
    sim: SimFactory, listener: RecordingListener, tmp_path: Path
) -> None:
    printer = sim(extra=('--replug-after', '1.5'))
    sample_gcode(tmp_path / 'part.gcode', 3000, {1500: 'M118 SIM:unplug'})
    driver = driver_for(printer.link, listener)
    await driver.connect()
    try:
        await print_file(driver, listener, tmp_path / 'part.gcode')
        assert listener.ended == [(JobOutcome.INTERRUPTED, 'the printer connection was lost')]
        await asyncio.wait_for(driver.wait_closed(), 2.0)
        assert listener.last.state is PrinterState.OFFLINE
        with pytest.raises(PrinterUnavailable):
            await driver.connect()  # the link is gone until the printer is back
        await asyncio.wait_for(serial_ports.wait_present(str(printer.link), interval=0.1), 5.0)
        report = await driver.connect()  # the same driver object
        assert report.state is PrinterState.IDLE
        sample_gcode(tmp_path / 'again.gcode', 300)
        await print_file(driver, listener, tmp_path / 'again.gcode')
        assert listener.ended[-1] == (JobOutcome.DONE, '')
    finally:
        await driver.close()


async def test_a_link_that_moves_to_another_pty_is_followed(
    sim: SimFactory, listener: RecordingListener, tmp_path: Path
) -> None:
    printer = sim()
    sample_gcode(tmp_path / 'part.gcode', 3000, {1500: 'M118 SIM:move'})  # re-enumerated: new tty, same link
    driver = driver_for(printer.link, listener)
    await driver.connect()
    first = await serial_ports.resolve_async(str(printer.link))
    try:
        await print_file(driver, listener, tmp_path / 'part.gcode')
        assert listener.ended == [(JobOutcome.INTERRUPTED, 'the printer connection was lost')]
        await asyncio.wait_for(driver.wait_closed(), 2.0)
        second = await serial_ports.resolve_async(str(printer.link))
        assert second != first
        assert (await driver.connect()).state is PrinterState.IDLE
        assert executed(printer.recorded())[-len(HANDSHAKE) :] == HANDSHAKE
    finally:
        await driver.close()


async def test_a_link_moved_while_connected_is_noticed(
    sim: SimFactory, listener: RecordingListener, tmp_path: Path
) -> None:
    old, new = sim(name='old'), sim(name='new')
    by_id = tmp_path / 'usb-Prusa_MK3_CZPX1234-if00'
    by_id.symlink_to(await serial_ports.resolve_async(str(old.link)))
    driver = driver_for(by_id, listener)
    await driver.connect()
    try:
        tmp = tmp_path / 'link.tmp'
        tmp.symlink_to(await serial_ports.resolve_async(str(new.link)))
        tmp.replace(by_id)  # udev points the name at another tty; the old one still answers
        await asyncio.wait_for(driver.wait_closed(), serial_ports.POLL_S + 2.0)
        assert old.alive() and listener.last.state is PrinterState.OFFLINE
        await driver.connect()
        assert new.recorded() == HANDSHAKE
        assert executed(old.recorded()) == HANDSHAKE  # nothing more went to the old tty
    finally:
        await driver.close()


async def test_watch_reports_plug_and_unplug(tmp_path: Path) -> None:
    link = tmp_path / 'usb-link'
    (tmp_path / 'ttyACM0').touch()
    (tmp_path / 'ttyACM1').touch()
    seen: list[str | None] = []

    async def follow() -> None:
        async for tty in serial_ports.watch(str(link), interval=0.05):
            seen.append(tty)

    task = asyncio.create_task(follow())
    try:
        for step in ('ttyACM0', None, 'ttyACM1'):
            await asyncio.sleep(0.2)
            link.unlink(missing_ok=True)
            if step is not None:
                link.symlink_to(tmp_path / step)
        await asyncio.sleep(0.2)
    finally:
        task.cancel()
    assert seen == [None, str(tmp_path / 'ttyACM0'), None, str(tmp_path / 'ttyACM1')]


async def test_unknown_addresses_are_unavailable(listener: RecordingListener, tmp_path: Path) -> None:
    for address in ('serial:NO-SUCH-SERIAL-NUMBER', str(tmp_path / 'usb-absent-if00'), ''):
        with pytest.raises(PrinterUnavailable):
            await driver_for(address, listener).connect()
    assert listener.last.state is PrinterState.OFFLINE
