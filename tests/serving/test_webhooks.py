"""Webhooks (issue 21): endpoints per tenant, signed events on confirm / overrule / resolved dispute,
delivery by the outbox worker (a receiver down for a while, retries running out, replay), tenant
isolation, a restart with rows pending, and two workers sharing one outbox without sending a row twice.

The receivers are small http.server threads on 127.0.0.1 (allowed by webhook_allow_http_localhost);
they check signatures as a receiver would, with refurbgrade.client.verify_signature."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from refurbgrade.client import verify_signature
from serving.db import Grading, WebhookEndpoint, WebhookEvent, utcnow
from serving.review import events
from serving.webhooks import outbox
from serving.webhooks.delivery import Dispatcher, Policy
from serving.webhooks.signing import SIGNATURE_HEADER, signature_header
from tests.serving.conftest import Keys, pg_and_sqlite, post_grading

H = Keys.h
SECRET = "whsec_test_0123456789abcdef"


class Receiver:
    """An HTTP receiver on 127.0.0.1: records every request; answers `statuses` in turn, then 200."""

    def __init__(self, port: int = 0, statuses: list[int] | None = None, delay_s: float = 0.0):
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])
        self.delay_s = delay_s
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(receiver.delay_s)
                with receiver.lock:
                    receiver.requests.append((dict(self.headers.items()), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict]:
        with self.lock:
            return [json.loads(body) for _, body in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fast(settings, **more):
    return settings.model_copy(
        update={
            "webhook_allow_http_localhost": True,
            "webhook_poll_s": 0.05,
            "webhook_backoff_s": 0.05,
            "webhook_backoff_max_s": 0.2,
            "webhook_timeout_s": 2.0,
            **more,
        }
    )


@pytest.fixture
def settings(settings):
    return fast(settings)


def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting; last: {got!r}")
        time.sleep(0.02)


def register(client, token, url, **body):
    r = client.post("/v1/webhooks", json={"url": url, **body}, headers=H(token))
    assert r.status_code == 201, r.text
    return r.json()


def grade(client, token, jpeg, ref="SKU-1") -> str:
    r = post_grading(
        client,
        token,
        [("a.jpg", jpeg, "image/jpeg")],
        data={"device_model": "iPhone 13", "external_ref": ref},
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def key_id(token: str) -> str:
    return token.split("_")[1]


def confirm(sessions, gid: str, actor: str, note: str = "looks right") -> None:
    with sessions() as s:
        events.confirm(s, s.get(Grading, gid), actor, note, None)


def overrule(sessions, gid: str, actor: str, standard: str = "ctia") -> tuple[str, str]:
    """Overrule one standard's grade; returns (before, after)."""
    with sessions() as s:
        row = s.get(Grading, gid)
        state = events.load_state(s, row)
        g = state.grades[standard]
        new = next(c for c in g.choices if c != g.grade)
        events.overrule(s, row, actor, {standard: new}, "dent on the frame", None)
        return g.grade, new


def event_detail(client, token, event_id):
    r = client.get(f"/v1/webhooks/events/{event_id}", headers=H(token))
    assert r.status_code == 200, r.text
    return r.json()


# -- endpoints ------------------------------------------------------------------------------------------


