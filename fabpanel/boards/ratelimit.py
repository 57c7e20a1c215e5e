"""Log lines that cannot flood the log, whatever a misbehaving board sends."""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, every_s: float = 10.0) -> None:
        self._log = logger
        self._every = every_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, reason: str, detail: str) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -1e9) < self._every:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        self._last[reason] = now
        more = self._suppressed.pop(reason, 0)
        suffix = f' (and {more} more like it)' if more else ''
        self._log.warning('%s: %s%s', reason, detail, suffix)
