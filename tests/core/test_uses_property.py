"""Property: a board's sessions, with their bufferable messages duplicated or replayed as spec section 8 allows,
give the same uses as the clean sequence (rules 13.4 and 13.5).

Boards send no timestamps, so a message that waited in the board's queue is dated at its arrival. Two cases:
* duplicates only (every message's first copy on time; copies arrive before the board's next message): the uses
  are exactly those of the clean run, to the microsecond;
* first copies delayed too (the board was offline and replayed later, dropping its heartbeats meanwhile): the
  same uses, cards and durations, each ending between its clean end and the arrival of its stop, never later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from fabpanel.core.uses import (
    CloseOpen,
    Effect,
    InsertClosed,
    MachineUses,
    OpenNew,
    TouchOpen,
    in_use,
    start_use,
    stop_use,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
CARDS = {'0a1b2c3d': 1, '11223344': 2, 'f00dcafe': None}  # the last one is unknown: allowed offline, flagged


@dataclass(frozen=True)
class Msg:
    kind: str  # start | inuse | stop
    uid: str
    board_time: int  # seconds after T0, on the board's clock (= arrival when nothing is delayed)
    duration: int | None = None
    seq: int = 0  # position in the day: two messages with the same content are still two messages


@dataclass(frozen=True)
class Arrival:
    msg: Msg
    at: int
    replay: bool


@st.composite
def clean_day(draw: st.DrawFn) -> list[Msg]:
    """1-4 sessions on one machine: startuse, a heartbeat every 30 s, stopuse with the board-measured duration."""
    msgs: list[Msg] = []
    t = 0
    for _ in range(draw(st.integers(1, 4))):
        uid = draw(st.sampled_from(sorted(CARDS)))
        t += draw(st.integers(0, 7200))
        start = t
        msgs.append(Msg('start', uid, start))
        for _ in range(draw(st.integers(0, 5))):
            t += 30
            msgs.append(Msg('inuse', uid, t, t - start))
        t += draw(st.integers(0, 29))
        msgs.append(Msg('stop', uid, t, t - start))
    return [Msg(m.kind, m.uid, m.board_time, m.duration, seq) for seq, m in enumerate(msgs)]


@st.composite
def delivered(draw: st.DrawFn, msgs: list[Msg], delays: bool) -> list[Arrival]:
    """What reaches the backend: bufferable messages 1-4 times, in order, heartbeats only when live."""
    out: list[Arrival] = []
    cursor = 0
    for i, m in enumerate(msgs):
        next_time = msgs[i + 1].board_time if i + 1 < len(msgs) else m.board_time + 3600
        if m.kind == 'inuse':
            # not bufferable: sent live only, and only when the queue in front of it has been emptied
            if cursor <= m.board_time and draw(st.booleans()):
                out.append(Arrival(m, m.board_time, False))
                cursor = m.board_time
            continue
        first = max(cursor, m.board_time)
        delayed = delays and draw(st.booleans())
        if delayed:
            first += draw(st.integers(1, 4 * 3600))  # it waited in the board's queue
        copies = [first]
        for _ in range(draw(st.integers(0, 3))):
            # unanswered live copy queued anyway, queued twice, or re-sent during a replay round
            last = copies[-1]
            upper = max(last, next_time) if not delays else last + 600
            copies.append(draw(st.integers(last, upper)))
        for j, at in enumerate(copies):
            out.append(Arrival(m, at, replay=delayed or j > 0))
        cursor = copies[-1]
    return out


class Ledger:
    """The use table as the effects write it, with the machine's hour counter."""

    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []
        self.seconds = 0.0
        self.opened = 0

    def _open(self) -> list[dict[str, object]]:
        return [r for r in self.rows if r['end'] is None]

    def apply(self, effects: tuple[Effect, ...]) -> None:
        for e in effects:
            if isinstance(e, TouchOpen):
                (row,) = self._open()
                row['last_seen'] = e.last_seen
            elif isinstance(e, OpenNew):
                assert self._open() == [], 'a second open use on one machine'
                self.opened += 1
                self.rows.append({'uid': e.use.card_uid, 'member': e.use.member_id, 'start': e.use.start,
                                  'end': None, 'last_seen': e.use.last_seen, 'unauthorized': e.use.unauthorized})
            elif isinstance(e, CloseOpen):
                (row,) = self._open()
                row.update(start=e.use.start, end=e.use.end, member=e.use.member_id)
                self.seconds += e.use.duration_s
            elif isinstance(e, InsertClosed):
                self.rows.append({'uid': e.use.card_uid, 'member': e.use.member_id, 'start': e.use.start,
                                  'end': e.use.end, 'last_seen': e.use.end, 'unauthorized': e.use.unauthorized})
                self.seconds += e.use.duration_s

    def closed(self) -> list[tuple[str, int | None, datetime, datetime, bool]]:
        return [(r['uid'], r['member'], r['start'], r['end'], r['unauthorized']) for r in self.rows]  # type: ignore


def run(arrivals: list[Arrival]) -> tuple[Ledger, MachineUses]:
    state, ledger = MachineUses(), Ledger()
    for a in arrivals:
        m, now = a.msg, T0 + timedelta(seconds=a.at)
        member = CARDS[m.uid]
        kw = {'uid': m.uid, 'member_id': member, 'now': now, 'unauthorized': member is None}
        if m.kind == 'start':
            out = start_use(state, replay=a.replay, **kw)
        elif m.kind == 'inuse':
            out = in_use(state, duration=m.duration, **kw)
        else:
            out = stop_use(state, duration=m.duration, replay=a.replay, **kw)
        for c in out.closed:
            assert c.end <= now, 'a use ending in the future'
        ledger.apply(out.effects)
        state = out.state
    return ledger, state


def clean_run(msgs: list[Msg]) -> Ledger:
    ledger, state = run([Arrival(m, m.board_time, False) for m in msgs])
    assert state.open is None
    assert ledger.opened == len([m for m in msgs if m.kind == 'start'])
    return ledger


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_duplicates_give_exactly_the_clean_uses(data: st.DataObject) -> None:
    msgs = data.draw(clean_day())
    arrivals = data.draw(delivered(msgs, delays=False))
    clean = clean_run(msgs)
    got, state = run(arrivals)
    assert state.open is None
    assert got.closed() == clean.closed()
    assert got.opened == clean.opened  # no phantom use, not even briefly
    assert got.seconds == clean.seconds  # the hour counter moves only with the uses


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_replays_after_offline_give_the_same_uses(data: st.DataObject) -> None:
    msgs = data.draw(clean_day())
    arrivals = data.draw(delivered(msgs, delays=True))
    clean = clean_run(msgs)
    got, state = run(arrivals)
    assert state.open is None
    assert got.opened == clean.opened
    assert len(got.closed()) == len(clean.closed())
    stops = [m for m in msgs if m.kind == 'stop']
    first_stop_arrival = {}
    for a in arrivals:
        first_stop_arrival.setdefault(a.msg, a.at)
    for (uid, member, start, end, flagged), (c_uid, c_member, c_start, c_end, c_flagged), stop in zip(
            got.closed(), clean.closed(), stops, strict=True):
        assert (uid, member, flagged) == (c_uid, c_member, c_flagged)
        assert end - start == c_end - c_start  # the board-measured duration, exactly
        assert c_end <= end <= T0 + timedelta(seconds=first_stop_arrival[stop])
    assert abs(got.seconds - clean.seconds) < 1e-6
