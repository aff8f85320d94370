"""The commands that make manifests: `refurbgrade synth` (synthetic photos, or a gallery of them),
`refurbgrade import` (a real dataset in a common format), `refurbgrade degrade` (faulty copies of
real photos), `refurbgrade reformat` (real photos again in the other format), `refurbgrade jitter`
(real photos again as another camera, light and upload would give them, `training.synth.jitter`),
`refurbgrade synth-fine` (the fine pass's native-scale patches, `training.synth.fine_patches`) and the
fine network's patches cut from whole photos (`fine-negatives`, `fine-positives`,
`fine-crack-negatives`, `training.synth.fine_photo_patches`).

The generator and the importers are imported inside the commands, so `refurbgrade --help` stays fast
and torch is never imported here. `import` prints problems as `file:line: message`; its exit status is
1 when anything was skipped (unless `--allow-skips`), 2 when the input cannot be imported at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from model.taxonomy import DeviceKind, View

console = Console()
err = Console(stderr=True)
# Import's problem lines stay whole and uncoloured, so `file:line` can be found with grep.
problems = Console(stderr=True, highlight=False, soft_wrap=True)


def synth(
    out: Annotated[
        Path | None, typer.Option("--out", help="output folder (photos, masks, manifest.jsonl)")
    ] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="number of photos")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="same seed, same files")] = 0,
    size: Annotated[
        int, typer.Option("--size", min=64, max=4096, help="longer side of each photo, px")
    ] = 512,
    workers: Annotated[int, typer.Option("--workers", min=1, help="parallel processes")] = 1,
    grade_mix: Annotated[
        str,
        typer.Option(
            "--grade-mix", help="target grades, e.g. 'Premium=1,Excellent=1,Good=1,Fair=1,Unlistable=1'"
        ),
    ] = "",
    standard: Annotated[
        str, typer.Option("--standard", help="standard whose grades --grade-mix names")
    ] = "backmarket",
    quality_mix: Annotated[
        str,
        typer.Option("--quality-mix", help="e.g. 'usable=0.85,blurry=0.05,bad_exposure=0.05,no_device=0.05'"),
    ] = "",
    p_real_background: Annotated[float, typer.Option(help="share of real background photos")] = 0.3,
    p_composite: Annotated[
        float, typer.Option(help="share of photos made by compositing defects onto real device photos")
    ] = 0.1,
    composite_splits: Annotated[
        str,
        typer.Option(
            "--composite-splits",
            help="splits of the real photos that composites may use, e.g. 'train' for a training set",
        ),
    ] = "train,val,test",
    crack_style: Annotated[
        str,
        typer.Option(
            "--crack-style",
            help="glass cracks: classic (default, what the bundled models saw), realistic "
            "(spider webs, corner splinters, display damage) or mixed",
        ),
    ] = "classic",
    wallpapers: Annotated[
        str,
        typer.Option(
            "--wallpapers",
            help="what a lit screen shows: gradient (default, what the bundled models saw) or busy "
            "(real photos and particle splashes: display-on hard negatives)",
        ),
    ] = "gradient",
    measure_shown: Annotated[
        bool,
        typer.Option(
            "--measure-shown",
            help="also record how much each photo shows each defect (its photo_step, grey levels: the "
            "photo against the device photographed without defects); the photos are unchanged",
        ),
    ] = False,
    gallery: Annotated[
        Path | None,
        typer.Option(
            "--gallery", help="draw a contact sheet of N samples to this image (.png or .jpg) instead"
        ),
    ] = None,
) -> None:
    """Generate synthetic device photos with exact defect masks, mm sizes, zones and grades."""
    from training.synth.generator import config_from_options, generate

    try:
        cfg = config_from_options(
            grade_mix,
            quality_mix,
            seed=seed,
            size=size,
            target_standard=standard,
            p_real_background=p_real_background,
            p_composite=p_composite,
            composite_splits=tuple(x.strip() for x in composite_splits.split(",") if x.strip()),
            crack_style=crack_style,
            wallpapers=wallpapers,
            measure_shown=measure_shown,
        )
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    if gallery is not None:
        from training.synth.gallery import draw_gallery

        console.print(f"gallery of {min(n, 64)} samples: {draw_gallery(cfg, min(n, 64), gallery)}")
        return
    if out is None:
        err.print("[red]error:[/] --out is required (or --gallery PNG)")
        raise typer.Exit(2)
    console.print(f"{n} photos, manifest: {generate(cfg, n, out, workers=workers)}")


def _refuse(message: str) -> NoReturn:
    problems.print(f"error: {message}")
    raise typer.Exit(2)


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
    split_column: Annotated[
        str | None, typer.Option(help="csv: column of each photo's split (train/val/test; with --split keep)")
    ] = None,
    group_column: Annotated[
        str | None, typer.Option(help="csv: column of each photo's group (overrides --group-by)")
    ] = None,
    meta_columns: Annotated[
        str, typer.Option(help="csv: comma-separated columns copied into each record's meta")
    ] = "",
    allow_skips: Annotated[bool, typer.Option(help="exit 0 even when labels or images were skipped")] = False,
) -> None:
    """Import a dataset (ImageFolder, CSV table, YOLO, Pascal VOC, COCO) into a manifest."""
    from training.data import importers, importing

    if fmt not in importers.FORMATS:
        _refuse(f"unknown format {fmt!r}; use one of {', '.join(importers.FORMATS)}")
    if split not in ("keep", "regroup"):
        _refuse("--split must be keep or regroup")
    if not src.exists():
        _refuse(f"{src} does not exist")
    try:
        cmap = importing.load_class_map(class_map)
        result = importers.import_dataset(
            fmt,
            src,
            cmap,
            label_map=label_map,
            images=images,
            image_labels=image_labels,
            complete=complete,
            split_column=split_column,
            group_column=group_column,
            meta_columns=[c.strip() for c in meta_columns.split(",") if c.strip()],
        )
        opts = importing.RecordOptions(
            source=source or (src.name if src.is_dir() else src.parent.name),
            license=license,
            view=view,
            device_kind=device_kind,
            group_by=group_by,
            groups_table=importing.read_groups_table(groups) if groups else None,
            split_mode=split,
            val=val,
            test=test,
            seed=split_seed,
        )
        importing.write(result, out, opts)
    except (importing.ClassMapError, ValueError, OSError) as exc:
        problems.print(f"error: {exc}")
        raise typer.Exit(2) from exc
    for line in [*(f"note: {note}" for note in result.notes), *map(str, result.issues)]:
        problems.print(line)
    console.print(f"{importing.summary(result)} -> {out}")
    if result.issues:
        problems.print(f"{len(result.issues)} problem(s): the labels or images named above were skipped")
        if hint := importing.unknown_classes_hint(result, cmap):
            problems.print(hint)
        if not allow_skips:
            raise typer.Exit(1)


def _real_copy_items(manifests: list[str], splits: tuple[str, ...]):
    """The real photos `degrade`, `reformat` and `jitter` copy (`splits` where a manifest names none);
    a missing or malformed manifest, or any test photo, refused."""
    from training.dataset import load_manifest_args

    try:
        items = load_manifest_args(manifests, splits)
    except (FileNotFoundError, ValueError) as exc:
        _refuse(str(exc))
    if any(it.record.split == "test" for it in items):
        _refuse("test photos are for the final report only: name train or val splits")
    return items


def degrade(
    manifests: Annotated[
        list[str], typer.Argument(metavar="MANIFEST[@SPLITS]", help="real photos (default splits: train,val)")
    ],
    out: Annotated[Path, typer.Option("--out", help="output folder (photos, manifest.jsonl)")],
    seed: Annotated[int, typer.Option("--seed", help="same seed, same files")] = 0,
) -> None:
    """One unusable copy of each real photo (too dark, blown out or blurred, by the generator's camera
    model), for the photo-quality probe: real-looking must not mean usable."""
    from training.synth.degrade import degrade_items

    items = _real_copy_items(manifests, ("train", "val"))
    console.print(f"{len(items)} faulty copies, manifest: {degrade_items(items, out, seed)}")


def reformat(
    manifests: Annotated[
        list[str], typer.Argument(metavar="MANIFEST[@SPLITS]", help="real photos (default split: train)")
    ],
    out: Annotated[Path, typer.Option("--out", help="output folder (photos, manifest.jsonl)")],
) -> None:
    """A copy of each real photo labelled at image level in the other format (black bars cut off, or
    shrunk to 244 px and black-barred), labels kept: fitted on both, the format says nothing."""
    from training.synth.reformat import reformat_items

    items = _real_copy_items(manifests, ("train",))
    path, counts = reformat_items(items, out)
    made = ", ".join(f"{v} {k}" for k, v in counts.items())
    console.print(f"{len(items)} photos: {made}; manifest: {path}")


def jitter(
    manifests: Annotated[
        list[str], typer.Argument(metavar="MANIFEST[@SPLITS]", help="real photos (default split: train)")
    ],
    out: Annotated[Path, typer.Option("--out", help="output folder (photos, manifest.jsonl)")],
    seed: Annotated[int, typer.Option("--seed", help="same seed, same files")] = 0,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="mixed: all four changes drawn; quarter-turn, darker (1 EV), tilted or soft: that change alone; "
            "other-quarter-turn: each photo turned the other way from quarter-turn's copy (same seed)",
        ),
    ] = "mixed",
) -> None:
    """A usable copy of each real photo labelled at image level, turned, re-exposed, shrunk and
    recompressed (`training.synth.jitter`), labels kept: fitted on both, how a source was photographed
    says nothing about the damage."""
    from training.synth.jitter import MODES, jitter_items

    if mode not in MODES:
        raise typer.BadParameter(f"{mode!r}: one of {', '.join(MODES)}", param_hint="--mode")
    items = _real_copy_items(manifests, ("train",))
    path, copies = jitter_items(items, out, seed, mode)
    console.print(f"{len(items)} photos: {copies} jittered copies; manifest: {path}")


def synth_fine(
    out: Annotated[
        Path | None, typer.Option("--out", help="output folder (images, targets, manifest.jsonl)")
    ] = None,
    n: Annotated[int, typer.Option("--n", help="number of patches")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="same seed, same files")] = 0,
    size: Annotated[int, typer.Option("--size", help="side of each square patch, px")] = 256,
    workers: Annotated[int, typer.Option("--workers", min=1, help="parallel processes")] = 1,
    gallery: Annotated[
        Path | None, typer.Option("--gallery", help="also draw a grid of 12 patches to this .jpg")
    ] = None,
) -> None:
    """Native-scale patches (0.03-0.12 mm/px) for the fine net: analytic sub-pixel scratches of known
    width and contrast, their centreline, width and contrast targets, and a manifest of their truth."""
    from training.synth.fine_patches import draw_fine_gallery, write_fine_patches

    if n <= 0:
        _refuse(f"--n must be at least 1, got {n}")
    if out is None and gallery is None:
        _refuse("--out is required (or --gallery JPG)")
    if out is not None and out.exists() and not out.is_dir():
        _refuse(f"--out {out} is a file, not a folder")
    try:
        if gallery is not None:
            console.print(f"gallery: {draw_fine_gallery(gallery, 12, seed, size)}")
        if out is not None:
            console.print(f"{n} patches, manifest: {write_fine_patches(out, n, seed, size, workers)}")
    except ValueError as exc:
        _refuse(str(exc))


# The options the commands that cut fine patches from whole photos share.
_PhotoManifests = Annotated[list[Path], typer.Option("--manifest", "-m", help="photo manifest; repeatable")]
_PatchOut = Annotated[Path, typer.Option("--out", help="output folder (images, targets, manifest.jsonl)")]
_PatchSeed = Annotated[int, typer.Option("--seed")]
_PatchSplit = Annotated[str, typer.Option("--split", help="the manifests' split to cut from")]


def _cut_patches(write, manifests: list[Path], out: Path, per: int, seed: int, split: str, what: str) -> None:
    """`fine-negatives`, `fine-positives`, `fine-crack-negatives`: check the arguments, cut the patches,
    say how many."""
    for m in manifests:
        if not m.is_file():
            _refuse(f"{m}: no such manifest")
    if out.exists() and not out.is_dir():
        _refuse(f"--out {out} is a file, not a folder")
    try:
        path = write(manifests, out, per, seed, split=split)
    except (FileNotFoundError, ValueError) as exc:
        _refuse(str(exc))
    n = sum(1 for line in path.read_text().splitlines() if line.strip())
    console.print(f"{n} {what}, manifest: {path}")


def fine_negatives(
    manifest: _PhotoManifests,
    out: _PatchOut,
    per_photo: Annotated[int, typer.Option("--per-photo", min=1, help="patches a photo gives")] = 20,
    seed: _PatchSeed = 0,
    split: _PatchSplit = "train",
) -> None:
    """Negative patches for the fine net (no scratch in them) cut from whole photos: device outlines,
    camera rings, screen borders of high-resolution synthetic photos, and real screens without a
    scratch or crack (training.synth.fine_photo_patches)."""
    from training.synth.fine_photo_patches import write_fine_negatives

    _cut_patches(write_fine_negatives, manifest, out, per_photo, seed, split, "negative patches")


def fine_positives(
    manifest: _PhotoManifests,
    out: _PatchOut,
    per_scratch: Annotated[int, typer.Option("--per-scratch", min=1, help="patches a scratch gives")] = 3,
    seed: _PatchSeed = 0,
    split: _PatchSplit = "train",
) -> None:
    """Patches on the true scratches of high-resolution synthetic device photos, with centreline and
    width targets (training.synth.fine_photo_patches)."""
    from training.synth.fine_photo_patches import write_fine_positives

    _cut_patches(write_fine_positives, manifest, out, per_scratch, seed, split, "scratch patches")


def fine_crack_negatives(
    manifest: _PhotoManifests,
    out: _PatchOut,
    per_crack: Annotated[int, typer.Option("--per-crack", min=1, help="patches a crack gives")] = 6,
    seed: _PatchSeed = 0,
    split: _PatchSplit = "train",
) -> None:
    """Negative patches on the true cracks of high-resolution synthetic device photos (a crack's
    branches are lines, not scratches: all-zero targets; training.synth.fine_photo_patches)."""
    from training.synth.fine_photo_patches import write_fine_crack_negatives

    _cut_patches(write_fine_crack_negatives, manifest, out, per_crack, seed, split, "crack patches")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
    app.command("import")(import_command)
    app.command("degrade")(degrade)
    app.command("reformat")(reformat)
    app.command("jitter")(jitter)
    app.command("synth-fine")(synth_fine)
    app.command("fine-negatives")(fine_negatives)
    app.command("fine-positives")(fine_positives)
    app.command("fine-crack-negatives")(fine_crack_negatives)
