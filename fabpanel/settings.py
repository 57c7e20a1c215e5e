"""Settings: one validated object read from a TOML file, with FABPANEL_<SECTION>__<KEY> environment overrides.

Where to read them: the file given on the command line (``--config``), else ``$FABPANEL_CONFIG``, else
``./fabpanel.toml``. On first run that file does not exist: the example (``settings.example.toml``) is copied
there with a freshly generated ``[web] secret_key``, readable by its owner only (mode 0600).

Names: where a setting means the same as in FabOMatic's ``settings.toml`` it has FabOMatic's section and key
name (``[database] url``, ``[MQTT] broker``, ``[web] secret_key``, ``[email] server`` ...), so a lab can bring
its FabOMatic file. Section names are matched without regard to case (``[mqtt]`` is ``[MQTT]``); key names are
lower case. Every key can be overridden by an environment variable ``FABPANEL_<SECTION>__<KEY>``, e.g.
``FABPANEL_MQTT__PORT=1884`` (section and key in any case); its text is converted to the key's type
(whole numbers; ``true/false``, ``yes/no``, ``on/off``, ``1/0`` for switches).

Validation happens once, at start, and stops at the first problem with a :class:`SettingsError` whose
message names the key (and the environment variable, when the value came from one) and the problem.

Unknown names -- the decision:

* Keys and sections FabOMatic has but fabpanel does not use (``[database] name``, the ``[authentik]`` single
  sign-on section) are accepted and ignored, with a warning, so a FabOMatic file loads as it is.
* Any other unknown section or key is refused, with the known names and the closest match in the message.
  A typo such as ``[MQTT] prot = 1884`` silently ignored would leave the panel on the wrong port; refusing it
  costs one edit. (Environment variables are checked the same way.)
* Two FabOMatic spellings are read in fabpanel's meaning, with a warning: an old-style ``[MQTT] topic =
  "machine/#"`` is read as ``"machine"``, and a ``[web] base_url`` without a scheme gets ``https://``.

Warnings are logged (logger ``fabpanel.settings``) and kept in :attr:`Settings.warnings`.
"""

from __future__ import annotations

import difflib
import logging
import os
import secrets
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EXAMPLE_FILE = Path(__file__).with_name('settings.example.toml')
DEFAULT_FILE = Path('fabpanel.toml')
ENV_PREFIX = 'FABPANEL_'


class SettingsError(ValueError):
    """A setting is missing or has a wrong value; the message names the key and the problem."""


@dataclass(kw_only=True, slots=True)
class DatabaseSettings:
    url: str = 'sqlite:///data/fabpanel.db'
    # where fabpanel keeps its files (job uploads, backups, the first admin's one-time password)
    data_dir: str = 'data'


@dataclass(kw_only=True, slots=True)
class MqttSettings:
    broker: str = 'embedded'
    port: int = 1883
    client_id: str = 'fabpanel'
    topic: str = 'machine'
    reply_subtopic: str = '/reply'
    request_subtopic: str = '/request'
    stats_topic: str = 'stats'
    user: str = ''
    password: str = ''
    keepalive: int = 30
    # the address the embedded broker listens on: every interface, so boards on the lab network reach it
    embedded_bind: str = '0.0.0.0'  # noqa: S104

    @property
    def embedded(self) -> bool:
        return self.broker.strip().lower() == 'embedded'

    @property
    def host(self) -> str:
        """Where fabpanel itself connects: the embedded broker on this machine, else [MQTT] broker."""
        if not self.embedded:
            return self.broker
        bind = self.embedded_bind.strip()
        return '127.0.0.1' if bind in {'', '0.0.0.0', '::', 'localhost'} else bind  # noqa: S104


@dataclass(kw_only=True, slots=True)
class WebSettings:
    host: str = '0.0.0.0'  # noqa: S104 - a lab panel is meant to be reached from the lab's network
    port: int = 8080
    secret_key: str = ''
    default_admin_email: str = 'admin@fablab.org'
    base_url: str = 'http://localhost:8080'


@dataclass(kw_only=True, slots=True)
class EmailSettings:
    server: str = 'localhost'
    port: int = 587
    use_tls: bool = True
    username: str = ''
    password: str = ''
    sender: str = 'fabpanel@localhost'


@dataclass(kw_only=True, slots=True)
class WeeklySummarySettings:
    enabled: bool = False
    language: str = 'en'


@dataclass(kw_only=True, slots=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    web: WebSettings = field(default_factory=WebSettings)
    email: EmailSettings = field(default_factory=EmailSettings)
    weekly_summary: WeeklySummarySettings = field(default_factory=WeeklySummarySettings)
    source: Path | None = None
    warnings: list[str] = field(default_factory=list)


# TOML section name (as FabOMatic spells it) -> attribute of Settings
SECTIONS: dict[str, str] = {
    'database': 'database',
    'MQTT': 'mqtt',
    'web': 'web',
    'email': 'email',
    'weekly_summary': 'weekly_summary',
}
# FabOMatic settings fabpanel has no use for: accepted (with a warning) so a FabOMatic file loads unchanged
FABOMATIC_ONLY_KEYS: dict[str, set[str]] = {'database': {'name'}}
FABOMATIC_ONLY_SECTIONS: set[str] = {'authentik'}

_TRUE = {'1', 'true', 'yes', 'on'}
_FALSE = {'0', 'false', 'no', 'off'}


class _Loader:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.origin: dict[tuple[str, str], str] = {}  # (section, key) -> file or environment variable

    def where(self, section: str, key: str) -> str:
        origin = self.origin.get((section, key), '')
        label = f'[{section}] {key}'
        if origin.startswith(ENV_PREFIX):
            return f'{origin} ({label})'
        return f'{label} in {origin}' if origin else label

    def warn(self, message: str) -> None:
        self.settings.warnings.append(message)
        log.warning('%s', message)

    def coerce(self, section: str, key: str, value: Any, target: Any) -> Any:
        where = self.where(section, key)
        if isinstance(target, bool):
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            raise SettingsError(f'setting {where}: expected true or false, got {value!r}')
        if isinstance(target, int):
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str):
                try:
                    return int(value.strip())
                except ValueError:
                    pass
            raise SettingsError(f'setting {where}: expected a whole number, got {value!r}')
        if isinstance(target, str):
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise SettingsError(f'setting {where}: expected text, got {value!r}')
            return str(value)
        return value

    def apply(self, data: dict[str, Any], origin: str, env: dict[tuple[str, str], str] | None = None) -> None:
        """Apply one source; `env` maps (section, key) as given to the variable's name, for messages."""
        by_lower = {name.lower(): name for name in SECTIONS}
        for section, values in data.items():
            name = by_lower.get(section.lower())
            if name is None:
                if not isinstance(values, dict):
                    raise SettingsError(f'{origin}: key {section!r} is outside any section; put it under the '
                                        f'section it belongs to, e.g. [database] or [MQTT]')
                if section.lower() in FABOMATIC_ONLY_SECTIONS:
                    self.warn(f'{origin}: section [{section}] is a FabOMatic setting fabpanel does not use; ignored')
                    continue
                what = f'variable {env[(section, "")]}: no section [{section}]' if env else f'section [{section}]'
                raise SettingsError(f'{origin}: unknown {what}{_suggest(section, SECTIONS)} '
                                    f'(known sections: {", ".join(f"[{s}]" for s in SECTIONS)})')
            if not isinstance(values, dict):
                raise SettingsError(f'{origin}: [{section}] must be a section of keys, got {values!r}')
            target = getattr(self.settings, SECTIONS[name])
            known = [f.name for f in fields(target)]
            for key, value in values.items():
                if key not in known:
                    if key in FABOMATIC_ONLY_KEYS.get(name, ()):
                        self.warn(f'{origin}: [{name}] {key} is a FabOMatic setting fabpanel does not use; ignored')
                        continue
                    label = f'variable {env[(section, key)]}' if env else f'key [{name}] {key}'
                    raise SettingsError(f'{origin}: unknown {label}{_suggest(key, known)} '
                                        f'(known keys of [{name}]: {", ".join(known)})')
                self.origin[(name, key)] = env[(section, key)] if env else origin
                setattr(target, key, self.coerce(name, key, value, getattr(target, key)))

    def normalise(self) -> None:
        s = self.settings
        if s.mqtt.topic.endswith('/#') and '/' not in s.mqtt.topic[:-2]:
            old, s.mqtt.topic = s.mqtt.topic, s.mqtt.topic[:-2]
            self.warn(f'{self.where("MQTT", "topic")} = {old!r} read as {s.mqtt.topic!r} '
                      f'(fabpanel subscribes to <topic>/<machine id> itself)')
        url = s.web.base_url.strip()
        if url and '://' not in url:
            s.web.base_url = f'https://{url}'
            self.warn(f'{self.where("web", "base_url")} = {url!r} has no scheme; using {s.web.base_url!r}')

    def validate(self) -> None:
        s = self.settings

        def check(ok: bool, section: str, key: str, problem: str) -> None:
            if not ok:
                raise SettingsError(f'setting {self.where(section, key)}: {problem}')

        for section, port in (('MQTT', s.mqtt.port), ('web', s.web.port), ('email', s.email.port)):
            check(1 <= port <= 65535, section, 'port', f'must be between 1 and 65535, got {port}')
        check(bool(s.mqtt.broker.strip()), 'MQTT', 'broker', 'must be a host name or "embedded"')
        check(bool(s.mqtt.embedded_bind.strip()), 'MQTT', 'embedded_bind',
              'must be the address the embedded broker listens on, e.g. "0.0.0.0"')
        check(bool(s.mqtt.client_id.strip()), 'MQTT', 'client_id', 'must not be empty')
        topic = s.mqtt.topic
        check(bool(topic) and not set(topic) & {'/', '+', '#'}, 'MQTT', 'topic',
              f'must be one topic level without slashes or wildcards, e.g. "machine", got {topic!r}')
        for key, sub in (('reply_subtopic', s.mqtt.reply_subtopic), ('request_subtopic', s.mqtt.request_subtopic)):
            check(sub.startswith('/') and len(sub) > 1 and sub.count('/') == 1 and not set(sub) & {'+', '#'},
                  'MQTT', key, f'must be one level with its leading slash, e.g. "/reply", got {sub!r}')
        check(s.mqtt.reply_subtopic != s.mqtt.request_subtopic, 'MQTT', 'request_subtopic',
              f'must differ from reply_subtopic ({s.mqtt.reply_subtopic!r})')
        stats = s.mqtt.stats_topic
        check(bool(stats) and not set(stats) & {'+', '#'} and not stats.startswith('/'), 'MQTT', 'stats_topic',
              f'must be a topic without wildcards or leading slash, e.g. "stats", got {stats!r}')
        check(5 <= s.mqtt.keepalive <= 600, 'MQTT', 'keepalive',
              f'must be between 5 and 600 seconds, got {s.mqtt.keepalive}')
        problem = database_url_problem(s.database.url)
        check(problem is None, 'database', 'url', problem or '')
        check(s.web.base_url.startswith(('http://', 'https://')), 'web', 'base_url',
              f'must start with http:// or https://, got {s.web.base_url!r}')
        check(s.weekly_summary.language in {'en', 'it'}, 'weekly_summary', 'language',
              f'must be "en" or "it", got {s.weekly_summary.language!r}')


