"""Bulk ingestion: streaming CSV/Parquet import with row validation and idempotent writes."""
