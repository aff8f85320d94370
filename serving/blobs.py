"""Content-addressed blob store on disk: photos and overlays, named by their SHA-256.

`put` writes to a temporary file, fsyncs it, renames it into place and fsyncs the directory, so once
`put` returns the blob survives a crash (a grading is acknowledged only after its photos are put and
its record committed). Identical photos are stored once. Blobs are never modified; `delete` removes one
only when retention (serving/retention.py) has checked that no remaining grading references it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

_SHA = re.compile(r"^[0-9a-f]{64}$")


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

    def delete(self, sha256: str) -> bool:
        """Remove a blob (retention, issue 20); False when it was not there."""
        path = self.path(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True


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
