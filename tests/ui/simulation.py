"""NiceGUI's simulated browser (`User`) against the whole panel app, in-process and fast."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from nicegui import core, ui
from nicegui.functions.download import download
from nicegui.functions.navigate import Navigate
from nicegui.functions.notify import notify
from nicegui.testing.general import nicegui_reset_globals, prepare_simulation
from nicegui.testing.user import User

from fabpanel.app import Panel
from fabpanel.cli import build_app
from fabpanel.settings import Settings
from fabpanel.ui.session import COOKIE


@asynccontextmanager
async def simulated_panel(settings: Settings, gateway: bool = False) -> AsyncIterator[tuple[Callable[[], User], Panel]]:
    """Yields (new_user, panel): each new_user() is a separate simulated browser with its own cookies."""
    with nicegui_reset_globals():
        os.environ['NICEGUI_USER_SIMULATION'] = 'true'
        try:
            panel = build_app(settings, gateway=gateway)
            prepare_simulation()
            ui.run(storage_secret='simulated secret')
            async with core.app.router.lifespan_context(core.app):
                # NiceGUI runs start-up handlers as tasks: wait until the panel is really up
                await asyncio.wait_for(panel.started.wait(), timeout=30)
                clients: list[httpx.AsyncClient] = []

                def new_user() -> User:
                    client = httpx.AsyncClient(transport=httpx.ASGITransport(core.app), base_url='http://test')
                    clients.append(client)
                    return User(client)

                try:
                    yield new_user, panel
                finally:
                    for client in clients:
                        await client.aclose()
        finally:
            if not core.app.is_stopped:
                # a failing test can leave the lifespan without its shutdown: stop here, or every later simulated
                # panel in this process fails with "NiceGUI has already been started" and hides the real failure
                await core.app.stop()
            os.environ.pop('NICEGUI_USER_SIMULATION', None)
            ui.navigate = Navigate()
            ui.notify = notify
            ui.download = download


async def signed_in(new_user: Callable[[], User], panel: Panel, member_id: int) -> User:
    """A simulated browser that carries a session of this member (the form has tests of its own)."""
    user = new_user()
    user.http_client.cookies.set(COOKIE, await panel.auth.open_session(member_id), domain='test.local')
    return user
