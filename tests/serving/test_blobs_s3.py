"""The S3-compatible blob store (issue 20): the disk store's interface and keys, a write acknowledged only
once the object store confirmed it, and the whole service on a bucket (gradings, photos, overlays, the
review export, retention's erasure). Against moto's S3 server in this process, or REFURBGRADE_TEST_S3_URL."""

from __future__ import annotations

import base64
import hashlib

import pytest
from fastapi.testclient import TestClient

from serving.blobs import BlobStore, BlobStoreError, open_blob_store
from serving.blobs_s3 import S3BlobStore
from serving.settings import BlobSettings
from tests.serving.conftest import Keys, post_grading

H = Keys.h


@pytest.fixture
def store(s3_blob_settings) -> S3BlobStore:
    s = open_blob_store(BlobSettings(**s3_blob_settings))
    assert isinstance(s, S3BlobStore)
    return s


def _keys(store: S3BlobStore) -> list[str]:
    listed = store.client.list_objects_v2(Bucket=store.bucket)
    return [o["Key"] for o in listed.get("Contents", [])]


def test_put_get_exists_delete_with_the_disk_stores_keys(store, tmp_path):
    data = b"a photo" * 1000
    sha = store.put(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.exists(sha) and store.get(sha) == data
    # the same layout as the disk store, under the prefix: a blob folder syncs into a bucket as it is
    disk = BlobStore(tmp_path / "disk")
    disk.put(data)
    assert _keys(store) == [f"blobs/{disk.path(sha).relative_to(disk.root).as_posix()}"]
    assert store.local_path(sha) is None
    store.copy_to(sha, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == data
    modified = store.client.head_object(Bucket=store.bucket, Key=store.key(sha))["LastModified"]
    assert store.put(data, sha) == sha  # stored once: nothing uploaded again
    assert store.client.head_object(Bucket=store.bucket, Key=store.key(sha))["LastModified"] == modified
    assert store.delete(sha) is True and store.delete(sha) is False
    assert not store.exists(sha)
    with pytest.raises(FileNotFoundError):
        store.get(sha)
    with pytest.raises(ValueError):
        store.get("../../etc/passwd")


class _Flaky:
    """The real client, except for what a test breaks."""

    def __init__(self, client, **broken):
        self._client, self._broken = client, broken

    def __getattr__(self, name):
        return self._broken.get(name) or getattr(self._client, name)


def test_a_put_is_acknowledged_only_once_the_store_confirms_it(store):
    data = b"x" * 5000
    real = store.client
    heads = []

    def head_nothing(**kw):  # the upload "succeeded" but the object is not there
        heads.append(kw)
        from botocore.exceptions import ClientError

        raise ClientError(
            {"Error": {"Code": "404"}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "HeadObject"
        )

    store.client = _Flaky(real, head_object=head_nothing)
    with pytest.raises(BlobStoreError, match="not found right after"):
        store.put(data)
    assert len(heads) == 2  # before (already there?) and after the upload

    def head_short(**kw):
        answer = real.head_object(**kw)
        return {**answer, "ContentLength": answer["ContentLength"] - 1}

    store.client = _Flaky(real, head_object=head_short)
    with pytest.raises(BlobStoreError, match="bytes stored"):
        store.put(b"y" * 5000)

    def head_other_checksum(**kw):
        return {**real.head_object(**kw), "ChecksumSHA256": "AAAA"}

    store.client = _Flaky(real, head_object=head_other_checksum)
    with pytest.raises(BlobStoreError, match="SHA-256"):
        store.put(b"z" * 5000)

    def head_other_etag(**kw):
        return {**real.head_object(**kw), "ETag": '"' + "0" * 32 + '"'}

    store.client = _Flaky(real, head_object=head_other_etag)
    with pytest.raises(BlobStoreError, match="MD5"):
        store.put(b"w" * 5000)

    sent = []

    def put_recording(**kw):
        sent.append(kw)
        return real.put_object(**kw)

    store.client = _Flaky(real, put_object=put_recording)
    sha = store.put(b"v" * 5000)
    # the server checks the bytes against their content address
    assert base64.b64decode(sent[0]["ChecksumSHA256"]).hex() == sha


def test_a_missing_bucket_or_a_bad_url_fails_at_once(s3_endpoint, s3_blob_settings):
    from pydantic import ValidationError

    from tests.serving.conftest import s3_settings

    with pytest.raises(BlobStoreError, match="no such bucket"):
        open_blob_store(BlobSettings(**s3_settings(s3_endpoint, "s3://rg-no-such-bucket/x")))
    for bad in ("s3://", "file://relative/path", "/srv/blobs", "gs://bucket"):
        with pytest.raises(ValidationError):
            BlobSettings(blob_url=bad)
    disk = open_blob_store(BlobSettings(blob_url="file:///tmp/rg-blobs-test"))
    assert isinstance(disk, BlobStore) and str(disk.root) == "/tmp/rg-blobs-test"


@pytest.fixture
def s3_settings_for_app(settings, s3_blob_settings):
    from pydantic import SecretStr

    values = dict(s3_blob_settings)
    if "s3_secret_access_key" in values:
        values["s3_secret_access_key"] = SecretStr(values["s3_secret_access_key"])
    return settings.model_copy(update=values)


def test_the_service_on_a_bucket(s3_settings_for_app, jpeg, clean_jpeg, tmp_path):
    from datetime import UTC, datetime, timedelta

    from serving.app import create_app
    from serving.auth import create_key
    from serving.db import Grading
    from serving.review import events
    from serving.review.export import export_reviews

    with TestClient(create_app(s3_settings_for_app)) as client:
        svc = client.app.state.svc
        assert isinstance(svc.blobs, S3BlobStore)
        with svc.sessions() as s:
            token = create_key(s, "refurbisher", "acme")[1]
        r = post_grading(client, token, [("a.jpg", jpeg, "image/jpeg"), ("b.jpg", clean_jpeg, "image/jpeg")])
        assert r.status_code == 201, r.text
        body = r.json()
        shas = [p["sha256"] for p in body["photos"]]
        assert all(svc.blobs.exists(sha) for sha in shas)
        assert not (s3_settings_for_app.data_dir / "blobs").exists()  # nothing on the local disk
        photo = client.get(body["photos"][0]["photo_url"], headers=H(token))
        assert photo.status_code == 200 and photo.content == jpeg
        assert photo.headers["content-type"] == "image/jpeg"
        overlay = client.get(body["photos"][0]["overlay_url"], headers=H(token))
        assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
        with svc.sessions() as s:
            overlay_sha = s.get(Grading, body["id"]).photos[0].overlay_sha256
        assert overlay_sha and svc.blobs.get(overlay_sha) == overlay.content
        # the review export copies the photos out of the bucket
        with svc.sessions() as s:
            auditor = create_key(s, "auditor")[0].id
            events.confirm(s, s.get(Grading, body["id"]), auditor, "", None)
        summary = export_reviews(
            svc.sessions,
            svc.blobs,
            tmp_path / "out",
            datetime.now(UTC) - timedelta(hours=1),
            val_fraction=0.0,
        )
        assert summary.photos == 2
        exported = sorted(p.read_bytes() for p in (tmp_path / "out" / "photos").iterdir())
        assert exported == sorted([jpeg, clean_jpeg])
        # erasing the photos deletes them from the bucket
        erased = client.post(f"/v1/gradings/{body['id']}/erase", headers=H(token))
        assert erased.status_code == 200, erased.text
        assert not any(svc.blobs.exists(sha) for sha in [*shas, overlay_sha])
        assert client.get(f"/v1/gradings/{body['id']}/photos/0", headers=H(token)).status_code == 410


def test_a_failed_upload_acknowledges_nothing(s3_settings_for_app, jpeg):
    from serving.app import create_app
    from serving.auth import create_key

    with TestClient(create_app(s3_settings_for_app), raise_server_exceptions=False) as client:
        svc = client.app.state.svc
        with svc.sessions() as s:
            token = create_key(s, "refurbisher", "acme")[1]

        def refuse(**kw):
            raise BlobStoreError("the bucket is read-only today")

        svc.blobs.client = _Flaky(svc.blobs.client, put_object=refuse)
        r = post_grading(client, token, [("a.jpg", jpeg, "image/jpeg")])
        assert r.status_code == 500 and r.json()["code"] == "internal_error"
        assert client.get("/v1/gradings", headers=H(token)).json()["total"] == 0
