"""Shared machinery of the importers: the class-name mapping, problem reports, image checks, and the
step that turns drafts into manifest records (paths relative to the manifest, groups, splits), with
the groups table that overrides grouping and the one-line summary of an import.

Every manifest is written through `model.manifest.write_manifest`. Problems in the input are collected
as `Issue`s (file, line, what was skipped) instead of stopping the import: the rest is imported and
the CLI exits non-zero when anything was skipped.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from model.manifest import LabelledInstance, ManifestRecord, write_manifest
from model.taxonomy import DefectType, DeviceKind, PhotoQuality, View, Zone
from training.data.splits import assign_splits, group_keys, straddling

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".heic"})


# --------------------------------------------------------------------------------------------------
# class-name mapping


class ClassTarget(BaseModel):
    """What one of a dataset's class names means in our taxonomy.

    YAML shorthands: a defect type name (`smudge`), `screen_outline` (the polygon marks the screen, not
    a defect), `clean` (an image known to have no defect), `no_device` (photo quality), `ignore`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    defect: DefectType | None = None
    present: bool = True  # image-level tables: False = known absent (e.g. 'intact_phone': no crack)
    # Other defect types the class rules out: MSD's scratched, stained and oily screens are not cracked,
    # the hard negatives for crack that issue 18 asks training to count.
    absent: list[DefectType] = []
    zone: Zone | None = None
    screen_outline: bool = False
    clean: bool = False
    quality: PhotoQuality | None = None
    device_kind: DeviceKind | None = None
    ignore: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value):
        if isinstance(value, str):
            word = value.strip()
            if word == "screen_outline":
                return {"screen_outline": True}
            if word == "clean":
                return {"clean": True}
            if word == "ignore":
                return {"ignore": True}
            if word in PhotoQuality._value2member_map_:
                return {"quality": word}
            return {"defect": word}
        return value


class ClassMap:
    """Dataset class name -> ClassTarget. Without a file, names that are taxonomy defect types map to
    themselves; any other name is unknown (reported, and its label skipped)."""

    def __init__(self, targets: dict[str, ClassTarget] | None = None, source: str = "(identity)"):
        self.targets = targets or {}
        self.source = source

    def get(self, name: str) -> ClassTarget | None:
        if name in self.targets:
            return self.targets[name]
        if not self.targets and name in DefectType._value2member_map_:
            return ClassTarget(defect=DefectType(name))
        return None


class ClassMapError(ValueError):
    pass


def load_class_map(path: str | Path | None) -> ClassMap:
    if path is None:
        return ClassMap()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ClassMapError(f"{path}: cannot read the class map: {exc}") from exc
    if not isinstance(data, dict):
        raise ClassMapError(f"{path}: expected a mapping 'dataset name: target'")
    targets = {}
    for name, value in data.items():
        try:
            targets[str(name)] = ClassTarget.model_validate(value)
        except ValidationError as exc:
            msg = "; ".join(e["msg"] for e in exc.errors())
            raise ClassMapError(f"{path}: class {name!r}: {msg}") from exc
    return ClassMap(targets, str(path))


# --------------------------------------------------------------------------------------------------
# problems


@dataclass(frozen=True)
class Issue:
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


@dataclass
class Draft:
    """A record before grouping and splitting; `image` is an absolute path."""

    image: Path
    width: int
    height: int
    source_split: str | None = None
    group: str | None = None  # the source's own group (a table's group column): overrides --group-by
    instances: list[LabelledInstance] = field(default_factory=list)
    image_labels: dict[DefectType, bool] = field(default_factory=dict)
    screen_polygons: list[list[tuple[float, float]]] = field(default_factory=list)
    quality: PhotoQuality | None = None
    device_kind: DeviceKind | None = None
    instances_complete: bool = False
    meta: dict = field(default_factory=dict)


@dataclass
class ImportResult:
    drafts: list[Draft] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth saying, but nothing was skipped
    license: str | None = None
    records: list[ManifestRecord] = field(default_factory=list)
    # Class names no target was found for, and how many labels (or images) each cost: the hint at the end
    # of an import says which to put in a class map (`unknown_classes_hint`).
    unknown_classes: Counter = field(default_factory=Counter)

    def skip(self, file: str | Path, line: int | None, message: str) -> None:
        self.issues.append(Issue(str(file), line, message))

    def unknown_class(self, name: str, file: str | Path, line: int | None, message: str) -> None:
        """A label (or image) skipped for its class `name`, which the class map has no target for."""
        self.unknown_classes[name] += 1
        self.skip(file, line, message)


def image_size(
    path: Path, result: ImportResult, ref: tuple[str | Path, int | None] | None = None
) -> tuple[int, int] | None:
    """Width and height of a readable image, else None with an issue (missing or corrupt file).

    The pixels are decoded (at reduced scale for JPEG, which still reads every byte), so a truncated
    file is caught here and not in the middle of a training run. `ref` names the label file and line
    that referenced the image, when there is one.
    """
    where = ref or (path, None)
    if not path.is_file():
        result.skip(where[0], where[1], f"missing image {path}: record skipped")
        return None
    try:
        with Image.open(path) as img:
            size = img.size
            img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        result.skip(path, None, f"corrupt image ({exc}): record skipped")
        return None
    return size