def test_register_list_and_delete_endpoints(client, keys, receiver):
    made = register(client, keys.a, receiver.url, description="ERP")
    assert made["id"].startswith("wh_") and made["secret"].startswith("whsec_") and len(made["secret"]) > 40
    assert made["events"] == list(outbox.EVENT_TYPES) and made["description"] == "ERP"
    own = register(client, keys.a, receiver.url, secret=SECRET, events=["dispute.resolved"])
    assert own["secret"] == SECRET and own["events"] == ["dispute.resolved"]

    listed = client.get("/v1/webhooks", headers=H(keys.a)).json()
    assert [w["id"] for w in listed] == [made["id"], own["id"]]
    assert all("secret" not in w for w in listed)  # shown once, at creation
    assert client.get("/v1/webhooks", headers=H(keys.b)).json() == []  # another tenant's are invisible
    r = client.delete(f"/v1/webhooks/{made['id']}", headers=H(keys.b))
    assert r.status_code == 404 and r.json()["code"] == "webhook_not_found"

    assert client.delete(f"/v1/webhooks/{made['id']}", headers=H(keys.a)).status_code == 204
    assert [w["id"] for w in client.get("/v1/webhooks", headers=H(keys.a)).json()] == [own["id"]]
    assert client.delete(f"/v1/webhooks/{made['id']}", headers=H(keys.a)).status_code == 404

    for token in (keys.auditor, keys.admin):  # a tenant's own business: refurbishers only
        r = client.post("/v1/webhooks", json={"url": receiver.url}, headers=H(token))
        assert r.status_code == 403 and r.json()["code"] == "forbidden"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "http://example.com/hook"}, "insecure_webhook_url"),
        ({"url": "ftp://example.com/hook"}, "invalid_webhook_url"),
        ({"url": "hook"}, "invalid_webhook_url"),
        ({"url": "https://user:pw@example.com/hook"}, "invalid_webhook_url"),
        ({"url": "https://10.0.0.7/hook"}, "invalid_webhook_url"),
        ({"url": "https://example.com:99999/hook"}, "invalid_webhook_url"),
        ({"url": "https://example.com/hook", "secret": "short"}, "invalid_request"),
        ({"url": "https://example.com/hook", "events": ["grading.created"]}, "invalid_request"),
        ({"url": "https://example.com/hook", "colour": "red"}, "invalid_request"),
    ],
)
def test_bad_endpoints_are_refused(client, keys, body, code):
    r = client.post("/v1/webhooks", json=body, headers=H(keys.a))
    assert r.status_code == 422 and r.json()["code"] == code, r.text
    assert client.get("/v1/webhooks", headers=H(keys.a)).json() == []


def test_production_urls_are_https_to_public_hosts():
    ok = "https://hooks.example.com/refurbgrade?x=1"
    assert outbox.check_url(ok, allow_http_localhost=False) == ok
    for url in ("http://127.0.0.1:8080/h", "https://localhost/h", "https://[::1]/h", "https://192.168.1.2/"):
        with pytest.raises(outbox.InvalidEndpoint):
            outbox.check_url(url, allow_http_localhost=False)
    assert outbox.check_url("http://127.0.0.1:8080/h", allow_http_localhost=True)
    with pytest.raises(outbox.InvalidEndpoint):  # the test setting opens localhost only
        outbox.check_url("http://example.com/h", allow_http_localhost=True)


def test_a_tenant_has_at_most_ten_endpoints(client, keys):
    for n in range(outbox.MAX_ENDPOINTS_PER_TENANT):
        register(client, keys.a, f"https://hooks.example.com/{n}")
    r = client.post("/v1/webhooks", json={"url": "https://hooks.example.com/x"}, headers=H(keys.a))
    assert r.status_code == 409 and r.json()["code"] == "webhook_limit"
    register(client, keys.b, "https://hooks.example.com/b")  # per tenant


# -- signing ------------------------------------------------------------------------------------------


def test_signature_is_hmac_of_timestamp_dot_body_and_verify_checks_it():
    import hashlib
    import hmac

    body = b'{"id":"evt_1","type":"grading.confirmed"}'
    header = signature_header(SECRET, body, timestamp=1_700_000_000)
    digest = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={digest}"
    now = 1_700_000_100
    assert verify_signature(SECRET, header, body, 300, now=now)
    assert verify_signature(SECRET, header, body.decode(), 300, now=now)  # str bodies too
    assert not verify_signature("whsec_wrong_secret_000000", header, body, 300, now=now)
    assert not verify_signature(SECRET, header, body + b" ", 300, now=now)  # tampered body
    assert not verify_signature(SECRET, header, body, 60, now=now)  # too old: a replayed request
    assert verify_signature(SECRET, header, body, 0, now=now + 10**6)  # tolerance 0: any age
    assert not verify_signature(SECRET, header.replace("t=1700000000", "t=1700000001"), body, 300, now=now)
    assert verify_signature(SECRET, f"t=1700000000,v1={'0' * 64},v1={digest}", body, 300, now=now)  # rotation
    for bad in (None, "", "v1=abc", "t=x,v1=abc", f"t=1700000000,v0={digest}"):
        assert not verify_signature(SECRET, bad, body, 300, now=now)


