"""The live machines dashboard and the kiosk view."""

from __future__ import annotations

from fastapi.responses import RedirectResponse
from nicegui import context, ui
from starlette.requests import Request

from fabpanel.i18n import Translator
from fabpanel.live.state import LiveState
from fabpanel.services.auth import AuthService

from .layout import HEAD, frame, nav_registered, page_language
from .machine_tile import machine_tile
from .session import page_user

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


def _summary(live: LiveState, _: Translator) -> None:
    with ui.element('div').classes('fp-stats w-full'):
        for key, label in (('free', _.pgettext('counter', 'Free')), ('in_use', _('In use')),
                           ('maintenance', _('Maintenance due')), ('offline', _('Board offline'))):
            with ui.element('div').classes('fp-stat').props(f'data-counter={key}'):
                ui.label().bind_text_from(live.summary, key, backward=str).classes('fp-stat-value')
                ui.label(label).classes('fp-stat-label')


def _tiles(live: LiveState, _: Translator, large: bool) -> None:
    @ui.refreshable
    def tiles() -> None:
        if not live.machines:
            ui.label(_('No machines yet.')).classes('fp-empty')
            return
        with ui.element('div').classes('fp-grid' + (' fp-grid-large' if large else '') + ' w-full'):
            for m in sorted(live.machines.values(), key=lambda m: m.name.lower()):
                machine_tile(m, _, large=large)

    tiles()

    def reloaded(_none: None) -> None:
        tiles.refresh()

    # machines added or removed: rebuild this browser's grid; forget it when the browser goes away
    live.events.machines_reloaded.subscribe(reloaded)
    # on_delete, not on_disconnect: a brief network drop reconnects to the same page, which must keep following
    context.client.on_delete(lambda: live.events.machines_reloaded.unsubscribe(reloaded))


def register(live: LiveState, auth: AuthService) -> None:
    @ui.page('/')
    async def dashboard(request: Request) -> RedirectResponse | None:
        user = await page_user(request, auth)
        if isinstance(user, RedirectResponse):
            return user
        _ = page_language(request, user)
        with frame(_('Machines'), _, path='/', user=user):
            _summary(live, _)
            _tiles(live, _, large=False)
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
            _summary(live, _)
            _tiles(live, _, large=True)
