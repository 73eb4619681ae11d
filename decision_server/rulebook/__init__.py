"""The rulebook in force: rule revisions stored in the database, published, rolled back and hot-reloaded."""
