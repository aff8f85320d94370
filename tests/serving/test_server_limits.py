"""The real `refurbgrade serve` (issue 20): slow clients are cut off (a request head not finished within
REFURBGRADE_HEADER_TIMEOUT_S, a body that stalls for REFURBGRADE_BODY_TIMEOUT_S), and every line it logs
is JSON: one per request with its request id, route, status, latency, tenant, grading and model."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import httpx

from tests.serving.conftest import encode
from tests.serving.test_crash_and_cli import CLI, ROOT, _env, _free_port, _start
from tests.serving.tiny_model import device_photo


def _closed_after(port: int, send: bytes) -> tuple[float, bytes]:
    """Seconds until the server ends a connection that sent `send` and then nothing, and what it said."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        started = time.monotonic()
        if send:
            s.sendall(send)
        got = b""
        while chunk := s.recv(4096):
            got += chunk
        return time.monotonic() - started, got


def test_slow_clients_are_cut_off_and_every_line_is_json(tmp_path, model_path):
    env = _env(tmp_path / "data", model_path)
    key = subprocess.run(
        [*CLI, "keys", "create", "--role", "refurbisher", "--tenant", "acme"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    env.update(REFURBGRADE_HEADER_TIMEOUT_S="1", REFURBGRADE_BODY_TIMEOUT_S="1")
    port, log_path = _free_port(), tmp_path / "serve.log"
    proc = _start(env, port, log_path=log_path)
    try:
        # slowloris: half a request head, then silence; and a connection that says nothing at all
        seconds, said = _closed_after(port, b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert 0.8 < seconds < 4 and said == b"", (seconds, said)
        seconds, said = _closed_after(port, b"")
        assert 0.8 < seconds < 4 and said == b""
        # a body that stalls: 408 request_timeout once it has been silent for a second
        head = (
            b"POST /v1/gradings HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n--b\r\n"
        )
        seconds, said = _closed_after(port, head)
        assert 0.8 < seconds < 4 and said.startswith(b"HTTP/1.1 408"), said
        assert b'"code":"request_timeout"' in said.replace(b" ", b"")
        # a kept-alive connection is still served normally, with a request id
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            r = c.get("/livez", headers={"X-Request-ID": "probe-42"})
            assert r.headers["X-Request-ID"] == "probe-42"
            r = c.post(
                "/v1/gradings",
                files=[("photos", ("a.jpg", encode(device_photo()), "image/jpeg"))],
                headers={"Authorization": f"Bearer {key}", "X-Request-ID": "grade-1"},
            )
            assert r.status_code == 201, r.text
            grading = r.json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    lines = [json.loads(line) for line in log_path.read_text().splitlines()]  # every line parses
    assert all({"ts", "level", "logger", "message"} <= set(x) for x in lines)
    assert any(x["logger"] == "uvicorn.error" and "Uvicorn running" in x["message"] for x in lines)
    assert any(x["logger"] == "refurbgrade" and x["message"].startswith("serving ") for x in lines)
    slow = [x for x in lines if x["logger"] == "refurbgrade.server"]
    assert len(slow) == 2 and all(x["level"] == "warning" and x["header_timeout_s"] == 1 for x in slow)
    access = {x["request_id"]: x for x in lines if x["logger"] == "refurbgrade.access"}
    assert access["probe-42"] | {"latency_ms": 0} == access["probe-42"] | {
        "method": "GET",
        "route": "/livez",
        "path": "/livez",
        "status": 200,
        "latency_ms": 0,
    }
    graded = access["grade-1"]
    assert graded["route"] == "/v1/gradings" and graded["status"] == 201
    assert graded["tenant"] == "acme" and graded["role"] == "refurbisher"
    assert graded["grading_id"] == grading["id"]
    assert graded["model_version"] == grading["model"]["version"]
    assert graded["latency_ms"] > 0
    timed_out = [x for x in access.values() if x["status"] == 408]
    assert len(timed_out) == 1 and timed_out[0]["route"] == "/v1/gradings"
