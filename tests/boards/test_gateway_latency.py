"""Replies leave the panel at once: no reply waits behind the broker's delayed ACK (Nagle's algorithm is off).

paho leaves Nagle's algorithm on. With it, a reply written while the panel's previous reply is still unacknowledged
is held back until the broker's delayed ACK comes (about 40 ms on Linux): the light-load latency tail the board
benchmark used to show even for answers served from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from pathlib import Path

import aiomqtt

from ..conftest import wait_for
from ..lab import DRILL, LASER, PRINTER
from ..support import Mosquitto
from .harness import lab_panel

NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
ROUNDS = 30
MACHINES = (PRINTER, LASER, DRILL)


def nagle_off(panel: object) -> bool:
    client = panel.gateway._client  # type: ignore[attr-defined]  # noqa: SLF001 - the connection under test
    assert client is not None
    sock = client._client.socket()  # noqa: SLF001
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


async def test_the_gateway_connection_has_nagle_off_also_after_a_reconnect(tmp_path: Path, mosquitto: Mosquitto,
                                                                           sqlite_url: str) -> None:
    async with lab_panel(tmp_path, sqlite_url, mosquitto.port) as panel:
        assert panel.gateway is not None
        assert nagle_off(panel)
        connections = panel.gateway.connections
        mosquitto.stop()
        mosquitto.start()
        await wait_for(lambda: panel.gateway.connections > connections and panel.live.gateway.connected, timeout=20)
        assert nagle_off(panel)


async def test_back_to_back_replies_are_not_held_back(tmp_path: Path, mosquitto: Mosquitto, sqlite_url: str) -> None:
    """Three requests reach the panel together, 30 times: all three answers arrive within a few ms in (nearly)
    every round. (The answers go to three connections, one per board as in the lab, so that only the panel's
    connection can hold one back; the requests come from one, so that they reach the panel in one piece.)"""
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(lab_panel(tmp_path, sqlite_url, mosquitto.port))
        boards = [await stack.enter_async_context(aiomqtt.Client('127.0.0.1', mosquitto.port, socket_options=NODELAY))
                  for _ in MACHINES]
        arrivals: list[float] = []
        all_in = asyncio.Event()

        async def read(board: aiomqtt.Client) -> None:
            async for _ in board.messages:
                arrivals.append(time.perf_counter())
                if len(arrivals) == len(MACHINES):
                    all_in.set()

        for board, machine_id in zip(boards, MACHINES, strict=True):
            await board.subscribe(f'machine/{machine_id}/reply', qos=0)
        readers = [asyncio.create_task(read(board)) for board in boards]
        asker = boards[0]
        request = json.dumps({'action': 'checkmachine'})
        rounds: list[float] = []
        try:
            for _ in range(ROUNDS + 1):  # the first round warms up the panel's code paths
                arrivals.clear()
                all_in.clear()
                t0 = time.perf_counter()
                for machine_id in MACHINES:
                    await asker.publish(f'machine/{machine_id}', request, qos=0)
                await asyncio.wait_for(all_in.wait(), timeout=2)
                rounds.append(arrivals[-1] - t0)
                await asyncio.sleep(0.1)
        finally:
            for reader in readers:
                reader.cancel()
        # with Nagle on, the second and third answers of a round waited for the broker's delayed ACK (~40 ms) in
        # most rounds; a busy test machine may slow a round or two, never most of them
        slow = [f'{t * 1000:.0f}' for t in rounds[1:] if t > 0.02]
        assert len(slow) <= 3, f'{len(slow)} of {ROUNDS} rounds took over 20 ms: {slow}'
