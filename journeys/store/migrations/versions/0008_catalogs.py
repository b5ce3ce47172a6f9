"""Catalogs of items keyed by id (journeys.store.catalogs), read by templates at send time; the
outbox's locale and variant of each message; live changes to content variants.

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
    with op.batch_alter_table("outbox") as outbox:
        outbox.add_column(sa.Column("locale", sa.String(35)))
        outbox.add_column(sa.Column("variant", sa.String(50)))
    op.create_table(
        "variant_settings",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("journey_id", sa.String(200), nullable=False),
        sa.Column("node_id", sa.String(200), nullable=False),
        sa.Column("winner", sa.String(50)),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("variant_settings_by_node", "variant_settings", ["journey_id", "node_id", "id"])
    op.create_table(
        "catalog_items",
        sa.Column("catalog", sa.String(100), primary_key=True),
        sa.Column("item_id", sa.String(200), primary_key=True),
        sa.Column("item", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("catalog_items")
    op.drop_index("variant_settings_by_node", table_name="variant_settings")
    op.drop_table("variant_settings")
    with op.batch_alter_table("outbox") as outbox:
        outbox.drop_column("variant")
        outbox.drop_column("locale")
