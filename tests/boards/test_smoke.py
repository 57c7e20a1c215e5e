from __future__ import annotations

from pathlib import Path

from fabpanel.boards.simulator import SimulatedBoard

from ..conftest import make_settings, start_panel
from ..lab import GIULIA, PRINTER, UNKNOWN, create_lab
from ..support import Mosquitto


async def test_checkuser_roundtrip(tmp_path: Path, mosquitto: Mosquitto, sqlite_url: str) -> None:
    await create_lab(sqlite_url)
    panel = await start_panel(make_settings(tmp_path, sqlite_url, mosquitto.port))
    try:
        async with SimulatedBoard(PRINTER, '127.0.0.1', mosquitto.port) as board:
            assert await board.checkuser(GIULIA) == {'request_ok': True, 'is_valid': True, 'name': 'Giulia',
                                                     'missing_auth': False, 'level': 1}
            assert (await board.checkuser(UNKNOWN))['name'] == 'Unknown'
            m = await board.checkmachine()
            assert m['name'] == 'Prusa MK4' and m['allowed'] is True
            assert (await board.startuse(GIULIA))['request_ok'] is True
            assert panel.live.machines[PRINTER].user_first_name == 'Giulia'
            assert (await board.stopuse(GIULIA, 100))['request_ok'] is True
            assert panel.live.machines[PRINTER].user_first_name == ''
    finally:
        await panel.stop()
