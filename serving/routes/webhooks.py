"""/v1/webhooks (issue 21): a refurbisher registers its tenant's endpoints, reads the delivery log of
its events, and replays one.

Everything is scoped to the caller's tenant: another tenant's endpoint or event is 404, as for gradings.
The endpoint's secret is answered once, when it is created. Events, payloads, signatures and retries:
docs/api.md, "Webhooks"; the outbox and the worker: serving/webhooks/.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, update

from serving.apidocs import AUTH, errors, example
from serving.auth import Principal
from serving.db import WebhookAttempt, WebhookEndpoint, WebhookEvent, utcnow
from serving.deps import RefurbisherDep, StateDep
from serving.errors import ApiError
from serving.webhooks import outbox

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

EventType = Literal["grading.confirmed", "grading.overruled", "dispute.resolved"]
EventStatus = Literal["pending", "delivered", "failed", "cancelled"]
WebhookId = Annotated[str, Path(max_length=32, description="the endpoint's id (wh_...)")]
EventId = Annotated[str, Path(max_length=40, description="the event's id (evt_...)")]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="https:// URL the events are POSTed to")
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        description="the signing secret (at least 16 characters); default: a new random one, answered once",
    )
    events: list[EventType] | None = Field(default=None, description="the event types to send (default: all)")
    description: str | None = Field(default=None, max_length=200)


class WebhookOut(BaseModel):
    id: str = Field(description="the endpoint's id (wh_...)")
    url: str = Field(description="where the events are POSTed")
    events: list[EventType] = Field(description="the event types it receives")
    description: str | None = Field(description="your note about it")
    created_at: datetime = Field(description="when it was registered, UTC")


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(description="the signing secret: shown this once, keep it")


class AttemptOut(BaseModel):
    attempt: int = Field(description="1 for the first; a replay continues the count")
    started_at: datetime = Field(description="when the attempt began, UTC")
    duration_ms: int = Field(description="how long until the answer (or the failure), in milliseconds")
    status_code: int | None = Field(description="the receiver's HTTP status; null: no answer")
    error: str | None = Field(
        description="why the attempt failed (status and start of the body, or the network error)"
    )
    delivered: bool = Field(description="a 2xx came back")


class WebhookEventOut(BaseModel):
    id: str = Field(description="the event's id (evt_...): the same on every attempt and replay")
    type: EventType = Field(description="what happened")
    webhook_id: str = Field(description="the endpoint it is sent to")
    grading_id: str = Field(description="the grading it is about")
    created_at: datetime = Field(description="when it was written, UTC (with the review)")
    status: EventStatus = Field(
        description="pending (to send, or retrying), delivered (a 2xx came back), failed (retries ran out), "
        "cancelled (the endpoint was deleted)"
    )
    attempts: int = Field(description="attempts so far")
    next_attempt_at: datetime | None = Field(description="when the next attempt is due (pending only)")
    delivered_at: datetime | None = Field(description="when a 2xx came back, UTC")
    last_status_code: int | None = Field(description="the last attempt's HTTP status; null: no answer")
    last_error: str | None = Field(description="why the last attempt failed; null once delivered")


class WebhookEventDetailOut(WebhookEventOut):
    payload: dict = Field(description="the body sent (the same bytes on every attempt)")
    deliveries: list[AttemptOut] = Field(description="every attempt, oldest first")


class WebhookEventPage(BaseModel):
    items: list[WebhookEventOut] = Field(description="this page's events, newest first")
    total: int = Field(description="events matching the filters, on every page")
    limit: int = Field(description="the page size asked for")
    offset: int = Field(description="how many matching events come before this page")


# Example answers for the API documentation (the docs tests validate them against the schemas).
_WEBHOOK = {
    "id": "wh_5d0c3a9e1f2b4c6d",
    "url": "https://erp.example.com/refurbgrade",
    "events": ["grading.confirmed", "grading.overruled", "dispute.resolved"],
    "description": "ERP",
    "created_at": "2026-12-08T09:00:00Z",
}
_EVENT = {
    "id": "evt_9c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a",
    "type": "grading.overruled",
    "webhook_id": "wh_5d0c3a9e1f2b4c6d",
    "grading_id": "3f6c1d2e-8a4b-4c59-9e7d-0b1a2c3d4e5f",
    "created_at": "2026-12-08T10:15:02.114512Z",
    "status": "delivered",
    "attempts": 2,
    "next_attempt_at": None,
    "delivered_at": "2026-12-08T10:15:12.530201Z",
    "last_status_code": 200,
    "last_error": None,
}
_EVENT_DETAIL = {
    **_EVENT,
    "payload": {
        "id": _EVENT["id"],
        "type": "grading.overruled",
        "created_at": "2026-12-08T10:15:02.114512Z",
        "tenant": "acme",
        "data": {
            "grading_id": _EVENT["grading_id"],
            "external_ref": "SKU-4711",
            "device_model": "iPhone 13",
            "device_kind": "phone",
            "grades": {"backmarket": "Good", "ctia": "C", "r2": "B"},
            "original_grades": {"backmarket": "Good", "ctia": "B", "r2": "B"},
            "review_status": "overruled",
            "changed": {"ctia": {"before": "B", "after": "C"}},
            "reason": "dent on the frame",
            "disputes_resolved": [],
        },
    },
    "deliveries": [
        {
            "attempt": 1,
            "started_at": "2026-12-08T10:15:02.301877Z",
            "duration_ms": 10003,
            "status_code": None,
            "error": "ReadTimeout: timed out",
            "delivered": False,
        },
        {
            "attempt": 2,
            "started_at": "2026-12-08T10:15:12.498102Z",
            "duration_ms": 32,
            "status_code": 200,
            "error": None,
            "delivered": True,
        },
    ],
}


def _endpoint_out(ep: WebhookEndpoint) -> WebhookOut:
    return WebhookOut(
        id=ep.id, url=ep.url, events=list(ep.events), description=ep.description, created_at=ep.created_at
    )


def _event_out(ev: WebhookEvent) -> WebhookEventOut:
    return WebhookEventOut(
        id=ev.id,
        type=ev.type,
        webhook_id=ev.endpoint_id,
        grading_id=ev.grading_id,
        created_at=ev.created_at,
        status=ev.status,
        attempts=ev.attempts,
        next_attempt_at=ev.next_attempt_at,
        delivered_at=ev.delivered_at,
        last_status_code=ev.last_status_code,
        last_error=ev.last_error,
    )


def _own_event(s, principal: Principal, event_id: str) -> WebhookEvent:
    ev = s.get(WebhookEvent, event_id)
    if ev is None or ev.tenant != principal.tenant:
        raise ApiError(404, "webhook_event_not_found", f"no webhook event {event_id}")
    return ev


# -- endpoints ----------------------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreatedOut,
    responses={
        **example(
            {**_WEBHOOK, "secret": "whsec_q3Vx0fV1l2n8cJ0d9T6yZr4kE5aB7sW1uH2gN3mP4oQ"},
            201,
            description="The endpoint; `secret` is shown only in this answer",
        ),
        **errors(
            *AUTH,
            "forbidden",
            "invalid_request",
            "invalid_webhook_url",
            "insecure_webhook_url",
            "webhook_limit",
        ),
    },
    summary="Register a webhook endpoint for your tenant's review events",
)
def create_webhook(state: StateDep, principal: RefurbisherDep, body: WebhookIn) -> WebhookCreatedOut:
    try:
        url = outbox.check_url(body.url, state.settings.webhook_allow_http_localhost)
        types = outbox.check_events(list(body.events or []))
    except outbox.InvalidEndpoint as exc:
        raise ApiError(422, exc.code, str(exc)) from None
    secret = body.secret or outbox.new_secret()
    with state.sessions() as s:
        if len(outbox.active_endpoints(s, principal.tenant)) >= outbox.MAX_ENDPOINTS_PER_TENANT:
            raise ApiError(
                409,
                "webhook_limit",
                f"at most {outbox.MAX_ENDPOINTS_PER_TENANT} webhook endpoints per tenant",
            )
        ep = WebhookEndpoint(
            id=outbox.new_endpoint_id(),
            tenant=principal.tenant,
            url=url,
            secret=secret,
            events=types,
            description=body.description,
            created_at=utcnow(),
            created_by=principal.key_id,
        )
        s.add(ep)
        s.commit()
        return WebhookCreatedOut(**_endpoint_out(ep).model_dump(), secret=secret)


@router.get(
    "",
    response_model=list[WebhookOut],
    responses={**example([_WEBHOOK]), **errors(*AUTH, "forbidden")},
    summary="Your tenant's webhook endpoints (without their secrets)",
)
def list_webhooks(state: StateDep, principal: RefurbisherDep) -> list[WebhookOut]:
    with state.sessions() as s:
        return [_endpoint_out(ep) for ep in outbox.active_endpoints(s, principal.tenant)]


# -- events: declared before /{webhook_id} so that "events" is never taken for an id ----------------


@router.get(
    "/events",
    response_model=WebhookEventPage,
    responses={
        **example({"items": [_EVENT], "total": 1, "limit": 50, "offset": 0}),
        **errors(*AUTH, "forbidden", "invalid_request"),
    },
    summary="Your tenant's webhook events, newest first, with their delivery status",
)
def list_events(
    state: StateDep,
    principal: RefurbisherDep,
    status: Annotated[EventStatus | None, Query(description="only events in this state")] = None,
    type: Annotated[EventType | None, Query(description="only events of this type")] = None,
    grading_id: Annotated[str | None, Query(max_length=36)] = None,
    webhook_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> WebhookEventPage:
    where = [WebhookEvent.tenant == principal.tenant]
    for column, value in (
        (WebhookEvent.status, status),
        (WebhookEvent.type, type),
        (WebhookEvent.grading_id, grading_id),
        (WebhookEvent.endpoint_id, webhook_id),
    ):
        if value is not None:
            where.append(column == value)
    with state.sessions() as s:
        total = s.scalar(select(func.count()).select_from(WebhookEvent).where(*where)) or 0
        rows = s.scalars(
            select(WebhookEvent)
            .where(*where)
            .order_by(WebhookEvent.created_at.desc(), WebhookEvent.id)
            .limit(limit)
            .offset(offset)
        ).all()
        return WebhookEventPage(items=[_event_out(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get(
    "/events/{event_id}",
    response_model=WebhookEventDetailOut,
    responses={
        **example(_EVENT_DETAIL),
        **errors(*AUTH, "forbidden", "invalid_request", "webhook_event_not_found"),
    },
    summary="One webhook event: its payload and delivery log",
)
def get_event(state: StateDep, principal: RefurbisherDep, event_id: EventId) -> WebhookEventDetailOut:
    with state.sessions() as s:
        ev = _own_event(s, principal, event_id)
        attempts = s.scalars(
            select(WebhookAttempt).where(WebhookAttempt.event_id == ev.id).order_by(WebhookAttempt.id)
        ).all()
        return WebhookEventDetailOut(
            **_event_out(ev).model_dump(),
            payload=json.loads(ev.body),
            deliveries=[
                AttemptOut(
                    attempt=a.attempt,
                    started_at=a.started_at,
                    duration_ms=a.duration_ms,
                    status_code=a.status_code,
                    error=a.error,
                    delivered=a.delivered,
                )
                for a in attempts
            ],
        )


@router.post(
    "/events/{event_id}/replay",
    status_code=202,
    response_model=WebhookEventOut,
    responses={
        **example(
            {**_EVENT, "status": "pending", "next_attempt_at": "2026-12-09T08:00:00Z", "delivered_at": None},
            202,
            description="The event, due now",
        ),
        **errors(*AUTH, "forbidden", "invalid_request", "webhook_event_not_found", "webhook_deleted"),
    },
    summary="Send a webhook event again now (delivered, failed or still retrying)",
)
def replay_event(
    request: Request, state: StateDep, principal: RefurbisherDep, event_id: EventId
) -> WebhookEventOut:
    with state.sessions() as s:
        ev = _own_event(s, principal, event_id)
        ep = s.get(WebhookEndpoint, ev.endpoint_id)
        if ep is None or ep.deleted_at is not None:
            raise ApiError(409, "webhook_deleted", f"the endpoint {ev.endpoint_id} of this event was deleted")
        s.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == ev.id)
            .values(status=outbox.PENDING, next_attempt_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        s.commit()
        s.refresh(ev)
        out = _event_out(ev)
    worker = getattr(request.app.state, "webhooks", None)
    if worker is not None:
        worker.wake()
    return out


@router.delete(
    "/{webhook_id}",
    status_code=204,
    response_class=Response,
    responses={
        204: {"description": "Deleted"},
        **errors(*AUTH, "forbidden", "invalid_request", "webhook_not_found"),
    },
    summary="Delete a webhook endpoint: nothing more is sent to it (its delivery log stays readable)",
)
def delete_webhook(state: StateDep, principal: RefurbisherDep, webhook_id: WebhookId) -> Response:
    with state.sessions() as s:
        ep = s.get(WebhookEndpoint, webhook_id)
        if ep is None or ep.tenant != principal.tenant or ep.deleted_at is not None:
            raise ApiError(404, "webhook_not_found", f"no webhook {webhook_id}")
        ep.deleted_at = utcnow()
        s.execute(
            update(WebhookEvent)
            .where(WebhookEvent.endpoint_id == ep.id, WebhookEvent.status == outbox.PENDING)
            .values(status=outbox.CANCELLED, next_attempt_at=None)
            .execution_options(synchronize_session=False)
        )
        s.commit()
    return Response(status_code=204)
