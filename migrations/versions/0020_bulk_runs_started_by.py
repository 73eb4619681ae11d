"""Each bulk run says who started it: the API key (`key:NAME`) of the API call or console session.

Analysts run what-ifs from the console now, not only editors over the API, so a run's source
(cli, api, schedule, console) no longer says enough: the what-if list shows whose draft each run
tried. The scheduler's and the CLI's runs have no key (null), as do the runs made before this
migration.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bulk_runs") as batch:
        batch.add_column(sa.Column("started_by", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bulk_runs") as batch:
        batch.drop_column("started_by")