# -- delivery -----------------------------------------------------------------------------------------


@pg_and_sqlite
def test_overrule_of_a_disputed_grading_sends_signed_events(client, keys, jpeg, receiver):
    hook = register(client, keys.a, receiver.url, secret=SECRET)
    gid = grade(client, keys.a, jpeg)
    r = client.post(f"/v1/gradings/{gid}/disputes", data={"reason": "too harsh"}, headers=H(keys.a))
    dispute_id = r.json()["id"]
    sessions = client.app.state.svc.sessions
    before, after = overrule(sessions, gid, key_id(keys.auditor))

    wait_for(lambda: len(receiver.requests) == 2)
    # two events, sent side by side (in either order)
    (h1, b1), (_, b2) = sorted(receiver.requests, key=lambda r: r[0]["Refurbgrade-Event-Type"], reverse=True)
    for headers, body in receiver.requests:
        assert headers["Content-Type"] == "application/json"
        assert verify_signature(SECRET, headers[SIGNATURE_HEADER], body)
        assert not verify_signature("whsec_someone_elses_secret", headers[SIGNATURE_HEADER], body)
    overruled, resolved = json.loads(b1), json.loads(b2)
    assert (
        h1["Refurbgrade-Event-Id"] == overruled["id"] and h1["Refurbgrade-Event-Type"] == "grading.overruled"
    )
    assert overruled["type"] == "grading.overruled" and overruled["tenant"] == "acme"
    assert overruled["created_at"].endswith("Z")
    data = overruled["data"]
    assert (
        data["grading_id"] == gid and data["external_ref"] == "SKU-1" and data["device_model"] == "iPhone 13"
    )
    assert data["grades"]["ctia"] == after and data["original_grades"]["ctia"] == before
    assert data["changed"] == {"ctia": {"before": before, "after": after}}
    assert data["reason"] == "dent on the frame" and data["disputes_resolved"] == [dispute_id]
    assert data["review_status"] == "overruled"
    assert resolved["type"] == "dispute.resolved" and resolved["id"] != overruled["id"]
    assert (
        resolved["data"]["dispute"]["id"] == dispute_id
        and resolved["data"]["dispute"]["reason"] == "too harsh"
    )
    assert resolved["data"]["outcome"] == "overruled" and resolved["data"]["grades"]["ctia"] == after

    # the delivery log
    def log():
        page = client.get("/v1/webhooks/events", headers=H(keys.a)).json()
        return {e["status"] for e in page["items"]} == {"delivered"} and page

    page = wait_for(log)  # the receiver answered; the worker records that right after
    assert page["total"] == 2
    assert {e["webhook_id"] for e in page["items"]} == {hook["id"]}
    d = event_detail(client, keys.a, overruled["id"])
    assert d["payload"] == overruled and d["attempts"] == 1 and d["delivered_at"] and d["last_error"] is None
    (a,) = d["deliveries"]
    assert a["attempt"] == 1 and a["status_code"] == 200 and a["delivered"] and a["error"] is None
    assert client.get("/v1/webhooks/events?type=dispute.resolved", headers=H(keys.a)).json()["total"] == 1
    assert (
        client.get(f"/v1/webhooks/events?grading_id={gid}&status=pending", headers=H(keys.a)).json()["total"]
        == 0
    )


