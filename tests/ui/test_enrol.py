"""The new-cards page: sightings made into members or given to one, and the guided swipe, up to a real board."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from nicegui import ui
from nicegui.testing.user import User

from fabpanel.app import Panel
from fabpanel.boards.simulator import SimulatedBoard
from fabpanel.db import board_store
from fabpanel.db.models import Card, UnknownCard

from ..conftest import make_settings
from ..lab import GIULIA, LASER, PRINTER, create_lab
from ..support import Mosquitto
from .simulation import signed_in, simulated_panel

card_t = Card.__table__
unknown_t = UnknownCard.__table__


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[tuple]:
    url = f'sqlite:///{tmp_path}/fabpanel.db'
    await create_lab(url)
    async with simulated_panel(make_settings(tmp_path, url)) as (new_user, panel):
        yield new_user, panel


async def owner(panel: Panel, uid: str) -> int | None:
    async with panel.engine.connect() as conn:
        return (await conn.execute(sa.select(card_t.c.member_id).where(card_t.c.uid == uid))).scalar()


async def eventually_owned(panel: Panel, uid: str, member_id: int) -> None:
    for _ in range(100):
        if await owner(panel, uid) == member_id:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f'card {uid} is not member {member_id}\'s')


async def sightings(panel: Panel) -> list[str]:
    async with panel.engine.connect() as conn:
        return [r.uid for r in await conn.execute(sa.select(unknown_t.c.uid).order_by(unknown_t.c.id))]


async def seen(panel: Panel, uid: str, machine_id: int, minutes_ago: float) -> None:
    async with panel.engine.begin() as conn:
        await board_store.record_unknown_card(conn, uid, machine_id,
                                              datetime.now(UTC) - timedelta(minutes=minutes_ago))


def subscribers(panel: Panel) -> int:
    return len(panel.live.events.card_unknown._subscribers)  # noqa: SLF001 - nothing may stay subscribed


async def open_enrol(new_user, panel: Panel) -> User:  # noqa: ANN001
    user = await signed_in(new_user, panel, 3)
    await user.open('/members/enrol')
    await user.should_see('Cards seen recently', retries=50)
    return user


def choose(user: User, marker: str, value: object) -> None:
    user.find(marker=marker).elements.pop().value = value


async def test_only_admins(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    for member_id in (1, 2):
        user = await signed_in(new_user, panel, member_id)
        response = await user.http_client.get('/members/enrol', follow_redirects=False)
        assert response.headers['location'] == '/forbidden'


async def test_sightings_make_a_member_give_and_forget(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    await seen(panel, 'aaaa0001', PRINTER, 30)
    await seen(panel, 'aaaa0002', LASER, 5)
    await seen(panel, 'aaaa0002', LASER, 1)
    await seen(panel, 'aaaa0003', PRINTER, 10)
    await seen(panel, 'abc', PRINTER, 60)  # an odd id: listed, marked, no 'make a member' link
    user = await open_enrol(new_user, panel)
    await user.should_see('aaaa0001')
    await user.should_see('attempts: 2')
    await user.should_see('cannot match a board')
    await user.should_not_see(marker='make-abc')
    shown = sorted((e for e in user.find(kind=ui.label).elements if e.text.startswith(('aaaa', 'abc'))),
                   key=lambda e: e.id)  # in the order they were built, the most recently seen first
    assert [e.text for e in shown] == ['aaaa0002', 'aaaa0003', 'aaaa0001', 'abc']

    user.find(marker='give-aaaa0002').click()
    await user.should_see('Give card aaaa0002 to', retries=50)
    user.find(marker='give-ok').click()
    await user.should_see('Choose a member.', retries=50)
    choose(user, 'give-member', 2)
    user.find(marker='give-label').type('blue fob')
    user.find(marker='give-ok').click()
    await eventually_owned(panel, 'aaaa0002', 2)
    await user.should_not_see(marker='sighting-aaaa0002', retries=50)
    assert 'aaaa0002' not in await sightings(panel)

    user.find(marker='give-aaaa0003').click()
    await user.should_see('Give card aaaa0003 to', retries=50)
    choose(user, 'give-member', 1)
    await seen(panel, 'aaaa0003', PRINTER, 0)
    async with panel.engine.begin() as conn:  # meanwhile another admin gave it to Mario
        await conn.execute(sa.insert(card_t).values(uid='aaaa0003', member_id=2, label='',
                                                    created_at=datetime.now(UTC)))
    user.find(marker='give-ok').click()
    await user.should_see('This card is already in use by Mario Bianchi.', retries=50)

    await user.open('/members/enrol')
    await user.should_see('aaaa0001', retries=50)
    user.find(marker='forget-aaaa0001').click()
    await user.should_see('nobody gets it', retries=50)
    user.find(marker='confirm').click()
    await user.should_not_see(marker='sighting-aaaa0001', retries=50)

    await seen(panel, 'aaaa0004', PRINTER, 0)
    await user.open('/members/enrol')
    await user.should_see('aaaa0004', retries=50)
    user.find(marker='make-aaaa0004').click()
    await user.should_see('Create member', retries=50)
    assert user.find(marker='card').elements.pop().value == 'aaaa0004'
    user.find(marker='first_name').type('Nuovo')
    user.find(marker='save').click()
    await user.should_see('Member since', retries=50)
    assert await owner(panel, 'aaaa0004') is not None and 'aaaa0004' not in await sightings(panel)


async def test_guided_wait_times_out_cancels_and_lets_go_on_disconnect(lab, monkeypatch) -> None:  # noqa: ANN001
    new_user, panel = lab
    page = sys.modules['fabpanel.ui.enrol']  # NiceGUI's test harness imports page modules anew for each app
    monkeypatch.setattr(page, 'WAIT_SECONDS', 0.5)
    user = await open_enrol(new_user, panel)
    baseline = subscribers(panel)
    user.find(marker='wait').click()
    await user.should_see('Choose a machine.', retries=50)
    assert subscribers(panel) == baseline

    choose(user, 'wait-machine', PRINTER)
    choose(user, 'wait-member', 1)
    user.find(marker='wait').click()
    await user.should_see('Swipe the new card on Prusa MK4 now', retries=50)
    assert subscribers(panel) == baseline + 1
    await user.should_see('No new card was shown. Nothing changed.', retries=50)
    assert subscribers(panel) == baseline
    panel.live.events.card_unknown.emit((PRINTER, 'cafe0001'))  # too late: nobody gets it
    await asyncio.sleep(0.1)
    assert await owner(panel, 'cafe0001') is None

    monkeypatch.setattr(page, 'WAIT_SECONDS', 30)
    user.find(marker='wait').click()
    await user.should_see('Swipe the new card on Prusa MK4 now', retries=50)
    user.find(marker='cancel-wait').click()
    await user.should_see('No new card was shown. Nothing changed.', retries=50)
    assert subscribers(panel) == baseline

    user.find(marker='wait').click()
    await user.should_see('Swipe the new card on Prusa MK4 now', retries=50)
    assert subscribers(panel) == baseline + 1
    client = user.client
    for socket_id in list(client._socket_to_document_id):  # noqa: SLF001 - the browser goes away
        client.handle_disconnect(socket_id)
    await asyncio.sleep(0.1)
    assert subscribers(panel) == baseline
    client.delete()
    assert subscribers(panel) == baseline - 1  # the list's live refresh is gone with the page too


async def test_guided_wait_for_a_new_member_opens_the_form_with_the_card(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = await open_enrol(new_user, panel)
    choose(user, 'wait-machine', LASER)
    user.find(marker='wait').click()  # 'a new member' is the default
    await user.should_see('Swipe the new card on Laser now', retries=50)
    panel.live.events.card_unknown.emit((PRINTER, 'cafe0002'))  # another machine
    panel.live.events.card_unknown.emit((LASER, 'cafe0003'))
    await user.should_see('Create member', retries=50)
    assert user.find(marker='card').elements.pop().value == 'cafe0003'


async def test_guided_swipe_on_a_real_board_binds_the_card(tmp_path: Path, mosquitto: Mosquitto) -> None:
    url = f'sqlite:///{tmp_path}/fabpanel.db'
    await create_lab(url)
    async with simulated_panel(make_settings(tmp_path, url, mosquitto.port), gateway=True) as (new_user, panel):
        for _ in range(200):
            if panel.live.gateway.connected:
                break
            await asyncio.sleep(0.05)
        user = await open_enrol(new_user, panel)
        await user.should_see('No unknown cards were seen.')
        async with SimulatedBoard(PRINTER, '127.0.0.1', mosquitto.port) as board:
            # a stranger's card while nobody waits: it appears in the list without a reload
            assert (await board.checkuser('0000beef'))['is_valid'] is False
            await user.should_see('0000beef', retries=50)

            choose(user, 'wait-machine', PRINTER)
            choose(user, 'wait-member', 1)  # Giulia gets a second card
            user.find(marker='wait').click()
            await user.should_see('Swipe the new card on Prusa MK4 now', retries=50)
            reply = await board.checkuser('c0ffee42')
            assert reply == {'request_ok': True, 'is_valid': False, 'name': 'Unknown', 'missing_auth': False,
                             'level': 0}
            await user.should_see('Card c0ffee42 now belongs to Giulia Rossi', retries=50)
            assert await owner(panel, 'c0ffee42') == 1
            await panel.boards.settle()
            assert 'c0ffee42' not in await sightings(panel)
            reply = await board.checkuser('c0ffee42')
            assert (reply['is_valid'], reply['name']) == (True, 'Giulia')
            assert (await board.checkuser(GIULIA))['is_valid'] is True  # her first card still works
