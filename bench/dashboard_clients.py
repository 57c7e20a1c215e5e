"""The dashboard benchmark's two sides: boards that change machines' states, and clients of the page that see it.

`Changes` records every state change a board caused (machine, the status the tile must show, when the board's
message left). `LightClient` is a browser reduced to its socket: it loads '/' with a session cookie and speaks
NiceGUI's socket.io protocol like nicegui.js (implicit handshake with client_id / next_message_id / document_id /
tab_id, 'ack' every 3 s, answers to run_javascript); it notes when the update carrying a tile's new data-status
arrives. `ChromiumClient` is a real headless Chromium whose MutationObserver notes when a tile's data-status
attribute changes in the DOM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from fabpanel.boards.simulator import SimulatedBoard
from fabpanel.ui.session import COOKIE

SOCKET_PATH = '/_nicegui_ws/socket.io'
ACK_EVERY_S = 3.0  # like nicegui.js
CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
CHROME_ARGS = ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
               '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run')
FREE, IN_USE = 'free', 'in_use'


# ---- the boards' side -------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Change:
    seq: int
    machine: int
    status: str  # what the tile's data-status must become
    sent: float  # time.time() just before the board published
    replied: float = 0.0  # when the board had the panel's answer (0: none)


@dataclass
class Changes:
    """Every change the boards made, and the one each machine's tiles are waiting for."""

    all: list[Change] = field(default_factory=list)
    by_machine: dict[int, list[Change]] = field(default_factory=lambda: defaultdict(list))
    pending: dict[int, Change] = field(default_factory=dict)
    failed: int = 0

    def add(self, machine: int, status: str) -> Change:
        c = Change(len(self.all), machine, status, time.time())
        self.all.append(c)
        self.by_machine[machine].append(c)
        self.pending[machine] = c
        return c

    def match(self, machine: int, status: str, at: float) -> Change | None:
        """The latest change of `machine` to `status` sent before `at` (for observations read later)."""
        for c in reversed(self.by_machine.get(machine, ())):
            if c.sent <= at + 0.002 and c.status == status:  # 2 ms: the browser's clock has 1 ms steps
                return c
        return None


class BoardDriver:
    """One board per machine; machines take turns to change state (startuse / stopuse), `rate` changes/s in all."""

    def __init__(self, boards: dict[int, SimulatedBoard], uids: dict[int, str], changes: Changes,
                 rate: float, seed: int = 3) -> None:
        self.boards, self.uids, self.changes, self.rate = boards, uids, changes, rate
        self.order = list(boards)
        random.Random(seed).shuffle(self.order)
        self.status = dict.fromkeys(boards, FREE)
        self.started: dict[int, float] = {}
        self.busy: set[int] = set()  # boards still waiting for an answer (one request in flight, like the firmware)
        self.skipped = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    async def bring_online(self) -> None:
        """Connect every board; its first message makes the machine's tile 'free'."""
        async def one(b: SimulatedBoard) -> None:
            await b.connect()
            await b.alive()
            await b.checkmachine()

        await asyncio.gather(*(one(b) for b in self.boards.values()))

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(b.close() for b in self.boards.values()), return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval, i = 1 / self.rate, 0
        next_t = loop.time()
        while True:
            await asyncio.sleep(max(0.0, next_t - loop.time()))
            next_t += interval
            machine = self.order[i % len(self.order)]
            i += 1
            if machine in self.busy:  # its last change is still unanswered (> 5 s): the member waits
                self.skipped += 1
                continue
            task = asyncio.create_task(self._change(machine))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _change(self, machine: int) -> None:
        self.busy.add(machine)
        try:
            await self._send_change(machine)
        finally:
            self.busy.discard(machine)

    async def _send_change(self, machine: int) -> None:
        board, uid = self.boards[machine], self.uids[machine]
        to = IN_USE if self.status[machine] == FREE else FREE
        self.status[machine] = to
        c = self.changes.add(machine, to)
        if to == IN_USE:
            self.started[machine] = time.monotonic()
            reply = await board.startuse(uid)
        else:
            reply = await board.stopuse(uid, int(time.monotonic() - self.started.get(machine, time.monotonic())))
        if reply is not None and reply.get('request_ok'):
            c.replied = time.time()
        else:
            self.changes.failed += 1


