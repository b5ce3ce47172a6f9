"""Room for the longest workflow ids: a keyed journey's id holds the user and the key, each up
to 200 characters and escaped (``/`` becomes ``%2F``), so ids and the idempotency keys made
from them can pass 1,300 characters. SQLite never enforced the old lengths; PostgreSQL would
refuse such a row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LONG = 2000
#: (table, column, its length before)
WIDENED = (("outbox", "idempotency_key", 400), ("outbox", "workflow_id", 400),
           ("inbox", "idempotency_key", 400), ("cap_sends", "idempotency_key", 400),
           ("entries", "workflow_id", 500), ("outcomes", "workflow_id", 500))


def upgrade() -> None:
    for table, column, before in WIDENED:
        with op.batch_alter_table(table) as batch:  # (SQLite: the table is copied anew)
            batch.alter_column(column, type_=sa.String(LONG), existing_type=sa.String(before))


def downgrade() -> None:
    for table, column, before in WIDENED:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=sa.String(before), existing_type=sa.String(LONG))
