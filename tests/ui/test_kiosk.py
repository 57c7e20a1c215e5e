"""The kiosk: big tiles at 1280x800, first names only, and it comes back by itself after a server restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from fabpanel.boards.simulator import SimulatedBoard

from ..lab import GIULIA, PRINTER
from .conftest import PanelProcess
from .pages import open_page, screenshot, status, stay_connected, tile, tiles, wait

pytestmark = pytest.mark.browser

PRIVATE = ('Rossi', 'Bianchi', 'Verdi', 'Neri', 'Gialli', '@example.org')


async def test_kiosk_big_tiles_first_names_and_reconnects(panel: PanelProcess, browser: Callable,
                                                          artifacts: Path) -> None:
    driver = browser(1280, 800)
    async with SimulatedBoard(PRINTER, '127.0.0.1', panel.mqtt_port) as printer:
        open_page(driver, panel.url + '/kiosk')
        await printer.checkuser(GIULIA)
        await printer.startuse(GIULIA)
        wait(driver, lambda: status(driver, PRINTER) == 'in_use' and 'Giulia' in tile(driver, PRINTER).text, 2,
             'printer in use by Giulia')

        # big tiles: at most three a row, large type
        for t in tiles(driver):
            assert t.rect['width'] >= 350 and t.rect['height'] >= 120
        name = tile(driver, PRINTER).find_element(By.CSS_SELECTOR, '.fp-tile-name')
        assert float(name.value_of_css_property('font-size').removesuffix('px')) >= 28
        user = tile(driver, PRINTER).find_element(By.CSS_SELECTOR, '.fp-user-name')
        assert user.text.strip() == 'Giulia'
        # first names only: no last names or e-mails, neither in the page nor in what the server sent
        raw = panel.get('/kiosk')
        for private in PRIVATE:
            assert private not in driver.page_source
            assert private not in raw
        screenshot(driver, artifacts / 'kiosk-1280x800.png')

        assert (await printer.stopuse(GIULIA, 30))['request_ok'] is True
        wait(driver, lambda: status(driver, PRINTER) == 'free', 2, 'printer free')

        # the server restarts (an update, a power cut): nobody touches the kiosk
        panel.restart()
        stay_connected(driver, 1.0, timeout=20)
        assert (await printer.checkuser(GIULIA))['is_valid'] is True
        assert (await printer.startuse(GIULIA))['request_ok'] is True
        wait(driver, lambda: status(driver, PRINTER) == 'in_use' and 'Giulia' in tile(driver, PRINTER).text, 2,
             'printer in use again after the restart')
