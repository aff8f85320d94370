"""Every route's access rule, for every role: no key, a wrong key, each tenant's refurbisher, auditor,
admin. A refurbisher asking for another tenant's grading gets 404 (not 403: ids must leak nothing)."""

from __future__ import annotations

import pytest

from tests.serving.conftest import Keys, post_grading

H = Keys.h


@pytest.fixture
def world(client, keys, jpeg):
    """One grading by tenant acme, with an overlay; returns the route table to check."""
    gid = post_grading(client, keys.a, [("a.jpg", jpeg, "image/jpeg")]).json()["id"]
    return gid


# role -> expected status; "a" is acme's refurbisher (owner), "b" bolt's, "auditor", "admin",
# "none" no Authorization header, "bad" an unknown token.
def _routes(gid: str, jpeg: bytes):
    read_own = {"none": 401, "bad": 401, "a": 200, "b": 404, "auditor": 200, "admin": 200}
    tenant_only = {"none": 401, "bad": 401, "a": 200, "b": 200, "auditor": 403, "admin": 403}
    return [
        ("GET", f"/v1/gradings/{gid}", None, read_own),
        ("GET", f"/v1/gradings/{gid}/photos/0", None, read_own),
        ("GET", f"/v1/gradings/{gid}/overlays/0", None, read_own),
        (
            "GET",
            "/v1/gradings",
            None,
            {"none": 401, "bad": 401, "a": 200, "b": 200, "auditor": 200, "admin": 200},
        ),
        (
            "POST",
            "/v1/gradings",
            {"files": [("photos", ("a.jpg", jpeg, "image/jpeg"))]},
            {"none": 401, "bad": 401, "a": 201, "b": 201, "auditor": 403, "admin": 403},
        ),
        (
            "POST",
            f"/v1/gradings/{gid}/disputes",
            {"data": {"reason": "the grade is too harsh"}},
            {"none": 401, "bad": 401, "a": 201, "b": 404, "auditor": 201, "admin": 201},
        ),
        (
            "GET",
            "/v1/reviews/export?since=2026-01-01",
            None,
            {"none": 401, "bad": 401, "a": 403, "b": 403, "auditor": 403, "admin": 200},
        ),
        (
            "GET",
            "/v1/impact",
            None,
            {"none": 401, "bad": 401, "a": 200, "b": 200, "auditor": 200, "admin": 200},
        ),
        (
            "GET",
            "/v1/models",
            None,
            {"none": 401, "bad": 401, "a": 200, "b": 200, "auditor": 200, "admin": 200},
        ),
        (
            "POST",
            "/v1/models/activate",
            {"json": {"path": "tiny.onnx"}},
            {"none": 401, "bad": 401, "a": 403, "b": 403, "auditor": 403, "admin": 200},
        ),
        (
            "POST",
            "/v1/keys",
            {"json": {"role": "auditor"}},
            {"none": 401, "bad": 401, "a": 403, "b": 403, "auditor": 403, "admin": 201},
        ),
        (
            "GET",
            "/v1/keys",
            None,
            {"none": 401, "bad": 401, "a": 403, "b": 403, "auditor": 403, "admin": 200},
        ),
        (
            "POST",
            "/v1/keys/key_none/revoke",
            None,
            {"none": 401, "bad": 401, "a": 403, "b": 403, "auditor": 403, "admin": 404},
        ),
        (
            "GET",
            "/v1/standards",
            None,
            {"none": 401, "bad": 401, "a": 200, "b": 200, "auditor": 200, "admin": 200},
        ),
        (
            "GET",
            "/v1/standards/ctia",
            None,
            {"none": 401, "bad": 401, "a": 200, "b": 200, "auditor": 200, "admin": 200},
        ),
        (
            "GET",
            "/v1/devices?q=iphone",
            None,
            {"none": 401, "bad": 401, "a": 200, "b": 200, "auditor": 200, "admin": 200},
        ),
        # webhooks (issue 21): a refurbisher's own tenant only; unknown ids are 404
        (
            "POST",
            "/v1/webhooks",
            {"json": {"url": "https://hooks.example.com/refurbgrade"}},
            {"none": 401, "bad": 401, "a": 201, "b": 201, "auditor": 403, "admin": 403},
        ),
        ("GET", "/v1/webhooks", None, tenant_only),
        ("GET", "/v1/webhooks/events", None, tenant_only),
        ("GET", "/v1/webhooks/events/evt_none", None, tenant_only | {"a": 404, "b": 404}),
        ("POST", "/v1/webhooks/events/evt_none/replay", None, tenant_only | {"a": 404, "b": 404}),
        ("DELETE", "/v1/webhooks/wh_none", None, tenant_only | {"a": 404, "b": 404}),
        # last of the grading routes: it erases the grading's photos (retention, issue 20)
        (
            "POST",
            f"/v1/gradings/{gid}/erase",
            None,
            {"none": 401, "bad": 401, "a": 200, "b": 404, "auditor": 403, "admin": 200},
        ),
        ("GET", "/livez", None, dict.fromkeys(("none", "bad", "a", "b", "auditor", "admin"), 200)),
        ("GET", "/readyz", None, dict.fromkeys(("none", "bad", "a", "b", "auditor", "admin"), 200)),
        ("GET", "/metrics", None, dict.fromkeys(("none", "bad", "a", "b", "auditor", "admin"), 200)),
        ("GET", "/openapi.json", None, dict.fromkeys(("none", "bad", "a", "b", "auditor", "admin"), 200)),
    ]


