"""The wire format: board messages parsed strictly, replies that fit the board (spec sections 3-5, 12, 13.1)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabpanel.core.protocol import (
    BUFFERABLE,
    EXPECTS_REPLY,
    INVALID_MACHINE,
    MAX_PAYLOAD,
    MAX_REPLY,
    Action,
    MalformedMessage,
    encode,
    parse_payload,
    parse_topic,
    simple,
)

UID = '0a1b2c3d'


def parse(obj: object, machine_id: int = 7) -> object:
    return parse_payload(machine_id, json.dumps(obj).encode())


# ---- topics ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(('topic', 'machine_id'), [
    ('machine/1', 1), ('machine/65535', 65535), ('machine/007', 7), ('Machine/12', 12),
])
def test_topic_gives_the_machine_id(topic: str, machine_id: int) -> None:
    assert parse_topic(topic, 'machine') == machine_id


@pytest.mark.parametrize('topic', [
    'machine', 'machine/', 'machine/abc', 'machine/0', 'machine/65536', 'machine/123456', 'machine/-1', 'machine/1.5',
    'machine/ 1', 'machine/1/reply', 'machine/1/request', 'other/1', 'machine1', '/machine/1', 'machine/١٢',
    'machine/²', '',
])
def test_topic_outside_the_scheme_is_malformed(topic: str) -> None:
    with pytest.raises(MalformedMessage):
        parse_topic(topic, 'machine')


def test_actions_that_expect_a_reply_and_the_bufferable_ones() -> None:
    assert Action.ALIVE not in EXPECTS_REPLY
    assert set(EXPECTS_REPLY) == set(Action) - {Action.ALIVE}
    assert BUFFERABLE == {Action.STARTUSE, Action.STOPUSE, Action.MAINTENANCE}


# ---- payloads as real boards send them -------------------------------------------------------------------------
def test_alive_from_current_firmware() -> None:
    raw = (b'{"action": "alive", "version": "hardware-rev1-en_US,1.0.1", "ip": "192.168.10.37", '
           b'"serial": "3c71bf4a9d10", "heap": "183204"}')
    m = parse_payload(3, raw)
    assert (m.machine_id, m.action, m.version, m.ip, m.serial, m.heap) == (
        3, Action.ALIVE, 'hardware-rev1-en_US,1.0.1', '192.168.10.37', '3c71bf4a9d10', 183204)


@pytest.mark.parametrize(('extra', 'heap', 'serial'), [
    ({'heap': 183204}, 183204, ''), ({'heap': '12', 'serial': 'ab'}, 12, 'ab'), ({}, 0, ''), ({'heap': -5}, 0, ''),
    ({'heap': 10**15}, 2**31 - 1, ''),  # must fit the board table's integer column on PostgreSQL
    ({'heap': '99999999999'}, 2**31 - 1, ''),
])
def test_alive_from_older_firmware_and_odd_heaps(extra: dict[str, object], heap: int, serial: str) -> None:
    m = parse({'action': 'alive', 'version': 'x,0.6.0', 'ip': '10.0.0.2', **extra})
    assert (m.heap, m.serial) == (heap, serial)


def test_alive_without_version_or_ip_is_accepted() -> None:
    m = parse({'action': 'alive'})
    assert m.action is Action.ALIVE and m.version == '' and m.ip == ''


@pytest.mark.parametrize(('obj', 'action', 'uid', 'duration', 'replay'), [
    ({'action': 'checkmachine'}, Action.CHECKMACHINE, '', None, False),
    ({'action': 'synccache'}, Action.SYNCCACHE, '', None, False),
    ({'action': 'checkuser', 'uid': UID}, Action.CHECKUSER, UID, None, False),
    ({'action': 'checkuser', 'uid': '0A1B2C3D'}, Action.CHECKUSER, UID, None, False),
    ({'action': 'startuse', 'uid': UID}, Action.STARTUSE, UID, None, False),
    ({'action': 'startuse', 'uid': UID, 'replay': True}, Action.STARTUSE, UID, None, True),
    ({'action': 'inuse', 'uid': UID, 'duration': 1830}, Action.INUSE, UID, 1830, False),
    ({'action': 'stopuse', 'uid': UID, 'duration': 5412}, Action.STOPUSE, UID, 5412, False),
    ({'action': 'stopuse', 'uid': UID, 'duration': 5412, 'replay': True}, Action.STOPUSE, UID, 5412, True),
    ({'action': 'stopuse', 'uid': UID, 'duration': '60'}, Action.STOPUSE, UID, 60, False),
    ({'action': 'stopuse', 'uid': UID, 'duration': 60.0}, Action.STOPUSE, UID, 60, False),
    ({'action': 'stopuse', 'uid': UID, 'duration': -3}, Action.STOPUSE, UID, -3, False),  # range is the service's
    ({'action': 'stopuse', 'uid': UID, 'duration': 10**6}, Action.STOPUSE, UID, 10**6, False),
    ({'action': 'maintenance', 'uid': UID, 'replay': True}, Action.MAINTENANCE, UID, None, True),
    ({'action': 'checkuser', 'uid': UID, 'extra': [1, 2], 'x': None}, Action.CHECKUSER, UID, None, False),
])
def test_requests(obj: dict[str, object], action: Action, uid: str, duration: int | None, replay: bool) -> None:
    m = parse(obj)
    assert (m.machine_id, m.action, m.uid, m.duration, m.replay) == (7, action, uid, duration, replay)


def test_board_string_concatenation_spacing_and_replay_insertion() -> None:
    # the firmware builds JSON by hand and inserts `"replay": true` before the closing brace (spec 8)
    m = parse_payload(1, b'{"action":"stopuse", "uid":"0a1b2c3d","duration":12,"replay":true}')
    assert m.replay and m.duration == 12


# ---- malformed input: no reply (rule 13.1) ----------------------------------------------------------------------
MALFORMED: list[bytes] = [
    b'',
    b'{"action": "checkuser", "uid": ',
    b'\xff\xfe{"action": "checkmachine"}',
    '{"action": "checkuser", "uid": "0a1b2c3d", "x": "\udcff"}'.encode('utf-8', 'surrogatepass'),
    b'[1, 2]', b'"checkmachine"', b'42', b'null', b'true',
    b'{"uid": "0a1b2c3d"}',
    b'{"action": 5}', b'{"action": null}', b'{"action": ["checkmachine"]}',
    b'{"action": "reboot"}', b'{"action": "CHECKMACHINE"}', b'{"action": ""}',
    b'{"action": "checkuser"}', b'{"action": "checkuser", "uid": ""}', b'{"action": "checkuser", "uid": "  "}',
    b'{"action": "checkuser", "uid": 12345678}', b'{"action": "checkuser", "uid": null}',
    b'{"action": "checkuser", "uid": "zz1b2c3d"}',  # not hexadecimal: no board sends it
    b'{"action": "checkuser", "uid": "0a1b2c3d\\u0000"}',  # would not even fit a PostgreSQL text column
    b'{"action": "checkuser", "uid": "' + b'0' * 33 + b'"}',
    b'{"action": "startuse"}',
    b'{"action": "stopuse", "uid": "0a1b2c3d"}',
    b'{"action": "inuse", "uid": "0a1b2c3d", "duration": null}',
    b'{"action": "inuse", "uid": "0a1b2c3d", "duration": "abc"}',
    b'{"action": "inuse", "uid": "0a1b2c3d", "duration": "--5"}',
    '{"action": "inuse", "uid": "0a1b2c3d", "duration": "²"}'.encode(),
    '{"action": "inuse", "uid": "0a1b2c3d", "duration": "١٢"}'.encode(),
    b'{"action": "inuse", "uid": "0a1b2c3d", "duration": "1e3"}',
    b'{"action": "inuse", "uid": "0a1b2c3d", "duration": true}',
    b'{"action": "inuse", "uid": "0a1b2c3d", "duration": 1.5}',
    b'{"action": "inuse", "uid": "0a1b2c3d", "duration": NaN}',
    b'{"action": "inuse", "uid": "0a1b2c3d", "duration": Infinity}',
    b'{"action": "inuse", "uid": "0a1b2c3d", "duration": [1]}',
    b'{"action": "stopuse", "uid": "0a1b2c3d", "duration": 5, "replay": "yes"}',
    b'{"action": "startuse", "uid": "0a1b2c3d", "replay": 1}',
    b'{"action": "alive", "version": 1.01}',
    b'{"action": "alive", "heap": "lots"}',
    b'{"action": "alive", "version": "x\\u0000y"}',
    b'{"action": "checkmachine", "pad": "' + b'x' * MAX_PAYLOAD + b'"}',
]


@pytest.mark.parametrize('payload', MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_payloads(payload: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_payload(1, payload)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_parse_or_are_malformed(payload: bytes) -> None:
    try:
        parse_payload(1, payload)
    except MalformedMessage:
        pass


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=3), max_leaves=8)


@given(st.sampled_from([a.value for a in Action]), st.dictionaries(
    st.sampled_from(['uid', 'duration', 'replay', 'heap', 'version', 'ip', 'serial']), _json, max_size=5))
def test_any_json_object_parses_or_is_malformed(action: str, fields: dict[str, object]) -> None:
    """Whatever the field values, the parser never fails with anything but MalformedMessage."""
    try:
        m = parse_payload(1, json.dumps({'action': action, **fields}).encode())
    except MalformedMessage:
        return
    assert m.action == action
    assert isinstance(m.replay, bool)
    assert m.duration is None or isinstance(m.duration, int)
    assert 0 <= m.heap < 2**31


# ---- replies -------------------------------------------------------------------------------------------------------
def test_replies_are_compact_json_with_real_booleans() -> None:
    data = encode({'request_ok': True, 'is_valid': False, 'level': 2})
    assert json.loads(data) == {'request_ok': True, 'is_valid': False, 'level': 2}
    assert b'true' in data and b'"True"' not in data
    assert INVALID_MACHINE == {'request_ok': False, 'message': 'Invalid machine ID'}
    assert simple(True) == {'request_ok': True, 'message': ''}


def test_long_texts_are_cut_so_a_reply_fits_the_board() -> None:
    reply = {'request_ok': True, 'is_valid': True, 'maintenance': True, 'allowed': True, 'name': 'Ü' * 200,
             'logoff': 480, 'type': 1, 'grace': 2, 'description': '🛠' * 200}
    data = encode(reply)
    assert len(data) <= MAX_REPLY
    out = json.loads(data)
    assert out['name'] == 'Ü' * 16 and out['description'] == '🛠' * 16
    assert out['logoff'] == 480 and out['maintenance'] is True


def test_reply_and_its_topic_fit_together() -> None:
    reply = {'request_ok': True, 'name': 'n' * 150, 'message': 'm' * 150}
    topic = 'machine/65535/reply'
    data = encode(reply, topic=topic)
    assert len(data) + len(topic) <= MAX_REPLY
    # short replies are untouched, whatever the topic
    assert json.loads(encode({'request_ok': True, 'name': 'Prusa MK4'}, topic=topic))['name'] == 'Prusa MK4'


def test_a_long_card_list_is_shortened_to_fit() -> None:
    cards = [{'uid': f'{i:08x}', 'level': 1} for i in range(200)]
    topic = 'machine/12/reply'
    data = encode({'request_ok': True, 'cards': cards}, topic=topic)
    assert len(data) + len(topic) <= MAX_REPLY
    out = json.loads(data)
    assert out['request_ok'] is True and 5 <= len(out['cards']) < 200
    assert out['cards'] == cards[:len(out['cards'])]  # the first ones are kept, in order