def database_url_problem(url: str) -> str | None:
    """What is wrong with a [database] url, or None when fabpanel can use it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from fabpanel.db.engine import async_url

    hint = 'use sqlite:///path/to/file.db or postgresql://user:password@host/database'
    try:
        u = make_url(async_url(url))
    except (ArgumentError, ValueError) as e:
        return f'is not a database URL ({e}); {hint}'
    if u.drivername == 'sqlite+aiosqlite':
        if not u.database or u.database == ':memory:' or u.database.startswith('file::memory:'):
            return f'needs a file path (an in-memory database would forget everything), got {url!r}; {hint}'
        return None
    if u.drivername == 'postgresql+asyncpg':
        if not u.database:
            return f'names no database, got {url!r}; {hint}'
        return None
    return f'must start with sqlite:/// or postgresql://, got {url.split(":", 1)[0]!r}; {hint}'


def _suggest(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=1, cutoff=0.6)
    if not close:
        return ''
    match = next(k for k in known if k.lower() == close[0])
    return f' (did you mean {match!r}?)'


def _env_overrides(environ: dict[str, str]) -> tuple[dict[str, dict[str, str]], dict[tuple[str, str], str]]:
    out: dict[str, dict[str, str]] = {}
    names: dict[tuple[str, str], str] = {}
    for name, value in environ.items():
        if not name.upper().startswith(ENV_PREFIX) or '__' not in name[len(ENV_PREFIX):]:
            continue
        section, key = name[len(ENV_PREFIX):].split('__', 1)
        out.setdefault(section, {})[key.lower()] = value
        names[(section, key.lower())] = name
        names.setdefault((section, ''), name)
    return out, names


def _first_run(path: Path) -> None:
    """Copy the example with a fresh secret key; the file is created 0600, so the key is never world-readable."""
    text = EXAMPLE_FILE.read_text(encoding='utf-8')
    marker = 'secret_key = ""'
    assert marker in text, f'{EXAMPLE_FILE} lost its {marker!r} line'  # noqa: S101 - a packaging error
    text = text.replace(marker, f'secret_key = "{secrets.token_urlsafe(32)}"', 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
        f.write(text)
    os.chmod(path, 0o600)  # whatever the umask
    log.warning('first run: wrote %s from the example; edit it to suit your lab', path)


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None, create: bool = True) -> Settings:
    """Read and validate settings; on first run copy the example (with a fresh secret key) to the chosen path."""
    environ = dict(os.environ if environ is None else environ)
    path = Path(path or environ.get('FABPANEL_CONFIG') or DEFAULT_FILE)
    settings = Settings(source=path)
    loader = _Loader(settings)
    if not path.exists() and create:
        try:
            _first_run(path)
        except FileExistsError:
            pass  # another process wrote it first
        except OSError as e:
            raise SettingsError(f'{path}: cannot create the settings file: {e}') from None
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding='utf-8'))
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f'{path}: not valid TOML: {e}') from None
        except (OSError, UnicodeDecodeError) as e:
            raise SettingsError(f'{path}: cannot read the settings file: {e}') from None
        loader.apply(data, str(path))
    overrides, names = _env_overrides(environ)
    loader.apply(overrides, 'environment', names)
    loader.normalise()
    loader.validate()
    if not settings.web.secret_key:
        # a per-process key still signs sessions; sign-ins simply do not survive a restart
        settings.web.secret_key = secrets.token_urlsafe(32)
    return settings
