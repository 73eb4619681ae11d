"""Core domain: customers, their state row, transactions, touchpoints and API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Spelled out here rather than imported so that this revision never changes when the code does.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
# Timestamps are UTC; SQLite keeps them as naive ISO text, PostgreSQL as timestamptz.
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        # The first characters of the key, stored in clear so a key is found by index; the
        # secret part is only ever stored as a SHA-256 of the whole key.
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_table(
        "customers",
        sa.Column("id", ID, nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=True),
        sa.Column("last_name", sa.String(length=100), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("consent", JSON, nullable=False),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("external_id", name=op.f("uq_customers_external_id")),
    )
    op.create_index(op.f("ix_customers_created_at"), "customers", ["created_at"])
    op.create_table(
        "customer_state",
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("transaction_count", sa.Integer(), nullable=False),
        # Money as integer cents: SQLite's NUMERIC would silently keep a float.
        sa.Column("total_spend_cents", sa.BigInteger(), nullable=False),
        sa.Column("total_cost_cents", sa.BigInteger(), nullable=False),
        sa.Column("first_purchase_at", TIMESTAMP, nullable=True),
        sa.Column("last_purchase_at", TIMESTAMP, nullable=True),
        sa.Column("touchpoint_count", sa.Integer(), nullable=False),
        sa.Column("last_touchpoint_at", TIMESTAMP, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_state_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_state")),
    )
    op.create_table(
        "touchpoints",
        sa.Column("id", ID, nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("occurred_at", TIMESTAMP, nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("ingested_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_touchpoints_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_touchpoints")),
        sa.UniqueConstraint("external_id", name=op.f("uq_touchpoints_external_id")),
    )
    # Every per-customer read (state refresh, listing) is "this customer, by time".
    op.create_index("ix_touchpoints_customer_id_occurred_at", "touchpoints", ["customer_id", "occurred_at"])
    op.create_table(
        "transactions",
        sa.Column("id", ID, nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("occurred_at", TIMESTAMP, nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("cost_cents", sa.BigInteger(), nullable=True),
        sa.Column("product", sa.String(length=100), nullable=True),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("ingested_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("amount_cents >= 0", name=op.f("ck_transactions_amount_not_negative")),
        sa.CheckConstraint("cost_cents IS NULL OR cost_cents >= 0", name=op.f("ck_transactions_cost_not_negative")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_transactions_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint("external_id", name=op.f("uq_transactions_external_id")),
    )
    op.create_index("ix_transactions_customer_id_occurred_at", "transactions", ["customer_id", "occurred_at"])


def downgrade() -> None:
    op.drop_table("transactions")
    op.drop_table("touchpoints")
    op.drop_table("customer_state")
    op.drop_table("customers")
    op.drop_table("api_keys")
