"""Live machine tiles and counters: one element each, drawn in the browser (machine_tile.js, machine_counters.js)
from flat props the server renders once per change.

One `MachineTiles` and one `Counters` per panel subscribe once to `machine_changed`; they render the changed
machine's tile once per language and the counts once, and set them on that machine's tile and on the counters in
every open browser: one small websocket update per browser and change, no bindings, no per-browser subscription.
Colours come from assets/fabpanel.css, keyed on the tile's data-status attribute.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nicegui import ui

from fabpanel.i18n import Translator
from fabpanel.live.state import LiveState, MachineLive, MachineStatus

TileView = dict[str, Any]  # the props machine_tile.js draws from; shared by the tiles of one machine and language


def status_labels(_: Translator) -> dict[str, str]:
    return {
        MachineStatus.FREE: _('Free'),
        MachineStatus.IN_USE: _('In use'),
        MachineStatus.BLOCKED: _('Blocked'),
        MachineStatus.MAINTENANCE: _('Maintenance due'),
        MachineStatus.OFFLINE: _('Board offline'),
    }


def since_text(since: datetime | None, _: Translator) -> str:
    # a clock time never goes stale on a screen nobody reloads, unlike "for 5 min"
    if since is None:
        return ''
    local = since.astimezone()
    if local.date() == datetime.now(UTC).astimezone().date():
        return _('since {time}').format(time=local.strftime('%H:%M'))
    return _('since {date}').format(date=local.strftime('%d/%m %H:%M'))


def tile_view(m: MachineLive, _: Translator) -> TileView:
    """The tile's props: its status and texts. Names stay plain strings: the browser shows them as text only."""
    return {
        'data-status': m.status,
        'name': m.name,
        'type_name': m.type_name,
        'label': status_labels(_).get(m.status, m.status),
        'user': m.user_first_name,
        'since': since_text(m.in_use_since, _),
        'due': m.maintenance_due,
        'warn': m.maintenance_text if m.maintenance_due else '',
        'alert': _('Used without authorization') if m.unauthorized_use else '',
    }


class MachineTile(ui.card, component='machine_tile.js'):
    """A ui.card (pages and tests find tiles as cards) whose inside machine_tile.js draws from flat props."""

    def __init__(self, machine_id: int, view: TileView, _: Translator, *, large: bool, hub: MachineTiles) -> None:
        super().__init__()
        self.tag = self.component.tag  # type: ignore[union-attr] # ui.card says q-card; the look is in the .js
        self.machine_id, self.translator, self._hub = machine_id, _, hub
        self._classes.extend(('fp-tile', *(('fp-tile-large',) if large else ())))
        self._props['data-machine'] = machine_id
        self._props.update(view)

    def show(self, view: TileView) -> None:
        # flat strings, set at once: one update, and nothing for NiceGUI to wrap or observe
        if any(self._props.get(key) != value for key, value in view.items()):
            self._props.update(view)

    def _displayed_contents(self, *, only_visible: bool) -> list[Any]:
        # what `User.should_see` matches against: the texts the tile shows
        return [self._props.get(key) for key in ('name', 'type_name', 'label', 'user', 'since', 'warn', 'alert')]

    def _handle_delete(self) -> None:
        self._hub.forget(self)
        super()._handle_delete()


class MachineTiles:
    """One per panel: the tiles of every open dashboard and kiosk, by machine."""

    def __init__(self, live: LiveState) -> None:
        self.live = live
        self._tiles: dict[int, set[MachineTile]] = {}
        live.events.machine_changed.subscribe(self._changed)

    def tile(self, m: MachineLive, _: Translator, *, large: bool = False) -> MachineTile:
        t = MachineTile(m.id, tile_view(m, _), _, large=large, hub=self)
        self._tiles.setdefault(m.id, set()).add(t)
        return t

    def forget(self, tile: MachineTile) -> None:
        tiles = self._tiles.get(tile.machine_id)
        if tiles is not None:
            tiles.discard(tile)
            if not tiles:
                del self._tiles[tile.machine_id]

    def _changed(self, machine_id: int) -> None:
        m = self.live.machines.get(machine_id)
        tiles = self._tiles.get(machine_id)
        if m is None or not tiles:
            return
        views: dict[str, TileView] = {}  # rendered once per language, whatever the number of browsers
        for t in list(tiles):
            view = views.get(t.translator.lang)
            if view is None:
                view = views[t.translator.lang] = tile_view(m, t.translator)
            client = t._client()  # noqa: SLF001 - a weak reference: the browser may be gone
            if client is None or client.is_deleted or t.is_deleted:
                self.forget(t)
                continue
            t.show(view)


COUNTERS = ('free', 'in_use', 'maintenance', 'offline')


class MachineCounters(ui.element, component='machine_counters.js'):
    """The four counters as one element (machine_counters.js), set by `Counters` for every browser at once."""

    def __init__(self, values: dict[str, int], labels: list[tuple[str, str]], counters: Counters) -> None:
        super().__init__()
        self._counters = counters
        self._classes.append('w-full')
        self._props['labels'] = labels
        self._props.update(values)

    def _displayed_contents(self, *, only_visible: bool) -> list[Any]:
        return [text for _key, text in self._props['labels']] + [self._props[key] for key in COUNTERS]

    def _handle_delete(self) -> None:
        self._counters.shown.discard(self)
        super()._handle_delete()


class Counters:
    """One per panel: counts once per change (LiveState.summary) and sets the counters of every open page."""

    def __init__(self, live: LiveState) -> None:
        self.live = live
        self.shown: set[MachineCounters] = set()
        # in the same turn as the tile's change, so that both reach a browser in one update message
        live.events.machine_changed.subscribe(self._changed)
        live.events.machines_reloaded.subscribe(self._changed)

    def values(self) -> dict[str, int]:
        return {key: getattr(self.live.summary, key) for key in COUNTERS}

    def build(self, _: Translator) -> MachineCounters:
        labels = [('free', _.pgettext('counter', 'Free')), ('in_use', _('In use')),
                  ('maintenance', _('Maintenance due')), ('offline', _('Board offline'))]
        c = MachineCounters(self.values(), labels, self)
        self.shown.add(c)
        return c

    def _changed(self, _machine_id: int | None) -> None:
        self.live.refresh_summary()
        values = self.values()
        for c in list(self.shown):
            if c.is_deleted or c._client() is None:  # noqa: SLF001 - a weak reference: the browser may be gone
                self.shown.discard(c)
            elif any(c.props[key] != value for key, value in values.items()):
                c.props.update(values)
