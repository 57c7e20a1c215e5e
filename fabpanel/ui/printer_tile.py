"""A live printer tile: one element drawn by printer_tile.js from a small dict the server renders once per change.

One `PrinterTiles` per panel subscribes once to `printer_changed`, renders the changed printer's tile once per
language and hands the same dict to that printer's tile in every open browser: one small websocket update per
browser and change, no bindings, no per-browser subscription or timer. One server-wide tick refreshes what ages
with the clock (a stale report's age, time left, time printing).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nicegui import background_tasks, context, ui

from fabpanel.core.printers import ACTIVE_STATES, PrinterState
from fabpanel.i18n import Translator
from fabpanel.live.printers import PrinterLive
from fabpanel.live.state import LiveState

if TYPE_CHECKING:
    from fabpanel.app import Panel

log = logging.getLogger(__name__)

TICK_S = 20.0  # ages are shown in whole minutes: a tick this often keeps them right to within a third
TileView = dict[str, Any]  # what printer_tile.js shows; shared by the tiles of one printer and language
STALE_AFTER_S = 60.0  # older reports are shown with their age even before the fleet flags them stale

# state -> Material icon of the badge; the colours come from CSS on data-state
ICONS: dict[str, str] = {
    PrinterState.OFFLINE: 'power_off',
    PrinterState.CONNECTING: 'sync',
    PrinterState.IDLE: 'check_circle',
    PrinterState.PRINTING: 'print',
    PrinterState.PAUSING: 'pause_circle',
    PrinterState.PAUSED: 'pause_circle',
    PrinterState.CANCELLING: 'cancel',
    PrinterState.ERROR: 'error',
}

TILE_CSS = """
/* more specific than fabpanel.css's .fp-tile.q-card, which comes later in the page */
.fp-ptile.q-card { --fp-c: var(--fp-offline); --fp-bg: var(--fp-offline-bg); }
.fp-ptile.q-card[data-state=idle] { --fp-c: var(--fp-free); --fp-bg: var(--fp-free-bg); }
.fp-ptile.q-card[data-state=printing] { --fp-c: var(--fp-in_use); --fp-bg: var(--fp-in_use-bg); }
.fp-ptile.q-card[data-state=pausing], .fp-ptile.q-card[data-state=paused],
.fp-ptile.q-card[data-state=cancelling] {
  --fp-c: var(--fp-maintenance); --fp-bg: var(--fp-maintenance-bg); }
