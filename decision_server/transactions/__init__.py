"""Transactions: purchases with exact money amounts, ingested one at a time or in batches."""
