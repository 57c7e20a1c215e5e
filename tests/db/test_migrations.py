"""Alembic migrations on SQLite and PostgreSQL: upgrades keep data, the models match the migrations,
start-up migrates, and a failing migration changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from fabpanel.app import Panel
from fabpanel.db import migrate
from fabpanel.db.engine import create_engine, session_factory
from fabpanel.db.models import Machine, Member, Use
from fabpanel.settings import load_settings

HEAD = migrate.head_revision()
FIRST = ScriptDirectory.from_config(migrate.alembic_config('sqlite://')).get_base()


def test_one_line_of_history() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config('sqlite://'))
    assert len(script.get_heads()) == 1, 'migration branches must be merged'
    assert HEAD is not None and FIRST is not None


# ---- helpers ----------------------------------------------------------------------------------------------------


def _diff(conn: Connection, metadata: sa.MetaData = SQLModel.metadata) -> list:
    context = MigrationContext.configure(conn, opts={'compare_type': True, 'compare_server_default': False})
    return compare_metadata(context, metadata)


async def schema_diff(engine: AsyncEngine, metadata: sa.MetaData = SQLModel.metadata) -> list:
    async with engine.connect() as conn:
        return await conn.run_sync(_diff, metadata)


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


def when(url: str) -> str:
    """A SQL literal for 2024-05-01 10:00 UTC, as each backend stores it."""
    return "'2024-05-01 10:00:00.000000'" if url.startswith('sqlite') else "'2024-05-01 10:00:00+00'"


# one row in every table of the first revision: (columns, values as SQL)
def seed_rows(url: str) -> dict[str, tuple[str, str]]:
    t = when(url)
    return {
        'machine_type': (
            'id, name, auto_logoff_minutes, grace_minutes, authorization_required',
            "1, '3D printer', 480, 2, TRUE",
        ),
        'role': (
            'id, name, may_use_all_machines, may_maintain, may_administer, may_approve_prints, is_default',
            "1, 'Member', FALSE, FALSE, FALSE, FALSE, TRUE",
        ),
        'machine': (
            'id, name, type_id, blocked, usage_seconds, last_seen, deleted_at',
            f"7, 'Prusa MK4', 1, FALSE, 3600.5, {t}, NULL",
        ),
        'member': (
            'id, first_name, last_name, email, language, role_id, disabled, deleted_at, password_hash, '
            'must_change_password, created_at',
            f"1, 'Giulia', 'Rossi', 'giulia@example.org', 'it', 1, FALSE, NULL, NULL, FALSE, {t}",
        ),
        'card': ('id, uid, member_id, label, created_at', f"1, '0a1b2c3d', 1, 'blue tag', {t}"),
        'authorization': ('id, member_id, machine_id, expires_at, created_at', f'1, 1, 7, NULL, {t}'),
        'maintenance_plan': (
            'id, machine_id, hours_between, description, lcd_text, instructions_url',
            "1, 7, 10.0, 'Clean the nozzle', 'Clean nozzle', ''",
        ),
        'intervention': (
            'id, plan_id, machine_id, member_id, at, source, replay, note',
            f"1, 1, 7, 1, {t}, 'board', FALSE, ''",
        ),
        'use': (
            'id, machine_id, member_id, card_uid, start, last_seen, "end", duration_s, replay, unauthorized',
            f"1, 7, 1, '0a1b2c3d', {t}, {t}, NULL, NULL, FALSE, FALSE",
        ),
        'unknown_card': ('id, uid, machine_id, first_seen, last_seen, attempts', f"1, 'f00dcafe', 7, {t}, {t}, 3"),
        'board': (
            'machine_id, serial, ip, firmware, heap, last_seen',
            f"7, 'a1b2c3d4e5f6', '192.168.1.50', 'fabomatic,5.1.0', 183204, {t}",
        ),
    }


def insert(table: str, columns: str, values: str) -> sa.TextClause:
    """Plain SQL from the constants above (no outside input)."""
    return sa.text(f'INSERT INTO "{table}" ({columns}) VALUES ({values})')  # noqa: S608


async def read_rows(engine: AsyncEngine, rows: dict[str, tuple[str, str]]) -> dict[str, list[tuple]]:
    out = {}
    async with engine.connect() as conn:
        for table, (columns, _) in rows.items():
            result = await conn.execute(sa.text(f'SELECT {columns} FROM "{table}" ORDER BY 1'))  # noqa: S608
            out[table] = [tuple(r) for r in result]
    return out


@pytest.fixture
async def engine(database_url: str) -> AsyncEngine:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


# ---- upgrades keep data -----------------------------------------------------------------------------------------


async def test_upgrade_from_the_first_revision_keeps_the_data(engine: AsyncEngine, database_url: str) -> None:
    await migrate.upgrade(engine, database_url, FIRST)
    assert await migrate.current_revision(engine) == FIRST
    rows = seed_rows(database_url)
    async with engine.begin() as conn:  # plain SQL: what a database of that time held, without today's models
        for table, (columns, values) in rows.items():
            await conn.execute(insert(table, columns, values))
    before = await read_rows(engine, rows)
    assert all(len(v) == 1 for v in before.values())

    await migrate.upgrade(engine, database_url)

    assert await migrate.current_revision(engine) == HEAD
    assert await read_rows(engine, rows) == before
    # and today's models read it
    at = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    async with session_factory(engine)() as session:
        machine = await session.get(Machine, 7)
        assert machine is not None and machine.name == 'Prusa MK4' and machine.usage_seconds == 3600.5
        assert machine.last_seen == at
        member = await session.get(Member, 1)
        assert member is not None and member.email == 'giulia@example.org' and member.created_at == at
        use = await session.get(Use, 1)
        assert use is not None and use.end is None and use.start == at and use.card_uid == '0a1b2c3d'


async def test_upgrading_an_up_to_date_database_changes_nothing(engine: AsyncEngine, database_url: str) -> None:
    await migrate.upgrade(engine, database_url)
    await migrate.upgrade(engine, database_url)
    assert await migrate.current_revision(engine) == HEAD


# ---- the models match the migrations ----------------------------------------------------------------------------


async def test_models_match_the_migrated_schema(engine: AsyncEngine, database_url: str) -> None:
    """A model changed without a migration shows up here (autogenerate would have something to write)."""
    await migrate.upgrade(engine, database_url)
    assert await schema_diff(engine) == []


async def test_the_schema_comparison_sees_a_missing_migration(tmp_path: Path) -> None:
    """The guard above can fail: a model with a column no migration created is reported."""
    url = f'sqlite:///{tmp_path}/lab.db'
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine, url)
        changed = sa.MetaData()
        for table in SQLModel.metadata.sorted_tables:
            table.to_metadata(changed)
        changed.tables['machine'].append_column(sa.Column('colour', sa.String(20), nullable=True))
        diff = await schema_diff(engine, changed)
        assert [(d[0], d[3].name) for d in diff] == [('add_column', 'colour')]
    finally:
        await engine.dispose()


# ---- downgrade and back -----------------------------------------------------------------------------------------


async def test_downgrade_to_base_and_upgrade_again(engine: AsyncEngine, database_url: str) -> None:
    await migrate.upgrade(engine, database_url)
    await migrate.downgrade(engine, database_url, 'base')
    assert await migrate.current_revision(engine) is None
    assert await table_names(engine) <= {'alembic_version'}
    await migrate.upgrade(engine, database_url)
    assert await migrate.current_revision(engine) == HEAD
    assert await schema_diff(engine) == []
    assert set(SQLModel.metadata.tables) <= await table_names(engine)


# ---- start-up ---------------------------------------------------------------------------------------------------


async def test_startup_migrates_an_empty_database(tmp_path: Path, database_url: str) -> None:
    settings = load_settings(
        tmp_path / 'fabpanel.toml',
        environ={'FABPANEL_DATABASE__URL': database_url, 'FABPANEL_DATABASE__DATA_DIR': str(tmp_path / 'data')},
    )
    for _ in range(2):  # a fresh database, then one already up to date
        panel = Panel(settings)
        await panel.start(gateway=False)
        try:
            assert panel.engine is not None
            assert await migrate.current_revision(panel.engine) == HEAD
            assert set(SQLModel.metadata.tables) <= await table_names(panel.engine)
        finally:
            await panel.stop()


# ---- later migrations: all or nothing ---------------------------------------------------------------------------


@pytest.fixture
def add_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """Install a copy of the migrations with one more revision on top whose upgrade() is `body`."""

    def install(body: str) -> str:
        scripts = tmp_path / 'alembic'
        shutil.copytree(migrate.ALEMBIC_DIR, scripts, ignore=shutil.ignore_patterns('__pycache__'))
        (scripts / 'versions' / 'ffff_test.py').write_text(
            'import sqlalchemy as sa\nfrom alembic import op\n\n'
            f'revision = "ffff"\ndown_revision = "{HEAD}"\nbranch_labels = None\ndepends_on = None\n\n\n'
            'def upgrade():\n' + textwrap.indent(textwrap.dedent(body).strip(), '    ') + '\n\n\n'
            'def downgrade():\n    pass\n'
        )
        monkeypatch.setattr(migrate, 'ALEMBIC_DIR', scripts)
        assert migrate.head_revision() == 'ffff'
        return 'ffff'

    return install


async def _lab_with_a_machine(engine: AsyncEngine, url: str) -> None:
    await migrate.upgrade(engine, url)
    rows = seed_rows(url)
    async with engine.begin() as conn:
        for table in ('machine_type', 'machine', 'board'):
            columns, values = rows[table]
            await conn.execute(insert(table, columns, values))


# On SQLite alembic's batch mode changes a table by copying it and dropping the original; the machine table is
# pointed at by board, use, ... so this needs foreign keys off during the migration (and checked after).
ALTER_MACHINE = """
if op.get_context().dialect.name == 'sqlite':
    with op.batch_alter_table('machine', recreate='always') as batch:
        batch.add_column(sa.Column('colour', sa.String(20), nullable=False, server_default='black'))
