"""Tables for the offer catalog and its sync from external catalog APIs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from decision_server.db import Base, BigId, Json, UtcDateTime, utcnow


class OfferRecord(Base):
    """Something we can propose to a customer, with how it is presented on each channel."""

    __tablename__ = "offers"
    __table_args__ = (sa.UniqueConstraint("external_system", "external_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    # Marketing kind (welcome, upsell, retention, ...): what the offer rule files reason about.
    category: Mapped[str] = mapped_column(sa.String(32))
    # The product category it sells (None: none); its NBO score is part of the offer's propensity.
    product_category: Mapped[str | None] = mapped_column(sa.String(32))
    # Empty list: any stage / any value segment.
    target_stages: Mapped[list[str]] = mapped_column(Json, default=list)
    target_segments: Mapped[list[str]] = mapped_column(Json, default=list)
    # A ranking weight the business sets (a margin, or any positive number), never booked money.
    business_value: Mapped[float] = mapped_column(sa.Float)
    points_cost: Mapped[int] = mapped_column(sa.Integer, default=0)
    valid_from: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    valid_to: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(sa.String(16), index=True)  # draft, active, paused, retired
    # {channel: treatment}: an SMS text, an app card, a call-centre script (see offers/treatments.py).
    treatments: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    external_id: Mapped[str | None] = mapped_column(sa.String(100))
    external_system: Mapped[str | None] = mapped_column(sa.String(64))
    last_synced_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class CatalogConnectorRecord(Base):
    """How to read one external catalog API: URL, auth, field mapping and schedule."""

    __tablename__ = "catalog_connectors"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Also the offers' external_system: the offers this connector owns.
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    url: Mapped[str] = mapped_column(sa.String(2000))
    # The header to send and the NAME of the environment variable holding its value: the secret
    # itself is never stored, logged or returned.
    auth_header: Mapped[str | None] = mapped_column(sa.String(100))
    auth_env: Mapped[str | None] = mapped_column(sa.String(100))
    # Where the list of offers is in the response ("" = the whole body), and where the next
    # page's URL is (None: one page).
    items_path: Mapped[str] = mapped_column(sa.String(200), default="")
    next_path: Mapped[str | None] = mapped_column(sa.String(200))
    # {our field: path in an upstream item}, e.g. {"external_id": "id", "name": "title"}.
    mapping: Mapped[dict[str, str]] = mapped_column(Json)
    # Values for our fields the upstream does not carry (category, business value, ...).
    defaults: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    timeout_seconds: Mapped[float] = mapped_column(sa.Float)
    retries: Mapped[int] = mapped_column(sa.Integer)
    # Refuse to retire more than this share of the connector's live offers in one run: an
    # upstream that suddenly answers an empty list is more likely broken than emptied.
    max_retire_fraction: Mapped[float] = mapped_column(sa.Float)
    schedule: Mapped[str | None] = mapped_column(sa.String(100))  # cron expression, run by the scheduler
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class CatalogSyncRunRecord(Base):
    """One sync of one connector: what it did, item by item, or why it did nothing."""

    __tablename__ = "catalog_sync_runs"
    __table_args__ = (sa.Index("ix_catalog_sync_runs_connector_started_at", "connector", "started_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    connector: Mapped[str] = mapped_column(sa.String(64))
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(sa.String(16))  # succeeded, partial, failed
    created: Mapped[int] = mapped_column(sa.Integer, default=0)
    updated: Mapped[int] = mapped_column(sa.Integer, default=0)
    unchanged: Mapped[int] = mapped_column(sa.Integer, default=0)
    retired: Mapped[int] = mapped_column(sa.Integer, default=0)
    failed: Mapped[int] = mapped_column(sa.Integer, default=0)
    # [{external_id, reason}] per failed item; `error` says why a failed run wrote nothing.
    failures: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    error: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    actor: Mapped[str | None] = mapped_column(sa.String(100))
