"""The staff G-code console of one printer: a line input and a bounded, scrolling log of what was sent and what
the printer answered (`printer_console` events). Lines are shown as text only; refusals with line and reason."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from nicegui import context, ui

from fabpanel.i18n import Translator
from fabpanel.live.state import LiveState
from fabpanel.services.machines import Refused

from .printer_refusals import printer_refusal

MAX_LINES = 300  # in the browser
MAX_PENDING = 100  # between two sends: a printer streaming a job can log hundreds of lines a second
FLUSH_S = 0.25  # one message to the browser per quarter second at most, however fast lines come
MAX_LINE = 200  # characters shown per line

Send = Callable[[str], Awaitable[list[str] | None]]


def console_card(live: LiveState, printer_id: int, _: Translator, send: Send) -> ui.log:
    """`send(line)` asks the service (it checks role and safety and raises Refused); shown refusals go to the log."""
    with ui.card().classes('w-full gap-2').mark('console'):
        ui.label(_('G-code console (staff)')).classes('text-base font-semibold text-slate-700')
        log = (
            ui.log(max_lines=MAX_LINES)
            .classes('w-full h-56 text-xs font-mono bg-slate-900 text-slate-100')
            .mark('console-log')
        )
        with ui.row().classes('w-full items-start gap-2 no-wrap'):
            line = (
                ui.input(placeholder=_('e.g. M105'))
                .props('dense outlined maxlength=200 autocomplete=off autocapitalize=characters spellcheck=false')
                .classes('grow min-w-0 font-mono')
                .mark('console-input')
            )
            button = ui.button(_('Send'), icon='send').props('dense').mark('console-send')

    async def submit() -> None:
        text = (line.value or '').strip()
        if not text:
            return
        button.disable()
        heard = seen['lines']
        try:
            answers = await send(text)
            line.value = ''
            if seen['lines'] == heard and answers is not None:
                # a driver that does not report its console traffic: show what was sent and answered here
                for entry in [f'> {text}', *(f'< {a}' for a in answers)]:
                    seen['add'](entry)
        except Refused as e:
            text = _('refused: {reason}').format(reason=printer_refusal(_, e))
            log.push(' '.join(text.split())[:MAX_LINE], classes='text-red-400')
        finally:
            button.enable()

    button.on_click(submit)
    line.on('keydown.enter', submit)
    seen = _follow(live, printer_id, log)
    return log


def _follow(live: LiveState, printer_id: int, log: ui.log) -> dict[str, Any]:
    """Collect this printer's console lines and push them in small batches (at most MAX_PENDING per batch).
    Returns {'lines': how many arrived so far, 'add': add a line of our own}."""
    pending: deque[str] = deque(maxlen=MAX_PENDING)
    client = context.client
    state: dict[str, Any] = {'due': False, 'lines': 0}

    def flush() -> None:
        state['due'] = False
        if client.is_deleted or log.is_deleted or not pending:
            return
        lines = list(pending)
        pending.clear()
        log.push('\n'.join(lines))

    def add(entry: str) -> None:
        # text only (ui.log shows labels); one physical line per entry, bounded
        pending.append(' '.join(entry.split())[:MAX_LINE])
        if not state['due']:
            state['due'] = True
            asyncio.get_running_loop().call_later(FLUSH_S, flush)

    def line(arg: tuple[int, str, str]) -> None:
        pid, direction, text = arg
        if pid == printer_id:
            state['lines'] += 1
            add(f'{direction} {text}')

    live.events.printer_console.subscribe(line)
    client.on_delete(lambda: live.events.printer_console.unsubscribe(line))
    state['add'] = add
    return state
