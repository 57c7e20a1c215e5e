"""The dashboard in a real browser against the real panel process and a real board over MQTT."""

from __future__ import annotations

import gc
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from fabpanel.boards.simulator import SimulatedBoard
from fabpanel.ui.dashboard import PageHeap

from ..conftest import make_settings, wait_for
from ..lab import GIULIA, LASER, PRINTER, create_lab
from .conftest import PanelProcess
from .pages import (
    counter,
    open_page,
    overflowing_elements,
    screenshot,
    status,
    tile,
    tile_names,
    tiles,
    wait,
)
from .simulation import signed_in, simulated_panel
from .test_printers import MEMBER, add_printer, start_printing

pytestmark = pytest.mark.browser

LAB_MACHINES = {'Prusa MK4', 'Laser', 'Drill press', 'Blocked CNC'}
HOSTILE = '<img src=x onerror=alert(1)><b>Bold</b>'


def _in_use_by(driver: WebDriver, machine_id: int, name: str) -> bool:
    return status(driver, machine_id) == 'in_use' and name in tile(driver, machine_id).text


async def test_dashboard_follows_a_real_board_without_reload(panel: PanelProcess, browser: Callable,
                                                             artifacts: Path) -> None:
    driver = browser(1280, 800)
    panel.sign_in(driver)
    open_page(driver, panel.url + '/')
    assert set(tile_names(driver)) == LAB_MACHINES
    assert status(driver, PRINTER) == 'offline' and status(driver, 4) == 'blocked'
    assert (counter(driver, 'free'), counter(driver, 'in_use'), counter(driver, 'offline')) == ('0', '0', '3')
    driver.execute_script('window.fpNotReloaded = true')

    async with SimulatedBoard(PRINTER, '127.0.0.1', panel.mqtt_port) as printer, \
            SimulatedBoard(LASER, '127.0.0.1', panel.mqtt_port) as laser:
        assert (await laser.checkmachine())['request_ok'] is True  # the laser's board comes online: free
        wait(driver, lambda: status(driver, LASER) == 'free', 2, 'laser free')
        assert (await printer.checkuser(GIULIA))['is_valid'] is True
        assert (await printer.startuse(GIULIA))['request_ok'] is True
        t0 = time.monotonic()
        wait(driver, lambda: _in_use_by(driver, PRINTER, 'Giulia'), 2, 'printer in use by Giulia')
        wait(driver, lambda: counter(driver, 'in_use') == '1' and counter(driver, 'free') == '1', 1, 'counters')
        assert counter(driver, 'offline') == '1'
        latency = time.monotonic() - t0
        assert 'Giulia' in tile(driver, PRINTER).text and 'Rossi' not in driver.page_source
        screenshot(driver, artifacts / 'dashboard-desktop.png')

        assert (await printer.stopuse(GIULIA, 60))['request_ok'] is True
        wait(driver, lambda: status(driver, PRINTER) == 'free' and 'Giulia' not in tile(driver, PRINTER).text, 2,
             'printer free again')
        wait(driver, lambda: counter(driver, 'in_use') == '0' and counter(driver, 'free') == '2', 1, 'counters')
    assert driver.execute_script('return window.fpNotReloaded') is True, 'the page was reloaded'
    assert latency < 2


async def test_phone_has_no_horizontal_scrolling(make_panel: Callable[..., PanelProcess], browser: Callable,
                                                 artifacts: Path) -> None:
    panel = make_panel(extra_machines=['Laser cutter Trotec Speedy 400 flexx (back room, by the window)',
                                       'Ultimaker' + 'S' * 60])
    driver = browser(390, 844, mobile=True)
    panel.sign_in(driver, member_id=1)  # a member on her phone
    open_page(driver, panel.url + '/')
    async with SimulatedBoard(PRINTER, '127.0.0.1', panel.mqtt_port) as printer:
        await printer.checkuser(GIULIA)
        await printer.startuse(GIULIA)
        wait(driver, lambda: _in_use_by(driver, PRINTER, 'Giulia'), 2, 'printer in use')
    width, scroll_width = driver.execute_script(
        'return [window.innerWidth, document.documentElement.scrollWidth]')
    assert width == 390
    assert scroll_width <= width
    assert overflowing_elements(driver) == []
    # a phone gets one tile a row, as wide as the screen
    assert all(t.rect['width'] > 300 for t in tiles(driver))
    screenshot(driver, artifacts / 'dashboard-phone.png')


