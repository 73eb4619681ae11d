"""Journey stage on the customer state row.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customer_state") as batch:
        batch.add_column(sa.Column("journey_stage", sa.String(length=32), nullable=True))
        batch.create_index(batch.f("ix_customer_state_journey_stage"), ["journey_stage"])


def downgrade() -> None:
    with op.batch_alter_table("customer_state") as batch:
        batch.drop_index(batch.f("ix_customer_state_journey_stage"))
        batch.drop_column("journey_stage")
