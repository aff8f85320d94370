"""Stateless replicas (issue 20): two `refurbgrade serve` processes on two ports, each with its own data
folder, sharing one database and one blob store: PostgreSQL and an S3 bucket (moto's server), or one
SQLite file and one blob folder (REFURBGRADE_BLOB_URL=file://...) on the same machine.

A grading made on one is read, its photo and overlay fetched, overruled on the review pages (signed in
on the other) and exported on the other; one Idempotency-Key sent to both at once makes one grading; a
model activated on one is served by the other within a few polls; a broken file is active nowhere, and
a file that fails its checks on one replica only leaves that replica on its old model, saying why.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import threading
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import encode, s3_settings
from tests.serving.test_crash_and_cli import _env, _free_port, _start
from tests.serving.tiny_model import build_tiny_model, device_photo, tiny_card

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
VERSION = re.compile(r'name="version" value="(\d+)"')
POLL_S = 0.3


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, model_path) -> Path:
    """tiny.onnx (served at start), tiny-2.onnx, tiny-3.onnx: the files every replica gets a copy of."""
    folder = tmp_path_factory.mktemp("replica-models")
    shutil.copyfile(model_path, folder / "tiny.onnx")
    build_tiny_model(folder / "tiny-2.onnx", tiny_card(version="tiny-2"))
    build_tiny_model(folder / "tiny-3.onnx", tiny_card(version="tiny-3"))
    return folder


def _models(folder: Path, files: Path, tiny3_ok: bool) -> Path:
    """A replica's own models folder: copies, plus broken.onnx; its tiny-3.onnx damaged unless tiny3_ok."""
    shutil.copytree(files, folder)
    (folder / "broken.onnx").write_bytes(b"not a model")
    if not tiny3_ok:  # the same name, but this replica's copy is damaged
        (folder / "tiny-3.onnx").write_bytes((files / "tiny-3.onnx").read_bytes()[:1000])
    return folder


@pytest.fixture(params=["sqlite+folder", pytest.param("postgres+s3", marks=pytest.mark.postgres)])
def shared(request, tmp_path) -> dict[str, str]:
    """The settings both replicas share: the database and the blob store."""
    if request.param == "sqlite+folder":
        return {
            "REFURBGRADE_DATABASE_URL": f"sqlite:///{tmp_path / 'shared' / 'refurbgrade.db'}",
            "REFURBGRADE_BLOB_URL": f"file://{tmp_path / 'shared' / 'blobs'}",
        }
    from tests.serving.conftest import reset_postgres

    url = request.getfixturevalue("postgres_url")
    reset_postgres(url)
    endpoint = request.getfixturevalue("s3_endpoint")
    blob = request.getfixturevalue("s3_blob_settings")
    values = s3_settings(endpoint, blob["blob_url"])
    env = {f"REFURBGRADE_{k.upper()}": str(v) for k, v in values.items()}
    return {"REFURBGRADE_DATABASE_URL": url, **env}


def _replica_env(tmp_path: Path, name: str, files: Path, shared: dict, tiny3_ok: bool) -> dict:
    models = _models(tmp_path / f"models-{name}", files, tiny3_ok)
    env = _env(tmp_path / f"data-{name}", models / "tiny.onnx")  # nothing local is shared
    env.update(shared)
    env.update(
        REFURBGRADE_MODELS_DIR=str(models),
        REFURBGRADE_MODEL_POLL_S=str(POLL_S),
        REFURBGRADE_REVIEW_SECURE_COOKIE="false",  # plain http in the test
        REFURBGRADE_WEBHOOK_DELIVERY="false",
    )
    return env


def _key(db_url: str, role: str, tenant: str | None = None) -> str:
    from serving.auth import create_key
    from serving.db import make_engine, session_factory

    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as s:
            return create_key(s, role, tenant)[1]
    finally:
        engine.dispose()


