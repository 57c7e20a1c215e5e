"""Card ids as the Fab-O-Matic boards send them: 8 lowercase hex characters."""

from __future__ import annotations

import re

_BOARD_UID = re.compile(r'[0-9a-f]{8}')
_TYPED = re.compile(r'[0-9a-fA-F]{1,32}')


class InvalidCardUid(ValueError):
    """Text that cannot be a card id at all (not hex, too long)."""


def normalize_uid(text: str) -> str:
    """Lower-case and strip what a person typed; separators such as ':' or spaces are removed.

    Ids shorter than 8 characters are kept as they are (never padded): they come from old data and
    simply cannot match a board.
    """
    cleaned = re.sub(r'[\s:\-]', '', text or '')
    if not _TYPED.fullmatch(cleaned):
        raise InvalidCardUid(f'a card id is 1 to 32 hexadecimal characters, got {text!r}')
    return cleaned.lower()


def is_board_uid(uid: str) -> bool:
    """True when a board can ever send this id (exactly 8 lowercase hex characters)."""
    return bool(_BOARD_UID.fullmatch(uid))


def mask_uid(uid: str) -> str:
    """A card id fit for logs: enough to tell cards apart, not enough to clone one."""
    return f'{uid[:2]}…{uid[-2:]}' if len(uid) > 4 else '…'
