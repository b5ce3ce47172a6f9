"""The store's schema migrations (Alembic): ``Store`` brings every database it opens to HEAD.

Opening a database at HEAD costs one query (alembic_version); Alembic itself is imported only
for a database that is behind: a new one, one of an earlier release, one made by ``create_all``
before the migrations existed (revision 0001 adopts it: it creates only the tables missing and
adds the columns added since release 0.1). A new database (no table at all) is made from
journeys/store/tables.py in one step and stamped HEAD, as Alembic advises, rather than by every
revision in turn (half the time; tests/test_store_backends.py holds both ways to one schema).

A new revision: change journeys/store/tables.py, then from the repository's root
``JOURNEYS_DATABASE_URL=sqlite:///tmp/old.db alembic revision --autogenerate -m "what"``
against a database at the current HEAD, check the script, and set HEAD below to its id.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

#: The newest revision (tests/test_store_backends.py checks it is the scripts' head).
HEAD = "0009"
FOLDER = Path(__file__).resolve().parent


def at_head(conn: Connection) -> bool:
    """Is the database at HEAD? One query, no Alembic import. Run on a connection of its own:
    on PostgreSQL a missing table aborts the transaction."""
    try:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
    except DBAPIError:  # no alembic_version table: new, or made by create_all
        return False


def upgrade(conn: Connection, *, scripts: bool = False) -> None:
    """Upgrade the database to HEAD in ``conn``'s transaction (the caller holds the schema
    lock and commits); a new one is created at HEAD, unless ``scripts`` (every revision)."""
    chatty = logging.getLogger("alembic")  # its info lines (plugins, "Running upgrade") in our logs
    level = chatty.level
    chatty.setLevel(logging.WARNING)
    try:
        from alembic import command  # (its import logs too)
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(FOLDER))
        config.attributes["connection"] = conn
        if scripts or inspect(conn).get_table_names():
            command.upgrade(config, "head")
        else:  # a new database: the tables as they are now, at HEAD
            from journeys.store.tables import metadata

            metadata.create_all(conn)
            command.stamp(config, "head")
    finally:
        chatty.setLevel(level)
