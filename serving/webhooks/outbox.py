"""Webhook endpoints and the outbox: what an endpoint may be, which events exist, what their bodies say,
and `enqueue`, which adds the outbox rows of one grading event to the caller's transaction.

Events (`type`):

- `grading.confirmed`: a reviewer confirmed a grading's grades;
- `grading.overruled`: a reviewer changed at least one grade;
- `dispute.resolved`: a verdict (confirm or overrule) closed an open dispute, one event per dispute.

Every body is `{"id", "type", "created_at", "tenant", "data"}`, serialised once when the row is written:
each attempt sends (and signs) the same bytes, and a receiver deduplicates on `id`.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import uuid
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.db import Grading, GradingEvent, WebhookEndpoint, WebhookEvent, utcnow
from serving.review import events as review_events

CONFIRMED = "grading.confirmed"
OVERRULED = "grading.overruled"
DISPUTE_RESOLVED = "dispute.resolved"
EVENT_TYPES = (CONFIRMED, OVERRULED, DISPUTE_RESOLVED)

PENDING, DELIVERED, FAILED, CANCELLED = "pending", "delivered", "failed", "cancelled"
STATUSES = (PENDING, DELIVERED, FAILED, CANCELLED)

MAX_ENDPOINTS_PER_TENANT = 10
_LOCAL_NAMES = {"localhost", "localhost.localdomain"}


class InvalidEndpoint(ValueError):
    """An endpoint that cannot be registered; `code` is the API's error code."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


def _is_local(host: str) -> bool:
    if host.lower().rstrip(".") in _LOCAL_NAMES or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, allow_http_localhost: bool) -> str:
    """The endpoint URL, or InvalidEndpoint: https:// to a public host, no credentials in it. With
    `allow_http_localhost` (tests, a local receiver) http:// and https:// to localhost are allowed too."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise InvalidEndpoint("invalid_webhook_url", f"url: not a URL ({exc})") from None
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidEndpoint("invalid_webhook_url", "url: give an absolute https:// URL")
    if parts.username is not None or parts.password is not None:
        raise InvalidEndpoint("invalid_webhook_url", "url: credentials in the URL are not allowed")
    if parts.fragment:
        raise InvalidEndpoint("invalid_webhook_url", "url: a URL with a #fragment is not allowed")
    local = _is_local(host)
    if local and allow_http_localhost:
        return url
    if parts.scheme != "https":
        raise InvalidEndpoint("insecure_webhook_url", "url: webhooks are sent over https:// only")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if local or (ip is not None and not ip.is_global):
        raise InvalidEndpoint("invalid_webhook_url", "url: the host must be public (not a private address)")
    return url


def check_events(types: list[str] | None) -> list[str]:
    if not types:
        return list(EVENT_TYPES)
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise InvalidEndpoint(
            "unknown_event_type", f"events: unknown {', '.join(unknown)} (known: {', '.join(EVENT_TYPES)})"
        )
    return [t for t in EVENT_TYPES if t in types]  # known order, no repeats


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def new_endpoint_id() -> str:
    return f"wh_{secrets.token_hex(8)}"


def active_endpoints(s: Session, tenant: str) -> list[WebhookEndpoint]:
    return list(
        s.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.tenant == tenant, WebhookEndpoint.deleted_at.is_(None))
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
    )


# -- payloads -------------------------------------------------------------------------------------


def iso(d: datetime) -> str:
    return d.isoformat().replace("+00:00", "Z")


def _grading_data(row: Grading, state: review_events.ReviewState) -> dict:
    return {
        "grading_id": row.id,
        "external_ref": row.external_ref,
        "device_model": row.device_model,
        "device_kind": row.device_kind,
        "grades": state.current_grades(),
        "original_grades": {name: g.original for name, g in state.grades.items()},
        "review_status": state.status,
    }


def payloads(s: Session, row: Grading, event: GradingEvent) -> list[tuple[str, dict]]:
    """(type, data) of each webhook event a grading event makes: none for most kinds."""
    if event.kind not in review_events.VERDICTS:
        return []
    p = event.payload or {}
    state = review_events.load_state(s, row)  # includes `event` (flushed)
    base = _grading_data(row, state)
    reason = p.get("reason") or p.get("note") or ""
    outcome = "overruled" if event.kind == review_events.OVERRULED else "confirmed"
    before, after = p.get("before") or {}, p.get("after") or {}
    changed = {k: {"before": before.get(k), "after": v} for k, v in after.items() if before.get(k) != v}
    out = [
        (
            OVERRULED if outcome == "overruled" else CONFIRMED,
            {
                **base,
                "changed": changed,
                "reason": reason,
                "disputes_resolved": list(p.get("resolves") or []),
            },
        )
    ]
    disputes = {d.event_id: d for d in state.disputes}
    for dispute_id in p.get("resolves") or []:
        d = disputes.get(dispute_id)
        dispute = {
            "id": dispute_id,
            "reason": d.reason if d else "",
            "opened_at": iso(d.created_at) if d else None,
        }
        out.append(
            (
                DISPUTE_RESOLVED,
                {**base, "dispute": dispute, "outcome": outcome, "changed": changed, "reason": reason},
            )
        )
    return out


def enqueue(s: Session, row: Grading, event: GradingEvent) -> list[WebhookEvent]:
    """Add the outbox rows for `event` to the session (the caller commits them with the event): one per
    webhook event it makes and endpoint of the grading's tenant subscribed to that type."""
    if event.kind not in review_events.VERDICTS:
        return []
    endpoints = active_endpoints(s, row.tenant)
    if not endpoints:
        return []
    s.flush()  # the grading event's id, and folding sees it
    made = payloads(s, row, event)
    now = utcnow()
    rows = []
    for ep in endpoints:
        for kind, data in made:
            if kind not in (ep.events or EVENT_TYPES):
                continue
            event_id = f"evt_{uuid.uuid4().hex}"
            body = {"id": event_id, "type": kind, "created_at": iso(event.created_at), "tenant": row.tenant}
            body["data"] = data
            rows.append(
                WebhookEvent(
                    id=event_id,
                    tenant=row.tenant,
                    endpoint_id=ep.id,
                    type=kind,
                    grading_id=row.id,
                    grading_event_id=event.id,
                    body=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
                    created_at=now,
                    status=PENDING,
                    attempts=0,
                    next_attempt_at=now,
                )
            )
    s.add_all(rows)
    return rows