def test_confirm_sends_only_the_subscribed_types(client, keys, jpeg, receiver):
    register(client, keys.a, receiver.url, secret=SECRET, events=["grading.confirmed"])
    other = Receiver()
    try:
        register(client, keys.a, other.url, events=["dispute.resolved"])
        gid = grade(client, keys.a, jpeg)
        confirm(client.app.state.svc.sessions, gid, key_id(keys.auditor), note="fine")
        (event,) = wait_for(receiver.events)
        assert event["type"] == "grading.confirmed" and event["data"]["changed"] == {}
        assert event["data"]["reason"] == "fine" and event["data"]["disputes_resolved"] == []
        time.sleep(0.2)
        assert other.requests == []  # no dispute was resolved
    finally:
        other.close()
    with client.app.state.svc.sessions() as s:  # defect corrections send nothing
        row = s.get(Grading, gid)
        n = s.query(WebhookEvent).count()
        events.add_defect(s, row, key_id(keys.auditor), 0, "scratch", None, (1, 1, 20, 20), "", None)
        assert s.query(WebhookEvent).count() == n


@pg_and_sqlite
def test_a_receiver_down_for_a_while_gets_the_event_later(client, keys, jpeg):
    receiver = Receiver(statuses=[503, 500])
    try:
        register(client, keys.a, receiver.url, secret=SECRET)
        gid = grade(client, keys.a, jpeg)
        confirm(client.app.state.svc.sessions, gid, key_id(keys.auditor))
        wait_for(lambda: len(receiver.requests) == 3)
        bodies = {body for _, body in receiver.requests}
        assert len(bodies) == 1  # the same bytes every time; each attempt signed afresh
        assert [h["Refurbgrade-Attempt"] for h, _ in receiver.requests] == ["1", "2", "3"]
        assert all(verify_signature(SECRET, h[SIGNATURE_HEADER], b) for h, b in receiver.requests)
        event_id = json.loads(next(iter(bodies)))["id"]
        d = wait_for(lambda: (e := event_detail(client, keys.a, event_id))["status"] == "delivered" and e)
        assert [(a["attempt"], a["status_code"], a["delivered"]) for a in d["deliveries"]] == [
            (1, 503, False),
            (2, 500, False),
            (3, 200, True),
        ]
        assert d["deliveries"][0]["error"] == "HTTP 503: ok" and d["attempts"] == 3
        assert d["last_status_code"] == 200 and d["last_error"] is None
    finally:
        receiver.close()


def test_retries_run_out_then_a_replay_delivers(client, keys, jpeg, settings):
    worker = client.app.state.webhooks
    worker.policy = dataclasses.replace(worker.policy, max_attempts=2)
    port = _free_port()  # nobody listens: connection refused
    register(client, keys.a, f"http://127.0.0.1:{port}/hook", secret=SECRET)
    gid = grade(client, keys.a, jpeg)
    confirm(client.app.state.svc.sessions, gid, key_id(keys.auditor))
    page = wait_for(
        lambda: (
            (p := client.get("/v1/webhooks/events?status=failed", headers=H(keys.a)).json())["total"] and p
        )
    )
    event_id = page["items"][0]["id"]
    d = event_detail(client, keys.a, event_id)
    assert d["attempts"] == 2 and d["next_attempt_at"] is None and d["last_status_code"] is None
    assert all(a["status_code"] is None and "ConnectError" in a["error"] for a in d["deliveries"])

    r = client.post(f"/v1/webhooks/events/{event_id}/replay", headers=H(keys.b))
    assert r.status_code == 404 and r.json()["code"] == "webhook_event_not_found"
    receiver = Receiver(port=port)
    try:
        r = client.post(f"/v1/webhooks/events/{event_id}/replay", headers=H(keys.a))
        assert r.status_code == 202 and r.json()["status"] == "pending"
        wait_for(lambda: event_detail(client, keys.a, event_id)["status"] == "delivered")
        (event,) = receiver.events()
        assert event["id"] == event_id  # the same event: receivers deduplicate on its id
        assert event_detail(client, keys.a, event_id)["deliveries"][-1]["attempt"] == 3
        # replaying a delivered event sends it once more
        assert client.post(f"/v1/webhooks/events/{event_id}/replay", headers=H(keys.a)).status_code == 202
        wait_for(lambda: len(receiver.requests) == 2)
    finally:
        receiver.close()


