"""Card decisions and board levels (spec 5.3, section 11, rule 13.3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fabpanel.core.access import (
    AccessRules,
    MachineRule,
    MemberRule,
    RoleRule,
    Verdict,
    board_level,
    cache_cards,
    checkuser_reply,
    decide_card,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PRINTER, DRILL, BLOCKED = 1, 3, 4
MEMBER, MAINTAINER, STAFF, HOST = 1, 2, 3, 4  # roles


def lab() -> AccessRules:
    rules = AccessRules()
    rules.roles = {
        MEMBER: RoleRule(id=MEMBER),
        MAINTAINER: RoleRule(id=MAINTAINER, may_maintain=True),
        STAFF: RoleRule(id=STAFF, may_use_all_machines=True, may_maintain=True),
        HOST: RoleRule(id=HOST, may_use_all_machines=True),  # every machine, no maintenance
    }
    people = [(1, 'Giulia', MEMBER, False, False), (2, 'Mario', MAINTAINER, False, False),
              (3, 'Anna', STAFF, False, False), (4, 'Dino', MEMBER, True, False), (5, 'Elsa', MEMBER, False, False),
              (6, 'Leo', HOST, False, False), (7, 'Gone', STAFF, False, True), (8, 'Zoe', MEMBER, False, False)]
    for mid, name, role, disabled, deleted in people:
        rules.members[mid] = MemberRule(id=mid, first_name=name, role_id=role, disabled=disabled, deleted=deleted)
    rules.cards = {'0a1b2c3d': 1, '11223344': 2, 'aabbccdd': 3, 'deadbeef': 4, '55667788': 5, 'c0ffee01': 6,
                   '77777777': 7, '12345678': 8, '1234': 1}
    rules.machines = {
        PRINTER: MachineRule(id=PRINTER, name='Prusa MK4', type_id=1),
        DRILL: MachineRule(id=DRILL, name='Drill press', type_id=3, authorization_required=False),
        BLOCKED: MachineRule(id=BLOCKED, name='Blocked CNC', type_id=1, blocked=True),
    }
    rules.authorizations = {
        (1, PRINTER): None, (1, BLOCKED): None, (2, PRINTER): None, (4, PRINTER): None,
        (5, PRINTER): NOW - timedelta(days=1), (8, PRINTER): NOW + timedelta(days=1),
    }
    return rules


@pytest.mark.parametrize(('uid', 'machine', 'verdict', 'level'), [
    ('0a1b2c3d', PRINTER, Verdict.ALLOWED, 1),
    ('11223344', PRINTER, Verdict.ALLOWED, 2),  # may maintain -> level 2 (rule 13.3)
    ('aabbccdd', PRINTER, Verdict.ALLOWED, 2),
    ('c0ffee01', PRINTER, Verdict.ALLOWED, 1),  # every machine, no maintenance -> level 1, not 2 (rule 13.3)
    ('f00dcafe', PRINTER, Verdict.UNKNOWN_CARD, 0),
    ('deadbeef', PRINTER, Verdict.DISABLED, 0),
    ('77777777', PRINTER, Verdict.DISABLED, 0),  # soft-deleted member
    ('55667788', PRINTER, Verdict.EXPIRED, 0),
    ('12345678', PRINTER, Verdict.ALLOWED, 1),  # authorization that expires tomorrow
    ('11223344', BLOCKED, Verdict.BLOCKED, 0),
    ('0a1b2c3d', BLOCKED, Verdict.BLOCKED, 0),  # authorized, but the machine is blocked
    ('aabbccdd', BLOCKED, Verdict.ALLOWED, 2),  # may use every machine: even a blocked one (spec 5.3 step 4)
    ('c0ffee01', BLOCKED, Verdict.ALLOWED, 1),
    ('0a1b2c3d', DRILL, Verdict.ALLOWED, 1),  # machine type without authorization
    ('12345678', DRILL, Verdict.ALLOWED, 1),
    ('deadbeef', DRILL, Verdict.DISABLED, 0),  # ... but never for a disabled member
    ('0a1b2c3d', 99, Verdict.NOT_AUTHORIZED, 0),
    ('12345678', 2, Verdict.NOT_AUTHORIZED, 0),
    ('1234', PRINTER, Verdict.ALLOWED, 1),  # an old short id still decides (a board just never sends it)
])
def test_decide_card(uid: str, machine: int, verdict: Verdict, level: int) -> None:
    d = decide_card(lab(), uid, machine, NOW)
    assert d.verdict is verdict
    assert d.level == level
    assert d.allowed is (verdict is Verdict.ALLOWED)


def test_authorization_expiring_exactly_now_is_expired() -> None:
    rules = lab()
    rules.authorizations[(1, PRINTER)] = NOW
    assert decide_card(rules, '0a1b2c3d', PRINTER, NOW).verdict is Verdict.EXPIRED
    assert decide_card(rules, '0a1b2c3d', PRINTER, NOW - timedelta(seconds=1)).allowed


def test_member_with_a_role_that_no_longer_exists_is_a_plain_user() -> None:
    rules = lab()
    rules.members[1].role_id = 42
    d = decide_card(rules, '0a1b2c3d', PRINTER, NOW)
    assert d.allowed and d.level == 1 and not d.may_maintain


@pytest.mark.parametrize(('role', 'level'), [
    (RoleRule(id=1), 1), (RoleRule(id=1, may_maintain=True), 2), (RoleRule(id=1, may_use_all_machines=True), 1),
    (RoleRule(id=1, may_use_all_machines=True, may_maintain=True), 2),
])
def test_level_two_follows_the_maintenance_flag_only(role: RoleRule, level: int) -> None:
    assert board_level(role) == level


def test_checkuser_replies_match_the_spec() -> None:
    rules = lab()
    reply = lambda uid, machine=PRINTER: checkuser_reply(decide_card(rules, uid, machine, NOW))  # noqa: E731
    assert reply('0a1b2c3d') == {'request_ok': True, 'is_valid': True, 'name': 'Giulia', 'missing_auth': False,
                                 'level': 1}
    assert reply('f00dcafe') == {'request_ok': True, 'is_valid': False, 'name': 'Unknown', 'missing_auth': False,
                                 'level': 0}
    refused = {'request_ok': True, 'is_valid': False, 'name': 'User not authorized', 'missing_auth': True,
               'level': 0}
    assert reply('deadbeef') == refused
    assert reply('55667788') == refused
    assert reply('0a1b2c3d', BLOCKED) == refused
    for r in (reply('0a1b2c3d'), reply('f00dcafe'), reply('deadbeef')):
        assert type(r['is_valid']) is bool and type(r['level']) is int and type(r['request_ok']) is bool


def test_checkuser_name_fits_the_lcd() -> None:
    rules = lab()
    rules.members[1].first_name = 'Maria Giulia Benedetta Antonietta'
    assert checkuser_reply(decide_card(rules, '0a1b2c3d', PRINTER, NOW))['name'] == 'Maria Giulia Ben'


def test_cache_cards_lists_only_accepted_board_cards() -> None:
    cards = cache_cards(lab(), PRINTER, NOW)
    assert {c['uid']: c['level'] for c in cards} == {'0a1b2c3d': 1, '11223344': 2, 'aabbccdd': 2, 'c0ffee01': 1,
                                                      '12345678': 1}  # not '1234': no board can send it
    assert len(cache_cards(lab(), PRINTER, NOW, limit=2)) == 2
