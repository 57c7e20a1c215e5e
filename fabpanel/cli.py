"""Command line: `python main.py [--demo]` runs the panel; sub-commands do one-off jobs."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fabpanel import logbuffer
from fabpanel.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from fabpanel.app import Panel

log = logging.getLogger('fabpanel')
ROOT = Path(__file__).resolve().parents[1]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='fabpanel', description='The control panel for a FabLab.')
    p.add_argument('--config', type=Path, help='settings file (default: $FABPANEL_CONFIG or ./fabpanel.toml)')
    p.add_argument('--demo', action='store_true',
                   help='sample lab and simulated boards (own database data/demo.db unless one is configured)')
    p.add_argument('--log-level', default='INFO', choices=['DEBUG', 'INFO', 'WARNING', 'ERROR'])
    sub = p.add_subparsers(dest='command')
    sub.add_parser('run', help='run the panel (the default)')
    sub.add_parser('migrate', help='bring the database schema up to date and exit')
    admin = sub.add_parser('create-admin', help='create an admin (or make a member admin); password from stdin')
    admin.add_argument('email')
    admin.add_argument('--first-name', default='Admin')
    return p


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level), format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    for noisy in ('aiosqlite', 'asyncio', 'amqtt', 'transitions', 'uvicorn.access', 'alembic.runtime.plugins'):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logbuffer.install()  # the recent lines the system page shows, personal data masked


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    _configure_logging(args.log_level)
    try:
        settings = load_settings(args.config)
    except SettingsError as e:
        print(f'fabpanel: {e}', file=sys.stderr)
        sys.exit(2)
    if args.command == 'create-admin':
        _create_admin(settings, args.email, args.first_name)
        return
    if args.command == 'migrate':
        _migrate(settings)
        return
    run(settings, demo=args.demo)


def _migrate(settings: Settings) -> None:
    import asyncio

    from sqlalchemy.engine import make_url

    from fabpanel.db.engine import create_engine
    from fabpanel.db.migrate import upgrade

    async def go() -> None:
        engine = create_engine(settings.database.url)
        try:
            await upgrade(engine, settings.database.url)
        finally:
            await engine.dispose()

    try:
        asyncio.run(go())
    except Exception as e:  # noqa: BLE001 - one line for the user, the details in the log
        shown = make_url(settings.database.url).render_as_string(hide_password=True)
        log.debug('migration failed', exc_info=True)
        print(f'fabpanel: cannot migrate the database {shown} ([database] url): {type(e).__name__}: {e}',
              file=sys.stderr)
        sys.exit(1)
    print('database is up to date')


def _read_password() -> str:
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass('Password: ')
        if getpass.getpass('Again: ') != first:
            print('fabpanel: the two passwords differ', file=sys.stderr)
            sys.exit(2)
        return first
    return sys.stdin.readline().rstrip('\r\n')  # scripted: the first line of standard input


def _create_admin(settings: Settings, email: str, first_name: str) -> None:
    import asyncio

    from fabpanel.db.engine import create_engine
    from fabpanel.db.migrate import upgrade
    from fabpanel.mail.sender import Mailer
    from fabpanel.services.auth import AuthError, AuthService

    password = _read_password()

    async def go() -> None:
        engine = create_engine(settings.database.url)
        try:
            await upgrade(engine, settings.database.url)
            auth = AuthService(engine, Mailer(settings.email), settings.web.base_url)
            await auth.create_admin(email, password, first_name=first_name)
        finally:
            await engine.dispose()

    try:
        asyncio.run(go())
    except AuthError as e:
        print(f'fabpanel: {e}', file=sys.stderr)
        sys.exit(2)
    print(f'{email} is an admin now')


def check_ports(settings: Settings, demo: bool) -> None:
    """Stop with a clear message when a port fabpanel needs is taken (the demo moves its broker instead)."""
    from fabpanel.boards.embedded import free_port, port_free, port_taken_message

    if not port_free(settings.web.port, settings.web.host):
        where = f' in {settings.source}' if settings.source else ''
        print(f'fabpanel: port {settings.web.port} is already in use, so the web panel cannot start '
              f'(is fabpanel already running?).\n  Choose another port: [web] port{where} or FABPANEL_WEB__PORT.',
              file=sys.stderr)
        sys.exit(2)
    if settings.mqtt.embedded and not port_free(settings.mqtt.port, settings.mqtt.embedded_bind):
        if not demo:
            print(f'fabpanel: {port_taken_message(settings.mqtt.port, settings.source)}', file=sys.stderr)
            sys.exit(2)
        taken, settings.mqtt.port = settings.mqtt.port, free_port()
        log.warning('demo: port %d is taken, the embedded broker uses port %d instead', taken, settings.mqtt.port)


def build_app(settings: Settings, demo: bool = False, gateway: bool = True) -> Panel:
    """Wire the panel into NiceGUI's app: pages, static files, start-up and shutdown. Tests use it too."""
    from nicegui import app

    from fabpanel.app import Panel
    from fabpanel.ui import register_pages

    panel = Panel(settings)
    demo_boards = None

    async def startup() -> None:
        nonlocal demo_boards
        try:
            if demo:
                await _seed_demo(panel)
            await panel.start(gateway=gateway)
        except Exception as e:
            # NiceGUI would log this and go on serving pages without a backend: stop instead
            log.critical('fabpanel could not start: %s', e, exc_info=log.isEnabledFor(logging.DEBUG))
            if not os.environ.get('NICEGUI_USER_SIMULATION'):
                app.shutdown()
            raise
        if demo:
            from fabpanel.demo import DemoBoards

            demo_boards = DemoBoards(settings.mqtt.host, settings.mqtt.port, sorted(panel.live.machines))
            demo_boards.start()
        log.info('fabpanel is running on http://%s:%d', settings.web.host, settings.web.port)

    async def shutdown() -> None:
        if demo_boards is not None:
            await demo_boards.stop()
        await panel.stop()

    app.on_startup(startup)
    app.on_shutdown(shutdown)
    app.add_static_files('/assets', ROOT / 'assets')
    register_pages(panel)
    return panel


async def _seed_demo(panel: Panel) -> None:
    from fabpanel.db import migrate
    from fabpanel.demo import seed_demo

    await migrate.upgrade(panel.engine, panel.settings.database.url)
    await seed_demo(panel.engine)


def run(settings: Settings, demo: bool = False) -> None:
    from nicegui import ui

    if demo and settings.database.url == 'sqlite:///data/fabpanel.db':
        settings.database.url = 'sqlite:///data/demo.db'
    check_ports(settings, demo)
    build_app(settings, demo)
    ui.run(host=settings.web.host, port=settings.web.port, title='fabpanel', storage_secret=settings.web.secret_key,
           reload=False, show=False, favicon=ROOT / 'assets' / 'favicon.svg', show_welcome_message=False)
