"""Settings: first run, FABPANEL_CONFIG, environment overrides, validation messages, FabOMatic files."""

from __future__ import annotations

import logging
import re
import stat
import tomllib
from dataclasses import asdict, fields
from pathlib import Path

import pytest

from fabpanel.settings import EXAMPLE_FILE, SECTIONS, Settings, SettingsError, load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding='utf-8')
    return path


def secret_in(path: Path) -> str:
    return tomllib.loads(path.read_text(encoding='utf-8'))['web']['secret_key']


# ---- first run ------------------------------------------------------------------------------------------------

def test_first_run_copies_the_example_with_a_private_generated_secret(tmp_path: Path) -> None:
    path = tmp_path / 'etc' / 'fabpanel.toml'  # the folder does not exist yet either
    settings = load_settings(path, environ={})
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = secret_in(path)
    assert len(secret) >= 32
    assert settings.web.secret_key == secret
    assert settings.source == path
    # apart from the secret, the file is the example, comments and all
    example = EXAMPLE_FILE.read_text(encoding='utf-8')
    assert path.read_text(encoding='utf-8') == example.replace('secret_key = ""', f'secret_key = "{secret}"', 1)


def test_each_first_run_generates_another_secret_and_later_runs_keep_it(tmp_path: Path) -> None:
    a, b = tmp_path / 'a.toml', tmp_path / 'b.toml'
    first = load_settings(a, environ={}).web.secret_key
    assert first != load_settings(b, environ={}).web.secret_key
    again = load_settings(a, environ={})
    assert again.web.secret_key == first == secret_in(a)


def test_no_file_and_create_false_gives_defaults_without_writing(tmp_path: Path) -> None:
    path = tmp_path / 'absent.toml'
    settings = load_settings(path, environ={}, create=False)
    assert not path.exists()
    assert settings.mqtt.broker == 'embedded' and settings.database.url == 'sqlite:///data/fabpanel.db'
    assert settings.web.secret_key  # a per-process key


def test_an_empty_secret_in_the_file_gets_a_per_process_key(tmp_path: Path) -> None:
    path = write(tmp_path / 'f.toml', '[web]\nsecret_key = ""\n')
    one, two = load_settings(path, environ={}), load_settings(path, environ={})
    assert one.web.secret_key and two.web.secret_key and one.web.secret_key != two.web.secret_key
    assert secret_in(path) == ''  # the file is the user's: not rewritten


def test_the_example_is_complete_and_says_the_defaults(tmp_path: Path) -> None:
    """Every setting appears in the example with its default, so the example documents all of them."""
    data = tomllib.loads(EXAMPLE_FILE.read_text(encoding='utf-8'))
    defaults = Settings()
    assert set(data) == set(SECTIONS)
    for section, attr in SECTIONS.items():
        assert set(data[section]) == {f.name for f in fields(getattr(defaults, attr))}, section
    loaded = load_settings(write(tmp_path / 'f.toml', EXAMPLE_FILE.read_text(encoding='utf-8')), environ={})
    assert loaded.warnings == []
    loaded.web.secret_key = defaults.web.secret_key
    for attr in SECTIONS.values():
        assert asdict(getattr(loaded, attr)) == asdict(getattr(defaults, attr)), attr


# ---- which file -----------------------------------------------------------------------------------------------

def test_fabpanel_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / 'lab.toml', '[MQTT]\nport = 1999\n')
    settings = load_settings(environ={'FABPANEL_CONFIG': str(path)})
    assert settings.source == path and settings.mqtt.port == 1999


def test_fabpanel_config_names_where_the_first_run_writes(tmp_path: Path) -> None:
    path = tmp_path / 'conf' / 'lab.toml'
    load_settings(environ={'FABPANEL_CONFIG': str(path)})
    assert path.exists() and secret_in(path)


def test_an_explicit_path_beats_fabpanel_config(tmp_path: Path) -> None:
    chosen = write(tmp_path / 'chosen.toml', '[MQTT]\nport = 2001\n')
    other = write(tmp_path / 'other.toml', '[MQTT]\nport = 2002\n')
    assert load_settings(chosen, environ={'FABPANEL_CONFIG': str(other)}).mqtt.port == 2001


