"""The frame every page shares: header, role-aware navigation (a drawer on phones), language."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from nicegui import ui
from starlette.requests import Request

from fabpanel.i18n import N_, Translator, gettext_for, pick_language
from fabpanel.services.auth import CurrentUser

HEAD = '''
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/assets/fabpanel.css">
'''


@dataclass(frozen=True, slots=True)
class NavItem:
    label: str  # marked with N_, translated when shown
    path: str
    icon: str
    allowed: Callable[[CurrentUser], bool]


def _anyone(_u: CurrentUser) -> bool:
    return True


def _admin(u: CurrentUser) -> bool:
    return u.may_administer


def _maintainer(u: CurrentUser) -> bool:
    return u.may_maintain or u.may_administer


NAV: list[NavItem] = [
    NavItem(N_('Dashboard'), '/', 'dashboard', _anyone),
    NavItem(N_('My lab'), '/me', 'person', _anyone),
    NavItem(N_('Printers'), '/printers', 'print', _anyone),
    NavItem(N_('Members'), '/members', 'groups', _admin),
    NavItem(N_('New cards'), '/members/enrol', 'contactless', _admin),
    NavItem(N_('Machines'), '/machines', 'precision_manufacturing', _admin),
    NavItem(N_('Authorizations'), '/authorizations', 'verified_user', _admin),
    NavItem(N_('Maintenance'), '/maintenance', 'build', _maintainer),
    NavItem(N_('Usage history'), '/history', 'history', _admin),
    NavItem(N_('Roles and types'), '/settings', 'tune', _admin),
    NavItem(N_('System'), '/system', 'monitor_heart', _admin),
    NavItem(N_('Kiosk'), '/kiosk', 'tv', _anyone),
]
_registered: set[str] = set()


def nav_registered(path: str) -> None:
    """Pages announce themselves, so the menu never links to a page that is not there."""
    _registered.add(path)


def page_language(request: Request, user: CurrentUser | None = None) -> Translator:
    _ = gettext_for(pick_language(request.headers.get('accept-language'), user.language if user else None))
    ui.query('html').props(f'lang={_.lang}')
    return _


def _drawer(items: list[NavItem], _: Translator, path: str) -> ui.left_drawer:
    """The side navigation: one link element per entry (its icon is drawn by CSS from data-icon).

    Opened by Quasar itself on wide screens (show-if-above), so the server never asks the browser whether it is
    open: that question, asked of every page as it connects, timed out when a hundred dashboards reconnected.
    """
    drawer = ui.left_drawer(value=False).props('show-if-above bordered :width="230"').classes('fp-drawer')
    drawer.props(remove='model-value')  # until the browser says: show-if-above decides at first
    with drawer, ui.element('nav').classes('fp-side-list'):
        for n in items:
            ui.link(_(n.label), n.path).classes('fp-side' + (' fp-side-active' if n.path == path else '')).props(
                f'data-nav={n.path} data-icon={n.icon}')
    return drawer


@contextmanager
def frame(title: str, _: Translator, path: str = '/', user: CurrentUser | None = None) -> Iterator[None]:
    ui.add_head_html(HEAD)
    ui.page_title(f'{title} · fabpanel')
    ui.query('body').classes('fp-page')
    items = [n for n in NAV if user is not None and n.allowed(user) and (n.path in _registered or n.path == '/')]
    drawer = _drawer(items, _, path) if items else None
    with ui.header().classes('fp-header items-center px-3 sm:px-6 py-2 gap-3 no-wrap'):
        if drawer is not None:
            ui.button(icon='menu', on_click=drawer.toggle).props('flat round dense color=white aria-label=Menu')
        with ui.link(target='/').classes('fp-brand items-center gap-2 no-wrap'):
            ui.element('img').props('src=/assets/favicon.svg alt=""').classes('w-7 h-7')
            ui.label('fabpanel').classes('text-lg font-semibold tracking-tight')
        ui.space()
        if user is not None:
            with ui.button(icon='account_circle').props('flat no-caps color=white data-testid=user-menu'):
                ui.label(user.first_name).classes('ml-1 gt-xs')
                with ui.menu():
                    ui.menu_item(_('Change password'), lambda: ui.navigate.to('/account/password'))
                    ui.menu_item(_('Sign out'), lambda: ui.navigate.to('/logout')).props('data-testid=signout')
        elif path != '/login':
            ui.link(_('Sign in'), '/login').classes('fp-nav')
    with ui.column().classes('w-full max-w-screen-xl mx-auto px-3 py-4 sm:px-6 sm:py-6 gap-4'):
        ui.label(title).classes('text-2xl font-semibold text-slate-800')
        yield