def apply_target(draft: Draft, target: ClassTarget) -> None:
    """Image-level meaning of a class (folders, tables): labels, quality, kind."""
    if target.ignore:
        return
    if target.device_kind is not None:
        draft.device_kind = target.device_kind
    if target.quality is not None:
        draft.quality = target.quality
    if target.clean:
        draft.instances_complete = True
        draft.image_labels.update({t: False for t in DefectType})
    for defect in target.absent:
        draft.image_labels[defect] = False
    if target.defect is not None:
        draft.image_labels[target.defect] = target.present


def polygon_outside(points: list[tuple[float, float]], width: int, height: int, tol: float = 0.5) -> bool:
    return any(x < -tol or y < -tol or x > width + tol or y > height + tol for x, y in points)


def clip_polygon(points: list[tuple[float, float]], width: int, height: int) -> list[tuple[float, float]]:
    """Clip into the image; round to 1/100 px (normalised YOLO floats carry noise digits that only bloat
    the manifest)."""
    return [
        (round(min(max(x, 0.0), float(width)), 2), round(min(max(y, 0.0), float(height)), 2))
        for x, y in points
    ]


# --------------------------------------------------------------------------------------------------
# drafts -> records


@dataclass(frozen=True)
class RecordOptions:
    source: str
    license: str | None = None
    view: View | None = None
    device_kind: DeviceKind | None = None
    group_by: str = "roboflow"
    groups_table: dict[str, str] | None = None
    split_mode: str = "keep"  # keep the source's split (regrouped so no group straddles) or 'regroup'
    val: float = 0.15
    test: float = 0.15
    seed: int = 0


def read_groups_table(path: Path) -> dict[str, str]:
    """A CSV file,group table with a header (`RecordOptions.groups_table`)."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return {r[0].strip(): r[1].strip() for r in rows[1:] if len(r) >= 2}


def finalise(result: ImportResult, out: Path, opts: RecordOptions) -> list[ManifestRecord]:
    """Group, split and turn drafts into records whose paths are relative to the manifest's folder."""
    drafts = sorted(result.drafts, key=lambda d: str(d.image))
    # A renamed image is grouped by its label file's name, which still carries the source photo's name.
    names = [str(d.meta.get("label_file") or d.meta.get("original_file", d.image.name)) for d in drafts]
    # A group the source names itself (a table's group column) beats the file-name rule; an explicit
    # groups table beats both.
    table = opts.groups_table or {}
    by_rule = group_keys(names, opts.group_by)
    groups = [
        table.get(n, table.get(Path(n).name, d.group or k))
        for d, n, k in zip(drafts, names, by_rule, strict=True)
    ]
    preferred = [d.source_split for d in drafts] if opts.split_mode == "keep" else None
    splits = assign_splits(groups, preferred, opts.val, opts.test, opts.seed)
    assert not straddling(groups, splits)
    base = out.resolve().parent
    license_ = opts.license or result.license or "unknown"
    records = []
    for d, g, s in zip(drafts, groups, splits, strict=True):
        meta = dict(d.meta)
        meta["group"] = g
        if d.source_split:
            meta["source_split"] = d.source_split
        records.append(
            ManifestRecord(
                image=os.path.relpath(d.image.resolve(), base),
                device_id=f"{opts.source}:{g}",
                split=s,
                source=opts.source,
                license=license_,
                width=d.width,
                height=d.height,
                view=opts.view,
                device_kind=d.device_kind or opts.device_kind,
                quality=d.quality,
                instances=d.instances,
                instances_complete=d.instances_complete,
                image_labels=d.image_labels,
                screen_polygons=d.screen_polygons,
                meta=meta,
            )
        )
    result.records = records
    return records


def write(result: ImportResult, out: Path, opts: RecordOptions) -> Path:
    write_manifest(out, finalise(result, out, opts))
    return out


def unknown_classes_hint(result: ImportResult, cmap: ClassMap) -> str | None:
    """What to do about the classes no target was found for (None when there were none): which they are,
    and the class map that would import them. Without a map only the taxonomy's defect names are known,
    so a folder of "cracked" and "intact" photos imported nothing and said only "unknown class" 16 times."""
    if not result.unknown_classes:
        return None
    names = ", ".join(f"{name!r} ({n})" for name, n in result.unknown_classes.most_common())
    where = (
        f"not in the class map {cmap.source}"
        if cmap.targets
        else f"not defect names ({', '.join(t.value for t in DefectType)}), the only classes known without "
        "a class map"
    )
    return (
        f"unknown classes, labels skipped: {names}; {where}. Give --class-map FILE, a YAML mapping of each "
        "class name to a target, e.g. 'cracked: crack' and 'intact: {defect: crack, present: false}' "
        "(docs/data.md); 'ignore' leaves a class out"
    )


def summary(result: ImportResult) -> str:
    """One line on what was imported: photos, groups, photos per split, instances."""
    counts = {s: sum(r.split == s for r in result.records) for s in ("train", "val", "test")}
    n_groups = len({r.device_id for r in result.records})
    return (
        f"{len(result.records)} photos in {n_groups} groups ({counts['train']} train, {counts['val']} val, "
        f"{counts['test']} test), {sum(len(r.instances) for r in result.records)} instances"
    )
