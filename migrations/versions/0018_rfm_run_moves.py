"""Each RFM run keeps how its buyers moved between segments: {from segment: {to segment: customers}}.

The state row holds only a customer's current RFM segment and no earlier run's segments are
stored per customer, so "how did segments move between the last two runs" could not be answered
afterwards. The pass already has both the segment each state row held before it and the one it
gives, chunk by chunk; it counts the pairs (at most segments² numbers) and saves them in the
run's row. "from" is the segment the customer held just before the run (the previous run's, as
purchases since moved it against that run's cut points); "none" means no segment (not a buyer
yet, or no longer one). Runs made before this migration have none (null).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("rfm_runs") as batch:
        batch.add_column(sa.Column("moves", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rfm_runs") as batch:
        batch.drop_column("moves")
