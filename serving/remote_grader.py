"""`refurbgrade grade --server URL --api-key KEY PATH...`: the same command, graded by a running service
through `refurbgrade.client` (no model here, no onnxruntime).

Each photo is a device of its own unless `--device-per-folder` groups a folder's photos. One JSON line
per graded device: its files and the service's answer (GradingOut). A device the service refuses (a bad
photo) or whose files cannot be read is reported on stderr, naming the file, and skipped; the exit code
is 1 when anything was skipped, 2 when the options or the server cannot be used.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

from serving.photo_batch import Batch
from serving.summary import device_line, print_summary, tally


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _named(message: str, files: list[Path]) -> str:
    """The server's messages count photos from 1 ('photo 1: ...'): name the file instead."""
    m = re.match(r"photo (\d+)(?: \([^)]*\))?: (.*)", message, re.S)
    if m and 1 <= int(m.group(1)) <= len(files):
        return f"{files[int(m.group(1)) - 1]}: {m.group(2)}"
    return f"{files[0] if len(files) == 1 else files[0].parent}: {message}"


def run_remote(batch: Batch, *, server: str, api_key: str, concurrency: int) -> int:
    try:
        from refurbgrade.client import ApiError, Client, Device
    except ImportError as exc:
        _err(
            f"error: grading through a server needs the client extra ({exc.name} is missing): "
            "pip install 'refurbgrade[client]'"
        )
        return 2
    # The bundled catalogue, as the server has it: one error up front, not one per device.
    if batch.device_model:
        from model.catalogue import lookup_device

        try:
            lookup_device(batch.device_model)
        except KeyError as exc:
            _err(f"error: --device-model: {exc}")
            return 2
    missing = batch.missing()
    for p in missing:
        _err(f"skipped {p}: no such file or folder")
    devices = [Device(list(u), source=str(u[0])) for u in batch.devices()]
    counts: Counter = Counter(skipped=len(missing))
    lines = []  # each graded device's row of the summary (`serving.summary.device_line`)
    graded_to: dict[str, None] = {}  # the standards the server graded to, in its order
    with batch.output() as out:
        with Client(server, api_key) as client:
            try:  # a wrong URL or key is one line, before any photo is sent
                client.list(limit=1)
            except ApiError as exc:
                _err(f"error: {server}: {exc.code}: {exc.message}")
                return 2
            results = client.grade_many(
                devices,
                concurrency=concurrency,
                progress=sys.stderr.isatty(),
                device_model=batch.device_model,
                device_kind=batch.device_kind,
                standard=batch.standard,
            )
        for r in results:
            files_of = [Path(p) for p in r.device.photos]
            if r.grading is None:
                err = r.error
                where = err.message if err.status == 0 else _named(err.message, files_of)
                _err(f"skipped {where} ({err.code})")
                counts["skipped"] += len(files_of)
                continue
            grades = r.grading.grades
            graded_to.update(dict.fromkeys(grades))
            line = device_line(
                files_of[0].name if len(files_of) == 1 else files_of[0].parent.name,
                {n: g.grade for n, g in grades.items()},
                {n: g.probabilities for n, g in grades.items()},
                {n: g.reasons for n, g in grades.items()},
                {n: g.needs_review for n, g in grades.items()},
                {n: g.advice for n, g in grades.items()},
                r.grading.review_reasons,
            )
            tally(
                counts,
                lines,
                line,
                r.grading.needs_review,
                r.grading.device_kind,
                r.grading.device_kind_source,
            )
            rec = {"files": [str(f) for f in files_of], **r.grading.model_dump(mode="json")}
            out.write(json.dumps(rec) + "\n")
            out.flush()
    print_summary(counts, devices=lines, standards=list(graded_to))
    return 1 if counts["skipped"] else 0
