"""The frame every page shares: header, navigation, language."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from nicegui import ui
from starlette.requests import Request

from fabpanel.i18n import Translator, gettext_for, pick_language

HEAD = '''
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/assets/fabpanel.css">
'''


def page_language(request: Request) -> Translator:
    _ = gettext_for(pick_language(request.headers.get('accept-language')))
    ui.query('html').props(f'lang={_.lang}')
    return _


@contextmanager
def frame(title: str, _: Translator, path: str = '/') -> Iterator[None]:
    ui.add_head_html(HEAD)
    ui.page_title(f'{title} · fabpanel')
    ui.query('body').classes('fp-page')
    with ui.header().classes('fp-header items-center px-3 sm:px-6 py-2 gap-3 no-wrap'):
        with ui.link(target='/').classes('fp-brand items-center gap-2 no-wrap'):
            ui.element('img').props('src=/assets/favicon.svg alt=""').classes('w-7 h-7')
            ui.label('fabpanel').classes('text-lg font-semibold tracking-tight')
        ui.space()
        with ui.row().classes('gap-1 no-wrap'):
            for label, target in ((_('Dashboard'), '/'), (_('Kiosk'), '/kiosk')):
                ui.link(label, target).classes('fp-nav' + (' fp-nav-active' if target == path else ''))
    with ui.column().classes('w-full max-w-screen-xl mx-auto px-3 py-4 sm:px-6 sm:py-6 gap-4'):
        ui.label(title).classes('text-2xl font-semibold text-slate-800')
        yield
