"""Rule revisions and their publication log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Content-addressed: publishing the same files twice (two workers seeing one edit on disk,
    # or a rollback) reuses the row, and the hash is what every decision records.
    op.create_table(
        "rule_revisions",
        sa.Column("id", ID, nullable=False),
        sa.Column("revision", sa.String(length=64), nullable=False),
        sa.Column("files", JSON, nullable=False),
        sa.Column("author", sa.String(length=100), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_revisions")),
        sa.UniqueConstraint("revision", name=op.f("uq_rule_revisions_revision")),
    )
    # Append-only: the newest row is what serves; history is never rewritten, so a rollback
    # is a new row pointing at an older revision.
    op.create_table(
        "rule_publications",
        sa.Column("id", ID, nullable=False),
        sa.Column("revision_id", ID, nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("author", sa.String(length=100), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("published_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["revision_id"], ["rule_revisions.id"], name=op.f("fk_rule_publications_revision_id_rule_revisions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_publications")),
    )
    op.create_index(op.f("ix_rule_publications_revision_id"), "rule_publications", ["revision_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_rule_publications_revision_id"), table_name="rule_publications")
    op.drop_table("rule_publications")
    op.drop_table("rule_revisions")
