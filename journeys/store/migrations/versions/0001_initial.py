"""The store's tables as the releases before the migrations made them (create_all).

A database those releases made is adopted, not failed on: only the tables missing are created,
and the columns added since release 0.1 (outbox.provider_message_id, outcomes.reason and
outcomes.nodes) are added to the tables that lack them.

Revision ID: 0001
Revises:
Create Date: 2026-05-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _at() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _schema() -> dict[str, tuple[list[sa.Column], list[tuple[str, list[str]]]]]:
    """The tables of this revision, frozen here (journeys/store/tables.py moves on, this does not);
    new Column objects on every call (a column belongs to one table).
    """
    tables: dict[str, tuple[list[sa.Column], list[tuple[str, list[str]]]]] = {}

    def table(name: str, *columns: sa.Column, indexes: tuple[tuple[str, list[str]], ...] = ()) -> None:
        tables[name] = (list(columns), list(indexes))

    table("profiles",
          sa.Column("user_id", sa.String(200), primary_key=True),
          sa.Column("properties", sa.JSON(), nullable=False),
          sa.Column("updated_at", _at(), nullable=False))
    table("outbox",
          sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
          sa.Column("idempotency_key", sa.String(400), nullable=False, unique=True),
          sa.Column("journey_id", sa.String(200), nullable=False),
          sa.Column("user_id", sa.String(200), nullable=False),
          sa.Column("workflow_id", sa.String(400), nullable=False),
          sa.Column("node_id", sa.String(100), nullable=False),
          sa.Column("channel", sa.String(20), nullable=False),
          sa.Column("status", sa.String(20), nullable=False),
          sa.Column("reason", sa.Text()),
          sa.Column("content", sa.JSON(), nullable=False),
          sa.Column("event_name", sa.String(200)),
          sa.Column("event_id", sa.String(200)),
          sa.Column("provider", sa.String(50)),
          sa.Column("provider_message_id", sa.String(200)),
          sa.Column("created_at", _at(), nullable=False),
          sa.Column("updated_at", _at(), nullable=False),
          indexes=(("ix_outbox_journey_id", ["journey_id"]), ("ix_outbox_user_id", ["user_id"])))
    table("inbox",
          sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
          sa.Column("idempotency_key", sa.String(400), nullable=False, unique=True),
          sa.Column("user_id", sa.String(200), nullable=False),
          sa.Column("journey_id", sa.String(200), nullable=False),
          sa.Column("node_id", sa.String(100), nullable=False),
          sa.Column("channel", sa.String(20), nullable=False),
          sa.Column("content", sa.JSON(), nullable=False),
          sa.Column("created_at", _at(), nullable=False),
          indexes=(("ix_inbox_user_id", ["user_id"]),))
    table("event_receipts",
          sa.Column("journey_id", sa.String(200), primary_key=True),
          sa.Column("user_id", sa.String(200), primary_key=True),
          sa.Column("event_id", sa.String(200), primary_key=True),
          sa.Column("state", sa.String(40), nullable=False),
          sa.Column("created_at", _at(), nullable=False))
    table("entries",
          sa.Column("workflow_id", sa.String(500), primary_key=True),
          sa.Column("run_id", sa.String(64), primary_key=True),
          sa.Column("journey_id", sa.String(200), nullable=False),
          sa.Column("user_id", sa.String(200), nullable=False),
          sa.Column("held_out", sa.Boolean(), nullable=False),
          sa.Column("at", _at(), nullable=False),
          indexes=(("ix_entries_journey_id", ["journey_id"]),))
    table("outcomes",
          sa.Column("journey_id", sa.String(200), primary_key=True),
          sa.Column("run_key", sa.String(64), primary_key=True),
          sa.Column("kind", sa.String(20), primary_key=True),
          sa.Column("user_id", sa.String(200), nullable=False),
          sa.Column("workflow_id", sa.String(500), nullable=False),
          sa.Column("goal", sa.String(200)),
          sa.Column("node_id", sa.String(200)),
          sa.Column("paths", sa.JSON(), nullable=False),
          sa.Column("held_out", sa.Boolean(), nullable=False),
          sa.Column("at", _at(), nullable=False),
          sa.Column("reason", sa.Text()),
          sa.Column("nodes", sa.JSON()),
          indexes=(("ix_outcomes_user_id", ["user_id"]),))
    table("path_choices",
          sa.Column("journey_id", sa.String(200), primary_key=True),
          sa.Column("run_key", sa.String(64), primary_key=True),
          sa.Column("node_id", sa.String(200), primary_key=True),
          sa.Column("path", sa.String(200), nullable=False),
          sa.Column("user_id", sa.String(200), nullable=False),
          sa.Column("held_out", sa.Boolean(), nullable=False),
          sa.Column("at", _at(), nullable=False),
          indexes=(("ix_path_choices_at", ["at"]),))
    table("path_settings",
          sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
          sa.Column("journey_id", sa.String(200), nullable=False),
          sa.Column("node_id", sa.String(200), nullable=False),
          sa.Column("percent", sa.JSON()),
          sa.Column("winner", sa.String(200)),
          sa.Column("at", _at(), nullable=False))
    table("cap_sends",
          sa.Column("idempotency_key", sa.String(400), primary_key=True),
          sa.Column("user_id", sa.String(200), nullable=False),
          sa.Column("channel", sa.String(20), nullable=False),
          sa.Column("sent_at", _at(), nullable=False),
          indexes=(("ix_cap_sends_user_sent", ["user_id", "sent_at"]),))
    return tables


#: Columns added after release 0.1, which a database of an earlier release may lack.
_ADDED = {"outbox": ("provider_message_id",), "outcomes": ("reason", "nodes")}


def upgrade() -> None:
    offline = op.get_context().as_sql  # `alembic upgrade head --sql`: a new database's SQL
    inspector = None if offline else sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names()) if inspector else set()
    for name, (columns, indexes) in _schema().items():
        if name not in existing:
            op.create_table(name, *columns)
            for index, names in indexes:
                op.create_index(index, name, names)
            continue
        assert inspector is not None
        present = {column["name"] for column in inspector.get_columns(name)}
        for column in columns:
            if column.name in _ADDED.get(name, ()) and column.name not in present:
                op.add_column(name, column)


def downgrade() -> None:
    for name in reversed(list(_schema())):
        op.drop_table(name)
