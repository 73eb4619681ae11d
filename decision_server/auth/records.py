"""Table for API keys (only a hash of each key is stored)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from decision_server.db import Base, BigId, UtcDateTime, utcnow


class ApiKeyRecord(Base):
    """An API key: its public prefix for lookup, the SHA-256 of the whole key, and its role."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    role: Mapped[str] = mapped_column(sa.String(16))
    prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class ConsoleSessionRecord(Base):
    """A console sign-in: the SHA-256 of its cookie token, the key it was opened with, its CSRF token and expiry.

    The cookie's token is looked up here on every page, so signing out or revoking the key ends
    the session at once (a self-contained signed cookie would live on until it expired).
    """

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    key_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
