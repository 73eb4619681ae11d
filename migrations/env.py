"""Alembic environment: runs on the connection that decision_server.migrate hands over."""

from alembic import context

from decision_server.records import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `decision-server init` (decision_server.migrate)")

# The daily partitions of the decision log (PostgreSQL) are made and dropped by retention, not by
# migrations; the records describe their parents, so the comparison leaves the partitions out.
partitions = set()
if connection.dialect.name == "postgresql":
    partitions = set(connection.exec_driver_sql("SELECT relname FROM pg_class WHERE relispartition").scalars())


def include_name(name, type_, _parent_names):
    return not (type_ == "table" and name in partitions)


context.configure(
    connection=connection,
    target_metadata=metadata,
    include_name=include_name,
    compare_type=True,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
