"""Catalogs of items keyed by id (journeys.store.catalogs), read by templates at send time.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    offline = op.get_context().as_sql
    if not offline and "catalog_items" in sa.inspect(op.get_bind()).get_table_names():
        return  # a database made by create_all at this release
    op.create_table(
        "catalog_items",
        sa.Column("catalog", sa.String(100), primary_key=True),
        sa.Column("item_id", sa.String(200), primary_key=True),
        sa.Column("item", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("catalog_items")
