"""Remote start / stop of a machine from the panel (spec section 6, rule 13.9): who may send it, to which board,
with which card."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from fabpanel.core.cards import is_board_uid

HEARD_WITHIN = timedelta(seconds=90)  # a board silent for longer is offline: a command would wait for nobody
COMMANDS = ('start', 'stop')


class Refusal(StrEnum):
    NOT_ADMIN = 'not_admin'
    BAD_COMMAND = 'bad_command'
    UNKNOWN_MACHINE = 'unknown_machine'
    OFFLINE = 'offline'
    MEMBER_INACTIVE = 'member_inactive'
    NO_CARD = 'no_card'
    CHOOSE_CARD = 'choose_card'  # several cards: the member must say which one the board should see
    NOT_YOUR_CARD = 'not_your_card'


class RemoteRefused(Exception):
    """A remote command that must not be sent; `code` says why."""

    def __init__(self, code: Refusal) -> None:
        super().__init__(code.value)
        self.code = code


@dataclass(kw_only=True, slots=True, frozen=True)
class RemoteAsk:
    """Everything the decision needs, gathered by the service."""

    command: str
    may_administer: bool
    member_active: bool  # not disabled, not deleted
    machine_known: bool  # exists and is not deleted
    last_heard: datetime | None  # the last message from the machine's board
    cards: Sequence[str]  # the asking member's card uids
    chosen_uid: str | None = None


def usable_cards(uids: Sequence[str]) -> list[str]:
    """The cards a board can ever send (8 lowercase hex): only those can drive a remote login."""
    return sorted({u.lower() for u in uids if is_board_uid(u.lower())})


def heard_recently(last_heard: datetime | None, now: datetime) -> bool:
    return last_heard is not None and now - last_heard <= HEARD_WITHIN


def remote_card(ask: RemoteAsk, now: datetime) -> str:
    """The card uid to send with the command; raises RemoteRefused when the command must not go out."""
    if not ask.may_administer:
        raise RemoteRefused(Refusal.NOT_ADMIN)
    if ask.command not in COMMANDS:
        raise RemoteRefused(Refusal.BAD_COMMAND)
    if not ask.machine_known:
        raise RemoteRefused(Refusal.UNKNOWN_MACHINE)
    if not heard_recently(ask.last_heard, now):
        raise RemoteRefused(Refusal.OFFLINE)
    if not ask.member_active:
        raise RemoteRefused(Refusal.MEMBER_INACTIVE)
    cards = usable_cards(ask.cards)
    if not cards:
        raise RemoteRefused(Refusal.NO_CARD)
    if ask.chosen_uid is None:
        if len(cards) > 1:
            raise RemoteRefused(Refusal.CHOOSE_CARD)
        return cards[0]
    chosen = ask.chosen_uid.lower()
    if chosen not in cards:
        raise RemoteRefused(Refusal.NOT_YOUR_CARD)
    return chosen
