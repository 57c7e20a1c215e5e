"""The live machines dashboard and the kiosk view.

Pages stay light (one element per tile, see machine_tile.py): a hundred open dashboards cost the panel a few
megabytes and one small websocket message each per board change.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import weakref
from collections.abc import Callable

from fastapi.responses import RedirectResponse
from nicegui import app, context, ui
from starlette.requests import Request

from fabpanel.i18n import Translator
from fabpanel.live.state import LiveState
from fabpanel.services.auth import AuthService

from .layout import HEAD, frame, nav_registered, page_language
from .machine_tile import Counters, MachineTiles
from .session import page_user

log = logging.getLogger(__name__)

FREEZE_AFTER_S = 2.0  # after a dashboard connected (and the ones opening with it)
THAW_AFTER_S = 30.0  # after a page closed: at most one full collection every 30 s

Section = Callable[[Translator, bool], None]  # builds more tiles below the machines: (translator, large)
# per panel (keyed by its LiveState), not one module-level list: tests start many panels in one process, and each
# panel's sections must neither pile up nor outlive it
_sections: weakref.WeakKeyDictionary[LiveState, list[Section]] = weakref.WeakKeyDictionary()


def add_section(live: LiveState, build: Section) -> None:
    """Other tile families (e.g. printers) add themselves to this panel's dashboard and kiosk, below the machines."""
    _sections.setdefault(live, []).append(build)


class PageHeap:
    """Keeps the open pages out of the garbage collector's full passes, like the panel's start-up heap.

    A hundred open dashboards hold ~300k long-lived objects; each full pass over them stopped the event loop for
    ~190 ms, every few seconds (what a browser has not acknowledged yet ages into the oldest generation). So a
    while after dashboards connect, gc.freeze() moves what exists to the permanent generation. Closed pages leave
    reference cycles that a frozen heap never frees: some time after a page closed, one full pass (unfreeze,
    collect, freeze) frees them. Both are scheduled once, not pushed back by further pages, so neither a stream of
    new pages nor of closed ones can postpone them for ever.
    """

    def __init__(self) -> None:
        self._freeze: asyncio.TimerHandle | None = None
        self._thaw: asyncio.TimerHandle | None = None
        self._frozen = False  # pages were frozen since the last full pass

    def opened(self) -> None:
        if self._freeze is None:
            self._freeze = asyncio.get_running_loop().call_later(FREEZE_AFTER_S, self.freeze)

    def closed(self) -> None:
        if self._frozen and self._thaw is None:
            self._thaw = asyncio.get_running_loop().call_later(THAW_AFTER_S, self.thaw)

    def freeze(self) -> None:
        self._freeze = None
        gc.collect(1)  # the young garbage of building the pages is freed, not frozen with them
        gc.freeze()
        self._frozen = True

    def thaw(self) -> None:
        self._thaw = None
        t0 = time.perf_counter()
        gc.unfreeze()
        freed = gc.collect()
        gc.freeze()
        log.debug('closed pages freed: %d objects in %.0f ms', freed, (time.perf_counter() - t0) * 1000)


# the kiosk shows the time of day so "since 14:05" on a tile reads at a glance; kept by the browser, not the server
CLOCK_JS = '''<script>
(() => {
  const hhmm = {hour: '2-digit', minute: '2-digit', hourCycle: 'h23'};  // like the tiles' "since 14:05"
  const tick = () => document.querySelectorAll('.fp-clock').forEach(e => {
    e.textContent = new Date().toLocaleTimeString(document.documentElement.lang || [], hhmm);
  });
  setInterval(tick, 1000); setTimeout(tick, 50);
})();
</script>'''


def _tiles(live: LiveState, hub: MachineTiles, _: Translator, large: bool) -> None:
    @ui.refreshable
    def tiles() -> None:
        if not live.machines:
            ui.label(_('No machines yet.')).classes('fp-empty')
            return
        with ui.element('div').classes('fp-grid' + (' fp-grid-large' if large else '') + ' w-full'):
            for m in sorted(live.machines.values(), key=lambda m: m.name.lower()):
                hub.tile(m, _, large=large)

    tiles()

    def reloaded(_none: None) -> None:
        tiles.refresh()

    # machines added or removed: rebuild this browser's grid; forget it when the browser goes away
    live.events.machines_reloaded.subscribe(reloaded)
    # on_delete, not on_disconnect: a brief network drop reconnects to the same page, which must keep following
    context.client.on_delete(lambda: live.events.machines_reloaded.unsubscribe(reloaded))


def _content(live: LiveState, hub: MachineTiles, counters: Counters, _: Translator, large: bool) -> None:
    counters.build(_)
    _tiles(live, hub, _, large=large)
    for build in _sections.get(live, ()):
        build(_, large)


def register(live: LiveState, auth: AuthService) -> None:
    hub = MachineTiles(live)
    counters = Counters(live)
    heap = PageHeap()
    app.on_delete(heap.closed)  # any page: whatever was open when the heap froze is frozen with it

    @ui.page('/')
    async def dashboard(request: Request) -> RedirectResponse | None:
        user = await page_user(request, auth)
        if isinstance(user, RedirectResponse):
            return user
        _ = page_language(request, user)
        with frame(_('Machines'), _, path='/', user=user):
            _content(live, hub, counters, _, large=False)
        context.client.on_connect(heap.opened)
        return None

    nav_registered('/kiosk')

    @ui.page('/kiosk')
    def kiosk(request: Request) -> None:
        # a touchscreen by the door: big tiles, first names only, no actions; NiceGUI reconnects by itself
        _ = page_language(request)
        ui.add_head_html(HEAD)
        ui.add_body_html(CLOCK_JS)
        ui.page_title(_('Kiosk') + ' · fabpanel')
        ui.query('body').classes('fp-kiosk')
        with ui.column().classes('w-full px-6 py-5 gap-5'):
            with ui.row().classes('w-full items-center justify-between no-wrap'):
                with ui.row().classes('items-center gap-3 no-wrap'):
                    ui.element('img').props('src=/assets/favicon.svg alt=""').classes('w-10 h-10')
                    ui.label(_('Machines')).classes('text-4xl font-semibold tracking-tight')
                ui.label().classes('fp-clock text-4xl font-semibold tabular-nums')
            _content(live, hub, counters, _, large=True)
        context.client.on_connect(heap.opened)
