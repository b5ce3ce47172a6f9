"""What users did, kept small (journeys.store.behaviour): counts per user, event and day, and
the event ids counted lately.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    offline = op.get_context().as_sql
    if not offline and "behaviour" in sa.inspect(op.get_bind()).get_table_names():
        return  # a database made by create_all at this release
    op.create_table(
        "behaviour",
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("event", sa.String(200), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("behaviour_by_event", "behaviour", ["event", "day", "user_id"])
    op.create_table(
        "behaviour_counted",
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("day", sa.Date(), nullable=False),
    )
    op.create_index("ix_behaviour_counted_day", "behaviour_counted", ["day"])


def downgrade() -> None:
    op.drop_index("ix_behaviour_counted_day", table_name="behaviour_counted")
    op.drop_table("behaviour_counted")
    op.drop_index("behaviour_by_event", table_name="behaviour")
    op.drop_table("behaviour")
