"""The Fab-O-Matic wire protocol: parse board messages into typed values, build replies that fit the board."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

MAX_PAYLOAD = 1024  # boards send < 292 bytes; anything far larger is not a board
MAX_REPLY = 280  # board buffer is 300 bytes including topic and MQTT header
MAX_DURATION = 86_400
LCD_WIDTH = 16
MAX_HEAP = 2**31 - 1  # the board table's integer column
_INT_TEXT = re.compile(r'-?[0-9]{1,11}')  # ASCII digits only: '²' or '١٢' are digits to str.isdigit, not to int()
_UID = re.compile(r'[0-9a-f]{1,32}')


class Action(StrEnum):
    ALIVE = 'alive'
    CHECKMACHINE = 'checkmachine'
    CHECKUSER = 'checkuser'
    STARTUSE = 'startuse'
    INUSE = 'inuse'
    STOPUSE = 'stopuse'
    MAINTENANCE = 'maintenance'
    SYNCCACHE = 'synccache'


EXPECTS_REPLY = frozenset(Action) - {Action.ALIVE}
BUFFERABLE = frozenset({Action.STARTUSE, Action.STOPUSE, Action.MAINTENANCE})


class MalformedMessage(ValueError):
    """A message that is not a valid board request; it gets no reply (the reason is logged)."""


@dataclass(kw_only=True, slots=True, frozen=True)
class BoardMessage:
    machine_id: int
    action: Action
    uid: str = ''
    duration: int | None = None  # seconds, as the board measured them; may be out of range
    replay: bool = False
    version: str = ''
    ip: str = ''
    serial: str = ''
    heap: int = 0


def parse_topic(topic: str, root: str) -> int:
    """`machine/12` -> 12. Raises MalformedMessage for anything outside the scheme."""
    parts = topic.split('/')
    if len(parts) != 2 or parts[0].lower() != root.lower():
        raise MalformedMessage(f'topic outside the scheme: {topic[:60]!r}')
    ident = parts[1]
    if not ident.isascii() or not ident.isdigit() or len(ident) > 5:
        raise MalformedMessage(f'machine id is not a number: {ident[:20]!r}')
    machine_id = int(ident)
    if not 1 <= machine_id <= 65535:
        raise MalformedMessage(f'machine id out of range: {machine_id}')
    return machine_id


def _text(obj: dict[str, Any], key: str, required: bool = True, limit: int = 120) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise MalformedMessage(f'missing field {key!r}')
        return ''
    if not isinstance(value, str):
        raise MalformedMessage(f'field {key!r} must be text')
    if '\x00' in value:  # no database text column takes it
        raise MalformedMessage(f'field {key!r} holds a NUL character')
    return value[:limit]


def _int(obj: dict[str, Any], key: str, required: bool = True) -> int | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise MalformedMessage(f'missing field {key!r}')
        return None
    if isinstance(value, bool):
        raise MalformedMessage(f'field {key!r} must be a number')
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value)
    raise MalformedMessage(f'field {key!r} must be a number')


def parse_payload(machine_id: int, payload: bytes) -> BoardMessage:
    if len(payload) > MAX_PAYLOAD:
        raise MalformedMessage(f'payload of {len(payload)} bytes is too large')
    try:
        obj = json.loads(payload.decode('utf-8'))
    except UnicodeDecodeError:
        raise MalformedMessage('payload is not UTF-8') from None
    except ValueError:
        raise MalformedMessage('payload is not JSON') from None
    if not isinstance(obj, dict):
        raise MalformedMessage('payload is not a JSON object')
    raw_action = obj.get('action')
    if not isinstance(raw_action, str):
        raise MalformedMessage('missing field "action"')
    try:
        action = Action(raw_action)
    except ValueError:
        raise MalformedMessage(f'unknown action {raw_action[:20]!r}') from None
    replay = obj.get('replay', False)
    if not isinstance(replay, bool):
        raise MalformedMessage('field "replay" must be true or false')
    if action is Action.ALIVE:
        heap = min(max(_int(obj, 'heap', required=False) or 0, 0), MAX_HEAP)
        return BoardMessage(machine_id=machine_id, action=action, version=_text(obj, 'version', required=False),
                            ip=_text(obj, 'ip', required=False, limit=64),
                            serial=_text(obj, 'serial', required=False, limit=32), heap=heap)
    if action in (Action.CHECKMACHINE, Action.SYNCCACHE):
        return BoardMessage(machine_id=machine_id, action=action, replay=replay)
    uid = _text(obj, 'uid', limit=64).strip().lower()
    if not _UID.fullmatch(uid):
        # boards send 8 hex characters (spec 4.2); anything else is not a card and must not reach the database
        raise MalformedMessage('field "uid" is not a hexadecimal card id')
    duration = _int(obj, 'duration') if action in (Action.INUSE, Action.STOPUSE) else None
    return BoardMessage(machine_id=machine_id, action=action, uid=uid, duration=duration, replay=replay)


def encode(reply: dict[str, Any], topic: str = '') -> bytes:
    """JSON the board reads; long texts are cut so the reply plus its topic fit the board's buffer (spec 12.3)."""
    limit = MAX_REPLY - len(topic.encode())
    data = json.dumps(reply, ensure_ascii=False, separators=(',', ':')).encode()
    if len(data) <= limit:
        return data
    trimmed = dict(reply)
    for key in ('description', 'name', 'message'):
        if isinstance(trimmed.get(key), str):
            trimmed[key] = trimmed[key][:LCD_WIDTH]
    data = json.dumps(trimmed, ensure_ascii=False, separators=(',', ':')).encode()
    if len(data) > limit and 'cards' in trimmed:
        cards = list(trimmed['cards'])
        while cards and len(data) > limit:
            cards.pop()
            trimmed['cards'] = cards
            data = json.dumps(trimmed, ensure_ascii=False, separators=(',', ':')).encode()
    return data


def simple(ok: bool, message: str = '') -> dict[str, Any]:
    return {'request_ok': ok, 'message': message}


INVALID_MACHINE = simple(False, 'Invalid machine ID')
