"""Start the panel like `python main.py`, plus diagnostics of where its latency spikes come from.

Used by `bench.boards --probe`; changes nothing in the panel. It logs, every 10 s, the event loop's stalls
(a 5 ms timer that fires late), the garbage collector's pauses and the board messages' time inside the panel
(from paho decoding the request to the reply handed back to paho: p50/p99/max), so a latency tail seen by the
boards can be placed in the panel or outside it (broker, network, load generator); with FABPANEL_PROBE_DEBUG=1 it
also turns on asyncio debug mode so that every callback running longer than 10 ms is logged with its name (heavy).

Experiments (FABPANEL_PROBE_EXPERIMENTS=a,b,...): monkeypatches that show what a change to the panel would
gain, without editing it. They keep the panel's behaviour (same replies, same rows):
  gcfreeze  `gc.collect(); gc.freeze()` 3 s after start-up, so full collections skip the long-lived heap;
  publish   replies go to paho directly (QoS 0, fire-and-forget) instead of aiomqtt's awaited publish;
  stmts     the use writes run prebuilt statements with bind parameters instead of building SQL per message.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nicegui import app  # noqa: E402

from fabpanel.cli import main  # noqa: E402

log = logging.getLogger('fabpanel.probe')
REPORT_EVERY_S = 10.0
STALL_MS = 10.0


class Probe:
    def __init__(self) -> None:
        self.gc_start = 0.0
        self.gc: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self.stalls: list[float] = []
        self.inside: list[float] = []  # ms from paho's decoding of a board request to its reply handed to paho

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == 'start':
            self.gc_start = time.perf_counter()
        else:
            self.gc[info['generation']].append((time.perf_counter() - self.gc_start) * 1000)

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        if os.environ.get('FABPANEL_PROBE_DEBUG'):
            loop.set_debug(True)
            loop.slow_callback_duration = STALL_MS / 1000
            logging.getLogger('asyncio').setLevel(logging.WARNING)
        last = loop.time()
        if 'gcfreeze' in EXPERIMENTS:
            await asyncio.sleep(3.0)
            t0 = time.perf_counter()
            gc.collect()
            gc.freeze()
            log.info('probe: gc.freeze() of %d objects (%.0f ms)', gc.get_freeze_count(),
                     (time.perf_counter() - t0) * 1000)
        while True:
            t = loop.time()
            await asyncio.sleep(0.005)
            late = (loop.time() - t - 0.005) * 1000
            if late > STALL_MS:
                self.stalls.append(late)
            if loop.time() - last >= REPORT_EVERY_S:
                last = loop.time()
                self.report()

    def report(self) -> None:
        parts = [f'loop stalls > {STALL_MS:g} ms: {len(self.stalls)}'
                 + (f' (max {max(self.stalls):.0f} ms, total {sum(self.stalls):.0f} ms)' if self.stalls else '')]
        for gen, times in self.gc.items():
            if times:
                parts.append(f'gc gen{gen}: {len(times)} x, max {max(times):.1f} ms, total {sum(times):.0f} ms')
        if self.inside:
            v = sorted(self.inside)
            parts.append(f'in-panel reply time: {len(v)} replies, p50 {v[len(v) // 2]:.2f} ms, '
                         f'p99 {v[min(len(v) - 1, int(len(v) * 0.99))]:.2f} ms, max {v[-1]:.1f} ms')
        log.info('probe: last %.0f s: %s', REPORT_EVERY_S, '; '.join(parts))
        self.stalls = []
        self.gc = {0: [], 1: [], 2: []}
        self.inside = []
        _stamps.clear()  # messages that got no reply (alive, dropped) leave their stamp behind


EXPERIMENTS = set(filter(None, os.environ.get('FABPANEL_PROBE_EXPERIMENTS', '').split(',')))
_stamps: dict[int, float] = {}  # id(BoardMessage) -> perf_counter when paho decoded it


def patch_timing() -> None:
    """Stamp each incoming MQTT message when paho hands it to aiomqtt (in the socket's reader callback), carry
    the stamp to the gateway's parsed BoardMessage, and record the time when its reply is handed to paho."""
    import aiomqtt

    from fabpanel.boards import gateway

    make = aiomqtt.Message._from_paho_message  # noqa: SLF001

    def from_paho(message: object) -> aiomqtt.Message:
        m = make(message)
        m.probe_t = time.perf_counter()  # type: ignore[attr-defined]
        return m

    aiomqtt.Message._from_paho_message = staticmethod(from_paho)  # type: ignore[method-assign]  # noqa: SLF001
    receive, parse, answer = gateway.BoardGateway._receive, gateway.parse_payload, gateway.BoardGateway._answer
    current = [0.0]

    def _receive(self: gateway.BoardGateway, message: aiomqtt.Message) -> None:
        current[0] = getattr(message, 'probe_t', 0.0)
        receive(self, message)

    def parse_payload(machine_id: int, payload: bytes):  # noqa: ANN202 - the gateway's own signature
        msg = parse(machine_id, payload)
        if current[0]:
            _stamps[id(msg)] = current[0]
        return msg

    def _answer(self: gateway.BoardGateway, msg, reply, *args, **kwargs) -> None:  # noqa: ANN001
        sent = self.health.replied
        answer(self, msg, reply, *args, **kwargs)
        t0 = _stamps.pop(id(msg), 0.0)
        if t0 and self.health.replied != sent:
            probe.inside.append((time.perf_counter() - t0) * 1000)

    gateway.BoardGateway._receive = _receive  # type: ignore[method-assign]
    gateway.parse_payload = parse_payload
    gateway.BoardGateway._answer = _answer  # type: ignore[method-assign]


def patch_publish() -> None:
    from fabpanel.boards import gateway

    async def _publish(self: gateway.BoardGateway, topic: str, payload: bytes) -> bool:
        client = self._client
        if client is None:
            return False
        info = client._client.publish(topic, payload, 0)  # noqa: SLF001 - the experiment
        if info.rc:
            self._drops.warning('publish failed', f'rc={info.rc}')
            return False
        return True

    gateway.BoardGateway._publish = _publish  # type: ignore[method-assign]


def patch_statements() -> None:
    import sqlalchemy as sa

    from fabpanel.core.uses import CloseOpen, InsertClosed, OpenNew, TouchOpen
    from fabpanel.db import board_store as bs

    u, m = bs.use_t, bs.machine_t
    open_row = sa.and_(u.c.machine_id == sa.bindparam('m_id'), u.c.end.is_(None))
    touch = sa.update(u).where(open_row).values(last_seen=sa.bindparam('ls'))
    close = sa.update(u).where(open_row).values(start=sa.bindparam('st'), end=sa.bindparam('en'),
                                               last_seen=sa.bindparam('ls'), duration_s=sa.bindparam('d'),
                                               member_id=sa.bindparam('mem'), replay=sa.bindparam('rp'))
    insert = sa.insert(u)
    add_usage = sa.update(m).where(m.c.id == sa.bindparam('m_id')).values(
        usage_seconds=m.c.usage_seconds + sa.bindparam('add', type_=sa.Float))

    async def apply_use_effects(conn, machine_id, effects):  # noqa: ANN001, ANN202 - same signature as the panel's
        added = 0.0
        for effect in effects:
            if isinstance(effect, TouchOpen):
                await conn.execute(touch, {'m_id': machine_id, 'ls': effect.last_seen})
            elif isinstance(effect, OpenNew):
                o = effect.use
                await conn.execute(insert, {'machine_id': machine_id, 'member_id': o.member_id, 'card_uid': o.card_uid,
                                            'start': o.start, 'last_seen': o.last_seen, 'replay': o.replay,
                                            'unauthorized': o.unauthorized})
            elif isinstance(effect, CloseOpen):
                c = effect.use
                await conn.execute(close, {'m_id': machine_id, 'st': c.start, 'en': c.end, 'ls': max(c.end, c.start),
                                           'd': c.duration_s, 'mem': c.member_id, 'rp': c.replay})
                added += c.duration_s
            elif isinstance(effect, InsertClosed):
                c = effect.use
                await conn.execute(insert, {'machine_id': machine_id, 'member_id': c.member_id, 'card_uid': c.card_uid,
                                            'start': c.start, 'end': c.end, 'last_seen': c.end,
                                            'duration_s': c.duration_s, 'replay': c.replay,
                                            'unauthorized': c.unauthorized})
                added += c.duration_s
        if added:
            await conn.execute(add_usage, {'m_id': machine_id, 'add': added})
        return added

    bs.apply_use_effects = apply_use_effects


patch_timing()
if 'publish' in EXPERIMENTS:
    patch_publish()
if 'stmts' in EXPERIMENTS:
    patch_statements()
probe = Probe()
gc.callbacks.append(probe.on_gc)
_tasks: set[asyncio.Task[None]] = set()


async def _start() -> None:
    _tasks.add(asyncio.create_task(probe.watch()))


app.on_startup(_start)

if __name__ in {'__main__', '__mp_main__'}:
    main()
