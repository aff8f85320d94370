"""Initial schema: api keys, gradings with photos and grades, append-only grading events.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "gradings",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(32), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("external_ref", sa.String(200), nullable=True),
        sa.Column("device_model", sa.String(100), nullable=True),
        sa.Column("device_kind", sa.String(16), nullable=False),
        sa.Column("needs_review", sa.Boolean(), nullable=False),
        sa.Column("model_version", sa.String(100), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("rules_versions", sa.JSON(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_gradings_tenant_idempotency_key"),
    )
    op.create_index("ix_gradings_created_at", "gradings", ["created_at"])
    op.create_index("ix_gradings_external_ref", "gradings", ["external_ref"])
    op.create_index("ix_gradings_needs_review", "gradings", ["needs_review"])
    op.create_index("ix_gradings_tenant_created", "gradings", ["tenant", "created_at"])
    op.create_table(
        "grading_photos",
        sa.Column("grading_id", sa.String(36), sa.ForeignKey("gradings.id"), primary_key=True),
        sa.Column("idx", sa.Integer(), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=True),
        sa.Column("filename", sa.String(255), nullable=True),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("overlay_sha256", sa.String(64), nullable=True),
    )
    op.create_index("ix_grading_photos_sha256", "grading_photos", ["sha256"])
    op.create_table(
        "grading_grades",
        sa.Column("grading_id", sa.String(36), sa.ForeignKey("gradings.id"), primary_key=True),
        sa.Column("standard", sa.String(50), primary_key=True),
        sa.Column("grade", sa.String(50), nullable=False),
        sa.Column("version", sa.String(50), nullable=False),
    )
    op.create_index("ix_grading_grades_standard_grade", "grading_grades", ["standard", "grade"])
    op.create_table(
        "grading_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("grading_id", sa.String(36), sa.ForeignKey("gradings.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(32), nullable=True),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
    )
    op.create_index("ix_grading_events_grading_id", "grading_events", ["grading_id"])


def downgrade() -> None:
    op.drop_table("grading_events")
    op.drop_table("grading_grades")
    op.drop_table("grading_photos")
    op.drop_table("gradings")
    op.drop_table("api_keys")
