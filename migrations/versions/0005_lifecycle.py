"""Lifecycle stage on the customer state row, and the append-only stage transition history.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("customer_state") as batch:
        batch.add_column(sa.Column("stage", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("stage_since", TIMESTAMP, nullable=True))
        batch.create_index(batch.f("ix_customer_state_stage"), ["stage"])
    op.create_table(
        "stage_transitions",
        sa.Column("id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("from_stage", sa.String(length=32), nullable=True),
        sa.Column("to_stage", sa.String(length=32), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=True),
        sa.Column("rule_revision", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_stage_transitions_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_transitions")),
    )
    op.create_index(op.f("ix_stage_transitions_at"), "stage_transitions", ["at"])
    op.create_index("ix_stage_transitions_customer_id_at", "stage_transitions", ["customer_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_stage_transitions_customer_id_at", table_name="stage_transitions")
    op.drop_index(op.f("ix_stage_transitions_at"), table_name="stage_transitions")
    op.drop_table("stage_transitions")
    with op.batch_alter_table("customer_state") as batch:
        batch.drop_index(batch.f("ix_customer_state_stage"))
        batch.drop_column("stage_since")
        batch.drop_column("stage")
