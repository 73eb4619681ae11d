"""Rule drafts: each console user's unpublished rule changes, based on the revision they started from.

A draft holds only the files it changes; the rest come from its base revision. Publishing a draft
whose base no longer serves (someone published since) is refused until it is rebased, so nobody
overwrites a publication they did not see.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "rule_drafts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("base_revision", sa.String(length=64), nullable=False),
        sa.Column("files", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_drafts")),
        sa.UniqueConstraint("owner", name=op.f("uq_rule_drafts_owner")),
    )


def downgrade() -> None:
    op.drop_table("rule_drafts")
