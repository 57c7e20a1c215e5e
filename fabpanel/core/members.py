"""Rules for member records and their cards: what a valid member form is, how a search is read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from .auth import normalize_email, valid_email
from .cards import InvalidCardUid, normalize_uid

NAME_MAX = 80
EMAIL_MAX = 254
LABEL_MAX = 80
LANGUAGES = ('', 'en', 'it')  # '' follows the browser
PER_PAGE = 25


class Status(StrEnum):
    """The member list's status filter."""

    ANY = ''  # active and disabled (deleted members are only listed when asked for)
    ACTIVE = 'active'
    DISABLED = 'disabled'
    DELETED = 'deleted'


@dataclass(kw_only=True, slots=True, frozen=True)
class MemberInput:
    """What the member form sends (before cleaning)."""

    first_name: str
    last_name: str = ''
    email: str = ''
    language: str = ''
    role_id: int | None = None


@dataclass(kw_only=True, slots=True, frozen=True)
class CleanMember:
    first_name: str
    last_name: str
    email: str | None  # None: no address (addresses are unique only when set)
    language: str
    role_id: int


def clean_member(data: MemberInput) -> tuple[CleanMember | None, dict[str, str]]:
    """The cleaned form, or the problems per field (codes: required, too_long, bad_email, bad_language)."""
    problems: dict[str, str] = {}
    first = ' '.join((data.first_name or '').split())
    last = ' '.join((data.last_name or '').split())
    email = normalize_email(data.email or '')
    if not first:
        problems['first_name'] = 'required'
    elif len(first) > NAME_MAX:
        problems['first_name'] = 'too_long'
    if len(last) > NAME_MAX:
        problems['last_name'] = 'too_long'
    if email and (len(email) > EMAIL_MAX or not valid_email(email)):
        problems['email'] = 'bad_email'
    if data.language not in LANGUAGES:
        problems['language'] = 'bad_language'
    if data.role_id is None:
        problems['role_id'] = 'required'
    if problems:
        return None, problems
    assert data.role_id is not None
    return CleanMember(first_name=first, last_name=last, email=email or None, language=data.language,
                       role_id=data.role_id), {}


def clean_label(text: str) -> str | None:
    """A card's label ('blue key fob'), or None when too long."""
    label = ' '.join((text or '').split())
    return label if len(label) <= LABEL_MAX else None


def card_uid(text: str) -> str:
    """A card id as typed by a person, normalized; raises InvalidCardUid (empty text included)."""
    if not (text or '').strip():
        raise InvalidCardUid('a card id is needed')
    return normalize_uid(text)


@dataclass(kw_only=True, slots=True, frozen=True)
class Search:
    """A free-text search read as terms: every term must match a name, the e-mail or a card id."""

    terms: tuple[str, ...]
    card_terms: tuple[str | None, ...]  # per term, the card id it could be part of (None: not hex)


_HEXISH = re.compile(r'[0-9a-f]{1,32}')


def parse_search(text: str, max_terms: int = 5) -> Search:
    terms = tuple(t for t in (text or '').lower().split() if t)[:max_terms]
    card_terms = tuple(_card_term(t) for t in terms)
    return Search(terms=terms, card_terms=card_terms)


def _card_term(term: str) -> str | None:
    cleaned = re.sub(r'[:\-]', '', term)
    return cleaned if _HEXISH.fullmatch(cleaned) else None


def like_pattern(term: str) -> str:
    """`%term%` for LIKE with the wildcards a person may type escaped (the escape character is a backslash)."""
    escaped = term.replace('\\', '\\\\').replace('%', '\\%').replace('_', '\\_')
    return f'%{escaped}%'


def page_count(total: int, per_page: int = PER_PAGE) -> int:
    return max(1, -(-total // per_page))


def clamp_page(page: int, total: int, per_page: int = PER_PAGE) -> int:
    """Pages count from 1; a page past the end shows the last one."""
    return min(max(1, page), page_count(total, per_page))
