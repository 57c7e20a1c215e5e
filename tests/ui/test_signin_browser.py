"""Sign-in, sign-out and password reset in real headless Chromium, with a real SMTP server."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from fabpanel.ui.session import COOKIE

from ..support import SmtpSink
from .conftest import PanelProcess
from .pages import open_page, screenshot, wait

pytestmark = pytest.mark.browser
PASSWORD = 'correct horse battery'


def _type(driver: WebDriver, testid: str, text: str) -> None:
    field = driver.find_element(By.CSS_SELECTOR, f'input[data-testid="{testid}"]')
    field.send_keys(Keys.CONTROL, 'a')  # clear() would bypass the input events Vue listens to
    field.send_keys(Keys.DELETE)
    field.send_keys(text)


def _click(driver: WebDriver, testid: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]').click()


def _path(driver: WebDriver) -> str:
    return driver.execute_script('return location.pathname + location.search')


def _sign_in(driver: WebDriver, email: str, password: str) -> None:
    _type(driver, 'email', email)
    _type(driver, 'password', password)
    _click(driver, 'signin')


def test_sign_in_and_out(make_panel: Callable[..., PanelProcess], browser: Callable, artifacts: Path) -> None:
    panel = make_panel(passwords={1: PASSWORD})
    driver = browser(1280, 800)
    open_page(driver, panel.url + '/')  # not signed in: sent to the sign-in page, coming back after
    assert _path(driver) == '/login?next=%2F'
    _sign_in(driver, 'giulia@example.org', 'not the password')
    wait(driver, lambda: 'E-mail or password is wrong.' in driver.page_source, 5, 'error shown')
    screenshot(driver, artifacts / 'signin-error.png')
    _sign_in(driver, 'giulia@example.org', PASSWORD)
    wait(driver, lambda: _path(driver) == '/' and 'Prusa MK4' in driver.page_source, 10, 'dashboard after sign-in')
    cookie = driver.get_cookie(COOKIE)
    assert cookie is not None and cookie['httpOnly'] is True and cookie['sameSite'] == 'Lax'
    assert 'Giulia' in driver.find_element(By.CSS_SELECTOR, '[data-testid="user-menu"]').text
    screenshot(driver, artifacts / 'signed-in.png')

    _click(driver, 'user-menu')
    wait(driver, lambda: driver.find_elements(By.CSS_SELECTOR, '[data-testid="signout"]'), 5, 'menu open')
    _click(driver, 'signout')
    wait(driver, lambda: _path(driver).startswith('/login'), 10, 'signed out')
    assert driver.get_cookie(COOKIE) is None
    # the old session cannot come back: the page asks to sign in again
    driver.add_cookie({'name': COOKIE, 'value': cookie['value'], 'path': '/'})
    open_page(driver, panel.url + '/')
    assert _path(driver).startswith('/login')


def test_password_reset_through_real_smtp(make_panel: Callable[..., PanelProcess], browser: Callable,
                                          smtp: SmtpSink, artifacts: Path) -> None:
    panel = make_panel(passwords={1: PASSWORD}, smtp_port=smtp.port)
    driver = browser(390, 844, mobile=True)  # on a phone, where people read their mail
    open_page(driver, panel.url + '/login')
    driver.find_element(By.LINK_TEXT, 'Forgot your password?').click()
    wait(driver, lambda: _path(driver) == '/forgot', 5, 'forgot page')
    _type(driver, 'email', 'giulia@example.org')
    _click(driver, 'send-reset')
    wait(driver, lambda: 'a link is on its way' in driver.page_source, 5, 'same answer for everyone')
    deadline = time.monotonic() + 10
    while not smtp.messages and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(smtp.messages) == 1
    message = smtp.messages[0]
    assert message['To'] == 'giulia@example.org' and 'password' in message['Subject'].lower()
    link = re.search(r'(http://\S+/reset\?token=\S+)', smtp.bodies()[0]).group(1)
    assert link.startswith(panel.url + '/reset?token=')  # built from the configured base URL

    open_page(driver, link)
    _type(driver, 'new-password', 'short')
    _type(driver, 'new-password-again', 'short')
    _click(driver, 'save-password')
    wait(driver, lambda: 'Choose a longer password' in driver.page_source, 5, 'weak password refused')
    _type(driver, 'new-password', 'a much better password')
    _type(driver, 'new-password-again', 'a much better password')
    _click(driver, 'save-password')
    wait(driver, lambda: _path(driver) == '/login', 10, 'back to sign-in')
    screenshot(driver, artifacts / 'reset-done-phone.png')
    _sign_in(driver, 'giulia@example.org', 'a much better password')
    wait(driver, lambda: _path(driver) == '/', 10, 'signed in with the new password')
    # the link was single-use
    open_page(driver, link)
    _type(driver, 'new-password', 'yet another password')
    _type(driver, 'new-password-again', 'yet another password')
    _click(driver, 'save-password')
    wait(driver, lambda: 'no longer valid' in driver.page_source, 5, 'used link refused')
