"""Property-based fuzzing of every operation in the OpenAPI schema (schemathesis): no input gives a 5xx,
and every 4xx is the JSON error shape. Bounded (a fixed number of examples per operation, derandomized)
so it stays fast; the app runs once, in-process, with its lifespan."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.serving.conftest import Keys

EXAMPLES = {("POST", "/v1/gradings"): 40}
DEFAULT_EXAMPLES = 15


def _send(client, kwargs: dict):
    kwargs = dict(kwargs)
    data = kwargs.pop("data", None)
    if isinstance(data, bytes | str):
        kwargs["content"] = data
    elif data is not None:
        kwargs["data"] = data
    if kwargs.get("files") is None:
        kwargs.pop("files", None)
    kwargs.pop("cookies", None)
    try:
        return client.request(**kwargs)
    except (UnicodeEncodeError, TypeError, ValueError):  # the client could not even encode it
        return None


@pytest.mark.slow
def test_no_input_gives_a_server_error(client, keys):
    spec = client.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    token = {
        "/v1/gradings": keys.a,
        "/v1/models": keys.admin,
        "/v1/keys": keys.admin,
        "/v1/reviews": keys.admin,
        "/v1/webhooks": keys.a,
    }
    failures = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 10
    for op in operations:
        _fuzz(client, op, token, failures)
    assert failures == []
    assert client.get("/readyz").status_code == 200


def _fuzz(client, op, token: dict[str, str], failures: list) -> None:
    method, path = op.method.upper(), op.path
    prefix = next((p for p in token if path.startswith(p)), None)
    auth = Keys.h(token[prefix]) if prefix else {}

    @given(case=op.as_strategy())
    @settings(
        max_examples=EXAMPLES.get((method, path), DEFAULT_EXAMPLES),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case):
        r = _send(client, case.as_transport_kwargs(base_url="http://testserver", headers=auth))
        if r is None:
            return
        if r.status_code >= 500:
            failures.append((method, path, r.status_code, r.text[:200]))
        elif r.status_code >= 400:
            body = r.json()
            assert {"code", "message"} <= set(body), (method, path, body)

    fuzz()
