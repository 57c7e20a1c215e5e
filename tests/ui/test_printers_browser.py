"""The printers pages in a real headless Chromium against the real panel process and a simulated printer that
prints: the tile follows temperature and progress without a reload, the chart gains points, and a phone
(390x844) never scrolls sideways."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from ..lab import create_lab
from ..support import Mosquitto
from .conftest import ROOT, PanelProcess, _run
from .pages import open_page, overflowing_elements, screenshot, wait

pytestmark = pytest.mark.browser

ADDRESS = 'sim://browser-mk4?speed=30&report=0.25'  # 30 simulated seconds per second: heats up in seconds
REMOTE = 'browser-benchy.gcode'
PRINTING_BLUE = 'rgb(29, 78, 216)'  # --fp-in_use of assets/fabpanel.css
MEMBER, STAFF = 1, 3  # Giulia started the print; Anna is staff
# the panel process, with the simulated printer already printing the job the database knows (as --demo does)
LAUNCHER = f"""
import runpy, sys
from fabpanel.printers.sim import sim_printer
sim_printer({ADDRESS!r}).start_outside({REMOTE!r}, duration_s=3600, layers=100)
sys.argv = [{str(ROOT / 'main.py')!r}]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


async def _seed_printing(url: str) -> None:
    from fabpanel.db.engine import create_engine, session_factory
    from fabpanel.db.models import Printer, PrintJob

    engine = create_engine(url)
    try:
        async with session_factory(engine)() as s:
            printer = Printer(name='Prusa MK4 (sim)', kind='simulated', address=ADDRESS)
            s.add(printer)
            await s.flush()
            s.add(
                PrintJob(
                    printer_id=printer.id,
                    member_id=MEMBER,
                    file_name='Benchy.gcode',
                    remote_name=REMOTE,
                    state='printing',
                    started_at=datetime.now(UTC),
                )
            )
            await s.commit()
    finally:
        await engine.dispose()


class PrintingPanel(PanelProcess):
    def start(self, timeout: float = 20.0) -> None:
        with self.log.open('ab') as log:
            self.proc = subprocess.Popen(
                [sys.executable, '-c', LAUNCHER], cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.wait_healthy(timeout)


@pytest.fixture
def printing_panel(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[PanelProcess]:
    workdir = tmp_path / 'panel'
    workdir.mkdir()
    url = f'sqlite:///{workdir}/fabpanel.db'
    _run(create_lab(url))
    _run(_seed_printing(url))
    panel = PrintingPanel(workdir, url, mosquitto.port)
    panel.start()
    yield panel
    panel.stop()


def tile_text(driver: WebDriver) -> str:
    return driver.find_element(By.CSS_SELECTOR, '[data-printer]').text


def progress(text: str) -> int | None:
    m = re.search(r'(\d+) %', text)
    return int(m.group(1)) if m else None


def nozzle(text: str) -> str | None:
    m = re.search(r'Nozzle (\S+)', text)
    return m.group(1) if m else None


def chart_points(driver: WebDriver) -> int:
    """Points of the nozzle trace, as plotly holds them in the page."""
    return driver.execute_script(
        "const e = document.querySelector('[data-chart]'); return e && e.data ? e.data[0].x.length : -1"
    )


def no_sideways_scroll(driver: WebDriver) -> None:
    assert driver.execute_script('return document.documentElement.scrollWidth <= window.innerWidth')
    assert overflowing_elements(driver) == []


async def test_tile_and_chart_follow_a_printing_printer_on_a_phone(
    printing_panel: PanelProcess, browser: Callable, artifacts: Path
) -> None:
    panel = printing_panel
    phone = browser(390, 844, mobile=True)
    panel.sign_in(phone, member_id=MEMBER)
    open_page(phone, panel.url + '/printers')
    wait(phone, lambda: 'Printing' in tile_text(phone), 15, 'the printer prints')
    phone.execute_script('window.fpNotReloaded = true')
    first = tile_text(phone)
    assert 'Giulia' in first and 'Benchy.gcode' in first and 'Prusa MK4 (sim)' in first
    assert (
        phone.execute_script("return getComputedStyle(document.querySelector('[data-printer]')).borderLeftColor")
        == PRINTING_BLUE
    )
    start = progress(first)
    wait(phone, lambda: (progress(tile_text(phone)) or 0) >= (start or 0) + 2, 30, 'progress advances')
    assert re.search(r'layer \d+/100', tile_text(phone)) and 'left)' in tile_text(phone)

    # staff preheat for PETG at their desk: the member's phone sees the target and the nozzle climb
    printer_id = phone.find_element(By.CSS_SELECTOR, '[data-printer]').get_attribute('data-printer')
    desk = browser(1280, 800)
    panel.sign_in(desk, member_id=STAFF)
    open_page(desk, f'{panel.url}/printers/{printer_id}')
    desk.find_element(By.XPATH, "//button[contains(., 'Preheat PETG')]").click()
    wait(phone, lambda: '/ 240 °C' in tile_text(phone), 10, 'the new nozzle target')
    heating = nozzle(tile_text(phone))
    wait(phone, lambda: nozzle(tile_text(phone)) != heating, 10, 'the nozzle temperature climbs')
    assert phone.execute_script('return window.fpNotReloaded') is True, 'the page was reloaded'
    no_sideways_scroll(phone)
    screenshot(phone, artifacts / 'printers-phone.png')
    open_page(phone, f'{panel.url}/printers/{printer_id}')
    wait(phone, lambda: chart_points(phone) > 0, 15, 'the chart is drawn with the last minutes')
    phone.execute_script('window.fpNotReloaded = true')
    drawn = chart_points(phone)
    # one point per printer every 2 s, appended in the page (extendTraces), not by a new figure
    wait(phone, lambda: chart_points(phone) >= drawn + 2, 15, 'the chart gains points')
    assert phone.execute_script('return window.fpNotReloaded') is True, 'the page was reloaded'
    assert phone.execute_script("return document.querySelector('[data-chart] .modebar') === null"), 'no mode bar'
    height = phone.execute_script("return document.querySelector('[data-chart]').getBoundingClientRect().height")
    assert 150 <= height <= 320
    detail = tile_text(phone)
    wait(phone, lambda: progress(tile_text(phone)) != progress(detail), 15, 'the large tile follows too')
    no_sideways_scroll(phone)
    screenshot(phone, artifacts / 'printer-detail-phone.png')
