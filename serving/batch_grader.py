"""Offline batch grading: `refurbgrade grade PATH...` with the service's predictor and pipeline.

Each photo is its own device unless `--device-per-folder` groups a folder's photos into one device.
One JSON line per device: file(s), grades ("ungradable" when no photo was usable), grade_probabilities,
needs_review, reasons, advice, missing_views, photo verdicts and defects (each saying whether it
`counted` for the grade). A file that cannot be decoded is reported on stderr and skipped; the exit code is 1 when
any file was skipped, 0 otherwise.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

from serving.memory import no_hugepage_hint
from serving.photo_batch import Batch
from serving.pipeline import (
    PhotoError,
    RequestError,
    grade_device,
    resolve_device,
    resolve_standards,
    run_direct,
)
from serving.predictor import load_model
from serving.schemas import defect_out
from serving.summary import device_line, print_summary, tally


def _record(files: list[Path], graded) -> dict:
    photos = []
    for f, p in zip(files, graded.photos, strict=True):
        photos.append(
            {
                "file": str(f),
                "view": p.view.value,
                "quality": p.quality.value,
                "message": p.message,
                "device_found": p.device_found,
                "defects": [defect_out(i, graded.gradable) for i in p.instances],
            }
        )
    rec = {
        "file": str(files[0]) if len(files) == 1 else str(files[0].parent),
        "files": [str(f) for f in files],
        "grades": {n: g.grade for n, g in graded.grades.items()},
        "grade_probabilities": {n: g.probabilities for n, g in graded.grades.items()},
        "needs_review": graded.needs_review,
        # Each standard's own flag: the device goes to review when any of them sends it.
        "needs_review_by_standard": {n: g.needs_review for n, g in graded.grades.items()},
        "review_reasons": graded.review_reasons,
        "reasons": {n: g.barred for n, g in graded.grades.items()},
        "advice": {n: g.advice for n, g in graded.grades.items()},
        "missing_views": {n: g.missing_views for n, g in graded.grades.items()},
        "rules_versions": {n: g.standard_version for n, g in graded.grades.items()},
        "model_version": graded.model_version,
        "scale": graded.scale_units,
        "device_kind": graded.device.kind.value,
        "device_kind_source": graded.device.kind_source,  # "photos": the kind was read from them
        "photos": photos,
        "photo": {"view": photos[0]["view"], "quality": photos[0]["quality"]},
        "defects": [d for p in photos for d in p["defects"]],
    }
    return rec


def run_batch(
    batch: Batch,
    *,
    overlays: Path | None = None,
    model_path: Path | None = None,
    threads: int = 2,
) -> int:
    from pydantic import ValidationError
    from tqdm import tqdm

    from serving.settings import FineSettings, Settings, settings_error_line

    def err(msg: str) -> None:
        tqdm.write(msg, file=sys.stderr)

    try:
        device = resolve_device(batch.device_model, batch.device_kind)
        standards = resolve_standards(batch.standard)
    except RequestError as exc:
        err(f"error: {exc}")
        return 2
    missing = batch.missing()
    for p in missing:
        err(f"skipped {p}: no such file or folder")
    path = model_path or Path(
        os.environ.get("REFURBGRADE_MODEL_PATH") or Settings.model_fields["model_path"].default
    )
    # REFURBGRADE_FINE_PASS as the service reads it: false grades with the coarse pass alone even where a
    # fine network sits beside the model.
    try:
        fine = FineSettings().fine_pass
    except ValidationError as exc:
        err(f"error: invalid settings: {settings_error_line(exc)}")
        return 2
    no_hugepage_hint()  # large arrays without the kernel's compaction stalls (serving/memory.py)
    try:
        model = load_model(path, intra_op_threads=threads, fine=fine)
    except ValueError as exc:
        err(f"error: {exc}")
        return 2
    units = batch.devices()
    if overlays is not None:
        overlays.mkdir(parents=True, exist_ok=True)
    skipped = len(missing)
    counts: Counter = Counter()
    devices = []
    n_photos = sum(len(u) for u in units)
    with batch.output() as out, tqdm(total=n_photos, unit="photo", file=sys.stderr, disable=None) as bar:
        for unit in units:
            datas, kept = [], []
            for f in unit:
                try:
                    datas.append(f.read_bytes())
                    kept.append(f)
                except OSError as exc:
                    err(f"skipped {f}: cannot read: {exc.strerror}")
                    skipped += 1
                    bar.update(1)
            # A bad photo is dropped from its device and the rest graded.
            while kept:
                try:
                    graded = grade_device(
                        run_direct,
                        model,
                        datas,
                        device=device,
                        standards=standards,
                        filenames=[str(f) for f in kept],
                    )
                    break
                except PhotoError as exc:
                    err(f"skipped {kept[exc.index]}: {exc.code}: {str(exc).split(': ', 1)[-1]}")
                    skipped += 1
                    bar.update(1)
                    del kept[exc.index], datas[exc.index]
            if not kept:
                continue
            rec = _record(kept, graded)
            line = device_line(
                Path(rec["file"]).name,
                rec["grades"],
                rec["grade_probabilities"],
                rec["reasons"],
                rec["needs_review_by_standard"],
                rec["advice"],
                rec["review_reasons"],
            )
            tally(counts, devices, line, rec["needs_review"], rec["device_kind"], rec["device_kind_source"])
            out.write(json.dumps(rec) + "\n")
            out.flush()
            if overlays is not None:
                from serving.overlays import render_overlay

                for f, data, photo in zip(kept, datas, rec["photos"], strict=True):
                    name = f"{f.parent.name}__{f.stem}.png" if batch.device_per_folder else f"{f.stem}.png"
                    (overlays / name).write_bytes(render_overlay(data, photo["defects"]))
            bar.update(len(kept))
    counts["skipped"] = skipped
    print_summary(counts, devices=devices, standards=standards)
    return 1 if skipped else 0