def test_default_file_is_fabpanel_toml_in_the_working_directory(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.source == Path('fabpanel.toml') and (tmp_path / 'fabpanel.toml').exists()


# ---- environment overrides ------------------------------------------------------------------------------------

@pytest.fixture
def lab_file(tmp_path: Path) -> Path:
    return write(tmp_path / 'lab.toml', '[MQTT]\nbroker = "mqtt.file"\nport = 1883\n'
                                        '[email]\nuse_tls = true\n[weekly_summary]\nenabled = false\n')


@pytest.mark.parametrize('name', ['FABPANEL_MQTT__PORT', 'FABPANEL_mqtt__port', 'FABPANEL_Mqtt__Port'])
def test_env_overrides_an_int_whatever_the_case_of_section_and_key(lab_file: Path, name: str) -> None:
    settings = load_settings(lab_file, environ={name: '1884'})
    assert settings.mqtt.port == 1884 and isinstance(settings.mqtt.port, int)


def test_env_overrides_a_string(lab_file: Path) -> None:
    settings = load_settings(lab_file, environ={'FABPANEL_MQTT__BROKER': 'mqtt.lab.example'})
    assert settings.mqtt.broker == 'mqtt.lab.example'
    assert not settings.mqtt.embedded and settings.mqtt.host == 'mqtt.lab.example'


def test_env_overrides_keys_of_every_section(lab_file: Path) -> None:
    settings = load_settings(lab_file, environ={
        'FABPANEL_DATABASE__URL': 'postgresql://u:p@db.example/lab',
        'FABPANEL_WEB__PORT': '8081',
        'FABPANEL_WEB__BASE_URL': 'https://panel.lab.example',
        'FABPANEL_EMAIL__SERVER': 'smtp.lab.example',
        'FABPANEL_WEEKLY_SUMMARY__LANGUAGE': 'it',
    })
    assert settings.database.url == 'postgresql://u:p@db.example/lab'
    assert settings.web.port == 8081 and settings.web.base_url == 'https://panel.lab.example'
    assert settings.email.server == 'smtp.lab.example' and settings.weekly_summary.language == 'it'


@pytest.mark.parametrize(('text', 'expected'), [
    ('true', True), ('TRUE', True), ('yes', True), ('on', True), ('1', True), (' True ', True),
    ('false', False), ('False', False), ('no', False), ('off', False), ('0', False),
])
def test_env_overrides_a_bool(lab_file: Path, text: str, expected: bool) -> None:
    settings = load_settings(lab_file, environ={'FABPANEL_EMAIL__USE_TLS': text,
                                                'FABPANEL_WEEKLY_SUMMARY__ENABLED': text})
    assert settings.email.use_tls is expected
    assert settings.weekly_summary.enabled is expected


def test_variables_without_a_section_are_not_settings(lab_file: Path) -> None:
    settings = load_settings(lab_file, environ={'FABPANEL_CONFIG_X': '1', 'FABPANEL_TEST_POSTGRES_URL': 'x',
                                                'FABPANELMQTT__PORT': '7', 'OTHER__PORT': '7'})
    assert settings.mqtt.port == 1883


def test_embedded_broker_is_reached_on_its_bind_address(tmp_path: Path) -> None:
    path = tmp_path / 'f.toml'
    assert load_settings(path, environ={}).mqtt.host == '127.0.0.1'  # the default: every interface
    bound = load_settings(path, environ={'FABPANEL_MQTT__EMBEDDED_BIND': '127.0.0.2'})
    assert bound.mqtt.embedded and bound.mqtt.host == '127.0.0.2'


# ---- validation: every message names the key ------------------------------------------------------------------

FILE_ERRORS = [
    ('[MQTT]\nport = 70000\n', ['[MQTT] port', '65535', '70000']),
    ('[web]\nport = 0\n', ['[web] port', '65535']),
    ('[email]\nport = -1\n', ['[email] port']),
    ('[MQTT]\nport = 1883.5\n', ['[MQTT] port', 'whole number']),
    ('[MQTT]\nport = "1883x"\n', ['[MQTT] port', 'whole number']),
    ('[MQTT]\nport = true\n', ['[MQTT] port', 'whole number']),
    ('[MQTT]\ntopic = "machine/x"\n', ['[MQTT] topic', "'machine/x'", 'without slashes']),
    ('[MQTT]\ntopic = "/machine"\n', ['[MQTT] topic']),
    ('[MQTT]\ntopic = "mach+ine"\n', ['[MQTT] topic']),
    ('[MQTT]\ntopic = ""\n', ['[MQTT] topic']),
    ('[MQTT]\nreply_subtopic = "reply"\n', ['[MQTT] reply_subtopic', 'leading slash']),
    ('[MQTT]\nreply_subtopic = "/re/ply"\n', ['[MQTT] reply_subtopic']),
    ('[MQTT]\nreply_subtopic = "/"\n', ['[MQTT] reply_subtopic']),
    ('[MQTT]\nreply_subtopic = "/#"\n', ['[MQTT] reply_subtopic']),
    ('[MQTT]\nrequest_subtopic = "request"\n', ['[MQTT] request_subtopic']),
    ('[MQTT]\nrequest_subtopic = "/reply"\n', ['[MQTT] request_subtopic', 'differ']),
    ('[MQTT]\nstats_topic = "stats/#"\n', ['[MQTT] stats_topic']),
    ('[MQTT]\nbroker = " "\n', ['[MQTT] broker']),
    ('[MQTT]\nclient_id = ""\n', ['[MQTT] client_id']),
    ('[MQTT]\nkeepalive = 1\n', ['[MQTT] keepalive']),
    ('[MQTT]\nembedded_bind = ""\n', ['[MQTT] embedded_bind']),
    ('[MQTT]\nbroker = ["a"]\n', ['[MQTT] broker', 'expected text']),
    ('[database]\nurl = "mysql://root@localhost/lab"\n', ['[database] url', "'mysql'", 'postgresql://']),
    ('[database]\nurl = "not a url"\n', ['[database] url']),
    ('[database]\nurl = "sqlite://"\n', ['[database] url', 'file path']),
    ('[database]\nurl = "sqlite:///:memory:"\n', ['[database] url', 'file path']),
    ('[database]\nurl = "postgresql://user@host"\n', ['[database] url', 'no database']),
    ('[web]\nbase_url = "ftp://panel.example"\n', ['[web] base_url', 'http://']),
    ('[weekly_summary]\nlanguage = "de"\n', ['[weekly_summary] language', "'de'"]),
    ('[email]\nuse_tls = "maybe"\n', ['[email] use_tls', 'true or false', "'maybe'"]),
    ('[email]\nuse_tls = 1\n', ['[email] use_tls', 'true or false']),
    ('[weekly_summary]\nenabled = "si"\n', ['[weekly_summary] enabled', 'true or false']),
    ('[mqqt]\nport = 1884\n', ['unknown section [mqqt]', "did you mean 'MQTT'", '[weekly_summary]']),
    ('[printers]\nhost = "x"\n', ['unknown section [printers]', 'known sections']),
    ('[MQTT]\nprot = 1884\n', ['unknown key [MQTT] prot', "did you mean 'port'", 'reply_subtopic']),
    ('[web]\nsecret = "x"\n', ['unknown key [web] secret', "did you mean 'secret_key'"]),
    ('url = "sqlite:///x.db"\n', ["'url'", 'outside any section']),
    ('MQTT = 5\n', ['[MQTT]', 'section of keys']),
    ('[MQTT]\nport = = 1883\n', ['not valid TOML', 'line 2']),
    ('[MQTT]\nport = 1883\nport = 1884\n', ['not valid TOML']),
    ('[MQTT\nport = 1883\n', ['not valid TOML', 'line 1']),
]


@pytest.mark.parametrize(('text', 'needles'), FILE_ERRORS, ids=[repr(t[0])[:40] for t in FILE_ERRORS])
def test_a_bad_file_is_refused_naming_the_key_and_the_file(tmp_path: Path, text: str, needles: list[str]) -> None:
    path = write(tmp_path / 'lab.toml', text)
    with pytest.raises(SettingsError) as e:
        load_settings(path, environ={})
    message = str(e.value)
    for needle in needles:
        assert needle in message, f'{needle!r} not in {message!r}'
    assert str(path) in message, message  # and says where it is


ENV_ERRORS = [
    ({'FABPANEL_MQTT__PORT': 'abc'}, ['FABPANEL_MQTT__PORT', '[MQTT] port', 'whole number', "'abc'"]),
    ({'FABPANEL_MQTT__PORT': '99999'}, ['FABPANEL_MQTT__PORT', '[MQTT] port', '65535']),
    ({'FABPANEL_WEB__PORT': ''}, ['FABPANEL_WEB__PORT', '[web] port']),
    ({'FABPANEL_EMAIL__USE_TLS': 'maybe'}, ['FABPANEL_EMAIL__USE_TLS', '[email] use_tls', 'true or false']),
    ({'FABPANEL_MQTT__TOPIC': 'a/b'}, ['FABPANEL_MQTT__TOPIC', '[MQTT] topic']),
    ({'FABPANEL_MQTT__REPLY_SUBTOPIC': 'reply'}, ['FABPANEL_MQTT__REPLY_SUBTOPIC', '[MQTT] reply_subtopic']),
    ({'FABPANEL_DATABASE__URL': 'oracle://x@y/z'}, ['FABPANEL_DATABASE__URL', '[database] url']),
    ({'FABPANEL_MQTT__PROT': '1884'}, ['unknown variable FABPANEL_MQTT__PROT', "did you mean 'port'"]),
    ({'FABPANEL_MQQT__PORT': '1884'},
     ['unknown variable FABPANEL_MQQT__PORT', 'no section [MQQT]', "did you mean 'MQTT'"]),
    ({'FABPANEL_DATABASE__NAMES': 'lab'},
     ['unknown variable FABPANEL_DATABASE__NAMES', '(known keys of [database]: url, data_dir)']),
]


@pytest.mark.parametrize(('environ', 'needles'), ENV_ERRORS, ids=[next(iter(e[0])) for e in ENV_ERRORS])
def test_a_bad_variable_is_refused_naming_it_and_the_key(tmp_path: Path, environ: dict[str, str],
                                                         needles: list[str]) -> None:
    with pytest.raises(SettingsError) as e:
        load_settings(tmp_path / 'lab.toml', environ=environ)
    message = str(e.value)
    for needle in needles:
        assert needle in message, f'{needle!r} not in {message!r}'


def test_env_fixes_a_bad_file_value(tmp_path: Path) -> None:
    """Validation runs on the result, so an override can repair a file the operator cannot edit."""
    path = write(tmp_path / 'lab.toml', '[MQTT]\nport = 0\n')
    assert load_settings(path, environ={'FABPANEL_MQTT__PORT': '1884'}).mqtt.port == 1884


# ---- a lab brings its FabOMatic settings.toml -----------------------------------------------------------------

# laid out like FabOMatic-backend's conf/settings.example.toml (same sections, keys and kinds of values),
# plus the [authentik] single sign-on section newer FabOMatic versions read
FABOMATIC = '''\
# FabOMatic settings of a lab

[database]
url = "sqlite:///database.sqldb"    # Database source
name = "fablab"                     # Name of the database

[MQTT]
broker = "192.168.1.20"     # Name / IP of the MQTT broker
port = 1883                 # MQTT broker port
client_id = "backend-3"     # MQTT Client name
topic = "machine"           # Machine topic to be monitored
reply_subtopic = "/reply"   # appended to the <topic>/<id> for replies by backend
stats_topic = "stats"       # Stats will be published in this topic on MQTT server.
user = ""                   # Auth not used

[web]
secret_key = "ç°32è+3242039ikòlòà"
default_admin_email = "admin@fablab.org"
base_url = "fabomatic.lab.example"

[email]
server = "smtp.lab.example"
port = 587
use_tls = true
username = "fabomatic@lab.example"
password = "app-password"
sender = "admin@fablab.org"

[weekly_summary]
enabled = true
language = "it"

[authentik]
enabled = false
server_url = "https://auth.lab.example"
application_slug = "fabomatic"
client_id = "x"
client_secret = "y"
'''


def test_a_fabomatic_settings_file_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / 'settings.toml', FABOMATIC)
    with caplog.at_level(logging.WARNING, logger='fabpanel.settings'):
        s = load_settings(path, environ={})
    assert s.database.url == 'sqlite:///database.sqldb'
    assert (s.mqtt.broker, s.mqtt.port, s.mqtt.client_id) == ('192.168.1.20', 1883, 'backend-3')
    assert not s.mqtt.embedded and s.mqtt.host == '192.168.1.20'
    assert (s.mqtt.topic, s.mqtt.reply_subtopic, s.mqtt.stats_topic, s.mqtt.user) == ('machine', '/reply',
                                                                                      'stats', '')
    assert s.mqtt.request_subtopic == '/request'  # not in FabOMatic's example: fabpanel's default
    assert s.web.secret_key == 'ç°32è+3242039ikòlòà'
    assert s.web.default_admin_email == 'admin@fablab.org'
    assert s.web.base_url == 'https://fabomatic.lab.example'
    assert (s.email.server, s.email.port, s.email.use_tls) == ('smtp.lab.example', 587, True)
    assert (s.email.username, s.email.password, s.email.sender) == ('fabomatic@lab.example', 'app-password',
                                                                    'admin@fablab.org')
    assert s.weekly_summary.enabled is True and s.weekly_summary.language == 'it'
    # what fabpanel does not use is named in warnings, not refused
    assert len(s.warnings) == 3, s.warnings
    assert any('[database] name' in w and 'ignored' in w for w in s.warnings)
    assert any('[authentik]' in w and 'ignored' in w for w in s.warnings)
    assert any('[web] base_url' in w and 'https://fabomatic.lab.example' in w for w in s.warnings)
    assert [r.getMessage() for r in caplog.records if r.name == 'fabpanel.settings'] == \
        s.warnings


