"""Console sessions: an API key exchanged for a short-lived, server-side session.

The browser holds only a random 256-bit token in an HttpOnly cookie; the database holds its
SHA-256, so a leaked table opens no session. Each request looks the token up (joined to its
key), which is what makes sign-out and key revocation end a session at once. The key itself is
checked once, at sign-in, and never reaches the page or the cookie.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Session

from decision_server.auth import service as auth_service
from decision_server.auth.records import ApiKeyRecord, ConsoleSessionRecord
from decision_server.auth.roles import Role
from decision_server.db import to_utc, utcnow
from decision_server.errors import Unauthorized


@dataclasses.dataclass(frozen=True)
class ConsoleUser:
    """Who is signed in: the session, the key's id, name and role, and the session's CSRF token."""

    session_id: int
    key_id: int
    name: str
    role: Role
    csrf_token: str
    expires_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class OpenedSession:
    """A new session with the cookie token, which is shown to the browser once and stored only as a hash."""

    user: ConsoleUser
    token: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, secret: str, *, lifetime: dt.timedelta, now: dt.datetime | None = None) -> OpenedSession:
    """Verify the API key `secret` and open a session for it; raise Unauthorized for a bad key."""
    principal = auth_service.verify_key(session, secret.strip())
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    record = ConsoleSessionRecord(
        token_hash=_hash(token),
        key_id=principal.key_id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(record)
    session.flush()
    user = ConsoleUser(record.id, principal.key_id, principal.name, principal.role, record.csrf_token, record.expires_at)
    return OpenedSession(user, token)


def find_session(session: Session, token: str, *, now: dt.datetime | None = None) -> ConsoleUser:
    """Return the user of a live session, or raise Unauthorized (unknown, ended, expired, or its key revoked)."""
    if not token or len(token) > 100:
        raise Unauthorized("not signed in", code="not_signed_in")
    row = session.execute(
        sa.select(ConsoleSessionRecord, ApiKeyRecord)
        .join(ApiKeyRecord, ApiKeyRecord.id == ConsoleSessionRecord.key_id)
        .where(ConsoleSessionRecord.token_hash == _hash(token))
    ).first()
    if row is None:
        raise Unauthorized("not signed in", code="not_signed_in")
    record, key = row
    now = now or utcnow()
    if record.ended_at is not None:
        raise Unauthorized("you signed out", code="session_ended")
    if to_utc(record.expires_at) <= now:
        raise Unauthorized("your session expired", code="session_expired")
    if key.revoked_at is not None:
        raise Unauthorized("the API key of this session was revoked", code="api_key_revoked")
    return ConsoleUser(record.id, key.id, key.name, Role(key.role), record.csrf_token, to_utc(record.expires_at))


def end_session(session: Session, session_id: int, *, now: dt.datetime | None = None) -> None:
    """Sign out: the session's token stops working everywhere at once."""
    session.execute(
        sa.update(ConsoleSessionRecord)
        .where(ConsoleSessionRecord.id == session_id, ConsoleSessionRecord.ended_at.is_(None))
        .values(ended_at=now or utcnow())
    )


def purge_sessions(session: Session, *, now: dt.datetime | None = None) -> int:
    """Delete sessions that expired or ended more than a day ago; return how many."""
    cutoff = (now or utcnow()) - dt.timedelta(days=1)
    result = session.execute(
        sa.delete(ConsoleSessionRecord).where(
            sa.or_(ConsoleSessionRecord.expires_at < cutoff, ConsoleSessionRecord.ended_at < cutoff)
        )
    )
    return result.rowcount or 0
