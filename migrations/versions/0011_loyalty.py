"""Loyalty program: tiers (with the four default tiers), members, tier history, the points ledger,
rewards and redemptions; a refund may name the purchase it refunds.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)

# The tiers `rules/tiers.yaml` gives as shipped; change them over the API (/api/v1/loyalty/tiers).
DEFAULT_TIERS = [
    {
        "name": "bronze",
        "rank": 1,
        "multiplier": 1.0,
        "description": "Every member starts here.",
        "benefits": ["1 point per currency unit spent"],
    },
    {
        "name": "silver",
        "rank": 2,
        "multiplier": 1.25,
        "description": "Regular earners and steady spenders.",
        "benefits": ["1.25 points per currency unit spent", "birthday bonus"],
    },
    {
        "name": "gold",
        "rank": 3,
        "multiplier": 1.5,
        "description": "Strong earners and loyal spenders.",
        "benefits": ["1.5 points per currency unit spent", "priority support line", "free delivery"],
    },
    {
        "name": "platinum",
        "rank": 4,
        "multiplier": 2.0,
        "description": "Our best members.",
        "benefits": ["2 points per currency unit spent", "dedicated agent", "early access to new offers"],
    },
]


def upgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("refund_of", sa.String(length=64), nullable=True))
    tiers = op.create_table(
        "loyalty_tiers",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("multiplier", sa.Float(), nullable=False),
        sa.Column("benefits", JSON, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_tiers")),
        sa.UniqueConstraint("name", name=op.f("uq_loyalty_tiers_name")),
        sa.UniqueConstraint("rank", name=op.f("uq_loyalty_tiers_rank")),
    )
    now = dt.datetime.now(dt.UTC)
    if op.get_bind().dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # as UtcDateTime keeps it on SQLite
    op.bulk_insert(tiers, [{**t, "id": i, "created_at": now, "updated_at": now} for i, t in enumerate(DEFAULT_TIERS, start=1)])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SELECT setval(pg_get_serial_sequence('loyalty_tiers', 'id'), 4)")
    op.create_table(
        "loyalty_members",
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("tier_since", TIMESTAMP, nullable=False),
        sa.Column("enrolled_at", TIMESTAMP, nullable=False),
        sa.Column("enrolled_via", sa.String(length=16), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("earned_total", sa.BigInteger(), nullable=False),
        sa.Column("next_expiry_at", TIMESTAMP, nullable=True),
        sa.Column("below_since", TIMESTAMP, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_loyalty_members_balance_not_negative")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_loyalty_members_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["tier"], ["loyalty_tiers.name"], name=op.f("fk_loyalty_members_tier_loyalty_tiers")),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_loyalty_members")),
    )
    op.create_index(op.f("ix_loyalty_members_tier"), "loyalty_members", ["tier"])
    op.create_index(op.f("ix_loyalty_members_next_expiry_at"), "loyalty_members", ["next_expiry_at"])
    op.create_table(
        "loyalty_tier_changes",
        sa.Column("id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("from_tier", sa.String(length=32), nullable=True),
        sa.Column("to_tier", sa.String(length=32), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("rule_id", sa.String(length=100), nullable=True),
        sa.Column("rule_revision", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_loyalty_tier_changes_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_tier_changes")),
    )
    op.create_index("ix_loyalty_tier_changes_customer_id_at", "loyalty_tier_changes", ["customer_id", "at"])
    op.create_table(
        "loyalty_rewards",
        sa.Column("id", ID, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("points_cost", sa.BigInteger(), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=True),
        sa.Column("valid_from", TIMESTAMP, nullable=True),
        sa.Column("valid_to", TIMESTAMP, nullable=True),
        sa.Column("tiers", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("points_cost > 0", name=op.f("ck_loyalty_rewards_points_cost_positive")),
        sa.CheckConstraint("stock IS NULL OR stock >= 0", name=op.f("ck_loyalty_rewards_stock_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_rewards")),
        sa.UniqueConstraint("code", name=op.f("uq_loyalty_rewards_code")),
    )
    op.create_index(op.f("ix_loyalty_rewards_status"), "loyalty_rewards", ["status"])
    op.create_table(
        "loyalty_redemptions",
        sa.Column("id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("reward_id", ID, nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("cancelled_at", TIMESTAMP, nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("cancelled_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_loyalty_redemptions_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["loyalty_rewards.id"], name=op.f("fk_loyalty_redemptions_reward_id_loyalty_rewards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_redemptions")),
        sa.UniqueConstraint("customer_id", "idempotency_key", name=op.f("uq_loyalty_redemptions_customer_id_idempotency_key")),
    )
    op.create_index("ix_loyalty_redemptions_customer_id_id", "loyalty_redemptions", ["customer_id", "id"])
    op.create_index(op.f("ix_loyalty_redemptions_reward_id"), "loyalty_redemptions", ["reward_id"])
    op.create_table(
        "loyalty_ledger",
        sa.Column("id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("transaction_id", ID, nullable=True),
        sa.Column("redemption_id", ID, nullable=True),
        sa.Column("occurred_at", TIMESTAMP, nullable=False),
        sa.Column("available_at", TIMESTAMP, nullable=True),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("details", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("points <> 0", name=op.f("ck_loyalty_ledger_points_not_zero")),
        sa.CheckConstraint("balance_after >= 0", name=op.f("ck_loyalty_ledger_balance_after_not_negative")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_loyalty_ledger_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_loyalty_ledger_transaction_id_transactions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["redemption_id"], ["loyalty_redemptions.id"], name=op.f("fk_loyalty_ledger_redemption_id_loyalty_redemptions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_ledger")),
        sa.UniqueConstraint("customer_id", "idempotency_key", name=op.f("uq_loyalty_ledger_customer_id_idempotency_key")),
    )
    op.create_index("ix_loyalty_ledger_customer_id_id", "loyalty_ledger", ["customer_id", "id"])
    op.create_index(op.f("ix_loyalty_ledger_transaction_id"), "loyalty_ledger", ["transaction_id"])


def downgrade() -> None:
    for table in (
        "loyalty_ledger",
        "loyalty_redemptions",
        "loyalty_rewards",
        "loyalty_tier_changes",
        "loyalty_members",
        "loyalty_tiers",
    ):
        op.drop_table(table)
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("refund_of")
