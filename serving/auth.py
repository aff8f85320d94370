"""API keys: creation, hashing, lookup, and the roles' permissions.

A token looks like `rg_<id>_<secret>`; only its SHA-256 is stored (the secret has 256 bits of entropy,
so a plain hash is enough — no password stretching needed). Roles:

- refurbisher: creates gradings and sees only its own tenant's (others' are 404, not 403, so ids leak nothing);
- auditor: sees every tenant's gradings (and reviews them: issue 6);
- admin: everything, plus models and keys.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.db import ApiKey, utcnow


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


def create_key(session: Session, role: Role | str, tenant: str | None = None, name: str | None = None):
    """Store a new key; returns (ApiKey row, token). The token is not recoverable afterwards."""
    role = Role(role)
    if role is Role.REFURBISHER and not tenant:
        raise ValueError("a refurbisher key needs a tenant")
    key_id = secrets.token_hex(6)
    token = f"rg_{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey(id=key_id, secret_hash=hash_token(token), role=role.value, tenant=tenant, name=name)
    row.created_at = utcnow()
    session.add(row)
    session.commit()
    return row, token


def authenticate(session: Session, token: str) -> Principal | None:
    row = session.scalar(select(ApiKey).where(ApiKey.secret_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        return None
    return Principal(key_id=row.id, role=Role(row.role), tenant=row.tenant)