def test_an_old_fabomatic_file_with_a_wildcard_topic_loads(tmp_path: Path) -> None:
    # the first FabOMatic releases subscribed to "machine/#" themselves
    path = write(tmp_path / 'settings.toml', '[database]\nurl = "sqlite:///machines.sqldb"\nname = "fablab"\n'
                                             '[MQTT]\nbroker = "192.168.1.123"\nport = 1883\nclient_id = "backend"\n'
                                             'topic = "machine/#"\nreply_subtopic = "/reply"\n')
    s = load_settings(path, environ={})
    assert s.mqtt.topic == 'machine'
    assert any('[MQTT] topic' in w and "'machine/#'" in w for w in s.warnings)


def test_a_fabomatic_database_url_maps_to_the_async_driver(tmp_path: Path) -> None:
    from fabpanel.db.engine import async_url

    s = load_settings(write(tmp_path / 'settings.toml', FABOMATIC), environ={})
    assert async_url(s.database.url) == 'sqlite+aiosqlite:///database.sqldb'


def test_fabomatic_only_keys_are_ignored_from_the_environment_too(tmp_path: Path) -> None:
    s = load_settings(tmp_path / 'f.toml', environ={'FABPANEL_DATABASE__NAME': 'fablab'})
    assert any('[database] name' in w for w in s.warnings)


def test_section_names_match_without_case(tmp_path: Path) -> None:
    path = write(tmp_path / 'f.toml', '[mqtt]\nport = 1890\n[Web]\nport = 8090\n')
    s = load_settings(path, environ={})
    assert (s.mqtt.port, s.web.port) == (1890, 8090)


def test_messages_name_the_variable_only_when_it_set_the_value(tmp_path: Path) -> None:
    path = write(tmp_path / 'f.toml', '[MQTT]\nport = 0\n')
    with pytest.raises(SettingsError, match=re.escape(f'setting [MQTT] port in {path}: must be')):
        load_settings(path, environ={'FABPANEL_WEB__PORT': '8081'})
