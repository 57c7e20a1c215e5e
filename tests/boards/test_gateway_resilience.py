"""The gateway under trouble: broker restarts, panel restarts, a slow database (spec 4.3, 8, rule 13.7)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from fabpanel.boards import gateway as gateway_mod
from fabpanel.boards.simulator import SimulatedBoard
from fabpanel.db import loaders
from fabpanel.db.writer import GroupWriter

from ..conftest import make_settings, start_panel, wait_for
from ..lab import ANNA, DRILL, GIULIA, LASER, MARIO, PRINTER, UNKNOWN
from ..support import Mosquitto
from .harness import Spy, database, lab_panel

HOST = '127.0.0.1'
OK = {'request_ok': True, 'message': ''}


async def keep_online(board: SimulatedBoard) -> None:
    """The firmware reconnects when its broker comes back; then it replays its queue before anything else."""
    deadline = time.monotonic() + 10
    while not board.online:
        if await board.reconnect():
            break
        assert time.monotonic() < deadline, 'broker did not come back'
        await asyncio.sleep(0.1)


async def session_through_trouble(board: SimulatedBoard, uid: str, duration: int, beats: int = 12) -> None:
    await keep_online(board)
    await board.startuse(uid)
    for k in range(1, beats + 1):
        await asyncio.sleep(0.1)
        await keep_online(board)
        if await board.replay_queue():
            await board.inuse(uid, 30 * k)
    await keep_online(board)
    await board.stopuse(uid, duration)
    for _ in range(50):  # until the queue is delivered
        if not board.queue:
            return
        await keep_online(board)
        await board.replay_queue()
        await asyncio.sleep(0.1)
    raise AssertionError(f'queue never delivered: {list(board.queue)}')


async def test_broker_restart_during_traffic(tmp_path: Path, mosquitto: Mosquitto, database_url: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway_mod, 'BACKOFF_MAX_S', 1.0)
    cards = {PRINTER: GIULIA, LASER: MARIO, DRILL: ANNA}
    async with lab_panel(tmp_path, database_url, mosquitto.port) as panel, database(database_url) as db:
        assert panel.gateway is not None
        boards = {mid: SimulatedBoard(mid, HOST, mosquitto.port, timeout=0.5) for mid in cards}
        for b in boards.values():
            await b.connect()
        try:
            work = asyncio.gather(*(session_through_trouble(b, cards[mid], 600 + mid) for mid, b in boards.items()))
            await asyncio.sleep(0.35)
            mosquitto.stop()
            await wait_for(lambda: not panel.live.gateway.connected)
            await asyncio.sleep(0.5)
            mosquitto.start()
            await asyncio.wait_for(work, timeout=30)
            await wait_for(lambda: panel.live.gateway.connected)
            assert panel.gateway.connections >= 2
            assert sum(b.stats.failed + b.stats.timeouts for b in boards.values()) > 0  # the outage was felt
            for mid, uid in cards.items():
                rows = await db.uses(mid)
                assert [(u.card_uid, u.duration_s) for u in rows] == [(uid, 600.0 + mid)], mid
            await db.assert_counters_match_uses()
            # and it serves as before
            assert (await boards[PRINTER].checkuser(GIULIA))['is_valid'] is True
        finally:
            for b in boards.values():
                await b.close()


async def test_panel_restart_applies_waiting_messages_without_answering(
        tmp_path: Path, mosquitto: Mosquitto, database_url: str) -> None:
    """Persistent session: what boards sent while the panel was away is applied, not answered (rule 13.7)."""
    from ..lab import add_board_extras, create_lab

    await create_lab(database_url)
    await add_board_extras(database_url)
    settings = make_settings(tmp_path, database_url, mosquitto.port, client_id='fabpanel-restart')
    async with database(database_url) as db, Spy(mosquitto.port) as spy, \
            SimulatedBoard(PRINTER, HOST, mosquitto.port, timeout=0.3) as p, \
            SimulatedBoard(DRILL, HOST, mosquitto.port, timeout=0.3) as d:
        first = await start_panel(settings)
        try:
            assert await p.startuse(GIULIA) == OK
        finally:
            await first.stop()
        await spy.expect_replies({PRINTER: 1}, settle=0.1)

        # the panel is away: the boards' requests wait at the broker, their answers never come
        assert await p.inuse(GIULIA, 30) is None
        assert await p.stopuse(GIULIA, 40) is None  # queued by the board
        assert await d.startuse(MARIO) is None  # queued by the board
        assert await d.checkuser(UNKNOWN) is None
        assert (len(p.queue), len(d.queue)) == (1, 1)

        second = await start_panel(settings)
        try:
            health = second.live.gateway
            await wait_for(lambda: health.processed == 4)
            assert health.waited == 4  # inuse, stopuse, startuse, checkuser: applied, none answered
            assert health.replied == 0
            await asyncio.sleep(0.3)
            await spy.expect_replies({PRINTER: 1}, settle=0)  # nothing new: late answers would confuse the boards
            (use,) = await db.uses(PRINTER)
            assert use.end is not None and use.duration_s == 40.0  # nothing lost
            (use,) = await db.uses(DRILL)
            assert use.end is None and use.card_uid == MARIO
            await second.boards.settle()
            assert [r.uid for r in await db.unknown_cards()] == [UNKNOWN]
            assert second.live.machines[DRILL].user_first_name == 'Mario'

            # the boards come back and replay their queues: duplicates, acknowledged, nothing new written
            assert await p.replay_queue() and await d.replay_queue()
            assert len(await db.uses(PRINTER)) == 1 and len(await db.uses(DRILL)) == 1
            assert (await d.stopuse(MARIO, 70))['request_ok'] is True
            assert [u.duration_s for u in await db.uses(DRILL)] == [70.0]
            await spy.expect_replies({PRINTER: 2, DRILL: 2})
            await db.assert_counters_match_uses()
            assert await db.usage_seconds(PRINTER) == 40.0
        finally:
            await second.stop()


async def test_stop_replayed_after_a_panel_restart_is_a_duplicate(tmp_path: Path, mosquitto: Mosquitto,
                                                                  database_url: str) -> None:
    """The duplicate check survives a restart: recent closed uses are rebuilt from the database."""
    async with lab_panel(tmp_path, database_url, mosquitto.port, client_id='fabpanel-a') as panel, \
            SimulatedBoard(PRINTER, HOST, mosquitto.port) as board:
        await board.startuse(GIULIA)
        await board.stopuse(GIULIA, 300)
        await board.startuse(MARIO)
    settings = make_settings(tmp_path, database_url, mosquitto.port, client_id='fabpanel-b')
    again = await start_panel(settings)
    try:
        async with database(database_url) as db, SimulatedBoard(PRINTER, HOST, mosquitto.port) as board:
            assert again.live.machines[PRINTER].user_first_name == 'Mario'
            assert (await board.request({'action': 'startuse', 'uid': MARIO, 'replay': True})) == OK
            assert (await board.request({'action': 'stopuse', 'uid': GIULIA, 'duration': 300, 'replay': True}))[
                'request_ok'] is True
            rows = await db.uses(PRINTER)
            # Giulia's replayed stop writes nothing for her, but says Mario's session is over
            assert [(u.card_uid, u.duration_s is not None) for u in rows] == [(GIULIA, True), (MARIO, True)]
            assert rows[0].duration_s == 300.0
            await db.assert_counters_match_uses()
    finally:
        await again.stop()
    assert panel.live.gateway.replied == 3


async def test_slow_write_on_one_machine_does_not_delay_another(tmp_path: Path, mosquitto: Mosquitto,
                                                                sqlite_url: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    original = GroupWriter._transaction

    async def slow_for_the_printer(self, works):  # noqa: ANN001, ANN202
        rows = [row for work in works if isinstance(work, tuple) for row in work]
        if any(PRINTER in (row.params.get('machine_id'), row.params.get('b_machine')) for row in rows):
            await asyncio.sleep(1.5)  # the printer's use write is slow (a lock, a slow disk)
        return await original(self, works)

    monkeypatch.setattr(GroupWriter, '_transaction', slow_for_the_printer)
    async with lab_panel(tmp_path, sqlite_url, mosquitto.port) as panel, database(sqlite_url) as db, \
            Spy(mosquitto.port) as spy, SimulatedBoard(PRINTER, HOST, mosquitto.port) as p, \
            SimulatedBoard(DRILL, HOST, mosquitto.port) as d:
        slow = asyncio.create_task(p.startuse(GIULIA))
        await wait_for(lambda: panel.live.gateway.processed == 0 and panel.live.gateway.received == 1)
        await asyncio.sleep(0.05)  # the printer's write is now sleeping inside the writer
        t0 = time.perf_counter()
        for _ in range(3):
            assert (await d.checkuser(GIULIA))['is_valid'] is True
            assert (await d.checkmachine())['request_ok'] is True
            assert (await d.checkuser(UNKNOWN))['name'] == 'Unknown'
        elapsed = time.perf_counter() - t0
        # blocked behind the printer's write, the first answer alone would take 1.4 s or more
        assert elapsed < 1.0, f'nine answers took {elapsed:.2f} s while another machine waited on the database'
        assert max(d.stats.latencies) < 0.5
        assert not slow.done()
        # the printer's answer would arrive after the board gave up: it is not sent (a late answer is worse)
        assert await slow is None
        await wait_for(lambda: panel.live.gateway.late == 1)
        (use,) = await db.uses(PRINTER)  # but the use is recorded
        assert use.card_uid == GIULIA
        await spy.expect_replies({DRILL: 9})


async def test_admin_reload_racing_board_writes_keeps_memory_true(tmp_path: Path, mosquitto: Mosquitto,
                                                                 sqlite_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Rules reloaded (an admin edit) while boards' uses are written: memory must not go back in time."""
    slow_step = {'name': ''}

    def slowed(name: str, original):  # noqa: ANN001, ANN202
        async def wrapper(conn, *args):  # noqa: ANN001, ANN202
            result = await original(conn, *args)
            if slow_step['name'] == name and not args:
                await asyncio.sleep(0.5)  # what it read is now older than what the boards write meanwhile
            return result
        return wrapper

    monkeypatch.setattr(loaders, 'load_machine_uses', slowed('uses', loaders.load_machine_uses))
    monkeypatch.setattr(loaders, 'load_plans', slowed('plans', loaders.load_plans))
    async with lab_panel(tmp_path, sqlite_url, mosquitto.port) as panel, database(sqlite_url) as db, \
            SimulatedBoard(PRINTER, HOST, mosquitto.port) as board, \
            SimulatedBoard(LASER, HOST, mosquitto.port) as laser:
        slow_step['name'] = 'uses'
        reload = asyncio.create_task(panel.boards.reload_rules())
        await asyncio.sleep(0.1)
        assert await board.startuse(GIULIA) == OK
        await laser.startuse(MARIO)
        await reload
        assert panel.live.machines[PRINTER].user_first_name == 'Giulia'
        # another card: Giulia's use is closed, not left open beside a second one
        assert await board.startuse(MARIO) == OK
        rows = await db.uses(PRINTER)
        assert [(u.card_uid, u.end is None) for u in rows] == [(GIULIA, False), (MARIO, True)]

        slow_step['name'] = 'plans'
        reload = asyncio.create_task(panel.boards.reload_rules())
        await asyncio.sleep(0.1)
        assert (await laser.stopuse(MARIO, 60))['request_ok'] is True  # the laser's 36 s plan is now due
        await reload
        assert (await laser.checkmachine())['maintenance'] is True
        assert panel.live.machines[LASER].maintenance_due
        assert panel.live.machines[LASER].usage_hours * 3600 == pytest.approx(60)
        await board.stopuse(MARIO, 5)
        await db.assert_counters_match_uses()
        assert panel.live.gateway.errors == 0


