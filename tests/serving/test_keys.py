"""API keys (issue 20): list, revoke and expire, over HTTP and from the CLI; a revoked or expired key and
its review sessions stop at once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from serving.auth import parse_lifetime
from serving.db import ApiKey
from tests.serving.conftest import pg_and_sqlite
from tests.serving.test_review_pages import sign_in


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"review_secure_cookie": False})  # TestClient speaks plain http


def _expire(client, key_id: str) -> None:
    with client.app.state.svc.sessions() as s:
        s.get(ApiKey, key_id).expires_at = datetime.now(UTC) - timedelta(seconds=1)
        s.commit()


def _id(token: str) -> str:
    return token.split("_")[1]


@pg_and_sqlite
def test_admins_create_list_and_revoke_keys(client, keys):
    admin = keys.h(keys.admin)
    r = client.post("/v1/keys", json={"role": "auditor", "name": "temp", "expires_in_days": 1}, headers=admin)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["status"] == "active" and made["revoked_at"] is None
    lifetime = datetime.fromisoformat(made["expires_at"]) - datetime.fromisoformat(made["created_at"])
    assert lifetime == timedelta(days=1)
    token = made["token"]
    assert client.get("/v1/models", headers=keys.h(token)).status_code == 200

    listed = client.get("/v1/keys", headers=admin).json()
    assert listed[0]["id"] == made["id"] and len(listed) == 5  # newest first, the fixture's 4
    assert all(k["token"] is None for k in listed)

    r = client.post(f"/v1/keys/{made['id']}/revoke", headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "revoked" and r.json()["revoked_at"]
    r = client.get("/v1/models", headers=keys.h(token))
    assert r.status_code == 401 and r.json()["code"] == "invalid_api_key"
    statuses = {k["id"]: k["status"] for k in client.get("/v1/keys", headers=admin).json()}
    assert statuses[made["id"]] == "revoked"

    assert client.post("/v1/keys/nope/revoke", headers=admin).json()["code"] == "key_not_found"
    for token in (keys.a, keys.auditor):
        assert client.get("/v1/keys", headers=keys.h(token)).status_code == 403
        assert client.post(f"/v1/keys/{_id(keys.b)}/revoke", headers=keys.h(token)).status_code == 403
    r = client.post("/v1/keys", json={"role": "auditor", "expires_in_days": 0}, headers=admin)
    assert r.status_code == 422


def test_an_expired_key_stops_at_once(client, keys):
    assert client.get("/v1/gradings", headers=keys.h(keys.a)).status_code == 200
    _expire(client, _id(keys.a))
    r = client.get("/v1/gradings", headers=keys.h(keys.a))
    assert r.status_code == 401 and r.json()["code"] == "invalid_api_key"
    statuses = {k["id"]: k["status"] for k in client.get("/v1/keys", headers=keys.h(keys.admin)).json()}
    assert statuses[_id(keys.a)] == "expired"


@pytest.mark.parametrize("how", ["revoke", "expire"])
def test_review_sessions_end_with_their_key(client, keys, how):
    assert sign_in(client, keys.auditor).status_code == 303
    assert client.get("/review/queue", follow_redirects=False).status_code == 200
    if how == "revoke":
        r = client.post(f"/v1/keys/{_id(keys.auditor)}/revoke", headers=keys.h(keys.admin))
        assert r.status_code == 200
    else:
        _expire(client, _id(keys.auditor))
    r = client.get("/review/queue", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/review/signin")
    assert sign_in(client, keys.auditor).status_code == 401  # and it cannot sign in again


def test_keys_cli_create_list_revoke(client, settings, monkeypatch):
    from typer.testing import CliRunner

    from refurbgrade.cli import build

    monkeypatch.setenv("REFURBGRADE_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("REFURBGRADE_DATABASE_URL", raising=False)
    runner = CliRunner()
    r = runner.invoke(build(), ["keys", "create", "--role", "auditor", "--name", "ci", "--expires-in", "12h"])
    assert r.exit_code == 0, r.output
    token = r.stdout.strip().splitlines()[-1]
    assert "expires" in r.stderr and token.startswith("rg_")
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {token}"}).status_code == 200

    r = runner.invoke(build(), ["keys", "list", "--json"])
    (row,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert row["id"] == _id(token) and row["status"] == "active" and row["name"] == "ci"
    made, expires = datetime.fromisoformat(row["created_at"]), datetime.fromisoformat(row["expires_at"])
    assert expires - made == timedelta(hours=12)
    r = runner.invoke(build(), ["keys", "list"])
    assert r.stdout.split()[:7] == ["id", "role", "tenant", "name", "created", "expires", "status"]

    r = runner.invoke(build(), ["keys", "revoke", _id(token), "missing"])
    assert r.exit_code == 1 and f"revoked key {_id(token)}" in r.stdout and "no key missing" in r.stderr
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert runner.invoke(build(), ["keys", "list"]).stdout.count("\n") == 1  # the header: none active
    assert "revoked" in runner.invoke(build(), ["keys", "list", "--all"]).stdout

    bad = runner.invoke(build(), ["keys", "create", "--role", "auditor", "--expires-in", "soon"])
    assert bad.exit_code == 2 and "not a lifetime" in bad.stderr


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90d", 90 * 86400), ("12h", 43200), ("30m", 1800), ("2w", 14 * 86400), ("1.5", 129600)],
)
def test_lifetimes(text, seconds):
    assert parse_lifetime(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["0d", "-1h", "soon", "11000d", ""])
def test_bad_lifetimes(text):
    with pytest.raises(ValueError):
        parse_lifetime(text)
