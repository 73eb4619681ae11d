"""Offer catalog and its sync, the decision log, responses and the adaptive propensity counters.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "offers",
        sa.Column("id", ID, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("product_category", sa.String(length=32), nullable=True),
        sa.Column("target_stages", JSON, nullable=False),
        sa.Column("target_segments", JSON, nullable=False),
        sa.Column("business_value", sa.Float(), nullable=False),
        sa.Column("points_cost", sa.Integer(), nullable=False),
        sa.Column("valid_from", TIMESTAMP, nullable=True),
        sa.Column("valid_to", TIMESTAMP, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("treatments", JSON, nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=True),
        sa.Column("external_system", sa.String(length=64), nullable=True),
        sa.Column("last_synced_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offers")),
        sa.UniqueConstraint("code", name=op.f("uq_offers_code")),
        # Idempotent sync: one offer per upstream id per external system.
        sa.UniqueConstraint("external_system", "external_id", name=op.f("uq_offers_external_system_external_id")),
    )
    op.create_index(op.f("ix_offers_status"), "offers", ["status"])
    op.create_table(
        "catalog_connectors",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("auth_header", sa.String(length=100), nullable=True),
        sa.Column("auth_env", sa.String(length=100), nullable=True),
        sa.Column("items_path", sa.String(length=200), nullable=False),
        sa.Column("next_path", sa.String(length=200), nullable=True),
        sa.Column("mapping", JSON, nullable=False),
        sa.Column("defaults", JSON, nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("max_retire_fraction", sa.Float(), nullable=False),
        sa.Column("schedule", sa.String(length=100), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_connectors")),
        sa.UniqueConstraint("name", name=op.f("uq_catalog_connectors_name")),
    )
    op.create_table(
        "catalog_sync_runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("retired", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("failures", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_sync_runs")),
    )
    op.create_index("ix_catalog_sync_runs_connector_started_at", "catalog_sync_runs", ["connector", "started_at"])
    op.create_table(
        "decisions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", ID, nullable=True),
        sa.Column("prospect", sa.Boolean(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("decided_at", TIMESTAMP, nullable=False),
        sa.Column("context", JSON, nullable=False),
        sa.Column("profile", JSON, nullable=False),
        sa.Column("revision", sa.String(length=64), nullable=False),
        sa.Column("models", JSON, nullable=False),
        sa.Column("candidates", JSON, nullable=False),
        sa.Column("latency_us", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
    )
    # The decision log is read "this customer, by time" (and "everything, by time").
    op.create_index("ix_decisions_external_id_decided_at", "decisions", ["external_id", "decided_at"])
    op.create_index(op.f("ix_decisions_decided_at"), "decisions", ["decided_at"])
    op.create_table(
        "decision_actions",
        sa.Column("decision_id", sa.String(length=32), nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("offer_id", ID, nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("decided_at", TIMESTAMP, nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("propensity", sa.Float(), nullable=False),
        sa.Column("learning_key", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["decision_id"], ["decisions.id"], name=op.f("fk_decision_actions_decision_id_decisions"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("decision_id", "rank", name=op.f("pk_decision_actions")),
    )
    # The contact policy reads one customer's recent actions on every decision.
    op.create_index("ix_decision_actions_external_id_decided_at", "decision_actions", ["external_id", "decided_at"])
    op.create_table(
        "decision_responses",
        sa.Column("id", ID, nullable=False),
        sa.Column("decision_id", sa.String(length=32), nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("offer_id", ID, nullable=False),
        sa.Column("response", sa.String(length=16), nullable=False),
        sa.Column("responded_at", TIMESTAMP, nullable=False),
        sa.Column("recorded_at", TIMESTAMP, nullable=False),
        sa.Column("attributes", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["decision_id"], ["decisions.id"], name=op.f("fk_decision_responses_decision_id_decisions"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decision_responses")),
        # Idempotent responses: the same response to the same action is recorded once.
        sa.UniqueConstraint("decision_id", "rank", "response", name=op.f("uq_decision_responses_decision_id_rank_response")),
    )
    op.create_index("ix_decision_responses_external_id_responded_at", "decision_responses", ["external_id", "responded_at"])
    op.create_table(
        "offer_learning",
        sa.Column("offer_id", ID, nullable=False),
        sa.Column("learning_key", sa.String(length=32), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("shown", sa.BigInteger(), nullable=False),
        sa.Column("expected", sa.Float(), nullable=False),
        sa.Column("accepted", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("offer_id", "learning_key", "shard", name=op.f("pk_offer_learning")),
    )


def downgrade() -> None:
    op.drop_table("offer_learning")
    op.drop_index("ix_decision_responses_external_id_responded_at", table_name="decision_responses")
    op.drop_table("decision_responses")
    op.drop_index("ix_decision_actions_external_id_decided_at", table_name="decision_actions")
    op.drop_table("decision_actions")
    op.drop_index(op.f("ix_decisions_decided_at"), table_name="decisions")
    op.drop_index("ix_decisions_external_id_decided_at", table_name="decisions")
    op.drop_table("decisions")
    op.drop_index("ix_catalog_sync_runs_connector_started_at", table_name="catalog_sync_runs")
    op.drop_table("catalog_sync_runs")
    op.drop_table("catalog_connectors")
    op.drop_index(op.f("ix_offers_status"), table_name="offers")
    op.drop_table("offers")
