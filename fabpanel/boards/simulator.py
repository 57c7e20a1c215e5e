"""A simulated Fab-O-Matic board speaking the real protocol through a real broker.

It behaves like the firmware where it matters to the backend (spec sections 4.3 and 8): one request in
flight, the next message on the reply topic is the answer, a 2 s timeout, and an offline queue of
bufferable messages replayed in order with `"replay": true`. The demo, the tests and the benchmark use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

REPLY_TIMEOUT_S = 2.0
QUEUE_MAX = 40
BUFFERABLE = {'startuse', 'stopuse', 'maintenance'}


@dataclass(kw_only=True, slots=True)
class BoardStats:
    sent: int = 0
    replies: int = 0
    timeouts: int = 0
    failed: int = 0  # publishes that did not leave the board (broker gone)
    latencies: list[float] = field(default_factory=list)  # seconds, request -> reply


class SimulatedBoard:
    def __init__(self, machine_id: int, host: str, port: int, *, root: str = 'machine',
                 version: str = 'simulated,1.0.1', serial: str | None = None, ip: str = '127.0.0.1',
                 timeout: float = REPLY_TIMEOUT_S, client_id: str | None = None) -> None:
        self.machine_id = machine_id
        self.host, self.port, self.root = host, port, root
        self.version, self.ip = version, ip
        self.serial = serial or f'{random.getrandbits(48):012x}'
        self.timeout = timeout
        self.client_id = client_id or f'BOARD{machine_id}-{random.getrandbits(24):06x}'
        self.queue: deque[dict[str, Any]] = deque(maxlen=QUEUE_MAX)  # the firmware's offline buffer
        self.commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # start/stop sent by the panel
        self.stats = BoardStats()
        self._client: aiomqtt.Client | None = None
        self._replies: asyncio.Queue[bytes] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def topic(self) -> str:
        return f'{self.root}/{self.machine_id}'

    async def connect(self) -> None:
        self._client = aiomqtt.Client(self.host, self.port, identifier=self.client_id, keepalive=10,
                                      clean_session=True, timeout=10)
        await self._client.__aenter__()
        await self._client.subscribe(f'{self.topic}/reply', qos=0)
        await self._client.subscribe(f'{self.topic}/request', qos=0)
        self._reader = asyncio.create_task(self._read())

    @property
    def online(self) -> bool:
        """Connected to the broker (the connection is found dead on the next read or publish)."""
        return self._client is not None and self._reader is not None and not self._reader.done()

    async def reconnect(self) -> bool:
        """What the firmware's network task does when the broker went away: connect again; False if it cannot."""
        await self.close()
        try:
            await self.connect()
        except aiomqtt.MqttError:
            await self.close()
            return False
        return True

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.__aexit__(None, None, None)
        self._client = None
        self._reader = None

    async def __aenter__(self) -> SimulatedBoard:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self) -> None:
        assert self._client is not None
        async for message in self._client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            if message.topic.value.endswith('/request'):
                with contextlib.suppress(ValueError):
                    self.commands.put_nowait(json.loads(payload))
            else:
                self._replies.put_nowait(payload)

    # ---- the request/reply exchange, like the firmware ---------------------------------------------------------
    async def publish_raw(self, payload: bytes | str, topic: str | None = None) -> None:
        if self._client is None:
            raise aiomqtt.MqttError('the board is not connected')
        await self._client.publish(topic or self.topic, payload, qos=0)

    async def request(self, payload: dict[str, Any], expect_reply: bool = True) -> dict[str, Any] | None:
        """Publish one request; return the parsed reply, or None after the 2 s timeout."""
        async with self._lock:
            while not self._replies.empty():  # the firmware drops stale replies before asking
                self._replies.get_nowait()
            t0 = time.perf_counter()
            try:
                await self.publish_raw(json.dumps(payload))
            except aiomqtt.MqttError:
                self.stats.failed += 1  # not sent: like the firmware, the caller queues it if it is bufferable
                return None
            self.stats.sent += 1
            if not expect_reply:
                return None
            try:
                raw = await asyncio.wait_for(self._replies.get(), timeout=self.timeout)
            except TimeoutError:
                self.stats.timeouts += 1
                return None
            self.stats.latencies.append(time.perf_counter() - t0)
            self.stats.replies += 1
            try:
                reply = json.loads(raw)
            except ValueError:
                return {'request_ok': False}
            return reply if isinstance(reply, dict) else {'request_ok': False}

    async def buffered(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """A bufferable message: replay the queue first; queue it when it cannot be delivered (spec 8)."""
        if not await self.replay_queue():
            self.queue.append(payload)
            return None
        reply = await self.request(payload)
        if reply is None:
            self.queue.append(payload)  # published but unanswered: the firmware queues it anyway
        return reply

    async def replay_queue(self) -> bool:
        """Send the queued messages in order with `replay: true`; True when the queue is empty after."""
        while self.queue:
            item = dict(self.queue[0])
            item.setdefault('replay', True)
            if await self.request(item) is None:
                return False
            self.queue.popleft()
        return True

    # ---- the board's messages ----------------------------------------------------------------------------------
    async def alive(self, heap: int | str = '183204') -> None:
        await self.request({'action': 'alive', 'version': self.version, 'ip': self.ip, 'serial': self.serial,
                            'heap': str(heap)}, expect_reply=False)

    async def checkmachine(self) -> dict[str, Any] | None:
        return await self.request({'action': 'checkmachine'})

    async def checkuser(self, uid: str) -> dict[str, Any] | None:
        return await self.request({'action': 'checkuser', 'uid': uid})

    async def startuse(self, uid: str) -> dict[str, Any] | None:
        return await self.buffered({'action': 'startuse', 'uid': uid})

    async def inuse(self, uid: str, duration: int) -> dict[str, Any] | None:
        return await self.request({'action': 'inuse', 'uid': uid, 'duration': duration})

    async def stopuse(self, uid: str, duration: int) -> dict[str, Any] | None:
        return await self.buffered({'action': 'stopuse', 'uid': uid, 'duration': duration})

    async def maintenance(self, uid: str) -> dict[str, Any] | None:
        return await self.buffered({'action': 'maintenance', 'uid': uid})


async def run_member_session(board: SimulatedBoard, uid: str, *, seconds: float, tick: float = 30.0) -> None:
    """What a member does at a machine: tap in, work (heartbeats), tap out. Used by the demo."""
    await board.checkmachine()
    reply = await board.checkuser(uid)
    if not reply or not reply.get('is_valid'):
        return
    await board.startuse(uid)
    t0 = time.monotonic()
    while (elapsed := time.monotonic() - t0) < seconds:
        await asyncio.sleep(min(tick, seconds - elapsed))
        await board.checkmachine()
        await board.inuse(uid, int(time.monotonic() - t0))
    await board.stopuse(uid, int(time.monotonic() - t0))
