"""The serial port under MarlinDriver: opened off the event loop, read and written with little CPU per line."""

from __future__ import annotations

import asyncio
import os

import serial
from serial_asyncio import SerialTransport

from fabpanel.printers.serial_ports import SERIAL_PREFIX


def open_port(tty: str, baudrate: int) -> serial.Serial:
    """Open the tty (blocking: call in a thread); exclusive, so two drivers never share a printer."""
    port = serial.Serial(port=tty, baudrate=baudrate, timeout=0, exclusive=True)
    port.reset_input_buffer()  # what the printer said before we listened (boot banner, old reports)
    return port


def port_moved(address: str, tty: str) -> bool:
    """Whether the address no longer leads to the tty we have open (blocking: call in a thread). Cheap enough to
    run every poll: a readlink for by-id links; for `serial:` addresses only that the tty still exists (the full
    USB scan runs at connect)."""
    if address.startswith(SERIAL_PREFIX):
        return not os.path.exists(tty)
    return os.path.realpath(address) != tty


class PortTransport(SerialTransport):
    """pyserial-asyncio's transport with a cheaper hot path: one os.read per wake-up (pyserial's read() adds a
    select() and a Timeout object) and writes tried at once (the base class waits a loop turn for writability)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol, port: serial.Serial) -> None:
        self._fd = port.fileno()
        super().__init__(loop, protocol, port)

    def _read_ready(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EIO: the device is gone (unplugged, the pty's other end closed)
            self._close(exc)
            return
        if not data:
            self._close(ConnectionError('the port reached end of file'))
            return
        self._protocol.data_received(data)

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        if not self._write_buffer:
            try:
                n = os.write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._close(exc)
                return
            if n == len(data):
                return
            data = data[n:]
        super().write(data)
