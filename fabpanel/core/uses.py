"""Use-session reconciliation: turn a board's startuse / inuse / stopuse stream into true usage records.

Boards send no timestamps and no session ids, and they replay buffered messages (spec section 8), so the
same message can arrive twice, late, or after a restart. These functions decide, from what is known about
the machine's open use and its recently closed ones, what to write. Applying the same message twice, or the
replayed copy of one already applied, writes nothing more (spec section 13, rules 4 and 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

MAX_DURATION = 86_400
DUPLICATE_TOLERANCE_S = 2.0
RECENT_KEPT = 16


@dataclass(kw_only=True, slots=True, frozen=True)
class OpenUse:
    card_uid: str
    member_id: int | None
    start: datetime
    last_seen: datetime
    replay: bool = False
    unauthorized: bool = False


@dataclass(kw_only=True, slots=True, frozen=True)
class ClosedUse:
    card_uid: str
    member_id: int | None
    start: datetime
    end: datetime
    replay: bool = False
    unauthorized: bool = False

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(kw_only=True, slots=True, frozen=True)
class MachineUses:
    """What the gateway keeps per machine between messages (rebuilt from the database at start)."""

    open: OpenUse | None = None
    recent: tuple[ClosedUse, ...] = ()  # newest last, for duplicate detection
    last_start: dict[str, datetime] = field(default_factory=dict)  # card -> when its last startuse arrived


# Effects to write, in order, in one transaction.
@dataclass(kw_only=True, slots=True, frozen=True)
class CloseOpen:
    """Close the machine's open use with these (possibly corrected) times."""

    use: ClosedUse


@dataclass(kw_only=True, slots=True, frozen=True)
class OpenNew:
    use: OpenUse


@dataclass(kw_only=True, slots=True, frozen=True)
class TouchOpen:
    last_seen: datetime


@dataclass(kw_only=True, slots=True, frozen=True)
class InsertClosed:
    use: ClosedUse


Effect = CloseOpen | OpenNew | TouchOpen | InsertClosed


@dataclass(kw_only=True, slots=True, frozen=True)
class Outcome:
    state: MachineUses
    effects: tuple[Effect, ...] = ()
    duplicate: bool = False

    @property
    def closed(self) -> list[ClosedUse]:
        return [e.use for e in self.effects if isinstance(e, CloseOpen | InsertClosed)]


def _remember(state: MachineUses, closed: ClosedUse) -> tuple[ClosedUse, ...]:
    return (*state.recent, closed)[-RECENT_KEPT:]


def _close_stale(state: MachineUses) -> tuple[MachineUses, tuple[Effect, ...]]:
    """Close the open use at its last sign of life: another card's message says that session is over."""
    if state.open is None:
        return state, ()
    o = state.open
    closed = ClosedUse(card_uid=o.card_uid, member_id=o.member_id, start=o.start, end=o.last_seen, replay=o.replay,
                       unauthorized=o.unauthorized)
    return replace(state, open=None, recent=_remember(state, closed)), (CloseOpen(use=closed),)


def start_use(state: MachineUses, *, uid: str, member_id: int | None, now: datetime, replay: bool = False,
              unauthorized: bool = False) -> Outcome:
    if state.open is not None and state.open.card_uid == uid:
        touched = replace(state.open, last_seen=max(state.open.last_seen, now))
        return Outcome(state=replace(state, open=touched), effects=(TouchOpen(last_seen=touched.last_seen),),
                       duplicate=True)
    state, effects = _close_stale(state)
    new = OpenUse(card_uid=uid, member_id=member_id, start=now, last_seen=now, replay=replay,
                  unauthorized=unauthorized)
    last_start = {**state.last_start, uid: now}
    return Outcome(state=replace(state, open=new, last_start=last_start), effects=(*effects, OpenNew(use=new)))


def valid_duration(duration: int | None) -> bool:
    return duration is not None and 0 <= duration <= MAX_DURATION


def in_use(state: MachineUses, *, uid: str, member_id: int | None, duration: int, now: datetime,
           unauthorized: bool = False) -> Outcome:
    """A heartbeat; `duration` must already be valid. Opens the use when its startuse was missed."""
    if state.open is not None and state.open.card_uid == uid:
        touched = replace(state.open, last_seen=max(state.open.last_seen, now))
        return Outcome(state=replace(state, open=touched), effects=(TouchOpen(last_seen=touched.last_seen),))
    state, effects = _close_stale(state)
    start = now - timedelta(seconds=duration)
    if state.recent and state.recent[-1].end > start:
        start = max(start, state.recent[-1].end)  # never overlap the session that just ended on this machine
    new = OpenUse(card_uid=uid, member_id=member_id, start=start, last_seen=now, unauthorized=unauthorized)
    last_start = {**state.last_start, uid: start}
    return Outcome(state=replace(state, open=new, last_start=last_start), effects=(*effects, OpenNew(use=new)))


def _is_duplicate_stop(state: MachineUses, uid: str, duration: int) -> bool:
    since = state.last_start.get(uid)
    for c in reversed(state.recent):
        if c.card_uid != uid or abs(c.duration_s - duration) > DUPLICATE_TOLERANCE_S:
            continue
        if since is None or c.end >= since:
            return True
    return False


def stop_use(state: MachineUses, *, uid: str, member_id: int | None, duration: int | None, now: datetime,
             replay: bool = False, unauthorized: bool = False) -> Outcome:
    d = duration if valid_duration(duration) else 1  # FabOMatic's rule for nonsense durations
    assert d is not None
    o = state.open
    if o is not None and o.card_uid == uid:
        end = min(o.start + timedelta(seconds=d), now)
        closed = ClosedUse(card_uid=uid, member_id=o.member_id if o.member_id is not None else member_id,
                           start=end - timedelta(seconds=d), end=end, replay=o.replay or replay,
                           unauthorized=o.unauthorized)
        return Outcome(state=replace(state, open=None, recent=_remember(state, closed)),
                       effects=(CloseOpen(use=closed),))
    state, effects = _close_stale(state)
    if d == 0 or _is_duplicate_stop(state, uid, d):
        # a replayed stop of a session already closed, or the remote-stop quirk on a free machine
        return Outcome(state=state, effects=effects, duplicate=not effects)
    closed = ClosedUse(card_uid=uid, member_id=member_id, start=now - timedelta(seconds=d), end=now, replay=replay,
                       unauthorized=unauthorized)
    return Outcome(state=replace(state, recent=_remember(state, closed)),
                   effects=(*effects, InsertClosed(use=closed)))