def _wait_for(check, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_two_replicas_share_one_database_and_one_blob_store(tmp_path, model_files, shared):
    env_a = _replica_env(tmp_path, "a", model_files, shared, tiny3_ok=True)
    env_b = _replica_env(tmp_path, "b", model_files, shared, tiny3_ok=False)
    port_a, port_b = _free_port(), _free_port()
    # Started together on a fresh database: one migrates it, the other waits for it (serving.db.migrate).
    started: dict[str, object] = {}

    def start(name: str, env: dict, port: int) -> None:
        try:
            started[name] = _start(env, port)
        except Exception as exc:  # reported below
            started[name] = exc

    threads = [
        threading.Thread(target=start, args=("a", env_a, port_a)),
        threading.Thread(target=start, args=("b", env_b, port_b)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b = (p if not isinstance(p, Exception) else None for p in (started["a"], started["b"]))
    try:
        assert a is not None and b is not None, started
        A, B = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
        db_url = shared["REFURBGRADE_DATABASE_URL"]
        acme = {"Authorization": f"Bearer {_key(db_url, 'refurbisher', 'acme')}"}
        admin = {"Authorization": f"Bearer {_key(db_url, 'admin')}"}
        auditor = _key(db_url, "auditor")
        jpeg = encode(device_photo())
        http = httpx.Client(timeout=30)

        # -- a grading made on A is read, its photo and overlay fetched, on B
        made = http.post(f"{A}/v1/gradings", files=[("photos", ("a.jpg", jpeg, "image/jpeg"))], headers=acme)
        assert made.status_code == 201, made.text
        g = made.json()
        read = http.get(f"{B}/v1/gradings/{g['id']}", headers=acme)
        assert read.status_code == 200 and read.json()["grades"] == g["grades"]
        photo = http.get(f"{B}{g['photos'][0]['photo_url']}", headers=acme)
        assert photo.status_code == 200 and photo.content == jpeg
        overlay_b = http.get(f"{B}{g['photos'][0]['overlay_url']}", headers=acme)
        overlay_a = http.get(f"{A}{g['photos'][0]['overlay_url']}", headers=acme)
        assert overlay_b.status_code == 200 and overlay_a.content == overlay_b.content

        # -- signed in on A, overruled on B (sessions and CSRF tokens live in the database)
        form = http.get(f"{A}/review/signin")
        signed = http.post(
            f"{A}/review/signin",
            data={"api_key": auditor, "csrf": CSRF.search(form.text).group(1), "next": "/review/queue"},
            follow_redirects=False,
        )
        assert signed.status_code == 303
        cookie = "; ".join(f"{k}={v}" for k, v in signed.cookies.items())
        page = http.get(f"{B}/review/gradings/{g['id']}", headers={"Cookie": cookie})
        assert page.status_code == 200
        old = g["grades"]["ctia"]["grade"]
        new = "E" if old != "E" else "D"
        overruled = http.post(
            f"{B}/review/gradings/{g['id']}/overrule",
            data={
                "csrf": CSRF.search(page.text).group(1),
                "version": VERSION.search(page.text).group(1),
                "standard": "ctia",
                "grade": new,
                "reason": "seen on the device",
            },
            headers={"Cookie": cookie},
            follow_redirects=False,
        )
        assert overruled.status_code == 303, overruled.text
        # -- exported on A: the review and the photo bytes from the shared store
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        export = http.get(f"{A}/v1/reviews/export", params={"since": since, "val_fraction": 0}, headers=admin)
        assert export.status_code == 200 and export.headers["X-Export-Gradings"] == "1"
        with zipfile.ZipFile(io.BytesIO(export.content)) as zf:
            record = json.loads(zf.read("manifest.jsonl").decode().splitlines()[0])
            assert zf.read(record["image"]) == jpeg
        assert record["grades"]["ctia"] == new

        # -- one Idempotency-Key sent to both at once: one grading
        photo2 = encode(device_photo(scratch=False))
        answers: dict[str, httpx.Response] = {}
        barrier = threading.Barrier(2)

        def send(base: str) -> None:
            with httpx.Client(timeout=30) as c:
                barrier.wait()
                answers[base] = c.post(
                    f"{base}/v1/gradings",
                    files=[("photos", ("b.jpg", photo2, "image/jpeg"))],
                    headers={**acme, "Idempotency-Key": "order-4711"},
                )

        threads = [threading.Thread(target=send, args=(base,)) for base in (A, B)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert {r.status_code for r in answers.values()} <= {200, 201}, [r.text for r in answers.values()]
        assert len({r.json()["id"] for r in answers.values()}) == 1
        listed = http.get(f"{B}/v1/gradings", params={"limit": 100}, headers=acme).json()
        assert listed["total"] == 2

        # -- a model activated on A is served by B within a few polls
        def version(base: str) -> str:
            return http.get(f"{base}/v1/models", headers=admin).json()["active"]["version"]

        assert version(A) == version(B) == "tiny-1"
        on = http.post(f"{A}/v1/models/activate", json={"path": "tiny-2.onnx"}, headers=admin)
        assert on.status_code == 200 and on.json()["version"] == "tiny-2"
        assert _wait_for(lambda: version(B) == "tiny-2"), "replica B did not take up the activated model"
        graded_b = http.post(
            f"{B}/v1/gradings", files=[("photos", ("c.jpg", jpeg, "image/jpeg"))], headers=acme
        )
        assert graded_b.json()["model"]["version"] == "tiny-2"

        # -- a broken file becomes active nowhere
        broken = http.post(f"{B}/v1/models/activate", json={"path": "broken.onnx"}, headers=admin)
        assert broken.status_code == 422 and broken.json()["code"] == "invalid_model"
        time.sleep(4 * POLL_S)
        assert version(A) == version(B) == "tiny-2"

        # -- a file that fails its checks on B only: B keeps its model and says why
        on = http.post(f"{A}/v1/models/activate", json={"path": "tiny-3.onnx"}, headers=admin)
        assert on.status_code == 200 and version(A) == "tiny-3"
        time.sleep(5 * POLL_S)
        assert version(B) == "tiny-2"
        assert (
            http.post(
                f"{B}/v1/gradings", files=[("photos", ("d.jpg", jpeg, "image/jpeg"))], headers=acme
            ).status_code
            == 201
        )
        http.close()
    finally:
        for proc in (a, b):
            if proc is not None:
                proc.terminate()
                proc.wait(15)
    logs = b.stderr.read().decode()  # after it stopped: nothing is left to block on
    kept = [json.loads(line) for line in logs.splitlines() if "cannot be served here" in line]
    assert kept and kept[0]["level"] == "error" and kept[0]["model_path"] == "tiny-3.onnx", logs[-3000:]
    assert len(kept) == 1  # tried again only after a minute or a new activation, not at every poll
