"""A tiny event bus: modules announce what happened; pages and services subscribe."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar('T')


class Event(Generic[T]):
    """A named event; subscribers get one argument. Sync callbacks run at once, coroutines as tasks."""

    def __init__(self, name: str, doc: str) -> None:
        self.name = name
        self.__doc__ = doc
        self._subscribers: list[Callable[[T], Any]] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def subscribe(self, callback: Callable[[T], Any]) -> None:
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[T], Any]) -> None:
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def emit(self, arg: T) -> None:
        for callback in list(self._subscribers):
            try:
                result = callback(arg)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except Exception:
                # one broken subscriber (e.g. a closed browser tab) must not stop the others
                log.exception('subscriber of %s failed', self.name)


class Events:
    """All events of one running panel."""

    def __init__(self) -> None:
        self.machine_changed: Event[int] = Event('MACHINE_CHANGED', 'a machine tile changed; arg: machine id')
        self.machines_reloaded: Event[None] = Event('MACHINES_RELOADED', 'machines were added or removed')
        self.use_started: Event[int] = Event('USE_STARTED', 'a use opened; arg: machine id')
        self.use_ended: Event[int] = Event('USE_ENDED', 'a use closed; arg: machine id')
        self.card_unknown: Event[tuple[int, str]] = Event('CARD_UNKNOWN',
                                                          'an unknown card was shown; arg: (machine, uid)')
        self.maintenance_done: Event[int] = Event('MAINTENANCE_DONE', 'an intervention was recorded; arg: machine id')
        self.board_seen: Event[int] = Event('BOARD_SEEN', 'a board announced itself; arg: machine id')
        self.printer_changed: Event[int] = Event('PRINTER_CHANGED', 'a printer tile changed; arg: printer id')
        self.printers_reloaded: Event[None] = Event('PRINTERS_RELOADED', 'printers were added, edited or removed')
        self.printer_sample: Event[tuple[int, Any]] = Event(
            'PRINTER_SAMPLE', 'a temperature chart point was kept; arg: (printer id, live.printers.Sample)')
        self.printer_console: Event[tuple[int, str, str]] = Event(
            'PRINTER_CONSOLE', 'a console line; arg: (printer id, direction > or <, line)')
        self.job_started: Event[tuple[int, int]] = Event('JOB_STARTED', 'a print job started; arg: (printer, job id)')
        self.job_ended: Event[tuple[int, int, str]] = Event(
            'JOB_ENDED', 'a print job ended; arg: (printer id, job id, core.printers.JobOutcome value)')
        self.spool_changed: Event[int] = Event(
            'SPOOL_CHANGED', 'a spool was added, edited, loaded, weighed or used by a job; arg: spool id')
