"""API keys: creation, hashing, lookup, and the roles' permissions.

A token looks like `rg_<id>_<secret>`; only its SHA-256 is stored (the secret has 256 bits of entropy,
so a plain hash is enough — no password stretching needed). A key may expire (`expires_at`) and can be
revoked; either way it stops authenticating on the next request, and its review sessions with it.
Roles:

- refurbisher: creates gradings and sees only its own tenant's (others' are 404, not 403, so ids leak nothing);
- auditor: sees every tenant's gradings (and reviews them: issue 6);
- admin: everything, plus models and keys.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.db import ApiKey, ReviewSession, utcnow


class Role(enum.StrEnum):
    REFURBISHER = "refurbisher"
    AUDITOR = "auditor"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: Role
    tenant: str | None

    @property
    def sees_all_tenants(self) -> bool:
        return self.role in (Role.AUDITOR, Role.ADMIN)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(
    session: Session,
    role: Role | str,
    tenant: str | None = None,
    name: str | None = None,
    expires_in: timedelta | None = None,
):
    """Store a new key; returns (ApiKey row, token). The token is not recoverable afterwards.
    `expires_in`: the key stops working that long from now (None: it works until revoked)."""
    role = Role(role)
    if role is Role.REFURBISHER and not tenant:
        raise ValueError("a refurbisher key needs a tenant")
    if expires_in is not None and expires_in <= timedelta(0):
        raise ValueError("a key's lifetime must be positive")
    key_id = secrets.token_hex(6)
    token = f"rg_{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey(id=key_id, secret_hash=hash_token(token), role=role.value, tenant=tenant, name=name)
    row.created_at = utcnow()
    row.expires_at = row.created_at + expires_in if expires_in is not None else None
    session.add(row)
    session.commit()
    return row, token


def authenticate(session: Session, token: str) -> Principal | None:
    """The key's principal; None for an unknown, revoked or expired key (checked on every request)."""
    row = session.scalar(select(ApiKey).where(ApiKey.secret_hash == hash_token(token)))
    if row is None or row.status() != "active":
        return None
    return Principal(key_id=row.id, role=Role(row.role), tenant=row.tenant)


def list_keys(session: Session, include_inactive: bool = True) -> list[ApiKey]:
    """Every key, newest first (never a token or its hash in what callers show)."""
    rows = list(session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)))
    return rows if include_inactive else [r for r in rows if r.status() == "active"]


def revoke_key(session: Session, key_id: str) -> ApiKey | None:
    """Revoke a key at once (its review sessions end too); None when there is no such key. Revoking a
    revoked key keeps its first revocation time."""
    row = session.get(ApiKey, key_id)
    if row is None:
        return None
    now = utcnow()
    if row.revoked_at is None:
        row.revoked_at = now
    for sess in session.scalars(
        select(ReviewSession).where(ReviewSession.key_id == key_id, ReviewSession.ended_at.is_(None))
    ):
        sess.ended_at = now
    session.commit()
    return row


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_lifetime(text: str) -> timedelta:
    """'90d', '12h', '30m', '2w', '3600s' or a plain number of days -> a positive timedelta."""
    text = text.strip().lower()
    unit = text[-1:] if text[-1:] in _UNITS else "d"
    number = text[:-1] if text[-1:] in _UNITS else text
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not a lifetime: {text!r} (use e.g. 90d, 12h, 30m, 2w)") from None
    if not 0 < value * _UNITS[unit] <= 3650 * 86400:
        raise ValueError(f"a key's lifetime must be positive and at most 10 years, got {text!r}")
    return timedelta(seconds=value * _UNITS[unit])
