"""Content-addressed blobs in an S3-compatible bucket (issue 20): what replicas share instead of a disk.

The same interface as the disk store (serving/blobs.py: `put`, `get`, `exists`, `delete`, `local_path`,
`copy_to`) and the same keys under the prefix, `aa/bb/<sha256>`, so a blob folder copies into a bucket
as it is (`aws s3 sync DATA_DIR/blobs s3://BUCKET/PREFIX --exclude 'tmp/*'`).

The same durability rule: `put` returns only once the object store has confirmed the object. The upload
carries the blob's SHA-256 as its `ChecksumSHA256`, so the server itself refuses bytes that do not match
their content address; `put_object` returning means it stored them; a `head_object` then confirms the
object is readable with that size and checksum (where the server reports one; else its MD5 ETag). Only
then is a grading's record committed, and so acknowledged. Identical blobs are stored once: a `put` of a
blob already there (same size) uploads nothing. boto3 retries throttling and connection errors itself
(standard mode, 5 attempts); anything left over is an exception, and the grading is not acknowledged.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from serving.blobs import _SHA, BlobStoreError

_MISSING = {"404", "NoSuchKey", "NotFound"}


def _missing(exc: ClientError) -> bool:
    err = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(err.get("Code")) in _MISSING or status == 404


class S3BlobStore:
    def __init__(self, bucket: str, prefix: str = "", client=None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client if client is not None else boto3.client("s3")

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        addressing_style: str = "auto",
        timeout_s: float = 10.0,
    ) -> S3BlobStore:
        """A store for `s3://BUCKET/PREFIX`; credentials left None come from boto3's usual chain."""
        if not url.startswith("s3://"):
            raise ValueError(f"not an s3:// URL: {url!r}")
        bucket, _, prefix = url[5:].partition("/")
        if addressing_style == "auto" and endpoint_url:
            addressing_style = "path"  # what MinIO, Ceph and moto answer to without DNS set-up
        config = Config(
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=32,  # the service's photo writers and request threads share it
            s3={"addressing_style": addressing_style},
        )
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region or "us-east-1",
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )
        return cls(bucket, prefix, client)

    @classmethod
    def from_settings(cls, settings) -> S3BlobStore:
        secret = settings.s3_secret_access_key
        return cls.from_url(
            settings.blob_url,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
            addressing_style=settings.s3_addressing_style,
            timeout_s=settings.s3_timeout_s,
        )

    def __repr__(self) -> str:
        return f"S3BlobStore(s3://{self.bucket}/{self.prefix})"

    def key(self, sha256: str) -> str:
        if not _SHA.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        name = f"{sha256[:2]}/{sha256[2:4]}/{sha256}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def check(self) -> None:
        """Reach the bucket now (at start-up): BlobStoreError, saying why, when it cannot be."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            why = "no such bucket" if _missing(exc) else f"{code or 'error'}: {exc}"
            raise BlobStoreError(f"s3://{self.bucket}: {why}") from exc
        except BotoCoreError as exc:
            raise BlobStoreError(f"s3://{self.bucket}: {exc}") from exc

    def _head(self, sha256: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(sha256), ChecksumMode="ENABLED")
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def exists(self, sha256: str) -> bool:
        return self._head(sha256) is not None

    def put(self, data: bytes, sha256: str | None = None) -> str:
        """Store `data` and confirm the store holds it; returns its SHA-256."""
        sha = sha256 or hashlib.sha256(data).hexdigest()
        key = self.key(sha)
        head = self._head(sha)
        if head is not None and head.get("ContentLength") == len(data):
            return sha
        checksum = base64.b64encode(bytes.fromhex(sha)).decode()
        # The server verifies the bytes against their SHA-256: a wrong content address fails here.
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ChecksumSHA256=checksum,
            ContentType="application/octet-stream",
        )
        head = self._head(sha)
        if head is None:
            raise BlobStoreError(f"s3://{self.bucket}/{key}: not found right after it was stored")
        if head.get("ContentLength") != len(data):
            raise BlobStoreError(
                f"s3://{self.bucket}/{key}: {head.get('ContentLength')} bytes stored, {len(data)} sent"
            )
        stored = head.get("ChecksumSHA256")
        if stored is not None:
            if stored.split("-")[0] != checksum:
                raise BlobStoreError(
                    f"s3://{self.bucket}/{key}: stored with SHA-256 {stored}, not {checksum}"
                )
        else:  # a server without checksums: a single PUT's ETag is the MD5 (unless encrypted with KMS)
            etag = (head.get("ETag") or "").strip('"')
            if len(etag) == 32 and etag != hashlib.md5(data, usedforsecurity=False).hexdigest():
                raise BlobStoreError(f"s3://{self.bucket}/{key}: stored with MD5 {etag}, not the bytes sent")
        return sha

    def get(self, sha256: str) -> bytes:
        """The blob's bytes (checked against the stored checksum by boto3); FileNotFoundError if absent."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key(sha256), ChecksumMode="ENABLED")
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(f"s3://{self.bucket}/{self.key(sha256)}") from exc
            raise
        with answer["Body"] as body:
            return body.read()

    def delete(self, sha256: str) -> bool:
        """Remove a blob (retention); False when it was not there."""
        if not self.exists(sha256):
            return False
        self.client.delete_object(Bucket=self.bucket, Key=self.key(sha256))
        return True

    def local_path(self, sha256: str) -> Path | None:
        return None  # no file: callers read the bytes with `get`

    def copy_to(self, sha256: str, target: str | Path) -> None:
        Path(target).write_bytes(self.get(sha256))
