"""A live machine tile: bound to one MachineLive, so it updates when the board changes it.

Colours come from assets/fabpanel.css, keyed on the tile's data-status attribute.
"""

from __future__ import annotations

from datetime import UTC, datetime

from nicegui import ui

from fabpanel.i18n import Translator
from fabpanel.live.state import MachineLive, MachineStatus


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


def machine_tile(m: MachineLive, _: Translator, large: bool = False) -> ui.card:
    labels = status_labels(_)
    card = ui.card().classes('fp-tile w-full' + (' fp-tile-large' if large else '')).props(
        f'data-machine={m.id} data-status={m.status}')

    def restyle(status: str) -> str:
        card.props(f'data-status={status}')
        return labels.get(status, status)

    with card:
        with ui.row().classes('w-full items-start justify-between gap-2 no-wrap'):
            with ui.column().classes('gap-0 min-w-0'):
                ui.label().bind_text_from(m, 'name').classes('fp-tile-name')
                ui.label().bind_text_from(m, 'type_name').classes('fp-tile-type').bind_visibility_from(
                    m, 'type_name', backward=bool)
            ui.label().bind_text_from(m, 'status', backward=restyle).classes('fp-badge status')
        with ui.row().classes('fp-tile-user items-center gap-1 no-wrap user').bind_visibility_from(
                m, 'user_first_name', backward=bool):
            ui.icon('person')
            ui.label().bind_text_from(m, 'user_first_name').classes('fp-user-name min-w-0 break-words')
        ui.label().bind_text_from(m, 'in_use_since', backward=lambda s: since_text(s, _)).classes(
            'fp-tile-note').bind_visibility_from(m, 'in_use_since', backward=lambda s: s is not None)
        with ui.row().classes('fp-tile-warn items-center gap-1 no-wrap').bind_visibility_from(m, 'maintenance_due'):
            ui.icon('build')
            ui.label().bind_text_from(m, 'maintenance_text').classes('min-w-0 break-words')
        with ui.row().classes('fp-tile-alert items-center gap-1 no-wrap').bind_visibility_from(m, 'unauthorized_use'):
            ui.icon('warning')
            ui.label(_('Used without authorization'))
    return card
