"""The live temperature chart of one printer (plotly): the last 30 minutes from `live.temperatures`, then each new
point appended in the browser with `Plotly.extendTraces` (the figure is never sent again).

Only numbers built here reach the browser's JavaScript: times (ms) and temperatures (or null for a gap).
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from nicegui import context, ui

from fabpanel.i18n import Translator
from fabpanel.live.printers import CHART_WINDOW_S, SAMPLE_EVERY_S, Sample
from fabpanel.live.state import LiveState

MAX_POINTS = int(CHART_WINDOW_S / SAMPLE_EVERY_S) + 1  # extendTraces drops the oldest beyond this: 30 minutes
HEIGHT_PX = 240  # small and fixed: the chart must not push the controls off a phone's screen

# Queues points until plotly.js has loaded and drawn the chart (a phone may still be fetching it when the first
# point arrives), then appends them in order. Static code: the calls below pass numbers only.
EXTEND_JS = """<script>
window.fpExtend = (id, x, ys, max, tries = 0) => {
  const queue = (window.fpChartQueue ||= {});
  if (tries === 0) (queue[id] ||= []).push([x, ys]);
  const vm = getElement(id), el = getHtmlElement(id);
  if (!vm || !vm.Plotly || !el || !el._fullLayout) {
    if (tries < 600) setTimeout(() => window.fpExtend(id, x, ys, max, tries + 1), 100);
    return;
  }
  const items = queue[id] || [];
  if (!items.length) return;
  queue[id] = [];
  const xs = items.flatMap(i => i[0]);
  const y = [0, 1, 2, 3].map(k => items.flatMap(i => i[1][k]));
  vm.Plotly.extendTraces(el, {x: [xs, xs, xs, xs], y: y}, [0, 1, 2, 3], max);
};
</script>"""


def _ms(t: float) -> float:
    """Unix seconds -> ms on the server's wall clock (plotly shows date axes as given, without time zones)."""
    offset = datetime.fromtimestamp(t).astimezone().utcoffset()
    return round((t + (offset.total_seconds() if offset else 0.0)) * 1000)


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 1)


def _columns(samples: list[Sample]) -> tuple[list[float], list[list[float | None]]]:
    xs = [_ms(s.t) for s in samples]
    ys = [[_num(getattr(s, key)) for s in samples] for key in ('nozzle', 'nozzle_target', 'bed', 'bed_target')]
    return xs, ys


def figure(_: Translator, samples: list[Sample]) -> dict[str, Any]:
    xs, ys = _columns(samples)
    traces = (
        (_('Nozzle'), '#dc2626', 'solid'),
        (_('Nozzle target'), '#dc2626', 'dot'),
        (_('Bed'), '#2563eb', 'solid'),
        (_('Bed target'), '#2563eb', 'dot'),
    )
    return {
        'data': [
            {
                'type': 'scatter',
                'mode': 'lines',
                'name': name,
                'x': list(xs),
                'y': y,
                'hoverinfo': 'y+name',
                'line': {'color': colour, 'dash': dash, 'width': 2 if dash == 'solid' else 1},
            }
            for (name, colour, dash), y in zip(traces, ys, strict=True)
        ],
        'layout': {
            'height': HEIGHT_PX,
            'autosize': True,
            'margin': {'l': 40, 'r': 8, 't': 8, 'b': 32},
            'xaxis': {'type': 'date', 'tickformat': '%H:%M', 'fixedrange': True},
            'yaxis': {'rangemode': 'tozero', 'ticksuffix': '°', 'fixedrange': True},
            'legend': {'orientation': 'h', 'x': 0, 'y': -0.18, 'font': {'size': 11}},
            'paper_bgcolor': 'rgba(0,0,0,0)',
            'plot_bgcolor': 'rgba(0,0,0,0)',
        },
        'config': {'displayModeBar': False, 'responsive': True, 'scrollZoom': False},
    }


def temperature_chart(live: LiveState, printer_id: int, _: Translator) -> ui.plotly:
    """The chart, following `printer_sample` for this printer while this browser's page exists."""
    ui.add_body_html(EXTEND_JS)
    history = live.temperatures.get(printer_id)
    samples = list(history.samples) if history is not None else []
    plot = (
        ui.plotly(figure(_, samples))
        .classes('w-full')
        .style(f'height: {HEIGHT_PX}px')
        .props(f'data-chart={printer_id}')
    )
    client = context.client
    last = {'t': samples[-1].t if samples else 0.0}

    def sample(arg: tuple[int, Sample]) -> None:
        pid, s = arg
        if pid != printer_id or s.t <= last['t'] or client.is_deleted:
            return
        last['t'] = s.t
        xs, ys = _columns([s])
        # numbers only (json of floats / null); the figure itself is never resent
        client.run_javascript(f'fpExtend({plot.id}, {json.dumps(xs)}, {json.dumps(ys)}, {MAX_POINTS})')

    live.events.printer_sample.subscribe(sample)
    # on_delete, not on_disconnect: a brief network drop reconnects to the same page, which must keep following
    client.on_delete(lambda: live.events.printer_sample.unsubscribe(sample))
    return plot
