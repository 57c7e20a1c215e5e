"""Stable identities for USB serial printers: a /dev/serial/by-id link or `serial:<USB serial number>` -> the tty now.

ttyUSB/ttyACM numbers change when a printer is replugged or the host reboots; the by-id link (udev) and the USB
serial number do not. Both are resolved again at every connect, so a link that moved to another tty is followed,
and watched while connected, so a printer that went away or came back is noticed within a poll interval.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from serial.tools import list_ports

from fabpanel.printers.driver import PrinterUnavailable

BY_ID = Path('/dev/serial/by-id')
SERIAL_PREFIX = 'serial:'
POLL_S = 2.0  # cheap: one readlink (or one sysfs scan for serial numbers) per printer per poll


class PortNotFound(PrinterUnavailable):
    """Nothing is plugged in at that address right now."""


def resolve(address: str) -> str:
    """The tty behind a stable address, looked up now (blocking: sysfs and readlink; call via resolve_async)."""
    address = address.strip()
    if not address:
        raise PortNotFound('no serial port configured')
    if address.startswith(SERIAL_PREFIX):
        wanted = address[len(SERIAL_PREFIX) :].strip()
        for port in list_ports.comports():
            if port.serial_number and port.serial_number == wanted:
                return port.device
        raise PortNotFound(f'no USB serial device with serial number {wanted}')
    target = os.path.realpath(address)  # follows the link (and links to links) as it is now
    if not os.path.exists(target):
        raise PortNotFound(f'{address} is not plugged in')
    return target


async def resolve_async(address: str) -> str:
    return await asyncio.to_thread(resolve, address)


async def current(address: str) -> str | None:
    """The tty behind the address now, or None when nothing is there."""
    try:
        return await resolve_async(address)
    except PortNotFound:
        return None


def stable_ids() -> dict[str, str]:
    """Every /dev/serial/by-id link and its tty (for the admin page's port picker)."""
    try:
        entries = sorted(BY_ID.iterdir())
    except OSError:
        return {}
    return {str(entry): os.path.realpath(entry) for entry in entries}


def serial_numbers() -> dict[str, str]:
    """`serial:<number>` addresses of the USB serial devices plugged in now, with their tty."""
    return {f'{SERIAL_PREFIX}{p.serial_number}': p.device for p in list_ports.comports() if p.serial_number}


async def watch(address: str, *, interval: float = POLL_S) -> AsyncIterator[str | None]:
    """Yield the tty behind the address now and then whenever it changes (None: unplugged)."""
    last: str | None | bool = False  # nothing yielded yet
    while True:
        now = await current(address)
        if now != last:
            last = now
            yield now
        await asyncio.sleep(interval)


async def wait_present(address: str, *, interval: float = POLL_S) -> str:
    """Return the tty once something is plugged in at the address (wrap in asyncio.timeout to bound it)."""
    async for tty in watch(address, interval=interval):
        if tty is not None:
            return tty
    raise PortNotFound(address)  # not reached: watch() never ends
