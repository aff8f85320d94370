"""The real process: `refurbgrade keys create`, `refurbgrade serve` killed with SIGKILL in the middle of a
stream of uploads and restarted (every acknowledged grading is there, with its photos), and the offline
batch grader `refurbgrade grade`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.serving.conftest import encode
from tests.serving.tiny_model import device_photo

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "refurbgrade"]


def _env(data_dir: Path, model_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFURBGRADE_")}
    env.update(
        REFURBGRADE_DATA_DIR=str(data_dir),
        REFURBGRADE_MODEL_PATH=str(model_path),
        REFURBGRADE_INTRA_OP_THREADS="1",
        PYTHONPATH=str(ROOT),
    )
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(
    env: dict, port: int, cwd: Path = ROOT, timeout_s: float = 60, log_path: Path | None = None
) -> subprocess.Popen:
    """`refurbgrade serve` on `port`, run from `cwd`, once its /readyz answers 200. With `log_path`,
    everything it logs at its own level goes there; without, only its warnings, kept for the error."""
    if log_path is None:
        level, out, err = ["--log-level", "warning"], subprocess.DEVNULL, subprocess.PIPE
    else:
        log = open(log_path, "wb")  # noqa: SIM115 - the process writes it until it ends
        level, out, err = [], log, log
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), *level], cwd=cwd, env=env, stdout=out, stderr=err
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = proc.stderr.read().decode() if log_path is None else log_path.read_text()
            raise RuntimeError(f"server exited: {said[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not become ready")


def test_keys_create_cli(tmp_path, model_path):
    env = _env(tmp_path / "data", model_path)
    r = subprocess.run(
        [*CLI, "keys", "create", "--role", "auditor"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("rg_") and "role auditor" in r.stderr
    r = subprocess.run(
        [*CLI, "keys", "create", "--role", "refurbisher"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert r.returncode == 2 and "--tenant" in r.stderr
    r = subprocess.run(
        [*CLI, "keys", "create", "--role", "root"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert r.returncode == 2


@pytest.mark.slow
def test_kill_9_loses_no_acknowledged_grading(tmp_path, model_path):
    env = _env(tmp_path / "data", model_path)
    token = subprocess.run(
        [*CLI, "keys", "create", "--role", "refurbisher", "--tenant", "acme"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    auth = {"Authorization": f"Bearer {token}"}
    port = _free_port()
    proc = _start(env, port)
    acked: dict[str, list[str]] = {}  # grading id -> photo sha256s
    photos = [encode(device_photo(640, 480, scratch=k % 2 == 0) ^ np.uint8(k % 3)) for k in range(6)]
    stop = threading.Event()

    def stream(worker: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=10) as c:
            k = worker
            while not stop.is_set():
                files = [
                    ("photos", (f"{k}.jpg", photos[k % 6], "image/jpeg")),
                    ("photos", ("b.jpg", photos[(k + 1) % 6], "image/jpeg")),
                ]
                try:
                    r = c.post("/v1/gradings", files=files)
                except httpx.HTTPError:
                    return  # the server died mid-request: not acknowledged
                if r.status_code == 201:
                    body = r.json()
                    acked[body["id"]] = [p["sha256"] for p in body["photos"]]
                k += 3

    threads = [threading.Thread(target=stream, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 15 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # mid-stream: requests are in flight
    proc.wait()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 15

    proc = _start(env, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=10) as c:
            for gid, shas in acked.items():
                r = c.get(f"/v1/gradings/{gid}")
                assert r.status_code == 200, gid
                for n, sha in enumerate(shas):
                    photo = c.get(f"/v1/gradings/{gid}/photos/{n}")
                    assert photo.status_code == 200
                    import hashlib

                    assert hashlib.sha256(photo.content).hexdigest() == sha
            listed = c.get("/v1/gradings", params={"limit": 1}).json()["total"]
            assert listed >= len(acked)
            assert (
                c.post("/v1/gradings", files=[("photos", ("a.jpg", photos[0], "image/jpeg"))]).status_code
                == 201
            )
    finally:
        proc.terminate()
        proc.wait(10)


def test_batch_grader_cli(tmp_path, model_path):
    (tmp_path / "dev1").mkdir()
    (tmp_path / "dev1" / "front.jpg").write_bytes(encode(device_photo()))
    (tmp_path / "dev1" / "back.png").write_bytes(encode(device_photo(scratch=False), "PNG"))
    (tmp_path / "dev1" / "broken.jpg").write_bytes(b"not a photo")
    (tmp_path / "clean.jpg").write_bytes(encode(device_photo(scratch=False)))
    out = tmp_path / "out.jsonl"
    env = _env(tmp_path / "data", model_path)
    args = [*CLI, "grade", str(tmp_path / "dev1"), str(tmp_path / "clean.jpg"), "--model", str(model_path)]
    r = subprocess.run(
        [*args, "--jsonl", str(out), "--overlays", str(tmp_path / "ov"), "--device-model", "iPhone 13"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1, r.stderr  # one file skipped
    assert "broken.jpg" in r.stderr and "not_an_image" in r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 3  # every good photo is its own device
    by_file = {Path(x["file"]).name: x for x in lines}
    front = by_file["front.jpg"]
    for key in ("grades", "grade_probabilities", "needs_review", "reasons", "photo", "defects"):
        assert key in front
    # Each standard's own review flag; the device's is any of them.
    assert set(front["needs_review_by_standard"]) == set(front["grades"])
    assert front["needs_review"] == any(front["needs_review_by_standard"].values())
    assert front["photo"] == {"view": "front", "quality": "usable"}
    assert (front["device_kind"], front["device_kind_source"]) == ("phone", "catalogue")
    (d,) = front["defects"]
    assert d["type"] == "scratch" and d["zone"] == "screen" and d["length_mm"] > 10 and len(d["box"]) == 4
    assert by_file["clean.jpg"]["grades"]["ctia"] == "A"
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == ["back.png", "clean.png", "front.png"]
    # A person at the terminal reads each device's grades on stderr, with why it is not one grade better.
    clean = by_file["clean.jpg"]["grades"]
    assert "devices" in r.stderr and "front.jpg" in r.stderr and "clean.jpg" in r.stderr
    assert f"│ {clean['backmarket']} (" in r.stderr
    assert "scratch on the screen" in r.stderr  # the front's screen scratch bars the grade above it

    # without --model: REFURBGRADE_MODEL_PATH, as for the service
    args = args[: args.index("--model")]
    r = subprocess.run(
        [*args, "--device-per-folder", "--standard", "ctia"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 2
    dev = next(x for x in lines if len(x["files"]) == 2)
    assert list(dev["grades"]) == ["ctia"] and len(dev["defects"]) == 1
    assert dev["device_kind_source"] == "default"  # no kind given; the tiny card reads none


def test_serve_refuses_to_start_without_a_model(tmp_path):
    env = _env(tmp_path / "data", tmp_path / "missing.onnx")
    r = subprocess.run(
        [*CLI, "serve", "--port", "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "missing.onnx does not exist" in r.stderr
