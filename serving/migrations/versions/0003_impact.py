"""Avoided emissions and e-waste of each grading (issue 22): the figures of the device if it is listed.

Whether a grading counts (its standing grade is listable) is decided when summing, from the grade that
stands after reviews; these columns hold what listing the device avoids, by the method recorded beside
them. Gradings stored before this revision have NULLs: they answer no impact and are counted apart.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gradings") as batch:
        batch.add_column(sa.Column("impact_method", sa.String(50), nullable=True))
        batch.add_column(sa.Column("impact_kg_co2e", sa.Float(), nullable=True))
        batch.add_column(sa.Column("impact_mass_kg", sa.Float(), nullable=True))
        batch.add_column(sa.Column("impact_estimated", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gradings") as batch:
        batch.drop_column("impact_estimated")
        batch.drop_column("impact_mass_kg")
        batch.drop_column("impact_kg_co2e")
        batch.drop_column("impact_method")
