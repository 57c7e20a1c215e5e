"""The one interface every printer driver implements, and how a driver tells its worker what happened."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Protocol

from fabpanel.core.printers import Capabilities, Heater, JobOutcome, PrinterConfig, PrinterReport


class PrinterError(Exception):
    """A printer command could not be carried out; the message is fit to show staff."""


class PrinterUnavailable(PrinterError):
    """The printer cannot be reached (unplugged, powered off, wrong address, refused credentials)."""


class CommandRefused(PrinterError):
    """The printer is reachable but the command does not fit its state (e.g. pause while idle)."""


class DriverListener(Protocol):
    """Implemented by the fleet worker. Drivers call these from their own tasks, on the event loop."""

    def report(self, report: PrinterReport) -> None:
        """A fresh snapshot: state, temperatures, job progress (send one whenever any of them changed)."""

    def job_ended(self, outcome: JobOutcome, reason: str) -> None:
        """The active job ended (done, failed with the printer's reason, cancelled, interrupted)."""

    def action(self, name: str) -> None:
        """The printer asked the host for something (Marlin `//action:pause|resume|cancel`, a printer-side pause)."""

    def console(self, direction: str, line: str) -> None:
        """A line sent ('>') or received ('<'), for the staff console. Called often: keep it cheap."""


class PrinterDriver(ABC):
    """One connection to one printer. The fleet worker owns it: it calls connect(), then waits on
    wait_closed(); when that returns it reconnects with backoff. Commands come from the worker only, already
    checked against the printer's limits and the caller's role."""

    kind: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, config: PrinterConfig, listener: DriverListener) -> None:
        self.config = config
        self.listener = listener

    @abstractmethod
    async def connect(self) -> PrinterReport:
        """Open the connection, handshake, and return what the printer reports now (including an active job).
        Raises PrinterUnavailable."""

    @abstractmethod
    async def wait_closed(self) -> None:
        """Return when the connection is lost or closed (an unplugged cable, a dropped socket)."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connection; safe to call twice and after a loss."""

    @abstractmethod
    async def upload(self, local_path: Path, remote_name: str) -> str:
        """Make the file printable on this printer; returns the name to pass to start(). Host-streamed
        printers keep the local path."""

    @abstractmethod
    async def start(self, remote_name: str) -> None:
        """Start printing an uploaded file."""

    @abstractmethod
    async def pause(self) -> None: ...

    @abstractmethod
    async def resume(self) -> None: ...

    @abstractmethod
    async def cancel(self) -> None:
        """Stop the job and run a safe end (heaters off, head away from the part)."""

    @abstractmethod
    async def emergency_stop(self) -> None:
        """Stop everything now (M112 or the printer's own equivalent). The printer may need a reset after."""

    @abstractmethod
    async def send_gcode(self, lines: Sequence[str]) -> list[str]:
        """Send raw lines (console, preheat); returns what the printer answered, where the protocol tells."""

    async def alive(self) -> bool | None:
        """Asked by the worker when no report came for a while. Drivers whose printers report only what changed
        (an idle printer says nothing) check the connection cheaply here: True when the printer answered, so the
        last report still holds; False when it did not. None: this driver cannot tell (its printer reports
        periodically, so silence itself is the news)."""
        return None

    @classmethod
    async def wait_reachable(cls, config: PrinterConfig, poll_s: float) -> bool:
        """Between connection attempts: while the printer cannot be there at all (a USB printer unplugged), wait
        until it can and return True, so the worker connects at once instead of waiting out its backoff. False at
        once when the driver cannot tell (network printers) or nothing stands in the way."""
        return False

    async def set_temperature(self, heater: Heater, target: float) -> None:
        code = {Heater.NOZZLE: 'M104', Heater.BED: 'M140', Heater.CHAMBER: 'M141'}[heater]
        await self.send_gcode([f'{code} S{target:g}'])
