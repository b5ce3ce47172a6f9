"""Every version of every journey a process read (journeys.tables.journey_versions): a run
holds its journey's id and version, not the definition.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    offline = op.get_context().as_sql
    if not offline and "journey_versions" in sa.inspect(op.get_bind()).get_table_names():
        return  # a database made by create_all at this release has it already
    op.create_table(
        "journey_versions",
        sa.Column("journey_id", sa.String(200), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("journey_versions")
