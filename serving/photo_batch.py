"""What `refurbgrade grade` is asked to grade: the photo files under its paths, which of them make one
device, the options every device is graded with, and where the JSON lines go.

The same for the offline grader (`serving.batch_grader`) and for grading through a server
(`serving.remote_grader`), which each took these as seven arguments and grouped the files into devices
in a copy of their own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO


@dataclass(frozen=True)
class Batch:
    """Photo files or folders (`paths`) and how to grade them. Each photo is a device of its own unless
    `device_per_folder`, which makes each folder's photos one device."""

    paths: tuple[Path, ...]
    standard: str | None = None  # comma-separated standard names; None: every bundled standard
    device_model: str | None = None
    device_kind: str | None = None
    jsonl: Path | None = None  # one JSON line per device here; None: stdout
    device_per_folder: bool = False

    def missing(self) -> list[Path]:
        """The paths that do not exist (each reported once, as skipped)."""
        return [p for p in self.paths if not p.exists()]

    def files(self) -> list[tuple[Path, Path]]:
        """(file, the folder it groups by) for every file under the paths, hidden files left out."""
        out = []
        for p in self.paths:
            if not p.exists():
                continue  # see missing()
            if p.is_dir():
                out += [
                    (f, f.parent) for f in sorted(p.rglob("*")) if f.is_file() and not f.name.startswith(".")
                ]
            else:
                out.append((p, p.parent))
        return out

    def devices(self) -> list[list[Path]]:
        """The photo files of each device, in order: single photos first, then a device per folder."""
        groups: dict[Path, list[Path]] = {}
        units: list[list[Path]] = []
        for f, folder in self.files():
            if self.device_per_folder:
                groups.setdefault(folder, []).append(f)
            else:
                units.append([f])
        return units + list(groups.values())

    @contextmanager
    def output(self) -> Iterator[TextIO]:
        """Where the JSON lines go: `jsonl` (opened here, closed after) or stdout."""
        if self.jsonl is None:
            yield sys.stdout
            return
        with self.jsonl.open("w", encoding="utf-8") as out:
            yield out