# ---- the clients' side ------------------------------------------------------------------------------------------
@dataclass(slots=True)
class ClientStats:
    connected_at: float = 0.0  # time.time() when the socket was up (0: never)
    disconnected_at: float = 0.0
    received: dict[int, float] = field(default_factory=dict)  # change seq -> time.time() the client saw it
    page_s: float = 0.0  # GET '/' round trip
    connect_s: float = 0.0  # socket connect (implicit handshake) round trip
    messages: int = 0
    printer_updates: int = 0  # updates of a printer tile (its reports and temperature samples)
    error: str = ''


def page_query(html: str) -> tuple[str, int]:
    """client_id and next_message_id the page's script hands to socket.io (templates/index.html, `query:`)."""
    client_id = re.search(r"'client_id': '([0-9a-f-]+)'", html)
    next_id = re.search(r"'next_message_id': (\d+)", html)
    if client_id is None or next_id is None:
        raise RuntimeError('no NiceGUI client id in the page (not signed in?)')
    return client_id.group(1), int(next_id.group(1))


class LightClient:
    """A dashboard tab without a DOM: the page over HTTP, then NiceGUI's socket.io protocol."""

    kind = 'socket.io'

    def __init__(self, base_url: str, session: str, changes: Changes) -> None:
        self.base_url, self.session, self.changes = base_url, session, changes
        # like a browser: its own cookie jar, and the websocket on a connection of its own. Reusing the page's
        # keep-alive connection for the upgrade races with uvicorn's keep-alive timer (armed when the page's
        # response completes, possibly after the upgrade): the socket is cut 5 s later.
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        self.stats = ClientStats()
        self.client_id = ''
        self.next_message_id = 0
        self._acked = -1
        self.sio = socketio.AsyncClient(reconnection=False, http_session=self.http)
        self.sio.on('update', self._on_update)
        self.sio.on('run_javascript', self._on_javascript)
        self.sio.on('disconnect', self._on_disconnect)
        self._ack_task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        cookie = {'Cookie': f'{COOKIE}={self.session}'}
        t0 = time.perf_counter()
        async with self.http.get(self.base_url + '/', headers=cookie, allow_redirects=False) as r:
            html = await r.text()
            if r.status != 200:
                raise RuntimeError(f'GET / answered {r.status} (location {r.headers.get("location")})')
        self.stats.page_s = time.perf_counter() - t0
        self.client_id, self.next_message_id = page_query(html)
        query = (f'client_id={self.client_id}&next_message_id={self.next_message_id}&implicit_handshake=true'
                 f'&document_id={uuid.uuid4()}&tab_id={uuid.uuid4()}')
        t0 = time.perf_counter()
        await self.sio.connect(f'{self.base_url}/?{query}', headers=cookie, transports=['websocket'],
                               socketio_path=SOCKET_PATH, wait_timeout=10)
        self.stats.connect_s = time.perf_counter() - t0
        self.stats.connected_at = time.time()
        self._ack_task = asyncio.create_task(self._ack_loop())

    async def close(self) -> None:
        if self._ack_task is not None:
            self._ack_task.cancel()
        with contextlib.suppress(Exception):
            await self.sio.disconnect()
        await self.http.close()

    def _seen(self, data: dict[str, Any]) -> None:
        message_id = data.get('_id')
        if isinstance(message_id, int):
            self.next_message_id = max(self.next_message_id, message_id + 1)
        self.stats.messages += 1

    async def _on_update(self, data: dict[str, Any]) -> None:
        now = time.time()
        self._seen(data)
        pending, received = self.changes.pending, self.stats.received
        for element in data.values():
            if not isinstance(element, dict):
                continue
            props = element.get('props')
            if props and 'data-printer' in props:
                self.stats.printer_updates += 1
            if not props or 'data-machine' not in props:
                continue
            c = pending.get(int(props['data-machine']))
            if c is not None and props.get('data-status') == c.status and c.seq not in received:
                received[c.seq] = now

    async def _on_javascript(self, data: dict[str, Any]) -> None:
        self._seen(data)
        request_id = data.get('request_id')
        if request_id:  # what the layout asks a desktop browser: is the drawer open (yes, like NiceGUI's User)
            result = True if '__IS_DRAWER_OPEN__' in data.get('code', '') else None
            await self.sio.emit('javascript_response',
                                {'request_id': request_id, 'client_id': self.client_id, 'result': result})

    def _on_disconnect(self, *_args: Any) -> None:
        self.stats.disconnected_at = time.time()

    async def _ack_loop(self) -> None:
        while True:
            await asyncio.sleep(ACK_EVERY_S)
            if self._acked < self.next_message_id and self.sio.connected:
                self._acked = self.next_message_id
                with contextlib.suppress(Exception):
                    await self.sio.emit('ack', {'client_id': self.client_id, 'next_message_id': self.next_message_id})


