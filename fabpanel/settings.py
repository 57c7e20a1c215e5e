"""Settings: one validated object read from a TOML file, with FABPANEL_<SECTION>__<KEY> environment overrides."""

from __future__ import annotations

import os
import secrets
import shutil
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

EXAMPLE_FILE = Path(__file__).with_name('settings.example.toml')
DEFAULT_FILE = Path('fabpanel.toml')
ENV_PREFIX = 'FABPANEL_'


class SettingsError(ValueError):
    """A setting is missing or has a wrong value; the message names the key and the problem."""


@dataclass(kw_only=True, slots=True)
class DatabaseSettings:
    url: str = 'sqlite:///data/fabpanel.db'


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

    @property
    def embedded(self) -> bool:
        return self.broker.strip().lower() == 'embedded'

    @property
    def host(self) -> str:
        return '127.0.0.1' if self.embedded else self.broker


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


# TOML section name (as FabOMatic spells it) -> attribute of Settings
SECTIONS: dict[str, str] = {
    'database': 'database',
    'MQTT': 'mqtt',
    'web': 'web',
    'email': 'email',
    'weekly_summary': 'weekly_summary',
}


def _coerce(section: str, key: str, value: Any, target: Any) -> Any:
    where = f'[{section}] {key}'
    if isinstance(target, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {'1', 'true', 'yes', 'on', '0', 'false', 'no', 'off'}:
            return value.strip().lower() in {'1', 'true', 'yes', 'on'}
        raise SettingsError(f'setting {where}: expected true or false, got {value!r}')
    if isinstance(target, int):
        if isinstance(value, bool):
            raise SettingsError(f'setting {where}: expected a whole number, got {value!r}')
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SettingsError(f'setting {where}: expected a whole number, got {value!r}') from None
    if isinstance(target, str):
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise SettingsError(f'setting {where}: expected text, got {value!r}')
        return str(value)
    return value


def _validate(s: Settings) -> None:
    def check(ok: bool, key: str, problem: str) -> None:
        if not ok:
            raise SettingsError(f'setting {key}: {problem}')

    for key, port in (('[MQTT] port', s.mqtt.port), ('[web] port', s.web.port), ('[email] port', s.email.port)):
        check(1 <= port <= 65535, key, f'must be between 1 and 65535, got {port}')
    check(bool(s.mqtt.broker.strip()), '[MQTT] broker', 'must be a host name or "embedded"')
    check(bool(s.mqtt.client_id.strip()), '[MQTT] client_id', 'must not be empty')
    topic = s.mqtt.topic
    check(bool(topic) and '/' not in topic and '+' not in topic and '#' not in topic, '[MQTT] topic',
          f'must be one topic level without slashes or wildcards, e.g. "machine", got {topic!r}')
    for key, sub in (('reply_subtopic', s.mqtt.reply_subtopic), ('request_subtopic', s.mqtt.request_subtopic)):
        check(sub.startswith('/') and len(sub) > 1 and sub.count('/') == 1 and not set(sub) & {'+', '#'},
              f'[MQTT] {key}', f'must be one level with its leading slash, e.g. "/reply", got {sub!r}')
    check(s.mqtt.reply_subtopic != s.mqtt.request_subtopic, '[MQTT] request_subtopic', 'must differ from reply_subtopic')
    check(5 <= s.mqtt.keepalive <= 600, '[MQTT] keepalive', 'must be between 5 and 600 seconds')
    url = s.database.url
    check(url.startswith(('sqlite', 'postgresql', 'postgres://')), '[database] url',
          f'must start with sqlite:/// or postgresql://, got {url.split(":", 1)[0]!r}')
    check(s.web.base_url.startswith(('http://', 'https://')), '[web] base_url', 'must start with http:// or https://')
    check(s.weekly_summary.language in {'en', 'it'}, '[weekly_summary] language', 'must be "en" or "it"')


def _apply(settings: Settings, data: dict[str, Any], origin: str) -> None:
    by_lower = {name.lower(): name for name in SECTIONS}
    for section, values in data.items():
        name = by_lower.get(section.lower())
        if name is None:
            raise SettingsError(f'{origin}: unknown section [{section}] (known: {", ".join(SECTIONS)})')
        if not isinstance(values, dict):
            raise SettingsError(f'{origin}: [{section}] must be a table of keys')
        target = getattr(settings, SECTIONS[name])
        known = {f.name for f in fields(target)}
        for key, value in values.items():
            if key not in known:
                raise SettingsError(f'{origin}: unknown key [{name}] {key} (known: {", ".join(sorted(known))})')
            setattr(target, key, _coerce(name, key, value, getattr(target, key)))


def _env_overrides(environ: dict[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or '__' not in name[len(ENV_PREFIX):]:
            continue
        section, key = name[len(ENV_PREFIX):].split('__', 1)
        out.setdefault(section, {})[key.lower()] = value
    return out


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None, create: bool = True) -> Settings:
    """Read settings; on first run copy the example (with a fresh secret key) to the chosen path."""
    environ = dict(os.environ if environ is None else environ)
    path = Path(path or environ.get('FABPANEL_CONFIG') or DEFAULT_FILE)
    settings = Settings(source=path)
    if not path.exists() and create:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(EXAMPLE_FILE, path)
        text = path.read_text().replace('secret_key = ""', f'secret_key = "{secrets.token_urlsafe(32)}"', 1)
        path.write_text(text)
        path.chmod(0o600)
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f'{path}: not valid TOML: {e}') from None
        _apply(settings, data, str(path))
    _apply(settings, _env_overrides(environ), 'environment')
    _validate(settings)
    if not settings.web.secret_key:
        # a per-process key still signs sessions; sign-ins simply do not survive a restart
        settings.web.secret_key = secrets.token_urlsafe(32)
    return settings
