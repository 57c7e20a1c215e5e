"""Malformed input gets no reply, is counted and logged (rate-limited), and the gateway keeps serving (rule 13.1)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiomqtt
import pytest

from fabpanel.boards.simulator import SimulatedBoard

from ..conftest import wait_for
from ..lab import GIULIA, PRINTER
from ..support import Mosquitto
from .harness import Spy, database, lab_panel

HOST = '127.0.0.1'
VALID = {'request_ok': True, 'is_valid': True, 'name': 'Giulia', 'missing_auth': False, 'level': 1}

BAD_PAYLOADS: list[bytes] = [
    b'{"action": "checkuser", "uid": ',  # bad JSON
    b'',
    b'\xff\xfe{"action": "checkmachine"}',  # not UTF-8
    b'[1, 2, 3]', b'"checkmachine"', b'42', b'null',  # JSON, not an object
    b'{"action": 5}', b'{"action": "checkuser", "uid": 12345678}',  # wrong types
    b'{"action": "inuse", "uid": "0a1b2c3d", "duration": "abc"}',
    b'{"action": "inuse", "uid": "0a1b2c3d", "duration": "--5"}',
    '{"action": "stopuse", "uid": "0a1b2c3d", "duration": "²"}'.encode(),
    b'{"action": "stopuse", "uid": "0a1b2c3d", "duration": true}',
    b'{"action": "startuse", "uid": "0a1b2c3d", "replay": "yes"}',
    b'{"action": "alive", "version": "x", "heap": "lots"}',
    b'{"uid": "0a1b2c3d"}', b'{"action": "checkuser"}', b'{"action": "stopuse", "uid": "0a1b2c3d"}',  # missing
    b'{"action": "reboot"}',  # unknown action
    b'{"action": "checkuser", "uid": "0a1b2c3d\\u0000"}',  # PostgreSQL would refuse it
    b'{"action": "startuse", "uid": "not a card"}',
    b'{"action": "checkmachine", "pad": "' + b'x' * 5000 + b'"}',  # huge
    b'{"action": "checkmachine", "pad": "' + b'x' * 1_000_000 + b'"}',
]
BAD_TOPICS = ['machine/abc', 'machine/0', 'machine/65536', 'machine/', 'machine/1.5', 'machine/-1', 'machine/１']


async def test_malformed_payloads_get_no_reply(tmp_path: Path, mosquitto: Mosquitto, database_url: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger='fabpanel.boards.gateway')
    async with lab_panel(tmp_path, database_url, mosquitto.port) as panel, database(database_url) as db, \
            Spy(mosquitto.port) as spy, SimulatedBoard(PRINTER, HOST, mosquitto.port) as board, \
            SimulatedBoard(99, HOST, mosquitto.port) as stranger:
        health = panel.live.gateway
        for i, payload in enumerate(BAD_PAYLOADS, 1):
            await board.publish_raw(payload)
            # same machine, same worker: had the bad message been answered, this answer would be the wrong one
            assert await board.checkuser(GIULIA) == VALID, payload[:60]
            await wait_for(lambda i=i: health.malformed == i)
        # an unknown machine's malformed message: silence too, not "Invalid machine ID"
        await stranger.publish_raw(b'{"action": "checkuser"}')
        assert (await stranger.checkmachine())['message'] == 'Invalid machine ID'
        await spy.expect_replies({PRINTER: len(BAD_PAYLOADS), 99: 1})
        assert health.malformed == len(BAD_PAYLOADS) + 1
        assert health.errors == 0
        assert await db.uses(PRINTER) == [] and await db.board(PRINTER) is None and await db.unknown_cards() == []
        # logged, but not once per message: a misbehaving board cannot flood the log
        drops = [r for r in caplog.records if 'malformed message' in r.getMessage()]
        assert 1 <= len(drops) <= 2
        assert '0a1b2c3d' not in caplog.text  # card ids are never logged in full


async def test_topics_outside_the_scheme_get_no_reply(tmp_path: Path, mosquitto: Mosquitto, sqlite_url: str) -> None:
    async with lab_panel(tmp_path, sqlite_url, mosquitto.port) as panel, Spy(mosquitto.port) as spy, \
            SimulatedBoard(PRINTER, HOST, mosquitto.port) as board:
        health = panel.live.gateway
        request = json.dumps({'action': 'checkuser', 'uid': GIULIA})
        for n, topic in enumerate(BAD_TOPICS, 1):
            await board.publish_raw(request, topic=topic)
            await wait_for(lambda n=n: health.malformed == n)
            assert await board.checkuser(GIULIA) == VALID
        # deeper topics are not even delivered to the panel; its own request topic is never read back
        for topic in ('machine/1/extra', 'machine/1/request', 'other/1', 'machine1', 'Machine/1'):
            await board.publish_raw(request, topic=topic)
        assert await board.checkuser(GIULIA) == VALID
        await spy.expect_replies({PRINTER: len(BAD_TOPICS) + 1})
        assert health.malformed == len(BAD_TOPICS)
        assert health.processed == len(BAD_TOPICS) + 1


async def test_a_retained_message_is_ignored(tmp_path: Path, mosquitto: Mosquitto, database_url: str) -> None:
    async with aiomqtt.Client(HOST, mosquitto.port) as rogue:
        await rogue.publish(f'machine/{PRINTER}', json.dumps({'action': 'startuse', 'uid': GIULIA}), retain=True)
        await rogue.publish('machine/abc', b'garbage', retain=True)
    async with lab_panel(tmp_path, database_url, mosquitto.port) as panel, database(database_url) as db, \
            Spy(mosquitto.port) as spy, SimulatedBoard(PRINTER, HOST, mosquitto.port) as board:
        await wait_for(lambda: panel.live.gateway.malformed == 2)
        assert await board.checkuser(GIULIA) == VALID
        await spy.expect_replies({PRINTER: 1})
        assert await db.uses(PRINTER) == []
        assert panel.live.machines[PRINTER].user_first_name == ''
