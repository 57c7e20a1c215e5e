"""Translations: gettext catalogues in locales/<lang>/LC_MESSAGES/fabpanel.po, read with babel.

Pages get a `Translator` as `_`: `_('Free')` translates a message, `_.pgettext('counter', 'Free')` one whose
translation depends on where it stands (Italian: a free machine is "Libera", the counter of free machines
"Libere"). Update the catalogues with:

    pybabel extract -k _ -k N_ -o locales/fabpanel.pot fabpanel
    pybabel update -i locales/fabpanel.pot -d locales -D fabpanel
"""

from __future__ import annotations

import gettext
from functools import cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES_DIR = Path(__file__).resolve().parents[1] / 'locales'
LANGUAGES = {'en': 'English', 'it': 'Italiano'}
DEFAULT_LANGUAGE = 'en'


class Translator:
    """The `_` of one language: call it with a message; `pgettext` for a message with a context."""

    def __init__(self, lang: str, catalog: gettext.NullTranslations) -> None:
        self.lang = lang
        self._catalog = catalog

    def __call__(self, message: str) -> str:
        return self._catalog.gettext(message)

    def pgettext(self, context: str, message: str) -> str:
        return self._catalog.pgettext(context, message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        # Italian and English share the one/other rule, but the catalog's Plural-Forms decides for any language
        return self._catalog.ngettext(singular, plural, n)


@cache
def translations(lang: str) -> gettext.NullTranslations:
    po = LOCALES_DIR / lang / 'LC_MESSAGES' / 'fabpanel.po'
    if lang == DEFAULT_LANGUAGE or not po.exists():
        return gettext.NullTranslations()
    with po.open('rb') as f:
        catalog = read_po(f, locale=lang)
    buf = BytesIO()
    write_mo(buf, catalog)  # compiled in memory: no binary files in the repository
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def gettext_for(lang: str) -> Translator:
    lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
    return Translator(lang, translations(lang))


def pick_language(accept_language: str | None, preferred: str | None = None) -> str:
    """The member's own choice, else the browser's most wanted supported language, else English."""
    if preferred in LANGUAGES:
        return preferred  # type: ignore[return-value]
    wanted: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or '').split(',')):
        code, *params = (p.strip() for p in part.split(';'))
        quality = 1.0
        for param in params:
            if param.lower().startswith('q='):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        lang = code.lower().split('-')[0]
        if lang in LANGUAGES and quality > 0:
            wanted.append((-quality, index, lang))
    return min(wanted)[2] if wanted else DEFAULT_LANGUAGE


def N_(text: str) -> str:  # noqa: N802 - the gettext convention for marking strings translated later
    return text
