"""Review pages' sign-in sessions (issue 6); review and dispute history goes to grading_events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(32), sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_review_sessions_key_id", "review_sessions", ["key_id"])
    # The review queue looks up each grading's latest events by kind.
    op.create_index("ix_grading_events_grading_kind", "grading_events", ["grading_id", "kind"])


def downgrade() -> None:
    op.drop_index("ix_grading_events_grading_kind", "grading_events")
    op.drop_table("review_sessions")