def test_deleting_an_endpoint_cancels_what_is_pending(client, keys, jpeg):
    client.app.state.webhooks.stop()  # nothing is sent in this test
    hook = register(client, keys.a, "http://127.0.0.1:9/hook")
    gid = grade(client, keys.a, jpeg)
    confirm(client.app.state.svc.sessions, gid, key_id(keys.auditor))
    (item,) = client.get("/v1/webhooks/events", headers=H(keys.a)).json()["items"]
    assert item["status"] == "pending" and item["attempts"] == 0
    assert client.delete(f"/v1/webhooks/{hook['id']}", headers=H(keys.a)).status_code == 204
    assert event_detail(client, keys.a, item["id"])["status"] == "cancelled"  # the log stays readable
    r = client.post(f"/v1/webhooks/events/{item['id']}/replay", headers=H(keys.a))
    assert r.status_code == 409 and r.json()["code"] == "webhook_deleted"


@pg_and_sqlite
def test_tenant_a_events_never_reach_tenant_b(client, keys, jpeg):
    ra, rb = Receiver(), Receiver()
    try:
        register(client, keys.a, ra.url, secret=SECRET)
        register(client, keys.b, rb.url, secret="whsec_bolt_0123456789abcdef")
        sessions = client.app.state.svc.sessions
        ga, gb = grade(client, keys.a, jpeg, "A-1"), grade(client, keys.b, jpeg, "B-1")
        confirm(sessions, ga, key_id(keys.auditor))
        overrule(sessions, gb, key_id(keys.admin))
        wait_for(lambda: len(ra.requests) == 1 and len(rb.requests) == 1)
        time.sleep(0.2)
        (ea,), (eb,) = ra.events(), rb.events()
        assert (ea["tenant"], ea["data"]["grading_id"], ea["type"]) == ("acme", ga, "grading.confirmed")
        assert (eb["tenant"], eb["data"]["grading_id"], eb["type"]) == ("bolt", gb, "grading.overruled")
        assert not verify_signature(SECRET, rb.requests[0][0][SIGNATURE_HEADER], rb.requests[0][1])
        # the log and replay are per tenant too
        items_a = client.get("/v1/webhooks/events", headers=H(keys.a)).json()["items"]
        assert [e["grading_id"] for e in items_a] == [ga]
        assert client.get(f"/v1/webhooks/events/{eb['id']}", headers=H(keys.a)).status_code == 404
        assert client.post(f"/v1/webhooks/events/{eb['id']}/replay", headers=H(keys.a)).status_code == 404
    finally:
        ra.close()
        rb.close()


def test_no_endpoint_no_outbox_rows(client, keys, jpeg):
    gid = grade(client, keys.a, jpeg)
    confirm(client.app.state.svc.sessions, gid, key_id(keys.auditor))
    with client.app.state.svc.sessions() as s:
        assert s.query(WebhookEvent).count() == 0


@pg_and_sqlite
def test_events_pending_at_shutdown_are_delivered_by_the_next_app(client, settings, keys, jpeg):
    """The receiver is down while the first app runs; the app stops with the event pending (rows in the
    outbox, attempts logged); a new app on the same database delivers it once the receiver is up."""
    from serving.app import create_app

    client.app.state.webhooks.stop()  # the fixture's app (which made the keys) stays out of it

    port = _free_port()
    with TestClient(create_app(settings)) as first:
        register(first, keys.a, f"http://127.0.0.1:{port}/hook", secret=SECRET)
        gid = grade(first, keys.a, jpeg)
        confirm(first.app.state.svc.sessions, gid, key_id(keys.auditor))
        wait_for(
            lambda: first.get("/v1/webhooks/events", headers=H(keys.a)).json()["items"][0]["attempts"] >= 2
        )
    receiver = Receiver(port=port)
    try:
        with TestClient(create_app(settings)) as second:
            (event,) = wait_for(receiver.events)
            assert event["data"]["grading_id"] == gid
            assert verify_signature(
                SECRET, receiver.requests[0][0][SIGNATURE_HEADER], receiver.requests[0][1]
            )
            d = wait_for(
                lambda: (e := event_detail(second, keys.a, event["id"]))["status"] == "delivered" and e
            )
            assert d["deliveries"][-1]["status_code"] == 200 and len(d["deliveries"]) >= 3
    finally:
        receiver.close()


