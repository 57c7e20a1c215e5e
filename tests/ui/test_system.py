"""The system page (/system) in NiceGUI's simulated browser: admins only; gateway and boards bound live; database
and process facts; log lines without personal data."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fabpanel import logbuffer
from fabpanel.live.state import BoardInfo
from fabpanel.logbuffer import LogBuffer
from fabpanel.services import system
from fabpanel.ui.session import COOKIE

from ..conftest import make_settings
from ..lab import GIULIA, LASER, PRINTER, create_lab
from .simulation import signed_in, simulated_panel

GIULIA_ID, MARIO_ID, ANNA_ID = 1, 2, 3
HOSTILE = '<img src=x onerror=alert(1)><b>Bold</b>'


@pytest.fixture
def log_buffer() -> Iterator[LogBuffer]:
    logbuffer.uninstall()
    buffer = logbuffer.install()
    fabpanel_log = logging.getLogger('fabpanel')
    old = fabpanel_log.level
    fabpanel_log.setLevel(logging.INFO)  # pytest leaves the root at WARNING
    yield buffer
    fabpanel_log.setLevel(old)
    logbuffer.uninstall()


@pytest.fixture
async def lab(tmp_path: Path, log_buffer: LogBuffer):  # noqa: ANN201
    url = f'sqlite:///{tmp_path}/fabpanel.db'
    await create_lab(url)
    async with simulated_panel(make_settings(tmp_path, url)) as (new_user, panel):
        yield new_user, panel


@pytest.mark.parametrize('member_id', [GIULIA_ID, MARIO_ID])  # a plain member, a maintainer
async def test_only_admins_reach_the_system_page(lab, member_id: int) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = await signed_in(new_user, panel, member_id)
    response = await user.http_client.get('/system', follow_redirects=False)
    assert response.status_code == 303 and response.headers['location'] == '/forbidden'
    await user.open('/system')
    await user.should_see('Your role does not allow this page.', retries=50)
    await user.should_not_see('Board gateway')
    await user.should_not_see(marker='log-lines')
    anonymous = await new_user().http_client.get('/system', follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers['location'].startswith('/login')


async def test_admin_sees_gateway_boards_database_and_process(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    live = panel.live
    live.boards[PRINTER] = BoardInfo(machine_id=PRINTER, serial='SN-0001', ip='10.0.0.7', firmware=HOSTILE,
                                     heap=123 * 1024, last_seen=datetime.now(UTC))
    live.unknown_boards[777] = datetime.now(UTC)
    user = await signed_in(new_user, panel, ANNA_ID)
    await user.open('/system')
    await user.should_see('Board gateway', retries=50)
    await user.should_see('The board gateway is not running in this process.')
    with user.scope(marker=f'board-{PRINTER}'):
        await user.should_see('Prusa MK4')
        await user.should_see('SN-0001')
        await user.should_see('10.0.0.7')
        await user.should_see(HOSTILE)  # whatever a board calls its firmware is shown as text
        await user.should_see('123.0 KiB')
    await user.should_see(marker='unknown-board-777')
    with user.scope(marker='database'):
        await user.should_see('SQLite')
        await user.should_see('Unknown cards')
        await user.should_see('Memory (RSS)')
    assert user.find(marker='rows-member').elements.pop().text == '6'  # the lab's five and the first admin
    assert user.find(marker='db-size').elements.pop().text.endswith('KiB')

    # the gateway's counters and a board's fields are bound: they change on the open page
    live.gateway.connected, live.gateway.received, live.gateway.broker = True, 41, 'mqtt.lab:1883'
    with user.scope(marker='gateway'):
        await user.should_see('Connected', retries=50)
        await user.should_see('mqtt.lab:1883')
    assert user.find(marker='gateway-received').elements.pop().text == '41'
    live.boards[PRINTER].ip = '10.0.0.99'
    with user.scope(marker=f'board-{PRINTER}'):
        await user.should_see('10.0.0.99', retries=50)
    # a board that announces itself for the first time gets a row
    live.boards[LASER] = BoardInfo(machine_id=LASER, serial='SN-0002', last_seen=datetime.now(UTC))
    live.events.board_seen.emit(LASER)
    await user.should_see(marker=f'board-{LASER}', retries=50)


async def test_log_lines_carry_no_personal_data(lab, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setattr('fabpanel.ui.system.LOG_REFRESH_S', 0.1)
    new_user, panel = lab
    log = logging.getLogger('fabpanel.services.boards')
    log.warning('unknown card %s on machine %d from %s', GIULIA, PRINTER, 'giulia@example.org')
    log.info('reset link for mario@example.org, card 11:22:33:44')
    log.error('disk full')
    user = await signed_in(new_user, panel, ANNA_ID)
    await user.open('/system')
    await user.should_see('Recent log lines', retries=50)
    with user.scope(marker='log-lines'):
        await user.should_see('unknown card 0a…3d on machine 1 from [e-mail]')
        await user.should_see('reset link for [e-mail], card 11…44')
        await user.should_see('disk full')
        for secret in (GIULIA, 'giulia@example.org', 'mario@example.org', '11:22:33:44', 'example.org'):
            await user.should_not_see(secret)
    # lines logged while the page is open arrive with the slow refresh, masked as well
    log.warning('card %s of %s refused', 'cafe0123', 'elsa@example.org')
    with user.scope(marker='log-lines'):
        await user.should_see('card ca…23 of [e-mail] refused', retries=50)
        await user.should_not_see('cafe0123')
        await user.should_not_see('elsa@')
    user.find('Errors only').click()
    with user.scope(marker='log-lines'):
        await user.should_see('disk full', retries=50)
        await user.should_not_see('unknown card')


async def test_the_open_page_stops_when_the_session_ends(lab, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setattr('fabpanel.ui.system.LOG_REFRESH_S', 0.1)
    new_user, panel = lab
    user = await signed_in(new_user, panel, ANNA_ID)
    await user.open('/system')
    await user.should_see('Recent log lines', retries=50)
    await panel.auth.close_session(user.http_client.cookies.get(COOKIE, domain='test.local'))
    await user.should_see('Your role does not allow this page.', retries=50)
    await user.should_not_see(marker='log-lines')


async def test_the_page_says_when_no_log_is_collected(tmp_path: Path) -> None:
    logbuffer.uninstall()
    url = f'sqlite:///{tmp_path}/fabpanel.db'
    await create_lab(url)
    async with simulated_panel(make_settings(tmp_path, url)) as (new_user, panel):
        user = await signed_in(new_user, panel, ANNA_ID)
        await user.open('/system')
        await user.should_see('does not collect log lines', retries=50)


def test_board_rows_are_joined_with_machine_names(tmp_path: Path) -> None:
    from fabpanel.live.state import LiveState, MachineLive

    live = LiveState()
    live.machines = {PRINTER: MachineLive(id=PRINTER, name='Prusa MK4'), LASER: MachineLive(id=LASER, name='Laser')}
    for machine_id in (PRINTER, LASER, 9):
        live.boards[machine_id] = BoardInfo(machine_id=machine_id)
    assert [(r.machine_id, r.machine_name) for r in system.board_rows(live)] == [(LASER, 'Laser'),
                                                                                 (PRINTER, 'Prusa MK4'), (9, '')]
    early, late = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)
    live.unknown_boards.update({500: early, 501: late})
    assert system.unknown_boards(live) == [(501, late), (500, early)]
    path = tmp_path / 'x.db'
    path.write_bytes(b'1' * 100)
    (tmp_path / 'x.db-wal').write_bytes(b'1' * 20)
    assert system.sqlite_size(path) == 120 and system.sqlite_size(tmp_path / 'none.db') == 0
    info = system.process_info()
    assert info.uptime_s >= 0 and info.python.count('.') == 2 and info.nicegui[0].isdigit()
    assert info.rss_bytes is None or info.rss_bytes > 1_000_000


async def test_database_info_on_sqlite_and_postgresql(database_url: str) -> None:
    from fabpanel.db.engine import create_engine

    await create_lab(database_url)
    engine = create_engine(database_url)
    try:
        info = await system.database_info(engine, database_url)
    finally:
        await engine.dispose()
    assert info.backend == ('SQLite' if database_url.startswith('sqlite') else 'PostgreSQL')
    assert info.size_bytes is not None and info.size_bytes > 10_000
    assert (info.rows['member'], info.rows['card'], info.rows['machine'], info.rows['use']) == (5, 5, 4, 0)
    assert list(info.rows) == [name for name, _table in system.MAIN_TABLES]
