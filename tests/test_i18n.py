"""Translations: the catalogues cover every message in the code, keep placeholders, and the language is picked well."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from fabpanel.i18n import LANGUAGES, LOCALES_DIR, N_, gettext_for, pick_language, translations

ROOT = Path(__file__).resolve().parents[1]
POT = LOCALES_DIR / 'fabpanel.pot'
PLACEHOLDER = re.compile(r'\{[^{}]*\}')
# what `pybabel extract -k _ -k N_ -k pgettext:1c,2` looks for (ngettext is among babel's defaults)
KEYWORDS = {'_': None, 'N_': None, 'pgettext': ((1, 'c'), 2), 'ngettext': (1, 2)}


def _catalog(path: Path, locale: str | None = None):  # noqa: ANN202
    with path.open('rb') as f:
        return read_po(f, locale=locale)


def _key(m) -> tuple[str | None, str]:  # noqa: ANN001
    return m.context, m.id if isinstance(m.id, str) else m.id[0]  # a plural entry is known by its singular


def _keys(catalog) -> set[tuple[str | None, str]]:  # noqa: ANN001
    return {_key(m) for m in catalog if m.id}


def _in_code() -> set[tuple[str | None, str]]:
    found = set()
    for _file, _line, message, _comments, context in extract_from_dir(ROOT / 'fabpanel', keywords=KEYWORDS):
        found.add((context, message if isinstance(message, str) else message[0]))
    return found


def test_the_template_is_up_to_date_with_the_code() -> None:
    in_code = _in_code()
    assert in_code, 'no messages found: is the extraction broken?'
    missing = in_code - _keys(_catalog(POT))
    assert not missing, f'run `pybabel extract -k _ -k N_ -o locales/fabpanel.pot fabpanel`; missing: {missing}'


@pytest.mark.parametrize('lang', sorted(set(LANGUAGES) - {'en'}))
def test_every_message_is_translated(lang: str) -> None:
    po = _catalog(LOCALES_DIR / lang / 'LC_MESSAGES' / 'fabpanel.po', lang)
    wanted = _keys(_catalog(POT)) | _in_code()
    by_key = {_key(m): m for m in po if m.id}

    def translated(m) -> bool:  # noqa: ANN001
        forms = m.string if isinstance(m.string, tuple) else (m.string,)
        return all(forms) and not m.fuzzy

    untranslated = sorted(str(k) for k in wanted if k not in by_key or not translated(by_key[k]))
    assert not untranslated, f'{lang}: untranslated (run `pybabel update` and translate): {untranslated}'


@pytest.mark.parametrize('lang', sorted(set(LANGUAGES) - {'en'}))
def test_placeholders_survive_translation(lang: str) -> None:
    po = _catalog(LOCALES_DIR / lang / 'LC_MESSAGES' / 'fabpanel.po', lang)
    for m in po:
        if not m.id or not m.string:
            continue
        if isinstance(m.id, str):
            assert sorted(PLACEHOLDER.findall(m.id)) == sorted(PLACEHOLDER.findall(m.string)), m.id
            m.string.format(**{p.strip('{}'): 'x' for p in PLACEHOLDER.findall(m.id)})  # and it still formats
            continue
        # plural: the code formats every form with the plural msgid's names; a singular form may leave the count out
        names = set(PLACEHOLDER.findall(m.id[1]))
        for form in m.string:
            assert set(PLACEHOLDER.findall(form)) <= names, (m.id, form)
            form.format(**{p.strip('{}'): 'x' for p in names})
        assert set(PLACEHOLDER.findall(m.string[-1])) == names, m.id


def test_the_italian_catalogue_is_used() -> None:
    _ = gettext_for('it')
    assert _('Machines') == 'Macchine'
    assert _('Free') == 'Libera' and _.pgettext('counter', 'Free') == 'Libere'
    assert _('since {time}').format(time='14:05') == 'dalle 14:05'
    assert _('not in the catalogue') == 'not in the catalogue'
    en = gettext_for('en')
    assert en('Machines') == 'Machines' and en.pgettext('counter', 'Free') == 'Free'
    assert gettext_for('xx').lang == 'en'
    assert translations('it') is translations('it')  # compiled once
    assert N_('Machines') == 'Machines'
    one, many = '{count} use · {hours} · {open} open', '{count} uses · {hours} · {open} open'
    assert _.ngettext(one, many, 1).startswith('{count} utilizzo ')
    assert _.ngettext(one, many, 5).startswith('{count} utilizzi ')
    assert en.ngettext(one, many, 1) == one and en.ngettext(one, many, 0) == many


@pytest.mark.parametrize(('header', 'preferred', 'expected'), [
    (None, None, 'en'),
    ('', None, 'en'),
    ('it', None, 'it'),
    ('it-IT,it;q=0.9,en-US;q=0.8,en;q=0.7', None, 'it'),
    ('en-GB,en;q=0.9,it;q=0.8', None, 'en'),
    ('de-DE,de;q=0.9,it;q=0.5,en;q=0.3', None, 'it'),  # the first language we have
    ('fr-FR,fr;q=0.9', None, 'en'),
    ('en;q=0.2, it;q=0.8', None, 'it'),  # quality, not order, decides
    ('IT-it', None, 'it'),
    ('it;q=0, en;q=0.5', None, 'en'),  # q=0 means "not this one"
    ('it;q=abc', None, 'en'),
    ('*', None, 'en'),
    ('en-US', 'it', 'it'),  # the member's own choice wins
    ('it', 'xx', 'it'),  # an unknown choice is ignored
])
def test_pick_language(header: str | None, preferred: str | None, expected: str) -> None:
    assert pick_language(header, preferred) == expected
