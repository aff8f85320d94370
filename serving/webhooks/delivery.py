"""The webhook delivery worker: claims due outbox rows with a lease, POSTs them signed, logs each attempt,
and retries failures with exponential backoff.

At least once, across restarts and replicas: a row is written with its grading event (outbox.enqueue)
and leaves `pending` only once an attempt got a 2xx (`delivered`), the retries ran out (`failed`) or its
endpoint was deleted (`cancelled`). A worker claims a row by setting `locked_until` (now + lease) with a
conditional UPDATE that only succeeds while the row is due and unclaimed; on PostgreSQL the candidates
are first selected `FOR UPDATE SKIP LOCKED`, so replicas never wait on each other (SQLite, one writer at
a time, relies on the conditional UPDATE alone). A worker that dies mid-attempt leaves its claim to
expire: the row is sent again after the lease, which is why receivers deduplicate on the event id.

Every process running the app runs one worker (`webhook_delivery`, on by default), a thread started and
stopped with the app; `webhook_workers` attempts run at once. Redirects are not followed: any answer
but a 2xx is a failure.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.orm import sessionmaker

from serving.db import WebhookAttempt, WebhookEndpoint, WebhookEvent, utcnow
from serving.webhooks import outbox
from serving.webhooks.signing import SIGNATURE_HEADER, signature_header

log = logging.getLogger("refurbgrade.webhooks")

USER_AGENT = "refurbgrade-webhooks/1"


@dataclass(frozen=True)
class Policy:
    """How deliveries are attempted (from Settings.webhook_*)."""

    timeout_s: float = 10.0
    max_attempts: int = 15
    backoff_s: float = 10.0
    backoff_max_s: float = 6 * 3600.0
    poll_s: float = 1.0
    workers: int = 4

    @property
    def lease_s(self) -> float:
        """How long a claim holds: longer than one attempt can take."""
        return max(30.0, 3 * self.timeout_s)

    def delay(self, attempt: int) -> float:
        """Seconds before the attempt after `attempt` (1-based): backoff_s · 2^(attempt-1), capped, plus up
        to 10% jitter so many rows failed by one outage do not all come back at once."""
        base = min(self.backoff_s * 2 ** (attempt - 1), self.backoff_max_s)
        return base * (1 + 0.1 * random.random())

    @classmethod
    def from_settings(cls, settings) -> Policy:
        return cls(
            timeout_s=settings.webhook_timeout_s,
            max_attempts=settings.webhook_max_attempts,
            backoff_s=settings.webhook_backoff_s,
            backoff_max_s=settings.webhook_backoff_max_s,
            poll_s=settings.webhook_poll_s,
            workers=settings.webhook_workers,
        )


@dataclass(frozen=True)
class Claim:
    id: str
    type: str
    body: str
    attempts: int
    url: str
    secret: str


@dataclass(frozen=True)
class Outcome:
    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Dispatcher:
    """One process's delivery worker. `start()` runs it in a thread; `run_once()` does one round (tests)."""

    def __init__(
        self,
        sessions: sessionmaker,
        policy: Policy | None = None,
        *,
        name: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.sessions = sessions
        self.policy = policy or Policy()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._http = httpx.Client(
            timeout=self.policy.timeout_s,
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life -----------------------------------------------------------------------------------

    def start(self) -> Dispatcher:
        self._thread = threading.Thread(target=self._run, name="webhook-delivery", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Look for due rows now instead of at the next poll (after a replay)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming; attempts in flight finish (each within the timeout). Rows not yet delivered stay
        in the outbox for the next worker."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.policy.timeout_s + 10)
        self._http.close()

    def _run(self) -> None:
        with ThreadPoolExecutor(self.policy.workers, thread_name_prefix="webhook-send") as pool:
            while not self._stop.is_set():
                try:
                    busy = self.run_once(pool) >= self.policy.workers
                except Exception:  # the database is away for a moment: try again at the next poll
                    log.exception("webhook delivery round failed")
                    busy = False
                if not busy:
                    self._wake.wait(self.policy.poll_s)
                    self._wake.clear()

    def run_once(self, pool: ThreadPoolExecutor | None = None) -> int:
        """Claim up to `workers` due rows and attempt each once; returns how many were claimed."""
        claims = self.claim(self.policy.workers)
        if pool is None:
            for c in claims:
                self.deliver(c)
        else:
            list(pool.map(self.deliver, claims))
        return len(claims)

    # -- claiming ---------------------------------------------------------------------------------

    def claim(self, limit: int) -> list[Claim]:
        now = utcnow()
        until = now + timedelta(seconds=self.policy.lease_s)
        due = (
            WebhookEvent.status == outbox.PENDING,
            WebhookEvent.next_attempt_at <= now,
            or_(WebhookEvent.locked_until.is_(None), WebhookEvent.locked_until < now),
        )
        with self.sessions() as s:
            candidates = s.scalars(
                select(WebhookEvent.id)
                .where(*due)
                .order_by(WebhookEvent.next_attempt_at, WebhookEvent.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)  # PostgreSQL; SQLite renders no FOR UPDATE
            ).all()
            claimed = []
            for event_id in candidates:
                won = s.execute(
                    update(WebhookEvent)
                    .where(WebhookEvent.id == event_id, *due)
                    .values(locked_until=until, locked_by=self.name)
                    .execution_options(synchronize_session=False)
                )
                if won.rowcount == 1:
                    claimed.append(event_id)
            rows = (
                s.execute(
                    select(WebhookEvent, WebhookEndpoint)
                    .join(WebhookEndpoint, WebhookEndpoint.id == WebhookEvent.endpoint_id)
                    .where(WebhookEvent.id.in_(claimed))
                ).all()
                if claimed
                else []
            )
            out = []
            for ev, ep in rows:
                if ep.deleted_at is not None:  # deleted since the row was written: nobody to send to
                    ev.status, ev.next_attempt_at, ev.locked_until, ev.locked_by = (
                        outbox.CANCELLED,
                        None,
                        None,
                        None,
                    )
                    continue
                out.append(Claim(ev.id, ev.type, ev.body, ev.attempts, ep.url, ep.secret))
            s.commit()
        return out

    # -- sending ----------------------------------------------------------------------------------

    def send(self, c: Claim) -> Outcome:
        attempt = c.attempts + 1
        body = c.body.encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(c.secret, body),
            "Refurbgrade-Event-Id": c.id,
            "Refurbgrade-Event-Type": c.type,
            "Refurbgrade-Attempt": str(attempt),
        }
        started = utcnow()
        t0 = time.monotonic()
        code = error = None
        try:
            r = self._http.post(c.url, content=body, headers=headers)
            code = r.status_code
            if not 200 <= code < 300:
                text = " ".join(r.text[:200].split())
                error = f"HTTP {code}" + (f": {text}" if text else "")
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        duration = int((time.monotonic() - t0) * 1000)
        return Outcome(attempt, started, duration, code, error[:500] if error else None)

    def deliver(self, c: Claim) -> Outcome:
        """Attempt one claimed row and record the outcome (a failure in here never stops the worker)."""
        try:
            outcome = self.send(c)
        except Exception as exc:  # a bug, not the receiver: log it and retry like a failed attempt
            log.exception("webhook %s: sending failed", c.id)
            outcome = Outcome(c.attempts + 1, utcnow(), 0, None, f"internal error: {type(exc).__name__}")
        try:
            self.record(c, outcome)
        except Exception:
            log.exception("webhook %s: recording the attempt failed (the lease expires, it is retried)", c.id)
        return outcome

    def record(self, c: Claim, o: Outcome) -> None:
        now = utcnow()
        values: dict = {
            "attempts": o.attempt,
            "locked_until": None,
            "locked_by": None,
            "last_status_code": o.status_code,
            "last_error": o.error,
        }
        if o.delivered:
            values |= {"status": outbox.DELIVERED, "delivered_at": now, "next_attempt_at": None}
        elif o.attempt >= self.policy.max_attempts:
            values |= {"status": outbox.FAILED, "next_attempt_at": None}
            log.warning("webhook %s: giving up after %d attempts (%s)", c.id, o.attempt, o.error)
        else:
            values["next_attempt_at"] = now + timedelta(seconds=self.policy.delay(o.attempt))
        with self.sessions() as s:
            s.add(
                WebhookAttempt(
                    event_id=c.id,
                    attempt=o.attempt,
                    started_at=o.started_at,
                    duration_ms=o.duration_ms,
                    status_code=o.status_code,
                    error=o.error,
                    delivered=o.delivered,
                )
            )
            s.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id == c.id, WebhookEvent.locked_by == self.name)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            s.commit()


def start_delivery(sessions: sessionmaker, settings) -> Dispatcher | None:
    """The app's worker, started; None when this process does not deliver (`webhook_delivery` off)."""
    if not settings.webhook_delivery:
        return None
    return Dispatcher(sessions, Policy.from_settings(settings)).start()
