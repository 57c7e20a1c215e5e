"""Use sessions from startuse / inuse / stopuse, with the replays boards make (spec 5.4-5.6, 8, rules 13.4-13.5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fabpanel.core.uses import (
    ClosedUse,
    CloseOpen,
    InsertClosed,
    MachineUses,
    OpenNew,
    OpenUse,
    TouchOpen,
    in_use,
    start_use,
    stop_use,
    valid_duration,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
A, B = '0a1b2c3d', '11223344'


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def opened(uid: str = A, start: float = 0, last_seen: float | None = None, member_id: int | None = 1) -> MachineUses:
    return start_use(MachineUses(), uid=uid, member_id=member_id, now=at(start)).state if last_seen is None else \
        MachineUses(open=OpenUse(card_uid=uid, member_id=member_id, start=at(start), last_seen=at(last_seen)),
                    last_start={uid: at(start)})


# ---- startuse (rule 13.4) -------------------------------------------------------------------------------------------
def test_start_on_a_free_machine_opens_a_use_dated_at_arrival() -> None:
    out = start_use(MachineUses(), uid=A, member_id=1, now=at(0), replay=True)
    assert out.effects == (OpenNew(use=OpenUse(card_uid=A, member_id=1, start=at(0), last_seen=at(0), replay=True)),)
    assert out.state.open is not None and out.state.open.start == at(0)
    assert not out.duplicate and out.closed == []


def test_start_again_by_the_same_card_is_a_duplicate() -> None:
    state = opened(A, 0)
    out = start_use(state, uid=A, member_id=1, now=at(5), replay=True)
    assert out.duplicate
    assert out.effects == (TouchOpen(last_seen=at(5)),)
    assert out.state.open.start == at(0) and out.state.open.last_seen == at(5)
    assert out.closed == []


def test_a_late_duplicate_never_moves_last_seen_back() -> None:
    state = opened(A, 0, last_seen=100)
    out = start_use(state, uid=A, member_id=1, now=at(50))
    assert out.state.open.last_seen == at(100)


def test_start_by_another_card_closes_the_open_use_at_its_last_sign_of_life() -> None:
    state = opened(A, 0, last_seen=300)
    out = start_use(state, uid=B, member_id=2, now=at(900))
    assert not out.duplicate
    assert out.closed == [ClosedUse(card_uid=A, member_id=1, start=at(0), end=at(300))]
    assert isinstance(out.effects[0], CloseOpen) and isinstance(out.effects[1], OpenNew)
    assert out.state.open.card_uid == B and out.state.open.start == at(900)
    assert out.state.recent[-1].end == at(300)


def test_unauthorized_start_is_kept_flagged() -> None:
    out = start_use(MachineUses(), uid=A, member_id=None, now=at(0), unauthorized=True)
    assert out.state.open.unauthorized
    closed = stop_use(out.state, uid=A, member_id=None, duration=60, now=at(60)).closed
    assert closed[0].unauthorized and closed[0].duration_s == 60


# ---- inuse ----------------------------------------------------------------------------------------------------------
def test_inuse_refreshes_the_open_use() -> None:
    out = in_use(opened(A, 0), uid=A, member_id=1, duration=30, now=at(30))
    assert out.effects == (TouchOpen(last_seen=at(30)),)
    assert out.state.open.start == at(0)


def test_inuse_after_a_missed_start_opens_the_use_back_dated() -> None:
    out = in_use(MachineUses(), uid=A, member_id=1, duration=600, now=at(1000))
    assert out.state.open.start == at(400) and out.state.open.last_seen == at(1000)
    assert [type(e) for e in out.effects] == [OpenNew]


def test_inuse_back_dating_never_overlaps_the_previous_use() -> None:
    state = stop_use(opened(B, 0), uid=B, member_id=2, duration=500, now=at(500)).state
    out = in_use(state, uid=A, member_id=1, duration=300, now=at(600))
    assert out.state.open.start == at(500)


def test_inuse_by_another_card_closes_the_stale_use() -> None:
    out = in_use(opened(A, 0, last_seen=120), uid=B, member_id=2, duration=30, now=at(400))
    assert out.closed == [ClosedUse(card_uid=A, member_id=1, start=at(0), end=at(120))]
    assert out.state.open.card_uid == B and out.state.open.start == at(370)


def test_duration_range() -> None:
    assert valid_duration(0) and valid_duration(86_400)
    assert not valid_duration(-1) and not valid_duration(86_401) and not valid_duration(None)


# ---- stopuse (rule 13.5) --------------------------------------------------------------------------------------------
def test_stop_closes_with_the_board_measured_duration() -> None:
    out = stop_use(opened(A, 0), uid=A, member_id=1, duration=100, now=at(100))
    assert out.closed == [ClosedUse(card_uid=A, member_id=1, start=at(0), end=at(100))]
    assert out.state.open is None


def test_replayed_stop_ends_at_start_plus_duration() -> None:
    # the stop waited in the board's queue for an hour: the use still ends when the member logged out
    out = stop_use(opened(A, 0), uid=A, member_id=1, duration=100, now=at(3700), replay=True)
    assert out.closed[0].start == at(0) and out.closed[0].end == at(100) and out.closed[0].replay


def test_a_stop_never_ends_in_the_future() -> None:
    # startuse reached us late (it was replayed), so its start is late: end = arrival, start = end - duration
    out = stop_use(opened(A, 50), uid=A, member_id=1, duration=100, now=at(100))
    assert out.closed[0].end == at(100) and out.closed[0].start == at(0)


def test_duplicate_stop_writes_nothing() -> None:
    state = stop_use(opened(A, 0), uid=A, member_id=1, duration=100, now=at(100)).state
    for later in (101, 160, 7200):
        out = stop_use(state, uid=A, member_id=1, duration=100, now=at(later), replay=True)
        assert out.duplicate and out.effects == () and out.state == state


def test_duplicate_stop_tolerates_two_seconds() -> None:
    state = stop_use(opened(A, 0), uid=A, member_id=1, duration=100, now=at(100)).state
    assert stop_use(state, uid=A, member_id=1, duration=102, now=at(110)).duplicate
    out = stop_use(state, uid=A, member_id=1, duration=103, now=at(110))
    assert not out.duplicate and len(out.closed) == 1


def test_stop_of_an_earlier_session_after_a_new_start_is_not_a_duplicate_of_it() -> None:
    state = stop_use(opened(A, 0), uid=A, member_id=1, duration=100, now=at(100)).state
    state = start_use(state, uid=A, member_id=1, now=at(1000)).state
    out = stop_use(state, uid=A, member_id=1, duration=100, now=at(1100))
    assert out.closed == [ClosedUse(card_uid=A, member_id=1, start=at(1000), end=at(1100))]
    again = stop_use(out.state, uid=A, member_id=1, duration=100, now=at(1101), replay=True)
    assert again.duplicate and again.effects == ()


def test_stop_with_no_open_use_records_a_missed_start() -> None:
    out = stop_use(MachineUses(), uid=A, member_id=1, duration=60, now=at(500))
    assert out.effects == (InsertClosed(use=ClosedUse(card_uid=A, member_id=1, start=at(440), end=at(500))),)
    assert not out.duplicate


def test_stop_with_duration_zero_on_a_free_machine_records_nothing() -> None:
    # the firmware's remote-stop quirk (spec 6)
    out = stop_use(MachineUses(), uid=A, member_id=1, duration=0, now=at(500))
    assert out.effects == () and out.duplicate


def test_stop_with_duration_zero_closes_a_use_just_started() -> None:
    out = stop_use(opened(A, 0), uid=A, member_id=1, duration=0, now=at(1))
    assert out.closed[0].duration_s == 0 and out.state.open is None


def test_nonsense_duration_becomes_one_second() -> None:
    for d in (-5, 86_401, None):
        out = stop_use(MachineUses(), uid=A, member_id=1, duration=d, now=at(10))
        assert out.closed[0].duration_s == 1


def test_stop_by_another_card_closes_the_stale_use_and_records_its_own() -> None:
    out = stop_use(opened(A, 0, last_seen=200), uid=B, member_id=2, duration=60, now=at(500))
    assert out.closed == [ClosedUse(card_uid=A, member_id=1, start=at(0), end=at(200)),
                          ClosedUse(card_uid=B, member_id=2, start=at(440), end=at(500))]
    assert not out.duplicate


def test_duplicate_stop_of_another_card_still_closes_the_stale_use() -> None:
    state = stop_use(opened(B, 0), uid=B, member_id=2, duration=60, now=at(60)).state
    state = start_use(state, uid=A, member_id=1, now=at(100)).state
    out = stop_use(state, uid=B, member_id=2, duration=60, now=at(150), replay=True)
    assert [c.card_uid for c in out.closed] == [A]  # A's use ended; B's stop was already applied


def test_recent_closed_uses_are_bounded() -> None:
    state = MachineUses()
    for i in range(50):
        state = start_use(state, uid=A, member_id=1, now=at(i * 100)).state
        state = stop_use(state, uid=A, member_id=1, duration=10 + i, now=at(i * 100 + 10 + i)).state
    assert 0 < len(state.recent) <= 16
    assert state.recent[-1].duration_s == 59
