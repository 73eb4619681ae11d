"""Refunds: a transaction's amount (and cost) may be negative.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.drop_constraint(op.f("ck_transactions_amount_not_negative"), type_="check")
        batch.drop_constraint(op.f("ck_transactions_cost_not_negative"), type_="check")


def downgrade() -> None:
    # Refunds stored since the upgrade would violate the old rule: refuse rather than lose them.
    bind = op.get_bind()
    refunds = bind.execute(sa.text("SELECT count(*) FROM transactions WHERE amount_cents < 0 OR cost_cents < 0")).scalar()
    if refunds:
        raise RuntimeError(f"{refunds} refund(s) are stored; delete them before downgrading below 0009")
    with op.batch_alter_table("transactions") as batch:
        batch.create_check_constraint(op.f("ck_transactions_amount_not_negative"), "amount_cents >= 0")
        batch.create_check_constraint(op.f("ck_transactions_cost_not_negative"), "cost_cents IS NULL OR cost_cents >= 0")
