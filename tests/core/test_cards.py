"""Card ids: what people type becomes what boards send (spec 4.2, rule 13.2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabpanel.core.cards import InvalidCardUid, is_board_uid, mask_uid, normalize_uid


@pytest.mark.parametrize(('typed', 'stored'), [
    ('0A1B2C3D', '0a1b2c3d'),
    (' 0a:1b:2c:3d ', '0a1b2c3d'),
    ('0a-1b-2c-3d', '0a1b2c3d'),
    ('1234', '1234'),  # old data: kept as it is, never padded
    ('AbCdEf0123456789', 'abcdef0123456789'),
])
def test_normalize_lowercases_and_strips_separators(typed: str, stored: str) -> None:
    assert normalize_uid(typed) == stored


@pytest.mark.parametrize('typed', ['', '   ', 'xyz12345', '0a1b2c3g', '0' * 33, None])
def test_normalize_rejects_what_cannot_be_a_card(typed: str | None) -> None:
    with pytest.raises(InvalidCardUid):
        normalize_uid(typed)  # type: ignore[arg-type]


@pytest.mark.parametrize(('uid', 'board'), [
    ('0a1b2c3d', True), ('0A1B2C3D', False), ('1234', False), ('0a1b2c3d4e', False), ('0a1b2c3z', False),
])
def test_is_board_uid(uid: str, board: bool) -> None:
    assert is_board_uid(uid) is board


@given(st.binary(min_size=4, max_size=4))
def test_every_board_card_survives_normalisation(raw: bytes) -> None:
    uid = raw[::-1].hex()  # the firmware's reversed 4 bytes (spec 4.2)
    assert is_board_uid(uid)
    assert normalize_uid(uid.upper()) == uid


def test_mask_hides_the_middle_of_a_card() -> None:
    assert mask_uid('0a1b2c3d') == '0a…3d'
    assert '1b2c' not in mask_uid('0a1b2c3d')
    assert mask_uid('1234') == '…'
    assert mask_uid('') == '…'
