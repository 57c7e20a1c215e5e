"""LiveState: one small bindable object per machine, plus the gateway's health."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from nicegui.binding import bindable_dataclass

from .events import Events
from .printers import PrinterLive, TemperatureHistory

OFFLINE_AFTER = timedelta(seconds=90)
SUMMARY_DELAY_S = 0.0  # after the changes of this loop turn: one count, sent with the tile updates


class MachineStatus(StrEnum):
    FREE = 'free'
    IN_USE = 'in_use'
    BLOCKED = 'blocked'
    MAINTENANCE = 'maintenance'
    OFFLINE = 'offline'


@bindable_dataclass
class MachineLive:
    id: int
    name: str = ''
    type_name: str = ''
    blocked: bool = False
    user_first_name: str = ''  # who is using it now ('' when free)
    in_use_since: datetime | None = None
    unauthorized_use: bool = False
    maintenance_due: bool = False
    maintenance_text: str = ''
    last_seen: datetime | None = None
    online: bool = False
    usage_hours: float = 0.0
    status: str = MachineStatus.OFFLINE.value

    def refresh_status(self) -> None:
        if self.user_first_name or self.in_use_since is not None:
            status = MachineStatus.IN_USE
        elif self.blocked:
            status = MachineStatus.BLOCKED
        elif self.maintenance_due:
            status = MachineStatus.MAINTENANCE
        elif not self.online:
            status = MachineStatus.OFFLINE
        else:
            status = MachineStatus.FREE
        if self.status != status.value:
            self.status = status.value


@dataclass(slots=True)
class GatewayHealth:
    """Counters of the board gateway. Plain attributes: they change with every message, and a bindable
    property costs microseconds per change; the system page reads them on its own refresh."""

    connected: bool = False
    broker: str = ''
    received: int = 0
    replied: int = 0
    processed: int = 0
    malformed: int = 0
    errors: int = 0
    late: int = 0  # answers not sent because they would reach the board after it gave up
    waited: int = 0  # messages that waited at the broker while the panel was away (applied, not answered)
    backlog: int = 0
    last_processed_at: datetime | None = None
    last_error: str = ''


@bindable_dataclass
class BoardInfo:
    machine_id: int
    serial: str = ''
    ip: str = ''
    firmware: str = ''
    heap: int = 0
    last_seen: datetime | None = None


@bindable_dataclass
class LiveSummary:
    total: int = 0
    free: int = 0
    in_use: int = 0
    maintenance: int = 0
    blocked: int = 0
    offline: int = 0


class LiveState:
    def __init__(self) -> None:
        self.machines: dict[int, MachineLive] = {}
        self.printers: dict[int, PrinterLive] = {}
        self.temperatures: dict[int, TemperatureHistory] = {}  # per printer, for the charts
        self.boards: dict[int, BoardInfo] = {}
        self.unknown_boards: dict[int, datetime] = {}  # machine ids heard from that the database does not know
        self.gateway = GatewayHealth()
        self.events = Events()
        self.heard: dict[int, datetime] = {}  # last message per machine (MachineLive.last_seen follows it)
        self.summary = LiveSummary()
        self._summary_due = False
        self.events.machine_changed.subscribe(lambda _id: self._summary_soon())
        self.events.machines_reloaded.subscribe(lambda _none: self.refresh_summary())

    def _summary_soon(self) -> None:
        """Count once for a burst of changes (boards may change many tiles a second)."""
        if self._summary_due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.refresh_summary()
            return
        self._summary_due = True
        loop.call_later(SUMMARY_DELAY_S, self._summary_now)

    def _summary_now(self) -> None:
        self._summary_due = False
        self.refresh_summary()

    def refresh_summary(self) -> None:
        """Server-wide counters the dashboards bind to (computed once per change, not once per browser)."""
        counts = self.counts()
        s = self.summary
        for key, value in (('total', len(self.machines)), ('free', counts['free']), ('in_use', counts['in_use']),
                           ('maintenance', counts['maintenance']), ('blocked', counts['blocked']),
                           ('offline', counts['offline'])):
            if getattr(s, key) != value:
                setattr(s, key, value)

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in MachineStatus}
        for m in self.machines.values():
            out[m.status] += 1
        return out

    def mark_seen(self, machine_id: int, now: datetime) -> None:
        # every board message lands here: a plain dict write, the bindable tile changes only when it comes online
        self.heard[machine_id] = now
        m = self.machines.get(machine_id)
        if m is not None and not m.online:
            m.last_seen = now
            m.online = True
            m.refresh_status()
            self.events.machine_changed.emit(machine_id)

    def sweep_offline(self, now: datetime | None = None) -> list[int]:
        """Mark boards silent for 90 s as offline and refresh the shown last-seen times; called by one
        server-wide timer, never per client."""
        now = now or datetime.now(UTC)
        gone = []
        for m in self.machines.values():
            heard = self.heard.get(m.id)
            if heard is not None and (m.last_seen is None or heard > m.last_seen):
                m.last_seen = heard
            if m.online and (m.last_seen is None or now - m.last_seen > OFFLINE_AFTER):
                m.online = False
                m.refresh_status()
                gone.append(m.id)
                self.events.machine_changed.emit(m.id)
        return gone
