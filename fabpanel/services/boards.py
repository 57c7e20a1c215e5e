"""What the lab's boards ask, answered: card checks, machine state, uses, maintenance, announcements."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fabpanel.core import access, uses
from fabpanel.core.access import AccessRules, Verdict
from fabpanel.core.cards import mask_uid
from fabpanel.core.maintenance import PlanUsage, counts_for_plan, lcd_message
from fabpanel.core.protocol import INVALID_MACHINE, Action, BoardMessage, simple
from fabpanel.db import board_store, loaders
from fabpanel.db.writer import GroupWriter
from fabpanel.live.state import BoardInfo, LiveState, MachineLive

log = logging.getLogger(__name__)

MAINTENANCE_DUPLICATE_WINDOW = timedelta(minutes=10)
FLUSH_SLICE = 50  # machines' last-seen rows per write when flushing
Reply = dict[str, Any]


class BoardService:
    def __init__(self, engine: AsyncEngine, writer: GroupWriter, live: LiveState) -> None:
        self.engine = engine
        self.writer = writer
        self.live = live
        self.rules = AccessRules()
        self.uses: dict[int, uses.MachineUses] = {}
        self.plans: dict[int, list[PlanUsage]] = {}
        self._seen_dirty: dict[int, datetime] = {}
        self._touched: dict[int, datetime] = {}  # open uses' latest heartbeat, not yet written
        self._tasks: set[asyncio.Task[Any]] = set()
        # board writes per machine (uses, interventions): those in flight, and a count of those applied to memory;
        # a reload that overlaps one keeps that machine's memory, which is newer than what the reload read
        self._writing: dict[int, int] = {}
        self._written: dict[int, int] = {}

    # ---- loading -------------------------------------------------------------------------------------------
    async def load(self) -> None:
        """(Re)build everything kept in memory from the database."""
        written_before = dict(self._written)
        async with self.engine.connect() as conn:
            rules = await loaders.load_access_rules(conn)
            loaded_uses = await loaders.load_machine_uses(conn)
            loaded_plans = await loaders.load_plans(conn)
            machine_rows = await loaders.load_machine_rows(conn)
            board_rows = await loaders.load_boards(conn)
        # boards kept writing while we read: for their machines memory is the newer truth
        moved = {m for m, n in self._written.items() if n != written_before.get(m)} | set(self._writing)
        for machine_id in moved:
            loaded_uses.pop(machine_id, None)
            loaded_plans.pop(machine_id, None)
            if machine_id in self.uses:
                loaded_uses[machine_id] = self.uses[machine_id]
            if machine_id in self.plans:
                loaded_plans[machine_id] = self.plans[machine_id]
        self.rules, self.uses, self.plans = rules, loaded_uses, loaded_plans
        machines: dict[int, MachineLive] = {}
        for row in machine_rows:
            old = self.live.machines.get(row.id)
            m = old or MachineLive(id=row.id)
            m.name, m.type_name, m.blocked = row.name, row.type_name, row.blocked
            if old is None or row.id not in moved:
                m.usage_hours = row.usage_seconds / 3600
            m.last_seen = loaders.aware(row.last_seen) if old is None else old.last_seen
            machines[row.id] = m
            self._refresh_machine(m)
        self.live.machines = machines
        for row in board_rows:
            self.live.boards[row.machine_id] = BoardInfo(machine_id=row.machine_id, serial=row.serial, ip=row.ip,
                                                         firmware=row.firmware, heap=row.heap,
                                                         last_seen=loaders.aware(row.last_seen))
        self.live.sweep_offline()
        self.live.events.machines_reloaded.emit(None)

    async def reload_rules(self) -> None:
        """After an admin change to members, cards, roles, machines or authorizations."""
        await self.load()

    def _refresh_machine(self, m: MachineLive) -> None:
        state = self.uses.get(m.id)
        o = state.open if state else None
        if o is not None:
            member = self.rules.members.get(o.member_id) if o.member_id is not None else None
            m.user_first_name = member.first_name if member else '?'
            m.in_use_since = o.start
            m.unauthorized_use = o.unauthorized
        else:
            m.user_first_name, m.in_use_since, m.unauthorized_use = '', None, False
        plans = self.plans.get(m.id, [])
        m.maintenance_due = any(p.due for p in plans)
        m.maintenance_text = next(((p.lcd_text or p.description) for p in plans if p.due), '')
        rule = self.rules.machines.get(m.id)
        if rule is not None:
            m.blocked = rule.blocked
        m.refresh_status()

    def _changed(self, machine_id: int) -> None:
        m = self.live.machines.get(machine_id)
        if m is not None:
            self._refresh_machine(m)
        self.live.events.machine_changed.emit(machine_id)

    # ---- the board path --------------------------------------------------------------------------------------
    def answer_now(self, msg: BoardMessage, now: datetime) -> tuple[bool, Reply | None]:
        """Answer at once what needs no write first: (True, reply), or (False, None) when `handle` must run.

        Card and machine checks, announcements and unknown machines are answered from memory; the few rows they
        produce (unknown cards, board details) are written in the background.
        """
        machine = self.rules.machines.get(msg.machine_id)
        if machine is None:
            if msg.action is Action.ALIVE:
                self.live.unknown_boards[msg.machine_id] = now
                return True, None
            return True, dict(INVALID_MACHINE)
        match msg.action:
            case Action.CHECKMACHINE:
                self._seen(msg.machine_id, now)
                return True, self._checkmachine(machine)
            case Action.CHECKUSER:
                self._seen(msg.machine_id, now)
                return True, self._checkuser(msg, now)
            case Action.ALIVE:
                self._seen(msg.machine_id, now)
                self._alive(msg, now)
                return True, None
            case Action.SYNCCACHE:
                self._seen(msg.machine_id, now)
                return True, {'request_ok': True, 'cards': access.cache_cards(self.rules, msg.machine_id, now)}
        return False, None

    async def handle(self, msg: BoardMessage, now: datetime) -> Reply | None:
        """Apply one board message; returns the reply to send (None for `alive`)."""
        done, reply = self.answer_now(msg, now)
        if done:
            return reply
        self._seen(msg.machine_id, now)
        if msg.action is Action.MAINTENANCE:
            return await self._maintenance(msg, now)
        return await self._use(msg, now)

    def error_reply(self, msg: BoardMessage) -> Reply | None:
        """What a board is told when handling its message failed."""
        if msg.action is Action.ALIVE:
            return None
        if msg.action is Action.CHECKUSER:
            return {'request_ok': False, 'is_valid': False, 'name': '', 'missing_auth': True, 'level': 0}
        if msg.action is Action.CHECKMACHINE:
            return {'request_ok': False, 'is_valid': False, 'maintenance': False, 'allowed': False, 'name': '?',
                    'logoff': 1440, 'type': 0, 'grace': 2, 'description': ''}
        if msg.action is Action.SYNCCACHE:
            return {'request_ok': False, 'cards': []}
        return simple(False, 'BACKEND EXCEPTION')

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error('background write failed: %s', task.exception())

    async def settle(self) -> None:
        """Wait for background writes (used at shutdown and by tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _seen(self, machine_id: int, now: datetime) -> None:
        self._seen_dirty[machine_id] = now
        self.live.mark_seen(machine_id, now)

    async def flush_last_seen(self) -> None:
        """Persist machines' last-seen times and open uses' heartbeats (kept in memory on the hot path, saved
        every few seconds: they are signs of life, not records)."""
        seen, self._seen_dirty = self._seen_dirty, {}
        touched, self._touched = self._touched, {}
        items = list(seen.items())
        # in slices, one write each: board writes queued meanwhile share a slice's short transaction instead of
        # waiting behind one that saves every machine of the lab (10-30 ms on the event loop for 400 machines)
        for i in range(0, max(len(items), 1 if touched else 0), FLUSH_SLICE):
            part = dict(items[i:i + FLUSH_SLICE])
            beats, touched = touched, {}

            async def work(conn: AsyncConnection, part: dict[int, datetime] = part,
                           beats: dict[int, datetime] = beats) -> None:
                await board_store.save_last_seen(conn, part)
                await board_store.touch_open_uses(conn, beats)

            await self.writer.write(work)

    def _alive(self, msg: BoardMessage, now: datetime) -> None:
        self._background(self.writer.write(lambda conn: board_store.record_board(
            conn, msg.machine_id, serial=msg.serial, ip=msg.ip, firmware=msg.version, heap=msg.heap, now=now)))
        info = self.live.boards.get(msg.machine_id) or BoardInfo(machine_id=msg.machine_id)
        info.serial, info.ip, info.firmware, info.heap, info.last_seen = msg.serial, msg.ip, msg.version, msg.heap, now
        self.live.boards[msg.machine_id] = info
        self.live.events.board_seen.emit(msg.machine_id)

    def _checkmachine(self, machine: access.MachineRule) -> Reply:
        plans = self.plans.get(machine.id, [])
        return {
            'request_ok': True,
            'is_valid': True,
            'maintenance': any(p.due for p in plans),
            'allowed': not machine.blocked,
            'name': machine.name[:16],
            'logoff': machine.auto_logoff_minutes,
            'type': machine.type_id,
            'grace': machine.grace_minutes,
            'description': lcd_message(plans),
        }

    def _checkuser(self, msg: BoardMessage, now: datetime) -> Reply:
        decision = access.decide_card(self.rules, msg.uid, msg.machine_id, now)
        if decision.verdict is Verdict.UNKNOWN_CARD:
            # not awaited: the answer does not depend on this row, and a card check never waits on the disk
            self._background(self.writer.write(
                lambda conn: board_store.record_unknown_card(conn, msg.uid, msg.machine_id, now)))
            log.info('unknown card %s on machine %d', mask_uid(msg.uid), msg.machine_id)
            self.live.events.card_unknown.emit((msg.machine_id, msg.uid))
        return access.checkuser_reply(decision)

    async def _use(self, msg: BoardMessage, now: datetime) -> Reply:
        decision = access.decide_card(self.rules, msg.uid, msg.machine_id, now)
        known = decision.verdict is not Verdict.UNKNOWN_CARD
        state = self.uses.get(msg.machine_id) or uses.MachineUses()
        common = {'uid': msg.uid, 'member_id': decision.member_id, 'now': now}
        if msg.action is Action.STARTUSE:
            outcome = uses.start_use(state, replay=msg.replay, unauthorized=not decision.allowed, **common)
            ok_reply = simple(True, '')
        elif msg.action is Action.INUSE:
            if not uses.valid_duration(msg.duration):
                return simple(False, 'inUse')
            assert msg.duration is not None
            outcome = uses.in_use(state, duration=msg.duration, unauthorized=not decision.allowed, **common)
            ok_reply = simple(True, 'inUse')
        else:
            outcome = uses.stop_use(state, duration=msg.duration, replay=msg.replay,
                                    unauthorized=not decision.allowed, **common)
            ok_reply = simple(True, f'Duration {msg.duration} seconds')
        # a heartbeat alone waits in memory for the next flush; anything else is committed before the answer
        touch_only = all(isinstance(e, uses.TouchOpen) for e in outcome.effects)
        async with self._write_for(msg.machine_id):
            if outcome.effects and touch_only:
                self._touched[msg.machine_id] = outcome.effects[-1].last_seen  # type: ignore[union-attr]
            elif outcome.effects:
                self._touched.pop(msg.machine_id, None)  # the rows written carry their own last-seen time
                await self.writer.write(board_store.use_effect_rows(msg.machine_id, outcome.effects))
            self._commit_uses(msg.machine_id, state, outcome)
        if outcome.state.open is not None and not decision.allowed and state.open != outcome.state.open:
            log.warning('machine %d used by a card the panel refuses (%s): recorded and flagged', msg.machine_id,
                        decision.verdict.value)
        return ok_reply if known else simple(False, 'Invalid card')

    @contextlib.asynccontextmanager
    async def _write_for(self, machine_id: int) -> AsyncIterator[None]:
        """Mark a board write for this machine, from before it is queued until memory reflects it."""
        self._writing[machine_id] = self._writing.get(machine_id, 0) + 1
        try:
            yield
        finally:
            self._written[machine_id] = self._written.get(machine_id, 0) + 1
            self._writing[machine_id] -= 1
            if not self._writing[machine_id]:
                del self._writing[machine_id]

    def _commit_uses(self, machine_id: int, before: uses.MachineUses, outcome: uses.Outcome) -> None:
        self.uses[machine_id] = outcome.state
        closed = outcome.closed
        for c in closed:
            for plan in self.plans.get(machine_id, []):
                if counts_for_plan(plan, c.start):
                    plan.used_seconds += c.duration_s
        m = self.live.machines.get(machine_id)
        if m is not None and closed:
            m.usage_hours += sum(c.duration_s for c in closed) / 3600
        opened_or_closed = (before.open is None) != (outcome.state.open is None) or (
            before.open is not None and outcome.state.open is not None
            and before.open.card_uid != outcome.state.open.card_uid)
        if opened_or_closed or closed:
            self._changed(machine_id)
            if closed:
                self.live.events.use_ended.emit(machine_id)
            if outcome.state.open is not None and outcome.state.open != before.open and not outcome.duplicate:
                self.live.events.use_started.emit(machine_id)

    async def _maintenance(self, msg: BoardMessage, now: datetime) -> Reply:
        member_id = self.rules.cards.get(msg.uid)
        member = self.rules.members.get(member_id) if member_id is not None else None
        if member is None:
            return simple(False, 'Wrong user card')
        role = self.rules.roles.get(member.role_id)
        if member.disabled or member.deleted or role is None or not role.may_maintain:
            return simple(False, 'Not authorized')
        due = [p for p in self.plans.get(msg.machine_id, []) if p.due]
        if not due:
            return simple(True, '')
        due_ids = [p.plan_id for p in due]

        async def work(conn: AsyncConnection) -> tuple[list[int], list[PlanUsage]]:
            # the duplicate check and the insert share one transaction, so a replay racing its original adds nothing
            recent = await board_store.recent_intervention_plans(conn, msg.machine_id, member.id,
                                                                 now - MAINTENANCE_DUPLICATE_WINDOW)
            fresh = [p for p in due_ids if p not in recent]
            await board_store.record_interventions(conn, msg.machine_id, member.id, fresh, now, msg.replay)
            # read back what is now true: a duplicate leaves its plan as the earlier intervention left it
            plans = await loaders.load_plans(conn, msg.machine_id)
            return fresh, plans.get(msg.machine_id, [])

        async with self._write_for(msg.machine_id):
            recorded, plans = await self.writer.write(work)
            self.plans[msg.machine_id] = plans
        if recorded:
            self.live.events.maintenance_done.emit(msg.machine_id)
        self._changed(msg.machine_id)
        return simple(True, '')
