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
    # Existing rows get their buckets on the next state refresh (any event or `decision-server
    # features refresh`); until then the windowed features read as zero, as for a quiet customer.


def downgrade() -> None:
    with op.batch_alter_table("customer_state") as batch:
        batch.drop_column("activity")
