"""The in-memory log for the system page: keeps the newest lines, masks e-mail addresses and card ids."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from fabpanel import logbuffer
from fabpanel.logbuffer import LogBuffer, mask_private


@pytest.fixture
def buffer() -> Iterator[LogBuffer]:
    b = LogBuffer(capacity=5)
    log = logging.getLogger('fabpanel.test_logbuffer')
    log.addHandler(b)
    old, log.level = log.level, logging.DEBUG
    yield b
    log.removeHandler(b)
    log.level = old


def log() -> logging.Logger:
    return logging.getLogger('fabpanel.test_logbuffer')


@pytest.mark.parametrize(('text', 'secret'), [
    ('unknown card 0a1b2c3d on machine 1', '0a1b2c3d'),
    ('card DEADBEEF refused', 'DEADBEEF'),
    ('card 11223344 refused', '11223344'),
    ('old card 0a1b2c3d4e5f6a7b', '0a1b2c3d4e5f6a7b'),
    ('typed 0A:1B:2C:3D by staff', '0A:1B:2C:3D'),
    ('typed 0a-1b-2c-3d by staff', '0a-1b-2c-3d'),
    ("payload {'uid': '0a1b2c3d', 'machine': 1}", '0a1b2c3d'),
    ('topic machine/1 uid=0a1b2c3d.', '0a1b2c3d'),
    ('mail to giulia.rossi+lab@example.org failed', 'giulia.rossi+lab@example.org'),
    ('admin <anna@mail.example.co.uk> created', 'anna@mail.example.co.uk'),
])
def test_personal_data_is_masked(text: str, secret: str) -> None:
    masked = mask_private(text)
    assert secret not in masked and secret.lower() not in masked.lower()
    assert masked != text


def test_masked_card_ids_stay_distinguishable_and_other_text_stays() -> None:
    assert mask_private('unknown card 0a1b2c3d on machine 12') == 'unknown card 0a…3d on machine 12'
    assert mask_private('mail to giulia@example.org') == 'mail to [e-mail]'
    for harmless in ('connected to broker 127.0.0.1:1883 as fabpanel-1a2b3c', 'heap 123456 bytes, 2024-05-01 12:34:56',
                     'machine 65535 free', 'Prusa MK4 at 10:15:30'):
        assert mask_private(harmless) == harmless


def test_the_buffer_keeps_the_newest_lines_formatted_and_masked(buffer: LogBuffer) -> None:
    for i in range(8):
        log().info('line %d for %s', i, 'mario@example.org')
    lines = buffer.lines()
    assert [line.seq for line in lines] == [4, 5, 6, 7, 8]
    assert lines[-1].text.endswith('INFO fabpanel.test_logbuffer: line 7 for [e-mail]')
    assert all('example.org' not in line.text for line in lines)
    assert buffer.lines(after=7)[0].text.endswith('line 7 for [e-mail]')


def test_level_filter_and_tracebacks(buffer: LogBuffer) -> None:
    log().debug('details')
    log().warning('careful')
    try:
        raise ValueError('card 0a1b2c3d of giulia@example.org')
    except ValueError:
        log().exception('it broke')
    assert [line.level for line in buffer.lines(min_level=logging.WARNING)] == ['WARNING', 'ERROR']
    error = buffer.lines(min_level=logging.ERROR)[0].text
    assert 'Traceback' in error and 'ValueError: card 0a…3d of [e-mail]' in error
    assert '0a1b2c3d' not in error and 'giulia@' not in error


def test_lines_from_threads_are_all_kept() -> None:
    b = LogBuffer(capacity=10_000)
    logger = logging.getLogger('fabpanel.test_logbuffer.threads')
    logger.addHandler(b)
    logger.setLevel(logging.INFO)
    try:
        def work(n: int) -> None:
            for i in range(500):
                logger.info('%d %d', n, i)
                b.lines()  # reading while others write must not fail

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        logger.removeHandler(b)
    assert len(b.lines()) == 2000 and b.last_seq == 2000


def test_install_is_idempotent_and_reaches_the_root_logger() -> None:
    logbuffer.uninstall()
    try:
        first = logbuffer.install()
        assert logbuffer.install() is first and logbuffer.installed() is first
        assert logging.getLogger().handlers.count(first) == 1
    finally:
        logbuffer.uninstall()
    assert logbuffer.installed() is None
