"""What each address of a message answered (journeys.store.tables.send_addresses): a retry never
pushes again to a device that took the message, and a request that left without an answer is
retried a bounded number of times.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    offline = op.get_context().as_sql
    if not offline and "send_addresses" in sa.inspect(op.get_bind()).get_table_names():
        return  # a database made by create_all at this release has it already
    op.create_table(
        "send_addresses",
        sa.Column("idempotency_key", sa.String(2000), primary_key=True),
        sa.Column("address", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("unanswered", sa.Integer(), nullable=False),
        sa.Column("provider_message_id", sa.String(200)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("send_addresses")
