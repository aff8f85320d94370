"""The active model in the database (issue 20): one row that every replica follows.

`POST /v1/models/activate` writes it once the file has loaded and passed its checks on the replica that
was asked; every process polls it (REFURBGRADE_MODEL_POLL_S) and swaps the same file in after checking
it too (serving/activation.py). No row: each process serves REFURBGRADE_MODEL_PATH.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "active_model",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_by", sa.String(32), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("active_model")