else:
    op.add_column('machine', sa.Column('colour', sa.String(20), nullable=False, server_default='black'))
"""


async def test_a_migration_that_rebuilds_a_referenced_table_keeps_its_rows(
    engine: AsyncEngine, database_url: str, add_revision: Callable[[str], str]
) -> None:
    await _lab_with_a_machine(engine, database_url)
    head = add_revision(ALTER_MACHINE)
    await migrate.upgrade(engine, database_url)
    assert await migrate.current_revision(engine) == head
    async with engine.connect() as conn:
        assert (await conn.execute(sa.text('SELECT id, name, colour FROM machine'))).all() == [
            (7, 'Prusa MK4', 'black')
        ]
        assert (await conn.execute(sa.text('SELECT machine_id FROM board'))).all() == [(7,)]
    # foreign keys are enforced again after the migration
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(
                insert(
                    'board',
                    'machine_id, serial, ip, firmware, heap, last_seen',
                    f"99, '', '', '', 0, {when(database_url)}",
                )
            )


async def test_a_failing_migration_changes_nothing(
    engine: AsyncEngine, database_url: str, add_revision: Callable[[str], str]
) -> None:
    await _lab_with_a_machine(engine, database_url)
    before = await read_rows(engine, seed_rows(database_url))
    add_revision("""
        op.add_column('board', sa.Column('note', sa.String(20), nullable=True))
        op.create_table('half_done', sa.Column('id', sa.Integer, primary_key=True))
        raise RuntimeError('the migration broke half-way')
    """)
    with pytest.raises(RuntimeError, match='half-way'):
        await migrate.upgrade(engine, database_url)
    assert await migrate.current_revision(engine) == HEAD  # the previous head, not ffff
    assert 'half_done' not in await table_names(engine)
    async with engine.connect() as conn:
        columns = await conn.run_sync(lambda c: [col['name'] for col in sa.inspect(c).get_columns('board')])
    assert 'note' not in columns
    assert await read_rows(engine, seed_rows(database_url)) == before


async def test_a_failing_table_rebuild_leaves_no_copy_behind(
    engine: AsyncEngine, database_url: str, add_revision: Callable[[str], str]
) -> None:
    await _lab_with_a_machine(engine, database_url)
    add_revision(ALTER_MACHINE + "raise RuntimeError('the migration broke after the rebuild')\n")
    with pytest.raises(RuntimeError, match='after the rebuild'):
        await migrate.upgrade(engine, database_url)
    assert await migrate.current_revision(engine) == HEAD
    assert not any(t.startswith('_alembic_tmp') for t in await table_names(engine))
    async with engine.connect() as conn:
        columns = await conn.run_sync(lambda c: [col['name'] for col in sa.inspect(c).get_columns('machine')])
        assert 'colour' not in columns
        assert (await conn.execute(sa.text('SELECT id, name FROM machine'))).all() == [(7, 'Prusa MK4')]


async def test_sqlite_refuses_a_migration_that_breaks_foreign_keys(
    tmp_path: Path, add_revision: Callable[[str], str]
) -> None:
    url = f'sqlite:///{tmp_path}/lab.db'
    engine = create_engine(url)
    try:
        await _lab_with_a_machine(engine, url)
        add_revision("op.execute('DELETE FROM machine_type')")  # machine 7 would point at nothing
        with pytest.raises(migrate.MigrationError, match='machine_type'):
            await migrate.upgrade(engine, url)
        assert await migrate.current_revision(engine) == HEAD
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text('SELECT count(*) FROM machine_type'))).scalar() == 1
            assert (await conn.exec_driver_sql('PRAGMA foreign_keys')).scalar() == 1
    finally:
        await engine.dispose()


# ---- the alembic command line (development) ---------------------------------------------------------------------


def test_the_alembic_command_line_upgrades_and_finds_nothing_to_generate(tmp_path: Path) -> None:
    """`alembic -c alembic/alembic.ini upgrade head` and `... check` read the database from fabpanel's settings."""
    ini = migrate.ALEMBIC_DIR / 'alembic.ini'
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith('FABPANEL_')}
    env.update(FABPANEL_CONFIG=str(tmp_path / 'absent.toml'), FABPANEL_DATABASE__URL=f'sqlite:///{tmp_path}/dev.db')
    for command in (['upgrade', 'head'], ['check'], ['current']):
        result = subprocess.run(
            [sys.executable, '-m', 'alembic', '-c', str(ini), *command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
    assert HEAD in result.stdout
    assert not (tmp_path / 'absent.toml').exists()  # the tool reads settings, it does not write them
