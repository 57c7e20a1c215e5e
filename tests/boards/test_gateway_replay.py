"""Replayed and duplicated board messages end to end (spec section 8, rules 13.4, 13.5): SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fabpanel.boards.simulator import SimulatedBoard

from ..lab import ANNA, DISABLED, DRILL, GIULIA, MARIO, PRINTER, UNKNOWN
from ..support import Mosquitto
from .harness import Spy, database, lab_panel

HOST = '127.0.0.1'
OK = {'request_ok': True, 'message': ''}


def stop(uid: str, duration: int, replay: bool = True) -> dict[str, object]:
    return {'action': 'stopuse', 'uid': uid, 'duration': duration, **({'replay': True} if replay else {})}


def start(uid: str, replay: bool = True) -> dict[str, object]:
    return {'action': 'startuse', 'uid': uid, **({'replay': True} if replay else {})}


async def test_duplicated_start_and_stop_make_one_use(tmp_path: Path, mosquitto: Mosquitto, database_url: str) -> None:
    async with lab_panel(tmp_path, database_url, mosquitto.port) as panel, database(database_url) as db, \
            SimulatedBoard(PRINTER, HOST, mosquitto.port) as board:
        assert await board.startuse(GIULIA) == OK
        assert await board.request(start(GIULIA)) == OK  # live, then replayed (its answer came late)
        assert await board.request(start(GIULIA)) == OK  # queued twice
        assert (await board.inuse(GIULIA, 30))['request_ok'] is True
        (use,) = await db.uses(PRINTER)
        assert use.end is None and not use.replay
        assert (await board.stopuse(GIULIA, 95))['message'] == 'Duration 95 seconds'
        for _ in range(3):  # replayed again and again: acknowledged, nothing written
            assert await board.request(stop(GIULIA, 95)) == {'request_ok': True, 'message': 'Duration 95 seconds'}
        assert await board.request(stop(GIULIA, 94)) == {'request_ok': True, 'message': 'Duration 94 seconds'}
        (use,) = await db.uses(PRINTER)
        assert use.duration_s == 95.0 and use.end is not None and use.card_uid == GIULIA and use.member_id == 1
        assert await db.usage_seconds(PRINTER) == 95.0  # the hour counter moved once
        assert panel.live.machines[PRINTER].usage_hours * 3600 == 95.0
        await db.assert_counters_match_uses()


async def test_session_buffered_offline_is_replayed_in_order(tmp_path: Path, mosquitto: Mosquitto,
                                                             database_url: str) -> None:
    async with lab_panel(tmp_path, database_url, mosquitto.port), database(database_url) as db, \
            Spy(mosquitto.port) as spy, SimulatedBoard(PRINTER, HOST, mosquitto.port) as board:
        # the board was offline: it let Giulia in from its cache and queued her messages (spec 8); one failed
        # publish queued the start twice, and a replayed stop went unanswered and was sent again
        board.queue.extend([start(GIULIA, replay=False), start(GIULIA, replay=False),
                            stop(GIULIA, 1800, replay=False), stop(GIULIA, 1800, replay=False)])
        before = datetime.now(UTC)
        assert await board.replay_queue()
        (use,) = await db.uses(PRINTER)
        assert use.replay and use.duration_s == 1800.0
        # the stop arrived moments after the start: the use ends at its arrival, never in the future
        assert before <= use.end <= datetime.now(UTC)
        assert use.end - use.start == timedelta(seconds=1800)
        await spy.expect_replies({PRINTER: 4})
        await db.assert_counters_match_uses()


async def test_stop_replay_never_creates_phantom_uses(tmp_path: Path, mosquitto: Mosquitto,
                                                      database_url: str) -> None:
    async with lab_panel(tmp_path, database_url, mosquitto.port), database(database_url) as db, \
            SimulatedBoard(PRINTER, HOST, mosquitto.port) as board, \
            SimulatedBoard(DRILL, HOST, mosquitto.port) as drill:
        # a missed startuse: the stop creates the use once; its replays create nothing
        assert (await board.stopuse(MARIO, 120))['request_ok'] is True
        for _ in range(2):
            assert (await board.request(stop(MARIO, 120)))['request_ok'] is True
        assert [(u.card_uid, u.duration_s) for u in await db.uses(PRINTER)] == [(MARIO, 120.0)]
        # the remote-stop quirk: duration 0 on a free machine, live or replayed
        assert (await board.stopuse(MARIO, 0))['request_ok'] is True
        assert (await board.request(stop(MARIO, 0)))['request_ok'] is True
        # a new session by the same card with the same duration is not mistaken for a replay
        await board.startuse(MARIO)
        assert (await board.stopuse(MARIO, 120))['request_ok'] is True
        assert (await board.request(stop(MARIO, 120)))['request_ok'] is True
        assert [(u.card_uid, u.duration_s) for u in await db.uses(PRINTER)] == [(MARIO, 120.0), (MARIO, 120.0)]
        # another card's start closes a forgotten use at its last sign of life, then the replays of both
        await drill.startuse(GIULIA)
        await drill.inuse(GIULIA, 30)
        await drill.startuse(ANNA)
        assert (await drill.request(start(GIULIA)))['request_ok'] is True  # a very late replay: Giulia again
        rows = await db.uses(DRILL)
        assert [(u.card_uid, u.end is None) for u in rows] == [(GIULIA, False), (ANNA, False), (GIULIA, True)]
        assert rows[0].end == rows[0].last_seen
        await db.assert_counters_match_uses()
        assert await db.usage_seconds(PRINTER) == 240.0


async def test_refused_cards_are_recorded_flagged(tmp_path: Path, mosquitto: Mosquitto, database_url: str) -> None:
    async with lab_panel(tmp_path, database_url, mosquitto.port) as panel, database(database_url) as db, \
            SimulatedBoard(PRINTER, HOST, mosquitto.port) as board:
        await board.startuse(DISABLED)
        assert panel.live.machines[PRINTER].unauthorized_use
        assert await board.request(start(DISABLED)) == OK  # duplicate keeps the flag and the use
        await board.stopuse(DISABLED, 50)
        await board.startuse(UNKNOWN)
        await board.stopuse(UNKNOWN, 20)
        await board.startuse(GIULIA)
        assert not panel.live.machines[PRINTER].unauthorized_use
        await board.stopuse(GIULIA, 10)
        rows = await db.uses(PRINTER)
        assert [(u.card_uid, u.member_id, u.unauthorized, u.duration_s) for u in rows] == [
            (DISABLED, 4, True, 50.0), (UNKNOWN, None, True, 20.0), (GIULIA, 1, False, 10.0)]


async def test_random_days_with_duplicates_give_the_clean_uses(tmp_path: Path, mosquitto: Mosquitto,
                                                               database_url: str) -> None:
    """A small end-to-end variant of tests/core/test_uses_property.py, through the broker and the database."""
    rnd = random.Random(20260301)
    cards = {GIULIA: 1, MARIO: 2, DISABLED: 4, UNKNOWN: None}
    expected: list[tuple[str, int | None, float]] = []
    async with lab_panel(tmp_path, database_url, mosquitto.port), database(database_url) as db, \
            SimulatedBoard(PRINTER, HOST, mosquitto.port) as board:
        for _ in range(12):
            uid = rnd.choice(sorted(cards))
            duration = rnd.choice([0, 1, 29, 30, 95, 3600, 86_400])
            for copy in range(rnd.randint(1, 3)):
                await board.request(start(uid, replay=copy > 0))
            for k in range(rnd.randint(0, 2)):
                await board.inuse(uid, min(duration, 30 * (k + 1)))
            for copy in range(rnd.randint(1, 4)):
                await board.request(stop(uid, duration, replay=copy > 0))
            expected.append((uid, cards[uid], float(duration)))
        rows = await db.uses(PRINTER)
        assert [(u.card_uid, u.member_id, u.duration_s) for u in rows] == expected
        assert all(u.end is not None for u in rows)
        assert await db.usage_seconds(PRINTER) == sum(d for _, _, d in expected)
