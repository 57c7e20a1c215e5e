"""The kiosk: big tiles at 1280x800, first names only, and it comes back by itself after a server restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from nicegui import ui
from selenium.webdriver.common.by import By

from fabpanel.boards.simulator import SimulatedBoard

from ..conftest import make_settings, wait_for
from ..lab import GIULIA, PRINTER, create_lab
from .conftest import PanelProcess
from .pages import open_page, screenshot, status, stay_connected, tile, tiles, wait
from .simulation import simulated_panel
from .test_printers import MEMBER, add_printer, gcode

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


async def test_kiosk_printer_tiles_first_names_only_and_no_controls(tmp_path: Path) -> None:
    """In NiceGUI's simulated browser: a printer added while the kiosk is open appears on it and follows its job;
    the kiosk shows who started it by first name only, no file name (members name their files), no link, no
    control."""
    url = f'sqlite:///{tmp_path}/fabpanel.db'
    await create_lab(url)
    async with simulated_panel(make_settings(tmp_path, url)) as (new_user, panel):
        kiosk = new_user()  # nobody signed in: a screen by the door
        await kiosk.open('/kiosk')
        printer_id = await add_printer(panel, 'Prusa XL')
        await kiosk.should_see(marker=f'printer-tile-{printer_id}')
        tile = kiosk.find(marker=f'printer-tile-{printer_id}').elements.pop()
        assert 'fp-ptile-large' in tile.classes
        await kiosk.should_see('Ready')

        await panel.fleet.start_job(printer_id, gcode(tmp_path), 'giulia-rossi-bracket.gcode', MEMBER)
        await wait_for(lambda: tile.props['data-state'] == 'printing', timeout=10)
        await kiosk.should_see('Printing')
        await kiosk.should_see('Giulia')
        for private in (*PRIVATE, 'bracket.gcode'):
            await kiosk.should_not_see(private)
            assert private not in str(tile.props)
        assert 'href' not in tile.props['tile'] and 'file' not in tile.props['tile']
        await kiosk.should_not_see(kind=ui.button)
        await kiosk.should_not_see(kind=ui.link)
