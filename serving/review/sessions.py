"""Review pages' sign-in: API key in, HttpOnly session cookie out; per-session CSRF tokens.

The cookie carries a random 256-bit token; the database keeps only its SHA-256 (`review_sessions`), so
a database leak gives no usable session. The cookie is HttpOnly, SameSite=Strict, Path=/review and
Secure unless `review_secure_cookie` is off (plain-http localhost tests). Every request re-checks that
the session is unexpired and not signed out and that its API key is neither revoked nor expired. Every
form carries the session's CSRF token; the sign-in form, which has no session yet, uses a double-submit
cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.auth import Principal, Role, authenticate
from serving.db import ApiKey, ReviewSession
from serving.settings import Settings

COOKIE = "rg_review"
PRE_COOKIE = "rg_review_pre"  # CSRF token of the sign-in form (double submit)
PATH = "/review"
REVIEWER_ROLES = (Role.AUDITOR, Role.ADMIN)


@dataclass(frozen=True)
class Reviewer:
    principal: Principal
    name: str
    csrf: str
    session_hash: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in(s: Session, settings: Settings, api_key: str) -> tuple[str | None, str]:
    """(cookie token, "") for an auditor's or admin's key; (None, why) otherwise."""
    principal = authenticate(s, api_key.strip()) if api_key.strip() else None
    if principal is None:
        return None, "unknown"
    if principal.role not in REVIEWER_ROLES:
        return None, "role"
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    s.add(
        ReviewSession(
            id_hash=_hash(token),
            key_id=principal.key_id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + timedelta(hours=settings.review_session_hours),
        )
    )
    s.commit()
    return token, ""


def current(s: Session, request: Request) -> Reviewer | None:
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 200:
        return None
    found = s.execute(
        select(ReviewSession, ApiKey)
        .join(ApiKey, ApiKey.id == ReviewSession.key_id)
        .where(ReviewSession.id_hash == _hash(token))
    ).first()
    if found is None:
        return None
    sess, key = found
    now = datetime.now(UTC)
    if sess.ended_at is not None or sess.expires_at <= now or key.status(now) != "active":
        return None
    role = Role(key.role)
    if role not in REVIEWER_ROLES:
        return None
    principal = Principal(key_id=key.id, role=role, tenant=key.tenant)
    return Reviewer(principal, key.name or f"key {key.id}", sess.csrf_token, sess.id_hash)


def sign_out(s: Session, reviewer: Reviewer) -> None:
    sess = s.get(ReviewSession, reviewer.session_hash)
    if sess is not None and sess.ended_at is None:
        sess.ended_at = datetime.now(UTC)
        s.commit()


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


def set_cookie(response: Response, settings: Settings, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PATH,
        secure=settings.review_secure_cookie,
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, settings: Settings, name: str) -> None:
    response.delete_cookie(
        name, path=PATH, secure=settings.review_secure_cookie, httponly=True, samesite="strict"
    )
