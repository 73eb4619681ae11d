"""RFM runs (cut points per run) and RFM scores on the customer state row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rfm_runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("as_of", TIMESTAMP, nullable=False),
        sa.Column("buyers", sa.Integer(), nullable=False),
        sa.Column("cuts", JSON, nullable=False),
        sa.Column("segments", JSON, nullable=False),
        sa.Column("rule_revision", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rfm_runs")),
    )
    op.create_index(op.f("ix_rfm_runs_created_at"), "rfm_runs", ["created_at"])
    with op.batch_alter_table("customer_state") as batch:
        batch.add_column(sa.Column("rfm_r", sa.SmallInteger(), nullable=True))
        batch.add_column(sa.Column("rfm_f", sa.SmallInteger(), nullable=True))
        batch.add_column(sa.Column("rfm_m", sa.SmallInteger(), nullable=True))
        batch.add_column(sa.Column("rfm_segment", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("rfm_run_id", ID, nullable=True))
        batch.create_index(batch.f("ix_customer_state_rfm_segment"), ["rfm_segment"])


def downgrade() -> None:
    with op.batch_alter_table("customer_state") as batch:
        batch.drop_index(batch.f("ix_customer_state_rfm_segment"))
        for column in ("rfm_run_id", "rfm_segment", "rfm_m", "rfm_f", "rfm_r"):
            batch.drop_column(column)
    op.drop_index(op.f("ix_rfm_runs_created_at"), table_name="rfm_runs")
    op.drop_table("rfm_runs")
