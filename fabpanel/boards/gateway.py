"""The board gateway: one MQTT connection that answers every Fab-O-Matic board exactly once, in time.

Work for different machines runs concurrently (one worker per machine with pending messages); work for one
machine stays in order. Messages that waited at the broker while the panel was away are applied but not
answered (spec 13.7): they arrive before a marker the gateway publishes to itself right after subscribing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
from collections import deque
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt

from fabpanel.core.protocol import EXPECTS_REPLY, BoardMessage, MalformedMessage, encode, parse_payload, parse_topic
from fabpanel.live.state import LiveState
from fabpanel.services.boards import BoardService
from fabpanel.settings import MqttSettings

from .ratelimit import RateLimitedLog

log = logging.getLogger(__name__)

# A board waits 2 s for its answer and then takes the next message on its reply topic as the answer to
# whatever it asks next: a late answer is worse than none.
REPLY_DEADLINE_S = 1.5
MARKER_TIMEOUT_S = 3.0
STATS_EVERY_S = 5.0
BACKOFF_START_S = 0.5  # reconnect delays double from here up to the cap while the broker stays away
BACKOFF_MAX_S = 15.0
# Nagle's algorithm off on the panel's broker connection. paho leaves it on, so a reply written while the previous
# one was still unacknowledged waited for the broker's delayed ACK (~40 ms on Linux): that, not the panel's work,
# was most of the light-load tail (board benchmark at 50 msg/s: p99 32 -> 11 ms; a trivial paho echo in place of
# the panel showed the same 37 ms p99 with Nagle on, 5.5 ms with it off). tests/boards/test_gateway_latency.py
SOCKET_OPTIONS = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


class BoardGateway:
    def __init__(self, settings: MqttSettings, service: BoardService, live: LiveState) -> None:
        self.settings = settings
        self.service = service
        self.live = live
        self.health = live.gateway
        self.health.broker = f'{settings.host}:{settings.port}'
        self._client: aiomqtt.Client | None = None
        self._queues: dict[int, deque[tuple[BoardMessage, float, bool]]] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._draining = True
        self._marker = ''
        self._drops = RateLimitedLog(log)
        self._stop = asyncio.Event()
        self.connections = 0
        self._host = ('', '')

    @property
    def marker_topic(self) -> str:
        return f'fabpanel/{self.settings.client_id}/marker'

    # ---- connection --------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Keep a persistent session with the broker, reconnecting with backoff, until stopped."""
        backoff = BACKOFF_START_S
        while not self._stop.is_set():
            try:
                async with aiomqtt.Client(
                    hostname=self.settings.host, port=self.settings.port, identifier=self.settings.client_id,
                    clean_session=False, keepalive=self.settings.keepalive,
                    username=self.settings.user or None, password=self.settings.password or None,
                    max_queued_incoming_messages=0, timeout=10, socket_options=SOCKET_OPTIONS,
                ) as client:
                    self._client = client
                    self.connections += 1
                    backoff = BACKOFF_START_S
                    await self._session(client)
            except aiomqtt.MqttError as e:
                if self.health.connected or self.health.last_error != str(e):
                    log.warning('broker %s unreachable: %s (retrying)', self.health.broker, e)
                self.health.last_error = str(e)
            finally:
                self._client = None
                if self.health.connected:
                    self.health.connected = False
            if self._stop.is_set():
                break
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=backoff)
            except TimeoutError:
                pass
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def stop(self) -> None:
        self._stop.set()
        for task in list(self._workers.values()):
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=5)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()

    async def _session(self, client: aiomqtt.Client) -> None:
        root = self.settings.topic
        self._draining = True
        self._marker = secrets.token_hex(8)
        await client.subscribe(f'{root}/+', qos=1)
        await client.subscribe(self.marker_topic, qos=1)
        await client.publish(self.marker_topic, self._marker, qos=1)
        self.health.connected = True
        self.health.last_error = ''
        log.info('connected to broker %s as %s', self.health.broker, self.settings.client_id)
        stats = asyncio.create_task(self._stats(client))
        drain_timeout = asyncio.get_running_loop().call_later(MARKER_TIMEOUT_S, self._end_drain, 'timeout')
        try:
            async for message in client.messages:
                if self._stop.is_set():
                    break
                self._receive(message)
        finally:
            drain_timeout.cancel()
            stats.cancel()

    def _end_drain(self, why: str) -> None:
        if self._draining:
            self._draining = False
            if why != 'marker':
                log.warning('no marker back from the broker within %.0f s; answering all messages', MARKER_TIMEOUT_S)

    # ---- receiving -----------------------------------------------------------------------------------------------
    def _receive(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        if topic == self.marker_topic:
            if message.payload == self._marker.encode():
                self._end_drain('marker')
            return
        health = self.health
        health.received += 1
        if message.retain:
            # boards never retain; a retained message is stale and would come back at every reconnect
            self._drop('retained message ignored', topic)
            return
        try:
            machine_id = parse_topic(topic, self.settings.topic)
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            msg = parse_payload(machine_id, payload)
        except MalformedMessage as e:
            self._drop('malformed message', str(e))
            return
        received = asyncio.get_running_loop().time()
        queue = self._queues.get(machine_id)
        if queue is None:
            # nothing pending for this machine: what needs no write is answered right here, without a task
            now = datetime.now(UTC)
            try:
                done, reply = self.service.answer_now(msg, now)
            except Exception as e:
                done, reply = True, self._failed(msg, e)
            if done:
                self._answer(msg, reply, now, received, self._draining, queue)
                return
            queue = self._queues[machine_id] = deque()
        queue.append((msg, received, self._draining))
        health.backlog += 1
        if machine_id not in self._workers:
            self._workers[machine_id] = asyncio.create_task(self._work(machine_id), name=f'board-{machine_id}')

    def _drop(self, reason: str, detail: str) -> None:
        self.health.malformed += 1
        self._drops.warning(reason, detail)

    def _failed(self, msg: BoardMessage, e: Exception) -> dict[str, Any] | None:
        self.health.errors += 1
        self._drops.warning('error handling a board message', f'{msg.action} on machine {msg.machine_id}: {e!r}')
        log.debug('board message failed', exc_info=True)
        return self.service.error_reply(msg)

    async def _work(self, machine_id: int) -> None:
        queue = self._queues[machine_id]
        try:
            while queue:
                msg, received, waited = queue.popleft()
                self.health.backlog -= 1
                try:
                    now = datetime.now(UTC)
                    try:
                        reply = await self.service.handle(msg, now)
                    except Exception as e:
                        reply = self._failed(msg, e)
                    self._answer(msg, reply, now, received, waited, queue)
                except Exception as e:  # a bug must cost one message, never the machine's worker
                    self.health.errors += 1
                    self._drops.warning('gateway error', f'machine {machine_id}: {e!r}')
        finally:
            del self._workers[machine_id]
            if not queue:
                self._queues.pop(machine_id, None)
            else:  # a message arrived while finishing: keep going in a new worker
                self._workers[machine_id] = asyncio.create_task(self._work(machine_id), name=f'board-{machine_id}')

    def _answer(self, msg: BoardMessage, reply: dict[str, Any] | None, now: datetime, received: float, waited: bool,
                queue: deque[tuple[BoardMessage, float, bool]] | None) -> None:
        health = self.health
        health.processed += 1
        health.last_processed_at = now
        if reply is None:
            return
        if waited:
            health.waited += 1
            return
        if queue and any(later.action in EXPECTS_REPLY for later, _, _ in queue):
            # the board asked something newer, so it gave up on this one: an answer now would be taken as the
            # answer to the newer question
            health.late += 1
            self._drops.warning('answer superseded, not sent', f'machine {msg.machine_id} {msg.action}')
            return
        if asyncio.get_running_loop().time() - received > REPLY_DEADLINE_S:
            health.late += 1
            self._drops.warning('answer too late, not sent', f'machine {msg.machine_id} {msg.action}')
            return
        topic = f'{self.settings.topic}/{msg.machine_id}{self.settings.reply_subtopic}'
        if self._publish_now(topic, encode(reply, topic=topic)):
            health.replied += 1

    def _publish_now(self, topic: str, payload: bytes) -> bool:
        """Hand a QoS 0 message to the MQTT client without waiting: nothing to wait for at QoS 0, and awaiting
        each publish costs a task and a future per reply."""
        client = self._client
        if client is None:
            return False
        info = client._client.publish(topic, payload, 0)  # noqa: SLF001 - aiomqtt's paho client, same thread
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._drops.warning('publish failed', f'{topic}: {mqtt.error_string(info.rc)}')
            return False
        return True

    async def _publish(self, topic: str, payload: bytes) -> bool:
        client = self._client
        if client is None:
            return False
        try:
            await client.publish(topic, payload, qos=0)
            return True
        except aiomqtt.MqttError as e:
            self._drops.warning('publish failed', str(e))
            return False

    # ---- panel -> board --------------------------------------------------------------------------------------
    async def send_command(self, machine_id: int, request_type: str, uid: str) -> bool:
        """Remote `start` / `stop` on a board (spec section 6). Callers check who may ask."""
        if request_type not in ('start', 'stop'):
            raise ValueError(f'unknown board command {request_type!r}')
        payload = json.dumps({'request_type': request_type, 'uid': uid}).encode()
        return await self._publish(f'{self.settings.topic}/{machine_id}{self.settings.request_subtopic}', payload)

    def stats(self) -> dict[str, Any]:
        return {'Connected': self.health.connected, 'Backend host': self._host[0], 'Backend IP': self._host[1],
                'Received': self.health.received, 'Sent': self.health.replied,
                'Processed': self.health.processed, 'Malformed': self.health.malformed,
                'Errors': self.health.errors, 'Late': self.health.late, 'Backlog': self.health.backlog}

    async def _stats(self, client: aiomqtt.Client) -> None:
        topic = f'{self.settings.stats_topic}/{self.settings.client_id}'
        if not self._host[0]:
            host = socket.gethostname()
            self._host = (host, await asyncio.to_thread(_ip_of, host))  # name look-ups may block
        # half a period off the panel's other 5 s chores (offline sweep, SQLite checkpoint), which start with the
        # panel too: stacked, their stall in a board's reply time was the sum of the three
        await asyncio.sleep(STATS_EVERY_S / 2)
        while True:
            await asyncio.sleep(STATS_EVERY_S)
            await self._publish(topic, json.dumps(self.stats()).encode())
            try:
                await self.service.flush_last_seen()
            except Exception as e:
                self._drops.warning('saving last-seen times failed', repr(e))


def _ip_of(host: str) -> str:
    try:
        return socket.gethostbyname(host)
    except OSError:
        return ''