def test_every_route_for_every_role(client, keys, world, jpeg):
    tokens = {"a": keys.a, "b": keys.b, "auditor": keys.auditor, "admin": keys.admin, "bad": "rg_x_nope"}
    spec = client.get("/openapi.json").json()
    checked = set()
    for method, url, kwargs, expected in _routes(world, jpeg):
        for role, status in expected.items():
            headers = {} if role == "none" else H(tokens[role])
            r = client.request(method, url, headers=headers, **(kwargs or {}))
            assert r.status_code == status, (method, url, role, r.status_code, r.text[:200])
            if status >= 400:
                body = r.json()
                assert set(body) == {"code", "message"}, body
                if status == 401:
                    assert r.headers["www-authenticate"] == "Bearer"
        path = url.replace(world, "{grading_id}").replace("/0", "/{n}").replace("/ctia", "/{name}")
        path = path.replace("evt_none", "{event_id}").replace("wh_none", "{webhook_id}")
        path = path.replace("key_none", "{key_id}")
        checked.add((method, path.split("?")[0]))
    # every documented route is in the table above
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert documented <= checked, documented - checked


def test_other_tenant_cannot_find_or_list_a_grading(client, keys, world):
    r = client.get(f"/v1/gradings/{world}", headers=H(keys.b))
    assert r.status_code == 404 and r.json()["code"] == "grading_not_found"
    assert client.get(f"/v1/gradings/{'0' * 36}", headers=H(keys.a)).json() == {
        "code": "grading_not_found",
        "message": f"no grading {'0' * 36}",
    }
    assert world not in {i["id"] for i in client.get("/v1/gradings", headers=H(keys.b)).json()["items"]}


def test_revoked_key_is_refused(client, keys):
    from datetime import UTC, datetime

    from serving.auth import hash_token
    from serving.db import ApiKey

    state = client.app.state.svc
    with state.sessions() as s:
        row = s.query(ApiKey).filter_by(secret_hash=hash_token(keys.a)).one()
        row.revoked_at = datetime.now(UTC)
        s.commit()
    r = client.get("/v1/gradings", headers=H(keys.a))
    assert r.status_code == 401 and r.json()["code"] == "invalid_api_key"


def test_keys_are_stored_hashed(client, keys):
    from serving.db import ApiKey

    with client.app.state.svc.sessions() as s:
        stored = {(k.id, k.secret_hash) for k in s.query(ApiKey)}
    assert all(keys.a not in h and keys.a != h for _, h in stored)
    assert all(len(h) == 64 for _, h in stored)
