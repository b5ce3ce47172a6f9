"""Every event a version of a journey listened to (journeys.store.tables.journey_listens): a journey
edited in place (same id) keeps routing its earlier runs' wait and exit events to them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    offline = op.get_context().as_sql
    if not offline and "journey_listens" in sa.inspect(op.get_bind()).get_table_names():
        return  # a database made by create_all at this release has it already
    op.create_table(
        "journey_listens",
        sa.Column("journey_id", sa.String(200), primary_key=True),
        sa.Column("event_name", sa.String(200), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("journey_listens")
