"""Customer value score and segment on the customer state row.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customer_state") as batch:
        batch.add_column(sa.Column("value_score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("value_segment", sa.String(length=16), nullable=True))
        batch.create_index(batch.f("ix_customer_state_value_segment"), ["value_segment"])


def downgrade() -> None:
    with op.batch_alter_table("customer_state") as batch:
        batch.drop_index(batch.f("ix_customer_state_value_segment"))
        batch.drop_column("value_segment")
        batch.drop_column("value_score")
