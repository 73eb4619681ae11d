"""Bulk runs count running time only: when the current runner took the run over, and the running
time of the runners before it (each up to its last heartbeat), so a resumed run's rate and time
left leave out the time nobody was running it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bulk_runs") as batch:
        batch.add_column(sa.Column("resumed_at", sa.DateTime(timezone=True), nullable=True))
        # Runs recorded before this counted from their start: 0 keeps that for them.
        batch.add_column(sa.Column("prior_seconds", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("bulk_runs") as batch:
        batch.drop_column("prior_seconds")
        batch.drop_column("resumed_at")
