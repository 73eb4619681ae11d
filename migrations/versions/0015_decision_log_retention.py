"""Decision log retention: the log tables partitioned by day on PostgreSQL, offer statistics by day.

On PostgreSQL decisions, decision_actions and decision_responses become tables partitioned by
RANGE (decided_at), one partition per UTC day plus a default one (a write never fails for want
of a partition), so retention drops whole days instead of deleting 86M rows a day. A partitioned
table's keys must hold the partition key, so decided_at joins each primary key; responses get
decided_at (their decision's) so that a day of responses goes with its day of decisions, and
their natural key (decision, rank, response) becomes the primary key in place of a serial id
(SQLite autoincrements only a one-column INTEGER key). The foreign keys go: between partitioned
tables every dropped day would scan the referencing rows under a lock on the parent. SQLite keeps
plain tables of the same columns and keys. The rows are copied over; on a large PostgreSQL log
the copy takes minutes (about a minute per 10M decisions).

decision_offer_days keeps per offer and day what retention removed, so offer statistics hold.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)
TABLES = ("decisions", "decision_actions", "decision_responses")  # parents first
# The indexes (the same names before and after) and the named keys as 0010 made them and as this makes them.
OLD_INDEXES = {
    "decisions": ["ix_decisions_external_id_decided_at", "ix_decisions_decided_at"],
    "decision_actions": ["ix_decision_actions_external_id_decided_at"],
    "decision_responses": ["ix_decision_responses_external_id_responded_at"],
}
OLD_KEYS = {
    "decisions": ["pk_decisions"],
    "decision_actions": ["pk_decision_actions"],
    "decision_responses": ["pk_decision_responses", "uq_decision_responses_decision_id_rank_response"],
}
NEW_KEYS = {
    "decisions": ["pk_decisions"],
    "decision_actions": ["pk_decision_actions"],
    "decision_responses": ["pk_decision_responses"],
}
# Partitions made ahead of today, and how far back existing rows get partitions of their own
# (older rows go to the default partition, which retention empties in batches).
AHEAD_DAYS = 7
BACK_DAYS = 400


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _set_aside(table: str, indexes: list[str], keys: list[str]) -> None:
    """Rename a table to <table>_old and free its index and key names for the new table."""
    for name in indexes:
        op.drop_index(name, table_name=table)
    if _postgresql():  # constraint indexes share one namespace per schema on PostgreSQL
        for name in keys:
            op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {name} TO {name}_old")
    op.rename_table(table, f"{table}_old")


def _drop_old() -> None:
    for table in reversed(TABLES):
        op.drop_table(f"{table}_old")


def _decision_columns() -> list[sa.Column]:
    return [
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
    ]


def _action_columns() -> list[sa.Column]:
    return [
        sa.Column("decision_id", sa.String(length=32), nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("offer_id", ID, nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("decided_at", TIMESTAMP, nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("propensity", sa.Float(), nullable=False),
        sa.Column("learning_key", sa.String(length=32), nullable=False),
    ]


RESPONSE_FIELDS = ("external_id", "offer_id", "responded_at", "recorded_at", "attributes")


def _response_fields() -> list[sa.Column]:
    return [
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("offer_id", ID, nullable=False),
        sa.Column("responded_at", TIMESTAMP, nullable=False),
        sa.Column("recorded_at", TIMESTAMP, nullable=False),
        sa.Column("attributes", JSON, nullable=False),
    ]


def _partitioned() -> dict:
    return {"postgresql_partition_by": "RANGE (decided_at)"} if _postgresql() else {}


def _create_partitions() -> None:
    """Make a default partition and one per day from the oldest row (at most BACK_DAYS ago) to AHEAD_DAYS ahead."""
    bind = op.get_bind()
    today = dt.datetime.now(dt.UTC).date()
    oldest = bind.exec_driver_sql("SELECT min(decided_at) FROM decisions_old").scalar()
    first = max(oldest.astimezone(dt.UTC).date() if oldest else today, today - dt.timedelta(days=BACK_DAYS))
    for table in TABLES:
        op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
        day = first
        while day <= today + dt.timedelta(days=AHEAD_DAYS):
            after = day + dt.timedelta(days=1)
            op.execute(
                f"CREATE TABLE {table}_p{day:%Y%m%d} PARTITION OF {table} "
                f"FOR VALUES FROM ('{day.isoformat()}T00:00:00+00:00') TO ('{after.isoformat()}T00:00:00+00:00')"
            )
            day = after


def upgrade() -> None:
    for table in reversed(TABLES):
        _set_aside(table, OLD_INDEXES[table], OLD_KEYS[table])
    op.create_table(
        "decisions",
        *_decision_columns(),
        sa.PrimaryKeyConstraint("id", "decided_at", name=op.f("pk_decisions")),
        **_partitioned(),
    )
    op.create_index("ix_decisions_external_id_decided_at", "decisions", ["external_id", "decided_at"])
    op.create_index(op.f("ix_decisions_decided_at"), "decisions", ["decided_at"])
    op.create_table(
        "decision_actions",
        *_action_columns(),
        sa.PrimaryKeyConstraint("decision_id", "rank", "decided_at", name=op.f("pk_decision_actions")),
        **_partitioned(),
    )
    op.create_index("ix_decision_actions_external_id_decided_at", "decision_actions", ["external_id", "decided_at"])
    op.create_table(
        "decision_responses",
        sa.Column("decision_id", sa.String(length=32), nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False),
        sa.Column("response", sa.String(length=16), nullable=False),
        sa.Column("decided_at", TIMESTAMP, nullable=False),
        *_response_fields(),
        # Idempotent responses: the same response to the same action is recorded once.
        sa.PrimaryKeyConstraint("decision_id", "rank", "response", "decided_at", name=op.f("pk_decision_responses")),
        **_partitioned(),
    )
    op.create_index("ix_decision_responses_external_id_responded_at", "decision_responses", ["external_id", "responded_at"])
    if _postgresql():
        _create_partitions()
    op.execute("INSERT INTO decisions SELECT * FROM decisions_old")
    op.execute("INSERT INTO decision_actions SELECT * FROM decision_actions_old")
    fields = ", ".join(RESPONSE_FIELDS)
    op.execute(
        f"INSERT INTO decision_responses (decision_id, rank, response, decided_at, {fields}) "
        f"SELECT r.decision_id, r.rank, r.response, d.decided_at, {', '.join('r.' + f for f in RESPONSE_FIELDS)} "
        "FROM decision_responses_old r JOIN decisions_old d ON d.id = r.decision_id"
    )
    _drop_old()
    op.create_table(
        "decision_offer_days",
        sa.Column("offer_id", ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("actions", sa.BigInteger(), nullable=False),
        sa.Column("accepted", sa.BigInteger(), nullable=False),
        sa.Column("declined", sa.BigInteger(), nullable=False),
        sa.Column("ignored", sa.BigInteger(), nullable=False),
        sa.Column("clicked", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("offer_id", "day", name=op.f("pk_decision_offer_days")),
    )


def downgrade() -> None:
    # What retention rolled up cannot be unrolled: those days leave the statistics with the table.
    op.drop_table("decision_offer_days")
    for table in reversed(TABLES):
        _set_aside(table, OLD_INDEXES[table], NEW_KEYS[table])
    op.create_table(
        "decisions",
        *_decision_columns(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
    )
    op.create_index("ix_decisions_external_id_decided_at", "decisions", ["external_id", "decided_at"])
    op.create_index(op.f("ix_decisions_decided_at"), "decisions", ["decided_at"])
    op.create_table(
        "decision_actions",
        *_action_columns(),
        sa.ForeignKeyConstraint(
            ["decision_id"], ["decisions.id"], name=op.f("fk_decision_actions_decision_id_decisions"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("decision_id", "rank", name=op.f("pk_decision_actions")),
    )
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
        sa.UniqueConstraint("decision_id", "rank", "response", name=op.f("uq_decision_responses_decision_id_rank_response")),
    )
    op.create_index("ix_decision_responses_external_id_responded_at", "decision_responses", ["external_id", "responded_at"])
    op.execute("INSERT INTO decisions SELECT * FROM decisions_old")
    # Only rows with their decision: an orphan would break the foreign keys coming back.
    op.execute(
        "INSERT INTO decision_actions SELECT a.* FROM decision_actions_old a JOIN decisions_old d "
        "ON d.id = a.decision_id AND d.decided_at = a.decided_at"
    )
    fields = ", ".join(RESPONSE_FIELDS)
    op.execute(
        f"INSERT INTO decision_responses (decision_id, rank, response, {fields}) "
        f"SELECT r.decision_id, r.rank, r.response, {', '.join('r.' + f for f in RESPONSE_FIELDS)} "
        "FROM decision_responses_old r JOIN decisions_old d ON d.id = r.decision_id AND d.decided_at = r.decided_at "
        "ORDER BY r.recorded_at"
    )
    _drop_old()
