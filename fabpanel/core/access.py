"""Who may use which machine: the card decision and the level a board is told."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


@dataclass(kw_only=True, slots=True)
class RoleRule:
    id: int
    may_use_all_machines: bool = False
    may_maintain: bool = False


@dataclass(kw_only=True, slots=True)
class MemberRule:
    id: int
    first_name: str
    role_id: int
    disabled: bool = False
    deleted: bool = False


@dataclass(kw_only=True, slots=True)
class MachineRule:
    id: int
    name: str
    type_id: int
    blocked: bool = False
    authorization_required: bool = True
    auto_logoff_minutes: int = 0
    grace_minutes: int = 2


@dataclass(kw_only=True, slots=True)
class AccessRules:
    """Everything a card decision needs, indexed for O(1) look-ups on the board path."""

    roles: dict[int, RoleRule] = field(default_factory=dict)
    members: dict[int, MemberRule] = field(default_factory=dict)
    cards: dict[str, int] = field(default_factory=dict)  # uid -> member id
    machines: dict[int, MachineRule] = field(default_factory=dict)
    authorizations: dict[tuple[int, int], datetime | None] = field(default_factory=dict)  # (member, machine) -> expiry


class Verdict(StrEnum):
    ALLOWED = 'allowed'
    UNKNOWN_CARD = 'unknown_card'
    DISABLED = 'disabled'
    BLOCKED = 'blocked'
    NOT_AUTHORIZED = 'not_authorized'
    EXPIRED = 'expired'


@dataclass(kw_only=True, slots=True, frozen=True)
class CardDecision:
    verdict: Verdict
    member_id: int | None = None
    first_name: str = ''
    level: int = 0  # the board's user level: 0 refused, 1 user, 2 may do maintenance
    may_maintain: bool = False

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOWED


def board_level(role: RoleRule) -> int:
    # Level 2 makes the board offer the maintenance prompt, so it follows the maintenance flag; "may use every
    # machine" grants access only (the old backend mixed the two and boards then showed an error).
    return 2 if role.may_maintain else 1


def decide_card(rules: AccessRules, uid: str, machine_id: int, now: datetime) -> CardDecision:
    member_id = rules.cards.get(uid)
    member = rules.members.get(member_id) if member_id is not None else None
    if member is None:
        return CardDecision(verdict=Verdict.UNKNOWN_CARD)
    role = rules.roles.get(member.role_id) or RoleRule(id=member.role_id)
    base = {'member_id': member.id, 'first_name': member.first_name, 'may_maintain': role.may_maintain}
    if member.disabled or member.deleted:
        return CardDecision(verdict=Verdict.DISABLED, **base)
    machine = rules.machines.get(machine_id)
    if machine is None:
        return CardDecision(verdict=Verdict.NOT_AUTHORIZED, **base)
    if role.may_use_all_machines:
        return CardDecision(verdict=Verdict.ALLOWED, level=board_level(role), **base)
    if machine.blocked:
        return CardDecision(verdict=Verdict.BLOCKED, **base)
    if machine.authorization_required:
        key = (member.id, machine_id)
        if key not in rules.authorizations:
            return CardDecision(verdict=Verdict.NOT_AUTHORIZED, **base)
        expiry = rules.authorizations[key]
        if expiry is not None and expiry <= now:
            return CardDecision(verdict=Verdict.EXPIRED, **base)
    return CardDecision(verdict=Verdict.ALLOWED, level=board_level(role), **base)


def checkuser_reply(decision: CardDecision) -> dict[str, object]:
    if decision.verdict is Verdict.UNKNOWN_CARD:
        return {'request_ok': True, 'is_valid': False, 'name': 'Unknown', 'missing_auth': False, 'level': 0}
    if not decision.allowed:
        return {'request_ok': True, 'is_valid': False, 'name': 'User not authorized', 'missing_auth': True,
                'level': 0}
    return {'request_ok': True, 'is_valid': True, 'name': decision.first_name[:16], 'missing_auth': False,
            'level': decision.level}


def cache_cards(rules: AccessRules, machine_id: int, now: datetime, limit: int = 200) -> list[dict[str, object]]:
    """The `synccache` answer: cards that would be accepted on this machine right now."""
    out: list[dict[str, object]] = []
    for uid, _member_id in rules.cards.items():
        decision = decide_card(rules, uid, machine_id, now)
        if decision.allowed and len(uid) == 8:
            out.append({'uid': uid, 'level': decision.level})
            if len(out) >= limit:
                break
    return out
