"""`refurbgrade import FORMAT SRC --out MANIFEST`: a dataset folder or file into a manifest.

Problems are printed as `file:line: message`; the exit status is 1 when anything was skipped (unless
`--allow-skips`), 2 when the input cannot be imported at all.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from model.taxonomy import DeviceKind, View

console = Console()
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _groups_table(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return {r[0].strip(): r[1].strip() for r in rows[1:] if len(r) >= 2}


def import_command(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help="imagefolder, csv, yolo, voc or coco")],
    src: Annotated[
        Path, typer.Argument(help="dataset folder (csv: the table; coco: the .json or its folder)")
    ],
    out: Annotated[Path, typer.Option("--out", help="manifest to write (.jsonl)")],
    class_map: Annotated[Path | None, typer.Option(help="YAML: dataset class name -> our taxonomy")] = None,
    source: Annotated[
        str | None, typer.Option(help="source name in the records (default: SRC's name)")
    ] = None,
    license: Annotated[
        str | None, typer.Option(help="license of the photos (default: from the export)")
    ] = None,
    view: Annotated[View | None, typer.Option(help="view of every photo, where the set has one")] = None,
    device_kind: Annotated[DeviceKind | None, typer.Option(help="device kind of every photo")] = None,
    group_by: Annotated[
        str, typer.Option(help="roboflow, runs:N or file (see training.data.splits)")
    ] = "roboflow",
    groups: Annotated[Path | None, typer.Option(help="CSV file,group overriding --group-by")] = None,
    split: Annotated[str, typer.Option(help="keep (the source's splits, regrouped) or regroup")] = "keep",
    val: Annotated[float, typer.Option(min=0, max=1, help="share of groups for val (regroup)")] = 0.15,
    test: Annotated[float, typer.Option(min=0, max=1, help="share of groups for test (regroup)")] = 0.15,
    split_seed: Annotated[int, typer.Option(help="seed of the group -> split hash")] = 0,
    image_labels: Annotated[
        Path | None, typer.Option(help="CSV file,class of image-level labels (files relative to SRC)")
    ] = None,
    label_map: Annotated[
        Path | None, typer.Option(help="YOLO: CSV image,label_file for renamed images")
    ] = None,
    images: Annotated[Path | None, typer.Option(help="COCO: folder of the images")] = None,
    complete: Annotated[
        bool, typer.Option(help="every defect in the set is labelled (absence means clean)")
    ] = False,
    allow_skips: Annotated[bool, typer.Option(help="exit 0 even when labels or images were skipped")] = False,
) -> None:
    """Import a dataset (ImageFolder, CSV table, YOLO, Pascal VOC, COCO) into a manifest."""
    from training.data import importers
    from training.data.importing import ClassMapError, RecordOptions, load_class_map, write

    if fmt not in importers.FORMATS:
        err.print(f"error: unknown format {fmt!r}; use one of {', '.join(importers.FORMATS)}")
        raise typer.Exit(2)
    if split not in ("keep", "regroup"):
        err.print("error: --split must be keep or regroup")
        raise typer.Exit(2)
    if not src.exists():
        err.print(f"error: {src} does not exist")
        raise typer.Exit(2)
    try:
        cmap = load_class_map(class_map)
        if fmt == "imagefolder":
            result = importers.import_imagefolder(src, cmap)
        elif fmt == "csv":
            result = importers.import_csv(src, cmap)
        elif fmt == "yolo":
            result = importers.import_yolo(src, cmap, label_map)
        elif fmt == "voc":
            result = importers.import_voc(src, cmap)
        else:
            result = importers.import_coco(src, cmap, images)
        base = src if src.is_dir() else src.parent
        if image_labels is not None:
            importers.apply_image_labels(result, image_labels, base, cmap)
        if complete:
            for d in result.drafts:
                d.instances_complete = True
        opts = RecordOptions(
            source=source or (src.name if src.is_dir() else src.parent.name),
            license=license,
            view=view,
            device_kind=device_kind,
            group_by=group_by,
            groups_table=_groups_table(groups) if groups else None,
            split_mode=split,
            val=val,
            test=test,
            seed=split_seed,
        )
        write(result, out, opts)
    except (ClassMapError, ValueError, OSError) as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from exc
    for note in result.notes:
        err.print(f"note: {note}")
    for issue in result.issues:
        err.print(str(issue))
    counts = {s: sum(r.split == s for r in result.records) for s in ("train", "val", "test")}
    n_groups = len({r.device_id for r in result.records})
    console.print(
        f"{len(result.records)} photos in {n_groups} groups ({counts['train']} train, {counts['val']} val, "
        f"{counts['test']} test), {sum(len(r.instances) for r in result.records)} instances -> {out}"
    )
    if result.issues:
        err.print(f"{len(result.issues)} problem(s): the labels or images named above were skipped")
        if not allow_skips:
            raise typer.Exit(1)
