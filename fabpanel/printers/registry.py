"""Which driver class serves which printer kind. Driver modules are imported on first use, so a panel without
(say) Bambu printers never imports the MQTT/TLS code, and one broken driver cannot stop the others."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from fabpanel.core.printers import PrinterConfig, PrinterKind

from .driver import DriverListener, PrinterDriver, PrinterUnavailable

log = logging.getLogger(__name__)

DRIVERS: dict[str, str] = {
    'marlin': 'fabpanel.printers.marlin:MarlinDriver',
    'octoprint': 'fabpanel.printers.octoprint:OctoPrintDriver',
    'moonraker': 'fabpanel.printers.moonraker:MoonrakerDriver',
    'prusalink': 'fabpanel.printers.prusalink:PrusaLinkDriver',
    'bambu': 'fabpanel.printers.bambu:BambuDriver',
    'simulated': 'fabpanel.printers.sim:SimulatedDriver',
}


class DriverRegistry:
    """Builds the driver for a printer. Tests pass `overrides` (kind -> class) to put in drivers of their own."""

    def __init__(self, overrides: dict[str, type[PrinterDriver]] | None = None) -> None:
        self.overrides = dict(overrides or {})
        self._loaded: dict[str, type[PrinterDriver]] = {}

    def driver_class(self, kind: str) -> type[PrinterDriver]:
        kind = str(kind)
        if kind in self.overrides:
            return self.overrides[kind]
        if kind in self._loaded:
            return self._loaded[kind]
        target = DRIVERS.get(kind)
        if target is None:
            raise PrinterUnavailable(f'no driver for printer kind {kind!r}')
        module_name, class_name = target.split(':')
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as e:
            raise PrinterUnavailable(f'the {kind} driver cannot be loaded: {e}') from e
        self._loaded[kind] = cls
        return cls

    def create(self, config: PrinterConfig, listener: DriverListener) -> PrinterDriver:
        return self.driver_class(config.kind)(config, listener, **driver_options(config))


def driver_options(config: PrinterConfig) -> dict[str, Any]:
    """What a driver takes besides the config: how to trust a Bambu printer's certificate (pinned by its
    fingerprint; without one the link is encrypted but not authenticated)."""
    if config.kind == PrinterKind.BAMBU and config.tls_fingerprint:
        return {'fingerprint': config.tls_fingerprint}
    return {}