async def test_hostile_names_are_text(make_panel: Callable[..., PanelProcess], browser: Callable) -> None:
    panel = make_panel(extra_machines=[HOSTILE], first_names={1: '<b>Giu</b><script>alert(2)</script>'})
    driver = browser(1280, 800)
    panel.sign_in(driver)
    async with SimulatedBoard(PRINTER, '127.0.0.1', panel.mqtt_port) as printer:
        await printer.startuse(GIULIA)
    for path in ('/', '/kiosk'):
        open_page(driver, panel.url + path)
        hostile = tile(driver, 100)
        assert HOSTILE in hostile.text
        assert hostile.find_elements(By.CSS_SELECTOR, 'img, b, script') == []
        user = tile(driver, PRINTER)
        assert '<b>Giu</b><script>alert(2)</script>' in user.text
        assert user.find_elements(By.CSS_SELECTOR, 'b, script') == []
        assert driver.find_elements(By.CSS_SELECTOR, 'img[src="x"]') == []
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # noqa: B018 - reading it raises when no alert() ran


async def test_italian_browser_gets_italian(panel: PanelProcess, browser: Callable) -> None:
    driver = browser(1280, 800, lang='it')
    panel.sign_in(driver)
    open_page(driver, panel.url + '/')
    body = driver.find_element(By.TAG_NAME, 'body').text
    for word in ('Macchine', 'Libere', 'In uso', 'Manutenzione da fare', 'Scheda offline', 'Bloccata', 'Chiosco'):
        assert word in body
    for word in ('Machines', 'Board offline', 'In use', 'Maintenance due'):
        assert word not in body
    assert driver.execute_script('return document.documentElement.lang') == 'it'
    assert 'Macchine' in driver.title
    # the same page for an English browser (Accept-Language as the request header says)
    assert 'Board offline' in panel.get('/', **{'Accept-Language': 'en-GB,en;q=0.9'})
    assert 'Scheda offline' in panel.get('/', **{'Accept-Language': 'it-IT,it;q=0.9'})


class _Page:
    """Stands for a page's objects: like NiceGUI elements, they refer to each other (a reference cycle)."""

    def __init__(self) -> None:
        self.me = self


async def test_open_pages_leave_the_full_collections_and_closed_ones_are_freed() -> None:
    heap = PageHeap()
    page = _Page()
    alive = weakref.ref(page)
    heap.freeze()  # what `opened` runs a while after dashboards connected
    assert gc.is_tracked(page) and gc.get_freeze_count() > 0
    del page
    gc.collect()
    assert alive() is not None, 'a frozen cycle is not collected: that is why closed pages need the full pass'
    heap.closed()  # a browser went away: one full pass is due in THAW_AFTER_S
    assert heap._thaw is not None  # noqa: SLF001
    heap._thaw.cancel()  # noqa: SLF001 - run it now instead of in 30 s
    heap.thaw()
    assert alive() is None
    assert gc.get_freeze_count() > 0  # what is still open is frozen again


async def test_printer_tiles_on_the_dashboard_follow_the_printer(tmp_path: Path) -> None:
    """In NiceGUI's simulated browser: a printer's tile on '/' is one element that follows the printer live."""
    url = f'sqlite:///{tmp_path}/fabpanel.db'
    await create_lab(url)
    async with simulated_panel(make_settings(tmp_path, url)) as (new_user, panel):
        # one printers section per panel, however many panels this process started before (tests start many)
        page = sys.modules['fabpanel.ui.dashboard']  # NiceGUI's test harness imports page modules anew for each app
        assert len(page._sections[panel.live]) == 1  # noqa: SLF001
        printer_id = await add_printer(panel, 'Prusa XL')
        member = await signed_in(new_user, panel, MEMBER)
        await member.open('/')
        await member.should_see('Prusa XL')
        await member.should_see('Ready')
        found = member.find(marker=f'printer-tile-{printer_id}').elements
        assert len(found) == 1
        tile = found.pop()
        assert list(tile.descendants()) == [], 'a printer tile is one element, drawn in the browser'
        assert tile.props['tile']['href'] == f'/printers/{printer_id}'

        await start_printing(panel, printer_id, tmp_path, member_id=MEMBER)
        await wait_for(lambda: tile.props['data-state'] == 'printing', timeout=5)
        assert tile.props['tile']['who'].startswith('Giulia') and 'Rossi' not in str(tile.props)
        assert tile.props['tile']['file'] == 'benchy.gcode'
        await member.should_see('Printing')
        # temperatures follow without a reload too (printer_sample): the nozzle heats towards 215 °C
        first = tile.props['tile']['temps']
        await wait_for(lambda: tile.props['tile']['temps'] != first, timeout=10)
        assert '/ 215 °C' in tile.props['tile']['temps']
        # every open tile of this printer and language shares one rendered view (nothing copied per browser)
        other = await signed_in(new_user, panel, MEMBER)
        await other.open('/')
        twin = other.find(marker=f'printer-tile-{printer_id}').elements.pop()
        panel.live.events.printer_changed.emit(printer_id)
        await wait_for(lambda: tile.props['tile'] is twin.props['tile'], timeout=5)
