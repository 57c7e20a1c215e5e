"""Alembic environment: runs migrations over fabpanel's async engine (SQLite or PostgreSQL)."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from fabpanel.db import models  # noqa: F401 - registers the tables on SQLModel.metadata
from fabpanel.db.engine import create_engine, is_sqlite

config = context.config
target_metadata = SQLModel.metadata


def _url() -> str:
    url = config.attributes.get('database_url') or config.get_main_option('sqlalchemy.url')
    if not url:
        from fabpanel.settings import load_settings

        url = load_settings(create=False).database.url
    return url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=is_sqlite(_url()),  # SQLite can only ALTER through table copies
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    """The alembic command line (development): the same transaction handling as fabpanel's start-up."""
    from fabpanel.db.migrate import run_sqlite_migration

    engine = create_engine(_url())
    try:
        async with engine.connect() as conn:
            if is_sqlite(_url()):
                await run_sqlite_migration(conn, _configure)
            else:
                await conn.run_sync(_configure)
                await conn.commit()
    finally:
        await engine.dispose()


connection = config.attributes.get('connection')
if connection is not None:
    _configure(connection)
elif context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