.fp-ptile.q-card[data-state=error] { --fp-c: #b91c1c; --fp-bg: #fef2f2; }
.fp-ptile-head { display: flex; align-items: flex-start; justify-content: space-between; gap: 0.5rem; min-width: 0; }
.fp-ptile-name { min-width: 0; color: inherit; text-decoration: none; }
a.fp-ptile-name:hover { text-decoration: underline; }
.fp-ptile-badge { display: inline-flex; align-items: center; gap: 0.25rem; background: var(--fp-c); }
.fp-ptile-bar { color: var(--fp-c); }
.fp-ptile .fp-ptile-line { font-size: 0.875rem; color: #334155; overflow-wrap: anywhere; min-width: 0; }
.fp-ptile-large .fp-tile-name { font-size: 1.5rem; }
.fp-ptile-large .fp-ptile-line { font-size: 1.0625rem; }
.fp-ptile-large .fp-ptile-temps { font-size: 1.25rem; }
.fp-ptile .fp-ptile-temps { font-variant-numeric: tabular-nums; font-weight: 500; }
.fp-ptile .fp-ptile-note { font-size: 0.8125rem; color: #64748b; overflow-wrap: anywhere; min-width: 0; }
.fp-ptile .fp-ptile-note[data-stale=true] { color: #b45309; font-weight: 600; }
"""


def state_labels(_: Translator) -> dict[str, str]:
    return {
        PrinterState.OFFLINE: _('Offline'),
        PrinterState.CONNECTING: _('Connecting'),
        PrinterState.IDLE: _('Ready'),
        PrinterState.PRINTING: _('Printing'),
        PrinterState.PAUSING: _('Pausing'),
        PrinterState.PAUSED: _('Paused'),
        PrinterState.CANCELLING: _('Cancelling'),
        PrinterState.ERROR: _('Error'),
    }


def hm(seconds: float) -> str:
    """A duration as h:mm (language-neutral)."""
    minutes = max(0, int(seconds // 60))
    return f'{minutes // 60}:{minutes % 60:02d}'


def degrees(actual: float | None, target: float | None) -> str:
    a = '–' if actual is None else f'{actual:.0f}'
    return f'{a} / {target:.0f} °C' if target else f'{a} °C'


def temps_text(p: PrinterLive, _: Translator) -> str:
    return _('Nozzle {nozzle} · Bed {bed}').format(
        nozzle=degrees(p.nozzle_actual, p.nozzle_target), bed=degrees(p.bed_actual, p.bed_target)
    )


def job_text(p: PrinterLive, _: Translator, now: datetime) -> str:
    parts = [f'{p.progress:.0f} %'] if p.progress is not None else []
    if p.layer is not None:
        parts.append(_('layer {layer}/{count}').format(layer=p.layer, count=p.layer_count or '?'))
    if p.eta is not None:
        parts.append(
            _('ends {time} ({left} left)').format(
                time=p.eta.astimezone().strftime('%H:%M'), left=hm((p.eta - now).total_seconds())
            )
        )
    return ' · '.join(parts)


def who_text(p: PrinterLive, _: Translator, now: datetime) -> str:
    parts = [p.started_by] if p.started_by else []
    if p.printing_since is not None:
        parts.append(_('printing for {time}').format(time=hm((now - p.printing_since).total_seconds())))
    return ' · '.join(parts)


def age_text(p: PrinterLive, _: Translator, now: datetime) -> str:
    """'last report 2 min ago' when what the tile shows may be old; '' while reports come in."""
    if p.updated_at is None:
        return _('no report yet') if p.state in (PrinterState.OFFLINE, PrinterState.CONNECTING) else ''
    age = (now - p.updated_at).total_seconds()
    if not (p.stale or p.state == PrinterState.OFFLINE or age >= STALE_AFTER_S):
        return ''
    minutes = int(age // 60)
    if minutes < 1:
        return _('last report less than a minute ago')
    if minutes < 120:
        return _.ngettext('last report {n} min ago', 'last report {n} min ago', minutes).format(n=minutes)
    return _('last report at {when}').format(when=p.updated_at.astimezone().strftime('%d/%m %H:%M'))


def tile_view(p: PrinterLive, _: Translator, now: datetime, link: bool, public: bool = False) -> TileView:
    """What printer_tile.js shows. Names, file names and printer messages stay plain strings (shown as text).

    `public` (the kiosk by the door): no link, and neither the file name nor the printer's message, which members
    choose and may carry a surname; who started the job is a first name already.
    """
    view: TileView = {
        'name': p.name,
        'label': state_labels(_).get(p.state, p.state),
        'icon': ICONS.get(p.state, 'help'),
        'temps': temps_text(p, _),
    }
    if link and not public:
        view['href'] = f'/printers/{int(p.id)}'
    if p.state in ACTIVE_STATES or p.job_id is not None:
        view['fraction'] = max(0.0, min(1.0, (p.progress or 0.0) / 100))
        view['job'] = job_text(p, _, now)
        if not public:
            view['file'] = p.file_name
        view['who'] = who_text(p, _, now)
    age = age_text(p, _, now)
    note = ' · '.join(t for t in (age, '' if public else p.message) if t)
    if note:
        view['note'], view['stale'] = note, bool(age)
    return view


class PrinterTile(ui.card, component='printer_tile.js'):
    """A ui.card (pages and tests find tiles as cards) whose inside printer_tile.js draws from `tile`."""

    def __init__(
        self,
        hub: PrinterTiles,
        p: PrinterLive,
        _: Translator,
        view: TileView,
        *,
        large: bool,
        link: bool,
        public: bool = False,
    ) -> None:
        super().__init__()
        self.tag = self.component.tag  # type: ignore[union-attr] # ui.card says q-card; the look is in the .js
        self.printer_id, self.translator, self.link, self.public, self._hub = p.id, _, link, public, hub
        self._classes.extend(('fp-tile', 'fp-ptile', 'w-full', *(('fp-ptile-large',) if large else ())))
        self._props.update({'data-printer': p.id, 'data-state': p.state})
        self._set_view(view)
        self.mark(f'printer-tile-{p.id}')

    def _set_view(self, view: TileView) -> None:
        # dict.__setitem__, not the observable props' own: they would copy the dict into an ObservableDict per tile,
        # per browser and change; this way every open tile of one printer and language shares the one rendered dict
        # (nobody mutates it: a change renders a new one)
        dict.__setitem__(self._props, 'tile', view)

    def show(self, state: str, view: TileView) -> None:
        if self._props['tile'] == view and self._props['data-state'] == state:
            return  # nothing a person would see changed: send nothing
        self._set_view(view)
        self._props['data-state'] = state  # an observed change: enqueues this element's one update
        self.update()

    def _displayed_contents(self, *, only_visible: bool) -> list[Any]:
        # what `User.should_see` matches against: the texts the tile shows
        return [v for v in self._props['tile'].values() if isinstance(v, str)]

    def _handle_delete(self) -> None:
        self._hub.forget(self)
        super()._handle_delete()


class PrinterTiles:
    """One per panel: the printer tiles of every open page, by printer. A change is rendered once per language
    and link style, whatever the number of browsers; one server-wide tick refreshes the clock-bound texts."""

    def __init__(self, live: LiveState) -> None:
        self.live = live
        self._tiles: dict[int, set[PrinterTile]] = {}
        self._ticking = False
        live.events.printer_changed.subscribe(self._changed)
        # temperatures change quietly (no printer_changed per report): a kept chart point, at most one per printer
        # every SAMPLE_EVERY_S, is when the tiles show them anew
        live.events.printer_sample.subscribe(lambda arg: self._changed(arg[0]))

    def tile(
        self, p: PrinterLive, _: Translator, *, large: bool = False, link: bool = True, public: bool = False
    ) -> PrinterTile:
        view = tile_view(p, _, datetime.now(UTC), link, public)
        t = PrinterTile(self, p, _, view, large=large, link=link, public=public)
        self._tiles.setdefault(p.id, set()).add(t)
        if not self._ticking:
            self._ticking = True
            background_tasks.create_or_defer(self._tick(), name='printer-tiles-tick')
        return t

    def forget(self, tile: PrinterTile) -> None:
        tiles = self._tiles.get(tile.printer_id)
        if tiles is not None:
            tiles.discard(tile)
            if not tiles:
                del self._tiles[tile.printer_id]

    def _changed(self, printer_id: int) -> None:
        p = self.live.printers.get(printer_id)
        tiles = self._tiles.get(printer_id)
        if p is None or not tiles:
            return
        now = datetime.now(UTC)
        views: dict[tuple[str, bool, bool], TileView] = {}
        for t in list(tiles):
            key = (t.translator.lang, t.link, t.public)
            view = views.get(key)
            if view is None:
                view = views[key] = tile_view(p, t.translator, now, t.link, t.public)
            client = t._client()  # noqa: SLF001 - a weak reference: the browser may be gone
            if client is None or client.is_deleted or t.is_deleted:
                self.forget(t)
                continue
            t.show(p.state, view)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            for printer_id in list(self._tiles):
                try:
                    self._changed(printer_id)
                except Exception:  # one broken tile must not stop the clock of the others
                    log.exception('printer tile tick failed')


# The tile hub of each panel lives here, beside the panel rather than on it: the composition root (fabpanel/app.py)
# imports no UI code, and a panel that is gone (tests start many) takes its hub with it.
_HUBS: weakref.WeakKeyDictionary[Panel, PrinterTiles] = weakref.WeakKeyDictionary()


def hub_of(panel: Panel) -> PrinterTiles:
    """The panel's one PrinterTiles, shared by every browser and page that shows printer tiles; made on first use."""
    hub = _HUBS.get(panel)
    if hub is None:
        hub = _HUBS[panel] = PrinterTiles(panel.live)
    return hub


def dashboard_section(live: LiveState, hub: PrinterTiles) -> Callable[[Translator, bool], None]:
    """The printers below the machines on the dashboard (large=False) and the kiosk (large=True, public: no links,
    no file names, no printer messages, no controls): one element per printer, updated by the panel's hub."""

    def build(_: Translator, large: bool) -> None:
        ui.add_css(TILE_CSS)

        @ui.refreshable
        def tiles() -> None:
            if not live.printers:
                return  # a lab without printers: no empty section
            ui.label(_('Printers')).classes('font-semibold ' + ('text-4xl' if large else 'text-xl'))
            with ui.element('div').classes('fp-grid' + (' fp-grid-large' if large else '') + ' w-full'):
                for p in sorted(live.printers.values(), key=lambda p: p.name.lower()):
                    hub.tile(p, _, large=large, link=not large, public=large)

        tiles()

        def reloaded(_none: None) -> None:
            tiles.refresh()

        # printers added, edited or removed: rebuild this browser's printer grid while the page exists
        live.events.printers_reloaded.subscribe(reloaded)
        context.client.on_delete(lambda: live.events.printers_reloaded.unsubscribe(reloaded))

    return build
