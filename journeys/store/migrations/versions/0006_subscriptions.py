"""Subscriptions per user, channel and topic, and their audit (journeys.store.subscriptions);
secrets shared by the processes of a store (journeys.store.secrets); what users did with
messages (journeys.store.engagements); indexes to find a message by its vendor's id and a user
by an address that writes back (journeys.store.callbacks); addresses that bounced for good
(journeys.store.bounces).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    offline = op.get_context().as_sql
    if not offline and "subscriptions" in sa.inspect(op.get_bind()).get_table_names():
        _indexes()  # a database made by create_all at this release: all but what it lacked
        return
    op.create_table(
        "subscriptions",
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("channel", sa.String(20), primary_key=True),
        sa.Column("topic", sa.String(100), primary_key=True),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "subscription_changes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("topic", sa.String(100), nullable=False),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.Column("how", sa.String(20), nullable=False),
        sa.Column("source", sa.String(200), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_subscription_changes_user_id", "subscription_changes", ["user_id"])
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "engagements",
        sa.Column("message", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column("journey_id", sa.String(200), nullable=False),
        sa.Column("node_id", sa.String(100), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("machine", sa.Boolean(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_engagements_journey_id", "engagements", ["journey_id"])
    op.create_table(
        "bounces",
        sa.Column("channel", sa.String(20), primary_key=True),
        sa.Column("address", sa.String(64), primary_key=True),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    _indexes()


def _indexes() -> None:
    """The indexes on the tables of earlier revisions, unless there already."""
    offline = op.get_context().as_sql
    inspector = None if offline else sa.inspect(op.get_bind())
    for name, table, column in (("ix_outbox_provider_message_id", "outbox", "provider_message_id"),
                                ("ix_send_addresses_address", "send_addresses", "address")):
        if inspector is None or name not in {i["name"] for i in inspector.get_indexes(table)}:
            op.create_index(name, table, [column])


def downgrade() -> None:
    op.drop_table("bounces")
    op.drop_index("ix_send_addresses_address", table_name="send_addresses")
    op.drop_index("ix_outbox_provider_message_id", table_name="outbox")
    op.drop_index("ix_engagements_journey_id", table_name="engagements")
    op.drop_table("engagements")
    op.drop_table("secrets")
    op.drop_index("ix_subscription_changes_user_id", table_name="subscription_changes")
    op.drop_table("subscription_changes")
    op.drop_table("subscriptions")
