"""Alembic's environment: the store's metadata; the connection ``Store`` hands over (in its
transaction, under its schema lock), or, from the command line, JOURNEYS_DATABASE_URL (else
alembic.ini's sqlalchemy.url)."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from journeys.store.tables import metadata

config = context.config


def _migrate(connection: Connection) -> None:
    # render_as_batch: SQLite alters a table by copying it, and autogenerate writes it so.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():  # nothing of its own inside the Store's transaction
        context.run_migrations()


def _url() -> str:
    url = os.environ.get("JOURNEYS_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set JOURNEYS_DATABASE_URL (or sqlalchemy.url in alembic.ini)")
    return url


if context.is_offline_mode():  # `alembic upgrade head --sql`: the SQL, for a DBA to run
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    _migrate(given)
else:
    engine = create_engine(_url())
    try:
        with engine.begin() as connection:
            _migrate(connection)
    finally:
        engine.dispose()
