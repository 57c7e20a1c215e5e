"""(to be built)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fabpanel.app import Panel


def register(panel: Panel) -> None:
    """Register this page family's routes."""
