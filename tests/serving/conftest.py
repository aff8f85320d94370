"""Fixtures for the service tests: a tiny ONNX model file, settings on a temporary data dir, a running
app (TestClient, lifespan included), API keys for every role, and photos the tiny model understands."""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from serving.settings import Settings
from tests.serving.tiny_model import build_tiny_model, device_photo

POSTGRES_URL = os.environ.get("REFURBGRADE_TEST_POSTGRES_URL")
# An S3-compatible server for the blob store's tests (a MinIO, say; credentials from the AWS_* variables);
# unset: moto's S3 server, started in this process, so these tests run everywhere.
S3_URL = os.environ.get("REFURBGRADE_TEST_S3_URL")


def encode(rgb: np.ndarray, fmt: str = "JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}) | kwargs)
    return buf.getvalue()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> os.PathLike:
    d = tmp_path_factory.mktemp("models")
    build_tiny_model(d / "tiny.onnx")
    return d


@pytest.fixture(scope="session")
def model_path(model_dir):
    return model_dir / "tiny.onnx"


@pytest.fixture(scope="session")
def jpeg() -> bytes:
    return encode(device_photo())


@pytest.fixture(scope="session")
def clean_jpeg() -> bytes:
    return encode(device_photo(scratch=False))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of its own for this pytest session, on the server of REFURBGRADE_TEST_POSTGRES_URL."""
    if not POSTGRES_URL:
        pytest.skip("REFURBGRADE_TEST_POSTGRES_URL is not set (run scripts/ensure_postgres.sh to get one)")
    from sqlalchemy import create_engine, make_url, text

    base = make_url(POSTGRES_URL)
    name = f"refurbgrade_t{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The S3 endpoint's URL: REFURBGRADE_TEST_S3_URL, else moto's server in this process (port 0)."""
    if S3_URL:
        yield S3_URL
        return
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_settings(endpoint: str, url: str) -> dict:
    """Settings (field names) for the blob store at `url` (s3://BUCKET/PREFIX) on `endpoint`; moto takes
    any credentials, a real server gets the AWS_* variables' (None: boto3's chain)."""
    creds = (
        {}
        if S3_URL
        else {"s3_access_key_id": "testing", "s3_secret_access_key": "testing", "s3_region": "us-east-1"}
    )
    return {"blob_url": url, "s3_endpoint_url": endpoint, **creds}


@pytest.fixture
def s3_blob_settings(s3_endpoint) -> dict:
    """A new bucket for this test, as settings: blob_url s3://BUCKET/blobs plus endpoint and credentials."""
    from serving.blobs_s3 import S3BlobStore
    from serving.settings import BlobSettings

    bucket = f"rg-test-{uuid.uuid4().hex[:12]}"
    values = s3_settings(s3_endpoint, f"s3://{bucket}/blobs")
    store = S3BlobStore.from_settings(BlobSettings(**values))
    store.client.create_bucket(Bucket=bucket)
    return values


def reset_postgres(url: str) -> None:
    """Drop every table, so each test starts from the migrations."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """An SQLite database migrated to the latest revision once per session (migrating costs ~0.1 s)."""
    from serving.db import make_engine, migrate

    path = tmp_path_factory.mktemp("sqlite-template") / "refurbgrade.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()  # checkpoints the WAL into the main file
    return path


@pytest.fixture
def database_url(request) -> str | None:
    """None (SQLite under the test's data dir) unless a test asks for PostgreSQL with `pg_and_sqlite`."""
    if getattr(request, "param", "sqlite") != "postgres":
        return None
    url = request.getfixturevalue("postgres_url")
    reset_postgres(url)
    return url


# Runs a test twice: on SQLite and on the PostgreSQL server of REFURBGRADE_TEST_POSTGRES_URL.
pg_and_sqlite = pytest.mark.parametrize(
    "database_url",
    ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)


@pytest.fixture
def settings(tmp_path, model_path, model_dir, database_url, sqlite_template) -> Settings:
    if database_url is None:  # start from a migrated copy: the app's own migrate() then has nothing to do
        (tmp_path / "data").mkdir()
        shutil.copyfile(sqlite_template, tmp_path / "data" / "refurbgrade.db")
    return Settings(
        model_path=model_path,
        models_dir=model_dir,
        data_dir=tmp_path / "data",
        database_url=database_url,
        intra_op_threads=1,
        max_batch_wait_ms=1,
    )


@dataclass
class Keys:
    a: str  # refurbisher, tenant "acme"
    b: str  # refurbisher, tenant "bolt"
    auditor: str
    admin: str

    @staticmethod
    def h(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    from serving.app import create_app

    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def keys(client) -> Keys:
    from serving.auth import create_key

    state = client.app.state.svc
    with state.sessions() as s:
        return Keys(
            a=create_key(s, "refurbisher", "acme")[1],
            b=create_key(s, "refurbisher", "bolt")[1],
            auditor=create_key(s, "auditor")[1],
            admin=create_key(s, "admin")[1],
        )


def post_grading(client, token, photos, data=None, headers=None):
    files = [("photos", (name, content, ctype)) for name, content, ctype in photos]
    return client.post(
        "/v1/gradings",
        files=files,
        data=data or {},
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
    )


def store_defects(client, grading_id: str, defects: list[dict]) -> dict:
    """Replace the stored defects of a grading's first photo (the tiny model finds only red bars):
    the gradings a review or an export reads, made to show a shattered screen, candidates, evidence.
    Returns the photo as stored."""
    import json

    from serving.db import Grading

    with client.app.state.svc.sessions() as s:
        row = s.get(Grading, grading_id)
        body = json.loads(json.dumps(row.body))
        body["photos"][0]["defects"] = defects
        row.body = body  # a new object: SQLAlchemy's JSON column sees the change
        s.commit()
        return body["photos"][0]