async def test_an_answer_the_board_gave_up_on_is_not_sent(tmp_path: Path, mosquitto: Mosquitto, sqlite_url: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A board sends its next request only after an answer or its 2 s timeout: when a newer request of the same
    board is already waiting, the older answer would be taken as the newer one's, so it is not sent."""
    original = GroupWriter._transaction

    async def slow(self, works):  # noqa: ANN001, ANN202
        await asyncio.sleep(0.4)
        return await original(self, works)

    monkeypatch.setattr(GroupWriter, '_transaction', slow)
    async with lab_panel(tmp_path, sqlite_url, mosquitto.port) as panel, Spy(mosquitto.port) as spy, \
            SimulatedBoard(PRINTER, HOST, mosquitto.port) as board:
        await board.publish_raw(f'{{"action": "startuse", "uid": "{GIULIA}"}}')
        await asyncio.sleep(0.05)  # the startuse is now waiting for its write
        await board.publish_raw('{"action": "checkmachine"}')
        await spy.expect_replies({PRINTER: 1}, settle=0.8)
        (reply,) = spy.replies(PRINTER)
        assert 'is_valid' in reply.json()  # the answer to checkmachine, and only that one
        assert panel.live.gateway.late == 1
        assert panel.live.machines[PRINTER].user_first_name == 'Giulia'  # the start was still applied
