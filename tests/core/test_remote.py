"""Remote start / stop (rule 13.9): only admins, only to a board heard in the last 90 s, with their own card."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from fabpanel.core.remote import Refusal, RemoteAsk, RemoteRefused, heard_recently, remote_card, usable_cards

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OK = RemoteAsk(command='start', may_administer=True, member_active=True, machine_known=True,
               last_heard=NOW - timedelta(seconds=10), cards=['AABBCCDD'])


def refusal(**changes: object) -> Refusal:
    ask = replace(OK, **changes)
    with pytest.raises(RemoteRefused) as e:
        remote_card(ask, NOW)
    return e.value.code


def test_an_admin_with_one_card_sends_it_in_board_case() -> None:
    assert remote_card(OK, NOW) == 'aabbccdd'
    assert remote_card(replace(OK, command='stop'), NOW) == 'aabbccdd'


def test_who_what_and_where() -> None:
    assert refusal(may_administer=False) is Refusal.NOT_ADMIN
    assert refusal(command='reboot') is Refusal.BAD_COMMAND
    assert refusal(machine_known=False) is Refusal.UNKNOWN_MACHINE
    assert refusal(member_active=False) is Refusal.MEMBER_INACTIVE
    # not admin wins over everything else: nothing is told about machines to someone who may not ask
    assert refusal(may_administer=False, machine_known=False, last_heard=None) is Refusal.NOT_ADMIN


def test_only_boards_heard_in_the_last_90_seconds() -> None:
    assert refusal(last_heard=None) is Refusal.OFFLINE
    assert refusal(last_heard=NOW - timedelta(seconds=91)) is Refusal.OFFLINE
    assert heard_recently(NOW - timedelta(seconds=90), NOW)
    assert heard_recently(NOW + timedelta(seconds=2), NOW)  # a clock slightly ahead still counts as heard


def test_cards() -> None:
    assert refusal(cards=[]) is Refusal.NO_CARD
    assert refusal(cards=['1234', 'not hex!']) is Refusal.NO_CARD  # ids a board can never send
    assert usable_cards(['1234', 'AABBCCDD', 'aabbccdd', '0a1b2c3d']) == ['0a1b2c3d', 'aabbccdd']
    assert refusal(cards=['aabbccdd', '0a1b2c3d']) is Refusal.CHOOSE_CARD
    assert refusal(cards=['aabbccdd', '0a1b2c3d'], chosen_uid='11223344') is Refusal.NOT_YOUR_CARD
    assert refusal(cards=['1234'], chosen_uid='1234') is Refusal.NO_CARD
    assert remote_card(replace(OK, cards=['aabbccdd', '0a1b2c3d'], chosen_uid='0A1B2C3D'), NOW) == '0a1b2c3d'
