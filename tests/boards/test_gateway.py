"""The board gateway end to end: real Mosquitto, a simulated board, SQLite and PostgreSQL (spec sections 5, 11, 13)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from fabpanel.boards import gateway as gateway_mod
from fabpanel.boards.simulator import SimulatedBoard
from fabpanel.core.protocol import MAX_REPLY
from fabpanel.db.models import Use
from fabpanel.services.boards import BoardService

from ..conftest import wait_for
from ..lab import (
    ANNA,
    BLOCKED,
    DISABLED,
    DRILL,
    EXPIRED,
    GIULIA,
    LASER,
    LEO,
    LONG,
    LONG_LCD,
    LONG_NAME,
    LONG_NAMED,
    MARIO,
    PRINTER,
    UNKNOWN,
)
from ..support import Mosquitto
from .harness import Spy, database, lab_panel

HOST = '127.0.0.1'
NOWHERE = 99  # a machine id the lab does not know
INVALID_MACHINE = {'request_ok': False, 'message': 'Invalid machine ID'}
OK = {'request_ok': True, 'message': ''}
INVALID_CARD = {'request_ok': False, 'message': 'Invalid card'}
REFUSED = {'request_ok': True, 'is_valid': False, 'name': 'User not authorized', 'missing_auth': True, 'level': 0}


def valid(name: str, level: int) -> dict[str, object]:
    return {'request_ok': True, 'is_valid': True, 'name': name, 'missing_auth': False, 'level': level}


async def test_section_11_matrix(tmp_path: Path, mosquitto: Mosquitto, database_url: str) -> None:
    """Every action and every error case of the spec's section 11, with rule 13's answers where the old differ."""
    async with lab_panel(tmp_path, database_url, mosquitto.port) as panel, database(database_url) as db, \
            Spy(mosquitto.port) as spy:
        boards = {mid: SimulatedBoard(mid, HOST, mosquitto.port) for mid in (PRINTER, LASER, DRILL, BLOCKED, NOWHERE)}
        for b in boards.values():
            await b.connect()
        p, laser, drill, blocked, nowhere = (boards[m] for m in (PRINTER, LASER, DRILL, BLOCKED, NOWHERE))
        try:
            # -- unknown machine id: every reply-expecting action is told, alive gets silence (rule 13.1)
            await nowhere.alive()
            for ask in (nowhere.checkmachine(), nowhere.checkuser(GIULIA), nowhere.request(
                    {'action': 'startuse', 'uid': GIULIA}), nowhere.inuse(GIULIA, 30), nowhere.request(
                    {'action': 'stopuse', 'uid': GIULIA, 'duration': 30}), nowhere.request(
                    {'action': 'maintenance', 'uid': MARIO}), nowhere.request({'action': 'synccache'})):
                assert await ask == INVALID_MACHINE
            assert NOWHERE in panel.live.unknown_boards

            # -- machine state
            assert await p.checkmachine() == {'request_ok': True, 'is_valid': True, 'maintenance': False,
                                              'allowed': True, 'name': 'Prusa MK4', 'logoff': 480, 'type': 1,
                                              'grace': 2, 'description': ''}
            assert (await blocked.checkmachine())['allowed'] is False  # machine blocked: the board refuses all
            assert (await drill.checkmachine())['logoff'] == 0

            # -- card checks; level 2 only with the maintenance flag (rule 13.3)
            assert await p.checkuser(GIULIA) == valid('Giulia', 1)
            assert await p.checkuser(MARIO) == valid('Mario', 2)
            assert await p.checkuser(ANNA) == valid('Anna', 2)
            assert await p.checkuser(LEO) == valid('Leo', 1)
            assert await p.checkuser(UNKNOWN) == {'request_ok': True, 'is_valid': False, 'name': 'Unknown',
                                                  'missing_auth': False, 'level': 0}
            assert await p.checkuser(UNKNOWN.upper()) == {'request_ok': True, 'is_valid': False, 'name': 'Unknown',
                                                          'missing_auth': False, 'level': 0}
            assert await p.checkuser(DISABLED) == REFUSED
            assert await p.checkuser(EXPIRED) == REFUSED
            assert await laser.checkuser(GIULIA) == REFUSED  # no authorization for this machine
            assert await blocked.checkuser(GIULIA) == REFUSED  # authorized, but the machine is blocked
            assert await blocked.checkuser(ANNA) == valid('Anna', 2)  # may use every machine, even blocked
            assert await blocked.checkuser(LEO) == valid('Leo', 1)
            assert await drill.checkuser(GIULIA) == valid('Giulia', 1)  # type without authorization
            assert await drill.checkuser(DISABLED) == REFUSED
            sync = await p.request({'action': 'synccache'})
            assert sync['request_ok'] is True and {'uid': GIULIA, 'level': 1} in sync['cards']
            assert all(c['uid'] not in (DISABLED, EXPIRED) for c in sync['cards'])
            await panel.boards.settle()
            unknown = await db.unknown_cards()
            assert [(r.uid, r.machine_id, r.attempts) for r in unknown] == [(UNKNOWN, PRINTER, 2)]

            # -- a use by a member: startuse, inuse, stopuse
            assert await p.startuse(GIULIA) == OK
            assert await p.inuse(GIULIA, 30) == {'request_ok': True, 'message': 'inUse'}
            assert await p.inuse(GIULIA, -1) == {'request_ok': False, 'message': 'inUse'}
            assert await p.inuse(GIULIA, 86_401) == {'request_ok': False, 'message': 'inUse'}
            assert await p.stopuse(GIULIA, 45) == {'request_ok': True, 'message': 'Duration 45 seconds'}
            (use,) = await db.uses(PRINTER)
            assert (use.card_uid, use.member_id, use.duration_s, use.unauthorized) == (GIULIA, 1, 45.0, False)
            assert use.end is not None and abs((use.end - use.start).total_seconds() - 45) < 1e-3

            # -- disabled member: accepted, recorded, flagged (rule 13.8)
            assert await p.startuse(DISABLED) == OK
            assert await p.inuse(DISABLED, 30) == {'request_ok': True, 'message': 'inUse'}
            assert await p.stopuse(DISABLED, 31) == {'request_ok': True, 'message': 'Duration 31 seconds'}
            last = (await db.uses(PRINTER))[-1]
            assert (last.card_uid, last.member_id, last.unauthorized, last.duration_s) == (DISABLED, 4, True, 31.0)

            # -- unknown card: told "Invalid card", but the use really happened (offline whitelist): recorded
            assert await drill.startuse(UNKNOWN) == INVALID_CARD
            assert await drill.inuse(UNKNOWN, 30) == INVALID_CARD
            assert await drill.stopuse(UNKNOWN, 40) == INVALID_CARD
            (use,) = await db.uses(DRILL)
            assert (use.card_uid, use.member_id, use.unauthorized, use.duration_s) == (UNKNOWN, None, True, 40.0)

            # -- stopuse out of range is clamped to 1 s; duration 0 on a free machine writes nothing
            assert (await drill.stopuse(GIULIA, 100_000))['request_ok'] is True
            assert (await drill.stopuse(GIULIA, 0))['request_ok'] is True
            assert [u.duration_s for u in await db.uses(DRILL)] == [40.0, 1.0]

            # -- maintenance: not due -> nothing stored; due after an hour counter passes the plan
            assert await laser.maintenance(MARIO) == OK
            assert await db.interventions(LASER) == []
            assert await laser.startuse(MARIO) == OK
            assert (await laser.stopuse(MARIO, 60))['request_ok'] is True
            state = await laser.checkmachine()
            assert state['maintenance'] is True and state['description'] == 'Clean lens'
            assert await laser.maintenance(UNKNOWN) == {'request_ok': False, 'message': 'Wrong user card'}
            assert await laser.maintenance(GIULIA) == {'request_ok': False, 'message': 'Not authorized'}
            assert await laser.maintenance(LEO) == {'request_ok': False, 'message': 'Not authorized'}
            assert await laser.maintenance(DISABLED) == {'request_ok': False, 'message': 'Not authorized'}
            assert await db.interventions(LASER) == []
            assert await laser.maintenance(MARIO) == OK
            (done,) = await db.interventions(LASER)
            assert (done.plan_id, done.member_id, done.replay) == (2, 2, False)
            assert (await laser.checkmachine())['maintenance'] is False

            # -- exactly one reply per reply-expecting request, none for alive, none anywhere else
            expected = {mid: b.stats.sent for mid, b in boards.items()}
            expected[NOWHERE] -= 1  # its alive
            await spy.expect_replies(expected)
            assert all(b.stats.timeouts == 0 for b in boards.values())
            assert panel.live.gateway.malformed == 0 and panel.live.gateway.errors == 0
            await db.assert_counters_match_uses()
            assert await db.usage_seconds(PRINTER) == 76.0
            assert panel.live.machines[PRINTER].usage_hours * 3600 == pytest.approx(76.0)
        finally:
            for b in boards.values():
                await b.close()


async def test_alive_is_recorded_and_never_answered(tmp_path: Path, mosquitto: Mosquitto, database_url: str) -> None:
    async with lab_panel(tmp_path, database_url, mosquitto.port) as panel, database(database_url) as db, \
            Spy(mosquitto.port) as spy, SimulatedBoard(PRINTER, HOST, mosquitto.port, serial='3c71bf4a9d10',
                                                       ip='192.168.10.37') as board:
        await board.alive(heap=183204)
        await board.request({'action': 'alive', 'version': 'x,0.6.0', 'ip': '10.0.0.9', 'heap': 10**15},
                            expect_reply=False)
        await board.request({'action': 'alive', 'version': 'old,0.5.0', 'ip': '10.0.0.8'}, expect_reply=False)
        assert (await board.checkmachine())['request_ok'] is True  # the alives were handled before
        await panel.boards.settle()  # alive gets no answer, so its row is written in the background, in order
        row = await db.board(PRINTER)
        assert (row.ip, row.firmware, row.serial, row.heap) == ('10.0.0.8', 'old,0.5.0', '', 0)
        assert panel.live.boards[PRINTER].firmware == 'old,0.5.0'
        assert panel.live.machines[PRINTER].online
        await spy.expect_replies({PRINTER: 1})
        assert panel.live.gateway.errors == 0


async def test_backend_exception_gets_a_failed_reply(tmp_path: Path, mosquitto: Mosquitto, sqlite_url: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError('database on fire')

    async def aboom(*_a: object, **_k: object) -> None:
        boom()

    async with lab_panel(tmp_path, sqlite_url, mosquitto.port) as panel, Spy(mosquitto.port) as spy, \
            SimulatedBoard(PRINTER, HOST, mosquitto.port) as board:
        monkeypatch.setattr(BoardService, '_checkmachine', boom)
        monkeypatch.setattr(BoardService, '_checkuser', boom)  # answered from memory: not a coroutine
        monkeypatch.setattr(BoardService, '_use', aboom)
        monkeypatch.setattr(BoardService, '_maintenance', aboom)
        monkeypatch.setattr(BoardService, '_alive', boom)
        assert await board.checkmachine() == {'request_ok': False, 'is_valid': False, 'maintenance': False,
                                              'allowed': False, 'name': '?', 'logoff': 1440, 'type': 0, 'grace': 2,
                                              'description': ''}
        assert await board.checkuser(GIULIA) == {'request_ok': False, 'is_valid': False, 'name': '',
                                                 'missing_auth': True, 'level': 0}
        fail = {'request_ok': False, 'message': 'BACKEND EXCEPTION'}
        assert await board.startuse(GIULIA) == fail
        assert await board.inuse(GIULIA, 30) == fail
        assert await board.request({'action': 'stopuse', 'uid': GIULIA, 'duration': 30}) == fail
        assert await board.maintenance(MARIO) == fail
        await board.alive()
        monkeypatch.setattr(BoardService, 'answer_now', boom)
        assert await board.request({'action': 'synccache'}) == {'request_ok': False, 'cards': []}
        await spy.expect_replies({PRINTER: 7})
        assert panel.live.gateway.errors == 8


async def test_maintenance_duplicate_within_ten_minutes_writes_nothing(tmp_path: Path, mosquitto: Mosquitto,
                                                                       database_url: str) -> None:
    async with lab_panel(tmp_path, database_url, mosquitto.port) as panel, database(database_url) as db, \
            SimulatedBoard(LASER, HOST, mosquitto.port) as board:
        await board.startuse(MARIO)
        await board.stopuse(MARIO, 60)
        assert (await board.checkmachine())['maintenance'] is True
        assert await board.maintenance(MARIO) == OK
        # the same message replayed (it was queued because its answer came late): acknowledged, nothing written
        assert await board.request({'action': 'maintenance', 'uid': MARIO, 'replay': True}) == OK
        assert len(await db.interventions(LASER)) == 1
        # the plan falls due again within ten minutes (an hour counter imported from elsewhere, say); a replay
        # of Mario's message still counts as the same intervention (rule 13.6)
        (first,) = await db.interventions(LASER)
        async with db.engine.begin() as conn:
            await conn.execute(sa.insert(Use.__table__).values(
                machine_id=LASER, member_id=2, card_uid=MARIO, start=first.at + timedelta(microseconds=1),
                last_seen=first.at + timedelta(seconds=61), end=first.at + timedelta(seconds=61), duration_s=60.0))
        await panel.boards.reload_rules()
        assert (await board.checkmachine())['maintenance'] is True
        assert await board.request({'action': 'maintenance', 'uid': MARIO, 'replay': True}) == OK
        assert len(await db.interventions(LASER)) == 1
        # ... and the panel does not pretend otherwise: memory agrees with the database
        assert (await board.checkmachine())['maintenance'] is True
        assert panel.live.machines[LASER].maintenance_due
        # another maintainer's intervention is not a duplicate of Mario's
        assert await board.maintenance(ANNA) == OK
        assert [r.member_id for r in await db.interventions(LASER)] == [2, 3]
        assert (await board.checkmachine())['maintenance'] is False


async def test_remote_start_and_stop_reach_the_board(tmp_path: Path, mosquitto: Mosquitto, sqlite_url: str) -> None:
    async with lab_panel(tmp_path, sqlite_url, mosquitto.port) as panel, \
            SimulatedBoard(PRINTER, HOST, mosquitto.port) as board, \
            SimulatedBoard(LASER, HOST, mosquitto.port) as other:
        assert panel.gateway is not None
        assert await panel.gateway.send_command(PRINTER, 'start', ANNA)
        assert await asyncio.wait_for(board.commands.get(), 2) == {'request_type': 'start', 'uid': ANNA}
        assert await panel.gateway.send_command(PRINTER, 'stop', ANNA)
        assert await asyncio.wait_for(board.commands.get(), 2) == {'request_type': 'stop', 'uid': ANNA}
        with pytest.raises(ValueError):
            await panel.gateway.send_command(PRINTER, 'reboot', ANNA)
        await asyncio.sleep(0.2)
        assert board.commands.empty() and other.commands.empty()
        assert board._replies.empty()  # commands never travel on the reply topic


async def test_stats_topic_gets_json(tmp_path: Path, mosquitto: Mosquitto, sqlite_url: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway_mod, 'STATS_EVERY_S', 0.1)
    async with Spy(mosquitto.port) as spy, \
            lab_panel(tmp_path, sqlite_url, mosquitto.port, client_id='backend-3') as panel, \
            SimulatedBoard(PRINTER, HOST, mosquitto.port) as board:
        await board.checkuser(GIULIA)
        await wait_for(lambda: any(s.topic == 'stats/backend-3' and s.json()['Sent'] >= 1 for s in spy.seen))
        stats = [s.json() for s in spy.seen if s.topic == 'stats/backend-3'][-1]
        assert stats['Connected'] is True
        assert stats['Received'] >= 1 and stats['Sent'] >= 1
        assert isinstance(stats['Backend host'], str) and stats['Backend host']
        assert not any(s.retain for s in spy.seen)
        # last-seen times are saved along with the stats
        await wait_for(lambda: not panel.boards._seen_dirty)


async def test_replies_fit_the_board_buffer(tmp_path: Path, mosquitto: Mosquitto, database_url: str) -> None:
    async with lab_panel(tmp_path, database_url, mosquitto.port), Spy(mosquitto.port) as spy, \
            SimulatedBoard(LONG, HOST, mosquitto.port) as board:
        state = await board.checkmachine()
        assert state['name'] == LONG_NAME[:16] and state['maintenance'] is True
        assert state['description'] == LONG_LCD[:16]
        assert (await board.checkuser(LONG_NAMED))['name'] == 'Maximiliana Wilh'
        sync = await board.request({'action': 'synccache'})
        assert sync['request_ok'] is True and sync['cards']
        await spy.expect_replies({LONG: 3})
        for seen in spy.replies():
            assert len(seen.payload) + len(seen.topic) <= MAX_REPLY, seen
            json.loads(seen.payload)
