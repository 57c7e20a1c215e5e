"""The last few hundred log lines, kept in memory for the system page, with personal data masked.

Lines are masked when they are stored: e-mail addresses become `[e-mail]` and anything that looks like a card
id (8 to 32 hex characters, or hex bytes joined by ':' or '-') keeps only its first and last two characters,
as `core.cards.mask_uid` does. Other numbers that happen to look the same (long decimal counters, hashes) are
masked too: on this page privacy wins over detail; the full log is on the server's console.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from fabpanel.core.cards import mask_uid

FORMAT = '%(asctime)s %(levelname)s %(name)s: %(message)s'
CAPACITY = 500

_EMAIL = re.compile(r'[\w.!#$%&\'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+')
_HEX_RUN = re.compile(r'(?<![0-9A-Za-z])[0-9A-Fa-f]{8,32}(?![0-9A-Za-z])')
_HEX_BYTES = re.compile(r'(?<![0-9A-Za-z:-])(?:[0-9A-Fa-f]{2}[:-]){3,15}[0-9A-Fa-f]{2}(?![0-9A-Za-z:-])')


def mask_private(text: str) -> str:
    """The text with e-mail addresses and card ids masked."""
    text = _EMAIL.sub('[e-mail]', text)
    text = _HEX_BYTES.sub(lambda m: mask_uid(re.sub('[:-]', '', m.group()).lower()), text)
    return _HEX_RUN.sub(lambda m: mask_uid(m.group().lower()), text)


class PrivateDataFormatter(logging.Formatter):
    """Formats a record as usual, then masks personal data in the whole line (message and traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_private(super().format(record))


@dataclass(frozen=True, slots=True)
class LogLine:
    seq: int  # increasing: a page asks for what came after the last line it shows
    at: datetime
    levelno: int
    level: str
    text: str  # formatted and masked


class LogBuffer(logging.Handler):
    """A logging handler that keeps the newest `capacity` formatted, masked lines in memory."""

    def __init__(self, capacity: int = CAPACITY, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.setFormatter(PrivateDataFormatter(FORMAT))
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self._seq = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)
            return
        # Handler.handle() holds self.lock around emit(): seq and the deque change together
        self._seq += 1
        self._lines.append(LogLine(seq=self._seq, at=datetime.fromtimestamp(record.created, UTC),
                                   levelno=record.levelno, level=record.levelname, text=text))

    @property
    def last_seq(self) -> int:
        return self._seq

    def lines(self, min_level: int = logging.NOTSET, after: int = 0) -> list[LogLine]:
        """Lines at `min_level` or above with a sequence number above `after`, oldest first."""
        with self.lock:  # records may arrive from other threads while we copy
            snapshot = list(self._lines)
        return [line for line in snapshot if line.levelno >= min_level and line.seq > after]

    def clear(self) -> None:
        with self.lock:
            self._lines.clear()


_installed: LogBuffer | None = None


def install(capacity: int = CAPACITY) -> LogBuffer:
    """Attach the buffer to the root logger once (later calls return the same buffer)."""
    global _installed
    if _installed is None:
        _installed = LogBuffer(capacity)
        logging.getLogger().addHandler(_installed)
    return _installed


def uninstall() -> None:
    """Detach the buffer (tests)."""
    global _installed
    if _installed is not None:
        logging.getLogger().removeHandler(_installed)
        _installed = None


def installed() -> LogBuffer | None:
    """The buffer the system page reads, or None when this process does not collect log lines."""
    return _installed
