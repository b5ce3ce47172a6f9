"""An entry event kept with its receipt (interpreter 4): the journey's activities name it and
read it here, so that its history holds it once, in the start.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    offline = op.get_context().as_sql
    if not offline and "event" in {
            c["name"] for c in sa.inspect(op.get_bind()).get_columns("event_receipts")}:
        return  # a database made by create_all at this release
    with op.batch_alter_table("event_receipts") as receipts:
        receipts.add_column(sa.Column("event", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("event_receipts") as receipts:
        receipts.drop_column("event")
