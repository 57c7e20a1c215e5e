"""E-mail templates are files: `templates/<name>.<lang>.txt`, first line `Subject: ...`."""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).with_name('templates')


def render(name: str, lang: str, **values: str) -> tuple[str, str]:
    """Returns (subject, body) in `lang` (English when that language has no template)."""
    path = TEMPLATES / f'{name}.{lang}.txt'
    if not path.exists():
        path = TEMPLATES / f'{name}.en.txt'
    first, _, body = path.read_text(encoding='utf-8').partition('\n')
    subject = first.removeprefix('Subject:').strip()
    return subject.format(**values), body.lstrip('\n').format(**values)
