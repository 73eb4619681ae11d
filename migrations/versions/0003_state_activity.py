"""Monthly activity buckets on the customer state row, for real-time windowed features.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("customer_state") as batch:
        batch.add_column(sa.Column("activity", JSON, nullable=True))
    # decision_server.migrate.upgrade builds the buckets of existing rows right after this step
    # (from the stored events, with the application's own state refresh).


def downgrade() -> None:
    with op.batch_alter_table("customer_state") as batch:
        batch.drop_column("activity")
