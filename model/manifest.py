"""The manifest contract: JSON Lines, one photo a line (DESIGN.md section 4).

It lives in the torch-free `model` package (not `training`) because two producers write it — the
importers and the synthetic generator in `training`, and the review export in `serving` (quality
teams' corrections back into training) — and serving must not import `training`.

Paths inside a manifest are relative to the manifest file's folder unless absolute.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from model.taxonomy import DefectType, DeviceKind, PhotoQuality, View, Zone

Split = Literal["train", "val", "test"]


class LabelledInstance(BaseModel):
    """A ground-truth defect: a polygon or a mask file, with true sizes where known (synthetic data)."""

    model_config = ConfigDict(extra="forbid")

    type: DefectType
    zone: Zone | None = None
    polygon: list[tuple[float, float]] | None = None  # pixel coordinates of the image
    mask: str | None = None  # path of a single-channel PNG, non-zero = defect
    length_mm: float | None = Field(default=None, ge=0)
    width_mm: float | None = Field(default=None, ge=0)
    area_mm2: float | None = Field(default=None, ge=0)
    # Synthetic photos made with `measure_shown`: how much the photo shows the defect, grey levels of
    # luma (the photo against its clean twin, `training.synth.shown`); None where not measured.
    photo_step: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _has_shape(self) -> LabelledInstance:
        if self.polygon is None and self.mask is None:
            raise ValueError("an instance needs a polygon or a mask")
        if self.polygon is not None and len(self.polygon) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(self.polygon)}")
        return self


class ManifestRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str
    device_id: str  # photos of one device share it; splits group by it
    split: Split
    source: str  # "synthetic", "msd", "cracked_screens", "laptop_scratch", "review", ...
    license: str = "unknown"
    width: int | None = Field(default=None, gt=0)
    height: int | None = Field(default=None, gt=0)
    view: View | None = None
    device_kind: DeviceKind | None = None
    device_model: str | None = None
    # Scale where known exactly (synthetic photos): millimetres per pixel on the device plane.
    mm_per_px: float | None = Field(default=None, gt=0)
    quality: PhotoQuality | None = None
    # Instance labels. `instances_complete` says whether every defect was labelled (synthetic: yes;
    # a Roboflow export with empty label files: no), so evaluation knows what absence means.
    instances: list[LabelledInstance] = Field(default_factory=list)
    instances_complete: bool = False
    # Image-level presence labels where only those are known (MSD: one class per image).
    image_labels: dict[DefectType, bool] = Field(default_factory=dict)
    # Zone map: single-channel PNG, 0 = background, i+1 = the i-th Zone member.
    zone_mask: str | None = None
    # Screen/device outline only (cracked_screens' polygons mark the screen, not the crack).
    screen_polygons: list[list[tuple[float, float]]] = Field(default_factory=list)
    # Grades per standard, where known (synthetic: from the rules engine on the true instances).
    grades: dict[str, str] = Field(default_factory=dict)
    # Free-form provenance (original file name, augmentation group, reviewer, ...).
    meta: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class ManifestError(ValueError):
    """A manifest line that is not valid JSON or not a valid record; names the file and line."""


def read_manifest(path: str | Path) -> list[ManifestRecord]:
    return list(iter_manifest(path))


def iter_manifest(path: str | Path) -> Iterator[ManifestRecord]:
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield ManifestRecord.model_validate_json(line)
            except ValidationError as exc:
                raise ManifestError(f"{path}:{lineno}: {exc}") from exc


def write_manifest(path: str | Path, records: Iterable[ManifestRecord]) -> int:
    """Write records as JSON Lines (sorted keys, so equal data gives byte-identical files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            data = record.model_dump(mode="json", exclude_defaults=True)
            fh.write(json.dumps(data, sort_keys=True, ensure_ascii=False) + "\n")
            n += 1
    return n


def resolve(manifest_path: str | Path, relpath: str) -> Path:
    p = Path(relpath)
    return p if p.is_absolute() else Path(manifest_path).parent / p


def manifest_hash(path: str | Path) -> str:
    """sha256 of the manifest bytes: the training-data hash recorded in model cards."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
