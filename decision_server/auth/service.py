"""Create, verify, list and revoke API keys."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
import threading
import time

import sqlalchemy as sa
from sqlalchemy.orm import Session

from decision_server.auth.records import ApiKeyRecord
from decision_server.auth.roles import Role
from decision_server.db import utcnow
from decision_server.errors import NotFound, Unauthorized, ValidationError

KEY_PREFIX = "ds"
_PREFIX_CHARS = 8
_PREFIX_RE = re.compile(f"[0-9a-f]{{{_PREFIX_CHARS}}}")


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, name and role (never the key itself)."""

    key_id: int
    name: str
    role: Role


@dataclasses.dataclass(frozen=True)
class NewKey:
    """A freshly created key: the secret is shown once and never stored."""

    record: ApiKeyRecord
    secret: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, *, name: str, role: str) -> NewKey:
    """Create an API key with `role`; return it with its secret, which is not kept anywhere."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationError("invalid key name", errors={"name": ["1 to 100 characters"]})
    try:
        role_ = Role(role)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise ValidationError(f"unknown role {role!r}", errors={"role": [f"one of: {allowed}"]}) from None
    prefix = secrets.token_hex(_PREFIX_CHARS // 2)
    secret = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    record = ApiKeyRecord(name=name, role=role_.value, prefix=prefix, key_hash=_hash(secret))
    session.add(record)
    session.flush()
    return NewKey(record, secret)


def list_keys(session: Session, *, include_revoked: bool = False) -> list[ApiKeyRecord]:
    """Return the keys (without secrets), oldest first."""
    query = sa.select(ApiKeyRecord).order_by(ApiKeyRecord.id)
    if not include_revoked:
        query = query.where(ApiKeyRecord.revoked_at.is_(None))
    return list(session.scalars(query))


def find_key(session: Session, *, key_id: int) -> ApiKeyRecord:
    """Return the key record with `key_id` or raise api_key_not_found."""
    record = session.get(ApiKeyRecord, key_id) if 0 < key_id < 2**63 else None
    if record is None:
        raise NotFound(f"no API key with id {key_id}", code="api_key_not_found")
    return record


def revoke_key(session: Session, *, key_id: int) -> ApiKeyRecord:
    """Revoke a key; it stops working at once in this process and within the cache TTL elsewhere."""
    record = find_key(session, key_id=key_id)
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        session.flush()
    return record


def verify_key(session: Session, secret: str) -> Principal:
    """Return who holds `secret`, or raise Unauthorized."""
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not _PREFIX_RE.fullmatch(parts[1]):
        raise Unauthorized("malformed API key", code="invalid_api_key")
    record = session.scalars(sa.select(ApiKeyRecord).where(ApiKeyRecord.prefix == parts[1])).first()
    if record is None or not hmac.compare_digest(record.key_hash, _hash(secret)):
        raise Unauthorized("unknown API key", code="invalid_api_key")
    if record.revoked_at is not None:
        raise Unauthorized("this API key was revoked", code="api_key_revoked")
    return Principal(record.id, record.name, Role(record.role))


class KeyCache:
    """Verified keys by hash for a few seconds, so most requests skip the key lookup."""

    def __init__(self, ttl_seconds: float):
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, secret: str) -> Principal | None:
        """Return the cached principal for `secret` if still fresh."""
        entry = self._entries.get(_hash(secret))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, secret: str, principal: Principal) -> None:
        """Remember a verified key until the TTL passes."""
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[_hash(secret)] = (time.monotonic() + self.ttl, principal)

    def forget(self, key_id: int) -> None:
        """Drop a key (after revocation) so this process refuses it at once."""
        with self._lock:
            self._entries = {h: e for h, e in self._entries.items() if e[1].key_id != key_id}