@pg_and_sqlite
def test_two_workers_share_the_outbox_and_send_each_event_once(client, settings, jpeg, keys):
    """Two replicas' workers claim from one outbox at once: every event is delivered, none twice."""
    from serving.app import create_app

    client.app.state.webhooks.stop()  # the fixture's app (which made the keys) stays out of it

    receiver = Receiver(delay_s=0.01)
    try:
        with TestClient(create_app(fast(settings, webhook_delivery=False))) as c:
            sessions = c.app.state.svc.sessions
            register(c, keys.a, receiver.url, secret=SECRET)
            gid = grade(c, keys.a, jpeg)
            with sessions() as s:  # 40 outbox rows, as 40 reviews would have written them
                ep = s.scalar(select(WebhookEndpoint))
                for n in range(40):
                    s.add(
                        WebhookEvent(
                            id=f"evt_test{n:03d}",
                            tenant="acme",
                            endpoint_id=ep.id,
                            type=outbox.CONFIRMED,
                            grading_id=gid,
                            body=json.dumps({"id": f"evt_test{n:03d}", "n": n}),
                            created_at=utcnow(),
                            status=outbox.PENDING,
                            attempts=0,
                            next_attempt_at=utcnow(),
                        )
                    )
                s.commit()
            policy = Policy(timeout_s=2, poll_s=0.01, backoff_s=0.05, backoff_max_s=0.1, workers=4)
            workers = [Dispatcher(sessions, policy, name=f"replica-{k}") for k in range(2)]
            claimed = {w.name: [] for w in workers}
            original = Dispatcher.claim

            def counting(self, limit):
                got = original(self, limit)
                claimed[self.name].extend(c.id for c in got)
                return got

            Dispatcher.claim = counting
            try:
                for w in workers:
                    w.start()
                wait_for(lambda: len(receiver.requests) >= 40, timeout=30)
                time.sleep(0.2)
            finally:
                for w in workers:
                    w.stop()
                Dispatcher.claim = original
            ids = [e["id"] for e in receiver.events()]
            assert sorted(ids) == [f"evt_test{n:03d}" for n in range(40)]  # each once
            assert all(claimed.values())  # both replicas took part
            assert not set(claimed["replica-0"]) & set(claimed["replica-1"])
            with sessions() as s:
                assert {e.status for e in s.scalars(select(WebhookEvent))} == {"delivered"}
    finally:
        receiver.close()


def test_a_crashed_workers_claim_expires_and_the_row_is_sent_again(client, keys, jpeg, receiver):
    client.app.state.webhooks.stop()
    register(client, keys.a, receiver.url, secret=SECRET)
    gid = grade(client, keys.a, jpeg)
    confirm(client.app.state.svc.sessions, gid, key_id(keys.auditor))
    sessions = client.app.state.svc.sessions
    crashed = Dispatcher(sessions, Policy(timeout_s=2), name="crashed")
    (c,) = crashed.claim(4)  # claimed, then the process died before sending
    other = Dispatcher(sessions, Policy(timeout_s=2), name="other")
    assert other.claim(4) == []  # the lease holds
    with sessions() as s:
        s.get(WebhookEvent, c.id).locked_until = utcnow()  # ... until it expires
        s.commit()
    (again,) = other.claim(4)
    assert again.id == c.id
    assert other.deliver(again).delivered
    assert [e["id"] for e in receiver.events()] == [c.id]
    crashed._http.close()
    other._http.close()