OBSERVER_JS = '''
window.fpSeen = [];
new MutationObserver(records => {
  const t = Date.now();
  for (const r of records) {
    const el = r.target;
    if (el.dataset && el.dataset.machine) window.fpSeen.push([+el.dataset.machine, el.dataset.status, t]);
  }
}).observe(document.getElementById('app'), {subtree: true, attributes: true, attributeFilter: ['data-status']});
return document.querySelectorAll('[data-machine]').length;
'''
READY_JS = 'return !!(window.did_handshake && document.querySelectorAll("[data-machine]").length)'


class ChromiumClient:
    """A real headless Chromium on the dashboard; a MutationObserver notes tile changes (read every second).

    With `nice` > 0 the browser runs at a lower priority than the boards and the lightweight clients it shares
    a core with: a busy renderer then delays its own observations, not everybody else's.
    """

    kind = 'chromium'

    def __init__(self, base_url: str, session: str, changes: Changes, profile_dir: Path, nice: int = 0) -> None:
        self.base_url, self.session, self.changes, self.profile_dir = base_url, session, changes, profile_dir
        self.nice = nice
        self.stats = ClientStats()
        self.driver: Any = None
        self.tiles = 0
        self._poll: asyncio.Task[None] | None = None

    def _open(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        for arg in (*CHROME_ARGS, f'--user-data-dir={self.profile_dir}', '--window-size=1280,800', '--lang=en'):
            options.add_argument(arg)
        options.binary_location = CHROMIUM
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        if self.nice:  # the browser's processes so far; the renderers it starts later inherit their priority
            for pid in process_tree(self.driver.service.process.pid):
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, pid, self.nice)
        self.driver.set_script_timeout(10)
        self.driver.get(self.base_url + '/healthz')  # a cookie can only be set for the origin the browser is on
        self.driver.add_cookie({'name': COOKIE, 'value': self.session, 'path': '/', 'httpOnly': True})
        t0 = time.perf_counter()
        self.driver.get(self.base_url + '/')
        self.stats.page_s = time.perf_counter() - t0
        deadline = time.monotonic() + 20
        while not self.driver.execute_script(READY_JS):
            if time.monotonic() > deadline:
                raise RuntimeError(f'the dashboard did not connect in Chromium (at {self.driver.current_url})')
            time.sleep(0.05)
        self.tiles = int(self.driver.execute_script(OBSERVER_JS))

    @property
    def pid(self) -> int | None:
        try:
            return int(self.driver.service.process.pid)
        except AttributeError:
            return None

    async def connect(self) -> None:
        await asyncio.to_thread(self._open)
        self.stats.connected_at = time.time()
        self._poll = asyncio.create_task(self._poll_loop())

    def _read(self) -> list[list[Any]]:
        return self.driver.execute_script('return window.fpSeen.splice(0)') or []

    async def collect(self) -> None:
        """Move what the page observed into `received` (matched to the change that caused it)."""
        try:
            seen = await asyncio.to_thread(self._read)
        except Exception as e:  # noqa: BLE001 - a browser that went away stops reporting; the report shows it
            self.stats.error = self.stats.error or repr(e)[:200]
            return
        for machine, status, t_ms in seen:
            at = t_ms / 1000
            c = self.changes.match(int(machine), status, at)
            if c is not None and c.seq not in self.stats.received:
                self.stats.received[c.seq] = at

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self.collect()

    async def close(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll
        if self.driver is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.driver.quit)


def process_tree(root: int) -> list[int]:
    """`root` and all its living descendants."""
    parent: dict[int, int] = {}
    for p in Path('/proc').iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parent[int(p.name)] = int((p / 'stat').read_text().rsplit(')', 1)[1].split()[1])
    keep, changed = {root}, True
    while changed:
        changed = False
        for pid, ppid in parent.items():
            if ppid in keep and pid not in keep:
                keep.add(pid)
                changed = True
    return sorted(keep)
