"""Content-addressed blob store on disk: photos and overlays, named by their SHA-256.

`put` writes to a temporary file, fsyncs it, renames it into place and fsyncs the directory, so once
`put` returns the blob survives a crash (a grading is acknowledged only after its photos are put and
its record committed). Identical photos are stored once. Blobs are never modified; `delete` removes one
only when retention (serving/retention.py) has checked that no remaining grading references it.

The same interface in an S3-compatible bucket: serving/blobs_s3.py. `open_blob_store(settings)` opens
the one REFURBGRADE_BLOB_URL names (default: this store under DATA_DIR/blobs). Callers that need a file
use `local_path` (None for a bucket) or `copy_to`, never `path`, so they work with either.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from serving.blobs_s3 import S3BlobStore
    from serving.settings import BlobSettings

_SHA = re.compile(r"^[0-9a-f]{64}$")


class BlobStoreError(OSError):
    """The blob store cannot be reached or did not confirm a write: nothing is acknowledged."""


class BlobStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not _SHA.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, data: bytes, sha256: str | None = None) -> str:
        """Store `data` durably; returns its SHA-256."""
        sha = sha256 or hashlib.sha256(data).hexdigest()
        final = self.path(sha)
        if final.is_file():
            return sha
        created = _mkdirs(final.parent)
        fd, tmp = tempfile.mkstemp(dir=self._tmp)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        for d in [final.parent, *created]:
            _fsync_dir(d)
        return sha

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def local_path(self, sha256: str) -> Path | None:
        """The blob's file, for callers that can serve or copy a file (None in an S3 store)."""
        return self.path(sha256)

    def copy_to(self, sha256: str, target: str | Path) -> None:
        shutil.copyfile(self.path(sha256), target)

    def delete(self, sha256: str) -> bool:
        """Remove a blob (retention, issue 20); False when it was not there."""
        path = self.path(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True


def open_blob_store(settings: BlobSettings, check: bool = True) -> BlobStore | S3BlobStore:
    """The blob store REFURBGRADE_BLOB_URL names: s3://BUCKET/PREFIX, file:///PATH, or DATA_DIR/blobs.
    `check`: reach the bucket now (BlobStoreError when it cannot be), not at the first grading."""
    if settings.blob_url and settings.blob_url.startswith("s3://"):
        from serving.blobs_s3 import S3BlobStore

        store = S3BlobStore.from_settings(settings)
        if check:
            store.check()
        return store
    return BlobStore(settings.blob_dir)


def _mkdirs(path: Path) -> list[Path]:
    """mkdir -p; returns the parents of the directories it created (they need an fsync)."""
    created = []
    p = path
    while not p.exists():
        created.append(p)
        p = p.parent
    for d in reversed(created):
        d.mkdir(exist_ok=True)
    return [d.parent for d in created]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
