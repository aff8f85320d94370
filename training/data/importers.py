"""Importers: ImageFolder, image-level CSV tables, YOLO (boxes and polygons), Pascal VOC and COCO into drafts.

Each importer reads one dataset layout into `Draft`s (pixel-coordinate polygons, image-level labels)
and `Issue`s; `importing.finalise` then groups, splits and writes. Every problem names the file and,
where the format has lines, the line: a missing image, a label outside the image, an unknown class,
a corrupt image or label file. The offending label (or record) is skipped, the rest imported.
`import_dataset` picks the importer for a format name and applies the options every format shares.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from xml.parsers import expat

import yaml

from model.manifest import LabelledInstance
from training.data.importing import (
    IMAGE_EXTENSIONS,
    ClassMap,
    ClassTarget,
    Draft,
    ImportResult,
    apply_target,
    clip_polygon,
    image_size,
    polygon_outside,
)
from training.data.splits import SPLIT_ALIASES

FORMATS = ("imagefolder", "csv", "yolo", "voc", "coco")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _instance_or_outline(
    draft: Draft, target: ClassTarget, polygon: list[tuple[float, float]], result: ImportResult, where: tuple
) -> None:
    """Put one labelled shape where its class says: an instance, a screen outline, or nowhere."""
    if target.ignore:
        return
    if target.screen_outline:
        draft.screen_polygons.append(polygon)
        return
    if target.defect is None:
        result.skip(where[0], where[1], "class maps to no defect type or outline: label skipped")
        return
    draft.instances.append(LabelledInstance(type=target.defect, zone=target.zone, polygon=polygon))
    draft.image_labels[target.defect] = True
    for defect in target.absent:  # ruled out by the class (its set's data card), unless a shape shows it
        draft.image_labels.setdefault(defect, False)
    if target.device_kind is not None:
        draft.device_kind = target.device_kind


def _read_rows(path: Path, result: ImportResult) -> tuple[list[str], dict[str, tuple[list[str], int]]]:
    """A CSV table with a header whose first column is a file: (header, file -> (row, line number))."""
    out: dict[str, tuple[list[str], int]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        result.skip(path, None, f"unreadable table ({exc})")
        return [], out
    header = [c.strip() for c in rows[0]] if rows else []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) < 2:
            result.skip(path, lineno, f"expected 'file,class', got {row!r}: row skipped")
            continue
        out[row[0].strip()] = ([c.strip() for c in row], lineno)
    return header, out


def read_table(path: Path, result: ImportResult) -> dict[str, tuple[str, int]]:
    """A two-column CSV (file, class) with a header: file -> (class, line number)."""
    return {f: (row[1], lineno) for f, (row, lineno) in _read_rows(path, result)[1].items()}


def apply_image_labels(result: ImportResult, table_path: Path, src: Path, cmap: ClassMap) -> None:
    """Image-level labels from a table (file relative to `src`, class) onto the drafts it names."""
    table = read_table(table_path, result)
    by_rel = {}
    for d in result.drafts:
        try:
            by_rel[d.image.resolve().relative_to(src.resolve()).as_posix()] = d
        except ValueError:
            continue
    for rel, (name, lineno) in table.items():
        d = by_rel.get(rel)
        if d is None:
            if not (src / rel).exists():
                result.skip(table_path, lineno, f"missing image {rel}: row skipped")
            continue
        target = cmap.get(name)
        if target is None:
            result.unknown_class(name, table_path, lineno, f"unknown class {name!r}: label skipped")
            continue
        apply_target(d, target)


# --------------------------------------------------------------------------------------------------
# ImageFolder and CSV tables (image-level labels)


def import_imagefolder(src: Path, cmap: ClassMap) -> ImportResult:
    """SRC/<class>/<image> or SRC/<split>/<class>/<image>; the folder name is the class."""
    result = ImportResult()
    tops = sorted(p for p in src.iterdir() if p.is_dir())
    split_dirs = [p for p in tops if p.name.lower() in SPLIT_ALIASES]
    layout = [(SPLIT_ALIASES[p.name.lower()], p) for p in split_dirs] if split_dirs else [(None, src)]
    for split, root in layout:
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            target = cmap.get(class_dir.name)
            for img in _images_in(class_dir):
                if target is None:
                    result.unknown_class(
                        class_dir.name,
                        img,
                        None,
                        f"unknown class {class_dir.name!r} (folder name): image skipped",
                    )
                    continue
                if target.ignore:
                    continue
                size = image_size(img, result)
                if size is None:
                    continue
                d = Draft(
                    img, *size, source_split=split, meta={"original_file": img.name, "class": class_dir.name}
                )
                apply_target(d, target)
                result.drafts.append(d)
    return result


def import_csv(
    src: Path,
    cmap: ClassMap,
    *,
    split_column: str | None = None,
    group_column: str | None = None,
    meta_columns: Sequence[str] = (),
) -> ImportResult:
    """A table `file,class[,...]` (header row first); files relative to the table's folder.

    Columns named in the header add what the source knows beyond the class: `split_column` its split
    (train/val/test, or valid, validation, ...; an empty cell is no preference), `group_column` its
    groups (photos of one device or copies of one photo; they override `--group-by`), `meta_columns`
    provenance copied into each record's `meta` under the column's name (empty cells left out).
    """
    result = ImportResult()
    header, rows = _read_rows(src, result)
    wanted = [c for c in (split_column, group_column, *meta_columns) if c]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise ValueError(f"{src}: no column {', '.join(map(repr, missing))} (header: {','.join(header)})")

    def cell(row: list[str], column: str) -> str:
        i = header.index(column)
        return row[i] if i < len(row) else ""

    for rel, (row, lineno) in rows.items():
        name = row[1]
        target = cmap.get(name)
        if target is None:
            result.unknown_class(name, src, lineno, f"unknown class {name!r}: row skipped")
            continue
        if target.ignore:
            continue
        split = cell(row, split_column) if split_column else ""
        if split and split.lower() not in SPLIT_ALIASES:
            result.skip(src, lineno, f"unknown split {split!r} (column {split_column!r}): row skipped")
            continue
        img = src.parent / rel
        size = image_size(img, result, (src, lineno))
        if size is None:
            continue
        d = Draft(
            img,
            *size,
            source_split=SPLIT_ALIASES[split.lower()] if split else None,
            group=(cell(row, group_column) or None) if group_column else None,
            meta={"original_file": Path(rel).name, "class": name},
        )
        d.meta.update({c: v for c in meta_columns if (v := cell(row, c))})
        apply_target(d, target)
        result.drafts.append(d)
    return result


# --------------------------------------------------------------------------------------------------
# YOLO


def _yolo_names(data: dict) -> dict[int, str]:
    names = data.get("names")
    if isinstance(names, list):
        return dict(enumerate(str(n) for n in names))
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}
    raise ValueError("data.yaml has no 'names' list")


def _resolve_yolo_dir(base: Path, entry: str, split: str) -> Path | None:
    """Ultralytics and Roboflow disagree on what data.yaml paths are relative to: try both, then the
    conventional layout."""
    rel = Path(entry)
    candidates = (
        [rel] if rel.is_absolute() else [base / rel, base / Path(*[p for p in rel.parts if p != ".."])]
    )
    folder = {"val": "valid"}.get(split, split)
    candidates += [base / folder / "images", base / split / "images", base / "images" / split]
    return next((c for c in candidates if c.is_dir()), None)


def _labels_dir(images_dir: Path) -> Path:
    parts = list(images_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return images_dir


def import_yolo(src: Path, cmap: ClassMap, label_map: Path | None = None) -> ImportResult:
    """A YOLO dataset folder with data.yaml: boxes (`c x y w h`) and segmentation polygons
    (`c x1 y1 x2 y2 ...`), normalised coordinates. `label_map` (CSV image,label_file relative to SRC)
    pairs images with label files of another name (exports that renamed their images)."""
    result = ImportResult()
    yaml_path = next((src / n for n in ("data.yaml", "data.yml") if (src / n).is_file()), None)
    if yaml_path is None:
        raise ValueError(f"{src}: no data.yaml: not a YOLO dataset folder")
    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
        names = _yolo_names(data)
    except (yaml.YAMLError, ValueError) as exc:
        raise ValueError(f"{yaml_path}: {exc}") from exc
    rf = data.get("roboflow") or {}
    if isinstance(rf, dict) and rf.get("license"):
        result.license = f"{rf['license']} ({rf.get('url', 'Roboflow')})"
    pairs: dict[Path, Path] = {}
    if label_map is not None:
        for img_rel, (lab_rel, _) in read_table(label_map, result).items():
            pairs[(src / img_rel).resolve()] = (src / lab_rel).resolve()

    jobs: list[tuple[str, Path, Path]] = []  # split, image, label file
    for key in ("train", "val", "test"):
        if key not in data:
            continue
        # Ultralytics' optional `path:` is the dataset root the split paths are relative to
        root = yaml_path.parent / str(data["path"]) if data.get("path") else yaml_path.parent
        images_dir = _resolve_yolo_dir(root, str(data[key]), key) or _resolve_yolo_dir(
            yaml_path.parent, str(data[key]), key
        )
        if images_dir is None:
            # a split named in data.yaml but absent is common (laptop_scratch): nothing is lost
            result.notes.append(f"{yaml_path}: split {key!r} ({data[key]}) not found")
            continue
        labels_dir = _labels_dir(images_dir)
        used = set()
        for img in _images_in(images_dir):
            lab = pairs.get(img.resolve(), labels_dir / f"{img.stem}.txt")
            used.add(Path(lab).resolve())
            jobs.append((key, img, Path(lab)))
        if labels_dir.is_dir():
            paired = {p for p in pairs.values()}
            for lab in sorted(labels_dir.glob("*.txt")):
                r = lab.resolve()
                if r in used or r in paired:
                    continue
                if lab.read_text(encoding="utf-8", errors="replace").strip():
                    result.skip(lab, None, "missing image: no image for this label file: labels skipped")

    # Segmentation or detection? Ultralytics decides per dataset: any line with more than one point
    # pair makes it a segmentation set, where 4 numbers are a degenerate 2-point polygon, not a box.
    lines_by_file: dict[Path, list[str] | None] = {}
    segment = False
    for _, _, lab in jobs:
        if lab.is_file():
            try:
                lines = lab.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                result.skip(lab, None, f"corrupt label file ({exc}): labels skipped")
                lines = None
            lines_by_file[lab] = lines
            segment = segment or any(len(ln.split()) > 5 for ln in lines or [])

    for split, img, lab in jobs:
        size = image_size(img, result)
        if size is None:
            continue
        w, h = size
        d = Draft(img, w, h, source_split=SPLIT_ALIASES.get(split, split), meta={"original_file": img.name})
        if lab.name != f"{img.stem}.txt":
            d.meta["label_file"] = lab.name
        for lineno, line in enumerate(lines_by_file.get(lab) or [], start=1):
            tokens = line.split()
            if not tokens:
                continue
            try:
                cls = int(tokens[0])
                nums = [float(t) for t in tokens[1:]]
                if not all(math.isfinite(v) for v in nums):
                    raise ValueError("non-finite coordinate")
            except ValueError:
                result.skip(lab, lineno, f"not a YOLO label line: {line.strip()[:60]!r}: skipped")
                continue
            if cls not in names:
                result.skip(
                    lab, lineno, f"unknown class id {cls} (data.yaml has {len(names)}): label skipped"
                )
                continue
            target = cmap.get(names[cls])
            if target is None:
                result.unknown_class(
                    names[cls],
                    lab,
                    lineno,
                    f"unknown class {names[cls]!r} (not in the class map): label skipped",
                )
                continue
            if len(nums) % 2 or len(nums) < 4:
                result.skip(lab, lineno, f"odd or too few coordinates ({len(nums)}): label skipped")
                continue
            if len(nums) == 4 and not segment:
                xc, yc, bw, bh = nums
                pts = [
                    (xc - bw / 2, yc - bh / 2),
                    (xc + bw / 2, yc - bh / 2),
                    (xc + bw / 2, yc + bh / 2),
                    (xc - bw / 2, yc + bh / 2),
                ]
            elif len(nums) // 2 < 3:
                result.skip(
                    lab, lineno, f"polygon with {len(nums) // 2} points (a line, not an area): label skipped"
                )
                continue
            else:
                pts = list(zip(nums[0::2], nums[1::2], strict=True))
            poly = [(x * w, y * h) for x, y in pts]
            if polygon_outside(poly, w, h, tol=0.01 * max(w, h)):
                result.skip(lab, lineno, "label outside the image: skipped")
                continue
            _instance_or_outline(d, target, clip_polygon(poly, w, h), result, (lab, lineno))
        result.drafts.append(d)
    return result


# --------------------------------------------------------------------------------------------------
# Pascal VOC


class _Node:
    __slots__ = ("children", "line", "tag", "text")

    def __init__(self, tag: str, line: int):
        self.tag, self.line, self.text, self.children = tag, line, "", []

    def find(self, tag: str) -> _Node | None:
        return next((c for c in self.children if c.tag == tag), None)

    def findall(self, tag: str) -> list[_Node]:
        return [c for c in self.children if c.tag == tag]

    def value(self, tag: str) -> str | None:
        n = self.find(tag)
        return n.text.strip() if n is not None else None


def parse_xml_with_lines(data: bytes) -> _Node:
    """A minimal XML tree whose nodes know their line (ElementTree does not keep line numbers)."""
    parser = expat.ParserCreate()
    root = _Node("#document", 0)
    stack = [root]

    def start(tag, attrs):
        node = _Node(tag, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(tag):
        stack.pop()

    def chars(text):
        stack[-1].text += text

    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, chars
    parser.Parse(data, True)
    return root.children[0]


def import_voc(src: Path, cmap: ClassMap) -> ImportResult:
    """Pascal VOC: SRC/Annotations/*.xml with images in SRC/JPEGImages (or beside the XML). Boxes, and
    CVAT-style <polygon><x1/><y1/>...</polygon> where present."""
    result = ImportResult()
    ann_dir = src / "Annotations" if (src / "Annotations").is_dir() else src
    img_dirs = [src / "JPEGImages", src / "images", ann_dir, src]
    for xml_path in sorted(ann_dir.glob("*.xml")):
        try:
            root = parse_xml_with_lines(xml_path.read_bytes())
        except expat.ExpatError as exc:
            result.skip(
                xml_path,
                exc.lineno,
                f"corrupt XML ({expat.errors.messages.get(exc.code, exc)}): file skipped",
            )
            continue
        fname = root.value("filename") or f"{xml_path.stem}.jpg"
        img = next((d / fname for d in img_dirs if (d / fname).is_file()), img_dirs[0] / fname)
        fn_node = root.find("filename")
        size = image_size(img, result, (xml_path, fn_node.line if fn_node else None))
        if size is None:
            continue
        w, h = size
        d = Draft(img, w, h, meta={"original_file": img.name})
        for obj in root.findall("object"):
            name = obj.value("name") or ""
            target = cmap.get(name)
            if target is None:
                result.unknown_class(name, xml_path, obj.line, f"unknown class {name!r}: object skipped")
                continue
            poly_node, box = obj.find("polygon"), obj.find("bndbox")
            try:
                if poly_node is not None:
                    xs = [float(c.text) for c in poly_node.children if re.fullmatch(r"x\d+", c.tag)]
                    ys = [float(c.text) for c in poly_node.children if re.fullmatch(r"y\d+", c.tag)]
                    poly = list(zip(xs, ys, strict=True))
                elif box is not None:
                    x0, y0, x1, y1 = (float(box.value(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
                    # VOC boxes are 1-based inclusive pixel indices
                    x0, y0 = x0 - 1, y0 - 1
                    poly = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
                else:
                    raise ValueError("no bndbox or polygon")
                if not all(math.isfinite(v) for p in poly for v in p) or len(poly) < 3:
                    raise ValueError("incomplete coordinates")
            except (ValueError, TypeError) as exc:
                result.skip(xml_path, obj.line, f"object without a valid box/polygon ({exc}): skipped")
                continue
            if polygon_outside(poly, w, h, tol=1.0):
                result.skip(xml_path, obj.line, "label outside the image: object skipped")
                continue
            _instance_or_outline(d, target, clip_polygon(poly, w, h), result, (xml_path, obj.line))
        result.drafts.append(d)
    return result


# --------------------------------------------------------------------------------------------------
# COCO


def _line_finder(text: str):
    """Line of the object with a given id inside a top-level array (json keeps no positions)."""
    starts = {m.group(1): m.start() for m in re.finditer(r'"(images|annotations|categories)"\s*:', text)}

    def find(section: str, obj_id) -> int | None:
        begin = starts.get(section)
        if begin is None:
            return None
        m = re.compile(rf'"id"\s*:\s*{re.escape(json.dumps(obj_id))}\s*[,}}\s]').search(text, begin)
        return text.count("\n", 0, m.start()) + 1 if m else None

    return find


def import_coco(src: Path, cmap: ClassMap, images_dir: Path | None = None) -> ImportResult:
    """COCO detection/segmentation JSON (SRC is the .json, or a folder holding one). Polygons (largest
    part of a multi-part segmentation), else the box. Images are looked up beside the JSON, or in
    `images_dir`."""
    result = ImportResult()
    if src.is_dir():
        found = sorted(src.glob("*.json")) + sorted(src.glob("annotations/*.json"))
        if not found:
            raise ValueError(f"{src}: no COCO .json file")
        src = found[0]
    text = src.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        result.skip(src, exc.lineno, f"corrupt JSON ({exc.msg}): file skipped")
        return result
    line_of = _line_finder(text)
    cats = {c["id"]: c["name"] for c in data.get("categories", [])}
    anns: dict = {}
    for a in data.get("annotations", []):
        anns.setdefault(a.get("image_id"), []).append(a)
    base = images_dir or src.parent
    for im in data.get("images", []):
        img = base / im["file_name"]
        size = image_size(img, result, (src, line_of("images", im.get("id"))))
        if size is None:
            continue
        w, h = size
        d = Draft(img, w, h, meta={"original_file": Path(im["file_name"]).name})
        for a in anns.get(im.get("id"), []):
            where = (src, line_of("annotations", a.get("id")))
            name = cats.get(a.get("category_id"))
            target = cmap.get(name) if name is not None else None
            if target is None:
                label = name if name is not None else f"category id {a.get('category_id')}"
                result.unknown_class(label, *where, f"unknown class {label!r}: annotation skipped")
                continue
            seg = a.get("segmentation")
            if isinstance(seg, list) and seg and isinstance(seg[0], list):
                part = max(seg, key=len)
                poly = list(zip(part[0::2], part[1::2], strict=False))
            elif a.get("bbox") and len(a["bbox"]) == 4:
                x, y, bw, bh = a["bbox"]
                poly = [(x, y), (x + bw, y), (x + bw, y + bh), (x, y + bh)]
            else:
                result.skip(*where, "annotation without polygon or box: skipped")
                continue
            if len(poly) < 3:
                result.skip(*where, f"polygon with {len(poly)} points: skipped")
                continue
            try:
                poly = [(float(x), float(y)) for x, y in poly]
            except (TypeError, ValueError):
                poly = [(math.nan, math.nan)]
            if not all(math.isfinite(v) for p in poly for v in p):
                result.skip(*where, "non-numeric or non-finite coordinates: annotation skipped")
                continue
            if polygon_outside(poly, w, h, tol=1.0):
                result.skip(*where, "label outside the image: annotation skipped")
                continue
            _instance_or_outline(d, target, clip_polygon(poly, w, h), result, where)
        result.drafts.append(d)
    return result


def import_dataset(
    fmt: str,
    src: Path,
    cmap: ClassMap,
    *,
    label_map: Path | None = None,
    images: Path | None = None,
    image_labels: Path | None = None,
    complete: bool = False,
    split_column: str | None = None,
    group_column: str | None = None,
    meta_columns: Sequence[str] = (),
) -> ImportResult:
    """`src` in format `fmt` (one of `FORMATS`) read into drafts, with the image-level labels of the
    `image_labels` table (files relative to SRC's folder) and, with `complete`, every photo's instance
    labels marked complete (absence means clean). `label_map`: YOLO's renamed images; `images`:
    COCO's image folder; `split_column`, `group_column`, `meta_columns`: the CSV table's columns of
    split, group and provenance (see `import_csv`)."""
    if fmt != "csv" and (split_column or group_column or meta_columns):
        raise ValueError("split, group and meta columns are options of the csv format only")
    if fmt == "imagefolder":
        result = import_imagefolder(src, cmap)
    elif fmt == "csv":
        result = import_csv(
            src, cmap, split_column=split_column, group_column=group_column, meta_columns=meta_columns
        )
    elif fmt == "yolo":
        result = import_yolo(src, cmap, label_map)
    elif fmt == "voc":
        result = import_voc(src, cmap)
    elif fmt == "coco":
        result = import_coco(src, cmap, images)
    else:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if image_labels is not None:
        apply_image_labels(result, image_labels, src if src.is_dir() else src.parent, cmap)
    if complete:
        for d in result.drafts:
            d.instances_complete = True
    return result
