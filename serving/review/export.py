"""Reviewed gradings back into training: a manifest (model.manifest) plus the photos, corrections as labels.

`export_reviews(...)` writes, into an output folder, `manifest.jsonl` (one `ManifestRecord` per photo of
every grading that got a review event in the time window), `photos/<sha256><ext>` and `summary.json`.
`refurbgrade reviews export` and the admin API call (`GET /v1/reviews/export`, a zip) both use it.

What becomes a label (the grading's state after its events, `events.fold`):
- instances: what a reviewer vouches for, as polygons in photo pixels: the model's defects that counted
  for the grade and were not marked false, those whose type a reviewer changed, and the boxes
  reviewers drew. Not the candidates and evidence nobody touched (a scratch at confidence 0.06 beside
  the grade, a shattered screen's faint fragments): a verdict on the grade says nothing of them. A
  glass judged cracked as a whole (`model.damage`) is a label at image level only, whatever type a
  reviewer gave it: its outline is the glass's or its fragments' hull, and filled as a crack mask it
  would teach the crack map that a whole screen is crack. So is a box a reviewer drew round a scratch
  or a crack: filled, it would teach a line's map a blob (a dent's, a chip's or a stain's box is kept:
  a blob in a box is near enough);
- image_labels: once a reviewer gave a verdict (confirmed or overruled), every defect type gets a
  present/absent label, except a type with only untouched candidates or evidence (unknown); before a
  verdict, only the types a reviewer touched (a false defect of a type with nothing left says "absent");
- grades: the grade per standard after the verdict (overruled or confirmed), none without a verdict.
`instances_complete` stays false: the model's polygons are not pixel-exact, so pixels outside them
are only negatives for the types that have an instance (the training loss's rule).
Splits group by grading (one device): a stable hash of its id puts `val_fraction` of them in val.
Dispute photos carry no labels and are not exported.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from model.damage import GLASS_ZONES
from model.manifest import LabelledInstance, ManifestRecord, write_manifest
from model.rules.schema import UNGRADABLE
from model.taxonomy import LINEAR_DEFECT_TYPES, DefectType
from serving.blobs import BlobStore
from serving.db import Grading, GradingEvent
from serving.review.events import PHOTOS_ERASED, REVIEW_KINDS, ReviewState, fold
from serving.schemas import KIND_NOT_NAMED, is_counted

SOURCE = "review"
LINES = {t.value for t in LINEAR_DEFECT_TYPES}
LICENSE = "tenant photos, internal training use (review export)"
_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".avif", ".bmp", ".tif", ".tiff"}
_BY_TYPE = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/heic": ".heic"}


@dataclass
class ExportSummary:
    since: str
    until: str | None
    gradings: int
    photos: int
    instances: int
    grade_labels: int
    manifest: str
    created_at: str


def _split(grading_id: str, val_fraction: float) -> str:
    h = int.from_bytes(hashlib.sha256(grading_id.encode()).digest()[:8], "big") / 2**64
    return "val" if h < val_fraction else "train"


def _extension(filename: str | None, content_type: str | None) -> str:
    suffix = Path(filename or "").suffix.lower()
    if suffix in _EXTENSIONS:
        return suffix
    return _BY_TYPE.get((content_type or "").split(";")[0].strip().lower(), ".img")


def records_for(row: Grading, state: ReviewState, val_fraction: float = 0.0) -> list[ManifestRecord]:
    """The manifest records of one reviewed grading (image paths: photos/<sha256><ext>)."""
    verdict = state.verdict is not None
    review_events = [e for e in state.events if e.kind in REVIEW_KINDS]
    touched: dict[int, set[str]] = {}
    for e in review_events:
        p = e.payload or {}
        if "photo" in p:
            for side in ("before", "after"):
                if isinstance(p.get(side), dict) and p[side].get("type"):
                    touched.setdefault(int(p["photo"]), set()).add(p[side]["type"])
    overruled = sorted(name for name, g in state.grades.items() if g.overruled)
    meta = {
        "grading_id": row.id,
        "tenant": row.tenant,
        "external_ref": row.external_ref,
        "model_version": row.model_version,
        "review_status": state.status,
        "reviewed_by": ",".join(state.reviewers),
        "reviewed_at": max(e.created_at for e in review_events).isoformat() if review_events else None,
        "grades_overruled": ",".join(overruled),
        "grades_model": ",".join(f"{n}={g.original}" for n, g in sorted(state.grades.items())),
    }
    records = []
    for p in row.body["photos"]:
        idx = p["index"]
        kept = [d for d in state.defects.get(idx, []) if d.status == "kept" and d.photo == idx]
        stored = {f"p{idx}-d{k}": d for k, d in enumerate(p["defects"])}
        whole = {f"p{idx}-d{k}" for k in _judged_as_a_whole(p["defects"])}
        instances = []
        present: set[str] = set()
        for d in kept:
            model_d = stored.get(d.id) if d.origin == "model" else None
            if model_d is not None and d.original_type is None and not is_counted(model_d):
                continue  # a candidate or evidence nobody vouched for
            present.add(d.type)
            if d.id in whole:
                continue  # labelled at image level: its outline is the glass's, not the crack's pixels
            if d.origin == "reviewer" and d.type in LINES:
                continue  # a box round a line: labelled at image level, not filled as the line's pixels
            poly = d.polygon if len(d.polygon) >= 3 else _box_polygon(d.box)
            instances.append(
                LabelledInstance(type=d.type, zone=d.zone, polygon=[(float(x), float(y)) for x, y in poly])
            )
        unsure = {d.type for d in kept} - present  # only candidates or evidence: nobody said either way
        labelled_types = {t.value for t in DefectType} - unsure if verdict else touched.get(idx, set())
        image_labels = {DefectType(t): t in present for t in sorted(labelled_types)}
        records.append(
            ManifestRecord(
                image=f"photos/{p['sha256']}{_extension(p.get('filename'), p.get('content_type'))}",
                device_id=f"review-{row.id}",
                split=_split(row.id, val_fraction),
                source=SOURCE,
                license=LICENSE,
                width=p["width"],
                height=p["height"],
                view=p["view"] if p.get("view_source") == "caller" else None,
                # A kind the caller or the catalogue gave is a label; one read from the photos (or the
                # default phone) is the model's own guess, and the kind probe must not learn from it.
                device_kind=None if row.body.get("device_kind_source") in KIND_NOT_NAMED else row.device_kind,
                device_model=row.device_model,
                instances=instances,
                image_labels=image_labels,
                # An "ungradable" verdict teaches no grade: only real grades become labels.
                grades={k: g for k, g in state.current_grades().items() if g != UNGRADABLE}
                if verdict
                else {},
                meta={**meta, "photo_index": idx},
            )
        )
    return records


def _judged_as_a_whole(defects: list[dict]) -> set[int]:
    """The indices of a photo's stored defects that are a glass zone judged cracked as a whole
    (`model.damage.judge_zone_damage`): a crack on glass on a photo whose crack fragments are evidence,
    or with no line traced at all (length 0). Post-processing turns every glass crack fragment into
    evidence once it judges a glass zone, so on such a photo no crack on glass is a traced line; a
    crack on the frame stays one."""
    glass = {z.value for z in GLASS_ZONES}
    traced = any(d["type"] == "crack" and d.get("role") == "evidence" for d in defects)
    return {
        k
        for k, d in enumerate(defects)
        if d["type"] == "crack"
        and d.get("role", "defect") == "defect"
        and d.get("zone") in glass
        and (traced or d.get("length") == 0)
    }


def _box_polygon(box) -> list[tuple[float, float]]:
    x0, y0, x1, y1 = box
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def reviewed_gradings(sessions: sessionmaker, since: datetime, until: datetime | None = None) -> list[str]:
    """Ids of gradings with a review event in [since, until), oldest review first."""
    stmt = select(GradingEvent.grading_id, GradingEvent.created_at).where(
        GradingEvent.kind.in_(REVIEW_KINDS), GradingEvent.created_at >= since
    )
    if until is not None:
        stmt = stmt.where(GradingEvent.created_at < until)
    with sessions() as s:
        rows = s.execute(stmt.order_by(GradingEvent.id)).all()
    return list(dict.fromkeys(gid for gid, _ in rows))


def export_reviews(
    sessions: sessionmaker,
    blobs: BlobStore,
    out_dir: str | Path,
    since: datetime,
    until: datetime | None = None,
    val_fraction: float = 0.1,
) -> ExportSummary:
    out = Path(out_dir)
    (out / "photos").mkdir(parents=True, exist_ok=True)
    records: list[ManifestRecord] = []
    for gid in reviewed_gradings(sessions, since, until):
        with sessions() as s:
            row = s.get(Grading, gid)
            events = list(s.scalars(select(GradingEvent).where(GradingEvent.grading_id == gid)))
        if row is None or any(e.kind == PHOTOS_ERASED for e in events):  # no photos left to train on
            continue
        recs = records_for(row, fold(row.body, events), val_fraction)
        for rec, p in zip(recs, row.body["photos"], strict=True):
            target = out / rec.image
            if not target.exists():
                blobs.copy_to(p["sha256"], target)
        records.extend(recs)
    manifest = out / "manifest.jsonl"
    write_manifest(manifest, records)
    summary = ExportSummary(
        since=since.isoformat(),
        until=until.isoformat() if until else None,
        gradings=len({r.device_id for r in records}),
        photos=len(records),
        instances=sum(len(r.instances) for r in records),
        grade_labels=sum(1 for r in records if r.grades),
        manifest=str(manifest),
        created_at=datetime.now(UTC).isoformat(),
    )
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary
