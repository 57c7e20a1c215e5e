"""NiceGUI pages: thin views over live state and services."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fabpanel.app import Panel


def register_pages(panel: Panel) -> None:
    from fastapi.responses import JSONResponse
    from nicegui import app

    from . import (
        auth_pages,
        authorizations,
        dashboard,
        enrol,
        history,
        machines,
        maintenance,
        me,
        members,
        printers,
        settings_pages,
        system,
    )

    auth_pages.register(panel.auth, secure_cookies=panel.settings.web.base_url.startswith('https://'))
    dashboard.register(panel.live, panel.auth)
    for family in (members, enrol, machines, settings_pages, authorizations, maintenance, history, me, system,
                   printers):
        family.register(panel)

    @app.get('/healthz')
    def healthz() -> JSONResponse:
        """Liveness for monitors: is the gateway connected and really processing messages?"""
        g = panel.live.gateway
        ok = panel.started.is_set() and (panel.gateway is None or g.connected)
        body = {'ok': ok, 'gateway': {'connected': g.connected, 'received': g.received, 'processed': g.processed,
                                      'replied': g.replied, 'malformed': g.malformed, 'errors': g.errors,
                                      'late': g.late, 'backlog': g.backlog,
                                      'last_processed_at': g.last_processed_at.isoformat()
                                      if g.last_processed_at else None}}
        return JSONResponse(body, status_code=200 if ok else 503)
