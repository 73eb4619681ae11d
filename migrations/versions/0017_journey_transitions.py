"""The append-only journey transition history: every change of a customer's journey stage.

Until now the journey stage (0007) was only a column on the state row, so nobody could say since
when a customer was in it, how they got there or how long stays last. Rows mirror
stage_transitions (0005): from, to, time, the journey rule that decided it and its revision,
source (event, bulk, manual), and for a manual move who made it and why. Stages held before this
migration have no history: their `since` is unknown and stays so (no row is invented for them).

(customer_id, at) serves one customer's history; (at) the period statistics and listings.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "journey_transitions",
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
            ["customer_id"], ["customers.id"], name=op.f("fk_journey_transitions_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journey_transitions")),
    )
    op.create_index(op.f("ix_journey_transitions_at"), "journey_transitions", ["at"])
    op.create_index("ix_journey_transitions_customer_id_at", "journey_transitions", ["customer_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_journey_transitions_customer_id_at", table_name="journey_transitions")
    op.drop_index(op.f("ix_journey_transitions_at"), table_name="journey_transitions")
    op.drop_table("journey_transitions")
