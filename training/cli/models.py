"""The commands over model files: `refurbgrade train | calibrate | evaluate | export | quantize`, and
`refurbgrade train-fine` (the fine pass's network on the fine stream's patches, `training.fine_train`),
`refurbgrade export-fine` (that network as the fine file serving runs, `training.fine_package`),
`refurbgrade fine-cut` (its heat cut chosen on whole validation photos, `training.fine_cut`),
`refurbgrade rebuild-checkpoint` (an exported file's network as a checkpoint to fine-tune, `training.from_onnx`).

Each maps its options onto plain functions (`training.train.run_training`,
`training.calibrate.calibrate_model_file`, `training.evaluate.run_evaluation`, `training.packaging`)
and turns their errors into a message and an exit status: 2 for bad input, 1 for an export that fails
its verification. Torch-free at import (each command imports what it needs), so `refurbgrade --help`
stays fast and serving installs can list commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer


def _refuse(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(2)


def load_cli_config(config: Path, overrides: list[str] | None = None):
    """A training config with its paths made absolute; a bad file is a message and exit status 2."""
    from training.config import ConfigError, load_config, resolve_paths

    try:
        return resolve_paths(load_config(config, overrides or []), config.parent)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc


def write_int8(fp32: Path, out: Path, train_manifests: list[str], verify_images) -> None:
    """`training.packaging.quantize_onnx`, said on the console; a failed verification is exit status 1."""
    from model.export import ExportVerificationError, summary
    from training.packaging import quantize_onnx

    try:
        rep = quantize_onnx(fp32, out, train_manifests, verify_images)
    except ExportVerificationError as exc:
        typer.echo(f"{out}: {exc} (the file is kept as {out.with_suffix('.failed.onnx')})", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); INT8 vs FP32:")
    typer.echo(summary(rep))


def train(
    config: Annotated[Path, typer.Option("--config", "-c", exists=True, dir_okay=False, help="YAML config")],
    overrides: Annotated[list[str] | None, typer.Option("--set", help="override, e.g. optim.lr=3e-4")] = None,
) -> None:
    """Train the defect network (single process, or under torchrun for DDP)."""
    from training.train import run_training

    best = run_training(load_cli_config(config, overrides))
    typer.echo(f"best checkpoint: {best}")


def calibrate(
    model: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="checkpoint (.pt) or exported .onnx")
    ],
    manifest: Annotated[
        list[str] | None,
        typer.Option("--manifest", "-m", help="PATH@splits; default: the run's (or --config's) val sources"),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", exists=True, dir_okay=False, help="training config: its val sources"),
    ] = None,
    crop_to_device: Annotated[
        bool | None,
        typer.Option(
            "--crop-to-device/--no-crop-to-device",
            help="calibrate with the device-crop second pass (default: as the run / card says)",
        ),
    ] = None,
    crop_upright: Annotated[
        bool | None,
        typer.Option(
            "--crop-upright/--no-crop-upright",
            help="the crop pass turns a device lying wide long side up (default: as the run / card says)",
        ),
    ] = None,
    damage: Annotated[
        list[str] | None,
        typer.Option(
            "--damage",
            help="PATH@splits with cracked/not truth to fit the zone-damage models on (default: the "
            "run's or --config's data.damage; none: no zone-damage models)",
        ),
    ] = None,
    alone: Annotated[
        bool,
        typer.Option(
            "--alone",
            help="an INT8 file: calibrate it on its own outputs, for its own card (its FP32 file is "
            "untouched; by default INT8 shares the FP32 file's thresholds)",
        ),
    ] = False,
    probes: Annotated[
        list[str] | None,
        typer.Option(
            "--probes",
            help="PATH@splits with known views or photo quality to fit the photo probes on (default: "
            "the run's or --config's data.probes; none: the network's own view and quality heads)",
        ),
    ] = None,
    fine_val: Annotated[
        list[str] | None,
        typer.Option(
            "--fine-val",
            help="PATH@splits of high-resolution validation devices for the grading of the devices the "
            "fine pass reads, and nothing else (default: the run's or --config's data.fine_val)",
        ),
    ] = None,
    fine_grading_only: Annotated[
        bool,
        typer.Option(
            "--fine-grading-only",
            help="an exported .onnx file: fit only the grading of the devices the fine pass reads, "
            "every other threshold in its card as it is",
        ),
    ] = False,
    gradings_only: Annotated[
        bool,
        typer.Option(
            "--gradings-only",
            help="an exported .onnx file: fit only the grade calibrations and review thresholds (the "
            "fine pass's grading too), every cut, confidence and zone model in its card as it is",
        ),
    ] = False,
) -> None:
    """(Re)calibrate thresholds on validation data. A checkpoint keeps them inside; an .onnx file gets
    them in its card (and so does its .int8.onnx sibling, which shares the FP32 thresholds)."""
    from training.calibrate import (
        QuantizedModelError,
        calibrate_gradings,
        calibrate_model_file,
        calibration_json,
        fine_grading_summary,
        open_model_file,
        summary,
    )
    from training.dataset import damage_fit_items, load_manifest_args, load_sources

    try:
        target = open_model_file(model, alone)
        run_data = load_cli_config(config).data if config is not None else None
        sources = run_data.val if run_data else target.val_sources
        items = load_manifest_args(manifest, ("val",)) if manifest else load_sources(sources)
        damage_sources = run_data.damage if run_data else target.damage_sources
        holdout = run_data.damage_holdout if run_data else target.damage_holdout
        damage_items = (
            load_manifest_args(damage, ("train",))
            if damage
            else damage_fit_items(load_sources(damage_sources), holdout)
        )
        probe_sources = run_data.probes if run_data else target.probe_sources
        probe_items = load_manifest_args(probes, ("train",)) if probes else load_sources(probe_sources)
        fine_sources = run_data.fine_val if run_data else target.fine_sources
        fine_items = load_manifest_args(fine_val, ("val",)) if fine_val else load_sources(fine_sources)
    except (QuantizedModelError, FileNotFoundError) as exc:
        _refuse(str(exc))
    if not items:
        _refuse("no validation photos: give --manifest or --config")
    if fine_grading_only and gradings_only:
        _refuse("give --fine-grading-only or --gradings-only, not both")
    if fine_grading_only or gradings_only:
        flag = "--fine-grading-only" if fine_grading_only else "--gradings-only"
        if model.suffix != ".onnx":
            _refuse(f"{model}: {flag} is for an exported .onnx file, calibrated (its card's cuts stay)")
        try:
            cal, cards = calibrate_gradings(model, items, fine_items, fine_only=fine_grading_only)
        except ValueError as exc:
            _refuse(str(exc))
        typer.echo(f"card updated in {' and '.join(map(str, cards))}")
        for line in fine_grading_summary(cal) if fine_grading_only else summary(cal):
            typer.echo(line)
        return
    cal, cards = calibrate_model_file(
        target, items, crop_to_device, damage_items, probe_items, fine_items, crop_upright
    )
    if cards:
        typer.echo(f"card updated in {' and '.join(map(str, cards))}")
    for line in summary(cal):
        typer.echo(line)
    typer.echo(f"all thresholds and the figures behind them: {calibration_json(model)}")


def evaluate(
    model: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="checkpoint (.pt) or .onnx")],
    manifest: Annotated[
        list[str], typer.Option("--manifest", "-m", help="repeatable; PATH@train,val picks its splits")
    ],
    report: Annotated[Path, typer.Option("--report", help="folder for report.md, plots, metrics.json")],
    split: Annotated[list[str] | None, typer.Option("--split", help="splits to use (default: test)")] = None,
    compare: Annotated[
        Path | None, typer.Option("--compare", help="a second model, e.g. the INT8 file")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="at most this many photos")] = None,
    card_metrics: Annotated[
        bool, typer.Option("--card-metrics", help="write the headline (test_*) into the ONNX file's card")
    ] = False,
) -> None:
    """Evaluate on a manifest through serving's post-processing and the rules engine; write a report."""
    from training.dataset import parse_manifest_arg
    from training.evaluate import run_evaluation
    from training.packaging import card_test_metrics
    from training.report import headline

    try:
        splits = tuple(split or ["test"])
        for m in manifest:  # every file checked before the model runs
            parse_manifest_arg(m, splits)
    except FileNotFoundError as exc:
        _refuse(str(exc))
    metrics = run_evaluation(model, manifest, report, splits, compare, limit)
    for k, v in headline(metrics).items():
        typer.echo(f"{k}: {v:.4f}")
    if card_metrics:
        if model.suffix != ".onnx":
            _refuse("--card-metrics needs an .onnx model")
        from model.export import update_card

        update_card(model, metrics=card_test_metrics(metrics))
        typer.echo(f"card metrics updated in {model}")
    typer.echo(f"report: {report / 'report.md'}")


def export(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="the .onnx file to write")],
    int8: Annotated[
        bool, typer.Option("--int8", help="also write OUT with .int8.onnx, statically quantized")
    ] = False,
    verify_manifest: Annotated[
        list[Path] | None,
        typer.Option("--verify-manifest", help="photos for the parity check (default: val)"),
    ] = None,
    metrics: Annotated[
        Path | None, typer.Option(help="evaluate's metrics.json: headline goes into the card")
    ] = None,
    version: Annotated[str, typer.Option(help="model version in the card")] = "0.1.0",
    name: Annotated[str, typer.Option(help="model name in the card")] = "refurbgrade-defects",
) -> None:
    """Export to ONNX with the model card inside; verify (checker + ORT vs PyTorch); optionally INT8."""
    from model.export import summary
    from training.checkpoint import load_checkpoint
    from training.config import TrainConfig
    from training.packaging import NoPhotosError, card_for_checkpoint, export_verified

    net, ckpt = load_checkpoint(checkpoint)
    if ckpt.get("calibration") is None:
        typer.echo("warning: checkpoint has no calibration; using 0.5 thresholds", err=True)
    card = card_for_checkpoint(ckpt, net, version, name, metrics)
    run = TrainConfig.model_validate(ckpt["config"])
    verify = [str(m) for m in verify_manifest] if verify_manifest else [s.manifest for s in run.data.val]
    try:
        rep, images = export_verified(net, out, card, verify)
    except NoPhotosError as exc:
        _refuse(str(exc))
    typer.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); ORT vs PyTorch on {len(images)} photos:")
    typer.echo(summary(rep))
    if int8:
        write_int8(out, out.with_suffix(".int8.onnx"), [s.manifest for s in run.data.train], images)


def quantize(
    model: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the FP32 .onnx file")],
    config: Annotated[
        Path,
        typer.Option(
            "--config", "-c", exists=True, dir_okay=False, help="training config: its train/val sources"
        ),
    ],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="default: MODEL with .int8.onnx")] = None,
) -> None:
    """(Re)quantize an exported FP32 model to INT8 without its checkpoint: calibrated on the config's
    training photos, verified against the FP32 file on its validation photos (as `export --int8`)."""
    from model.export import read_card
    from training.packaging import verification_photos

    cfg = load_cli_config(config)
    card = read_card(model)
    if card.quantized:
        _refuse(f"{model}: already quantized; give the FP32 file")
    images = verification_photos([s.manifest for s in cfg.data.val], card.input_size)
    if len(images) == 0:
        _refuse(f"{config}: its validation sources hold no photos to verify on")
    write_int8(model, out or model.with_suffix(".int8.onnx"), [s.manifest for s in cfg.data.train], images)


def train_fine(
    train: Annotated[
        list[Path],
        typer.Option("--train", help="fine-patch folder (synth-fine or fine-negatives --out); repeatable"),
    ],
    val: Annotated[list[Path], typer.Option("--val", help="fine-patch folder for validation; repeatable")],
    out: Annotated[Path, typer.Option("--out", help="run folder: last.pt, best.pt, history.json")],
    minutes: Annotated[float, typer.Option("--minutes", help="wall-clock budget")] = 20.0,
    batch: Annotated[int, typer.Option("--batch", min=1)] = 16,
    resume: Annotated[bool, typer.Option("--resume", help="continue from OUT/last.pt")] = False,
    init: Annotated[
        Path | None,
        typer.Option(
            "--init",
            help="start from this checkpoint's weights, or an exported NAME.fine.onnx's rebuilt (fresh schedule)",
        ),
    ] = None,
    lr: Annotated[float, typer.Option("--lr", help="peak learning rate")] = 2e-3,
    head: Annotated[
        str, typer.Option("--head", help="full or light: what runs at full resolution (model.fine_network)")
    ] = "full",
) -> None:
    """Train the fine network (centreline, width, contrast) on the fine stream's patches."""
    from model.fine_network import HEADS
    from training.fine_train import FineTrainConfig, manifest_path, run_fine_training

    if init is not None and not init.is_file():
        _refuse(f"--init {init}: no such checkpoint")
    if head not in HEADS:
        _refuse(f"--head {head}: not one of {', '.join(HEADS)}")
    try:
        for folder in (*train, *val):
            manifest_path(folder)
        best = run_fine_training(
            FineTrainConfig(
                [str(t) for t in train],
                [str(v) for v in val],
                str(out),
                minutes,
                batch,
                lr=lr,
                resume=resume,
                init=str(init) if init else None,
                head=head,
            )
        )
    except (FileNotFoundError, ValueError) as exc:
        _refuse(str(exc))
    typer.echo(f"best checkpoint: {best}")


def export_fine(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="train-fine checkpoint (best.pt)")],
    val: Annotated[
        list[Path], typer.Option("--val", help="fine-patch folder the heat cut is chosen on; repeatable")
    ],
    out: Annotated[Path, typer.Option("--out", help="the fine file: NAME.fine.onnx beside NAME.onnx")],
    version: Annotated[str, typer.Option("--version", help="the fine card's version")] = "0.1.0",
    max_tiles: Annotated[int, typer.Option("--max-tiles", min=1, help="tiles a photo may get")] = 8,
    heat_low: Annotated[
        float | None,
        typer.Option("--heat-low", min=0.0, max=1.0, help="hysteresis: lines grow from the cut over this"),
    ] = None,
    fill_critical: Annotated[
        bool,
        typer.Option(
            "--fill-critical/--no-fill-critical",
            help="spend the tiles nothing proposed on the screen and camera (off: measured no better)",
        ),
    ] = False,
) -> None:
    """Export a fine network with its card (heat cut chosen on validation patches), verified."""
    from model.export import ExportVerificationError
    from training.fine_package import package_fine

    if not checkpoint.is_file():
        _refuse(f"{checkpoint}: no such checkpoint")
    if not out.name.endswith(".fine.onnx"):
        _refuse(f"{out}: a fine file is named NAME.fine.onnx (serving finds it beside NAME.onnx)")
    try:
        card = package_fine(
            checkpoint,
            [str(v) for v in val],
            out,
            version,
            max_tiles,
            heat_low=heat_low,
            fill_critical=fill_critical,
        )
    except (FileNotFoundError, ValueError) as exc:
        _refuse(str(exc))
    except ExportVerificationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{out}: heat cut {card.heat_cut}; {card.notes}")


def fine_cut(
    model: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="the .onnx with NAME.fine.onnx beside it")
    ],
    manifest: Annotated[
        list[str],
        typer.Option("--manifest", "-m", help="validation photos; repeatable; PATH@val picks splits"),
    ],
    split: Annotated[list[str] | None, typer.Option("--split", help="splits to use (default: val)")] = None,
    cuts: Annotated[str, typer.Option("--cuts", help="heat cuts to try, comma-separated")] = "",
    lows: Annotated[str, typer.Option("--lows", help="hysteresis lows to try ('none': without)")] = "",
    frame_zs: Annotated[
        str, typer.Option("--frame-zs", help="frame reader z cuts to try, comma-separated ('none': off)")
    ] = "",
    write: Annotated[bool, typer.Option("--write", help="put the best pair into the fine card")] = False,
) -> None:
    """Choose the fine file's heat cut on whole validation photos (scratch F1 through the one path), and
    with --frame-zs the frame reader's z (Back Market accuracy, at no loss of F1)."""
    from model.export import update_fine_card
    from model.fine_pass import fine_sibling
    from training.dataset import parse_manifest_arg
    from training.fine_cut import CUTS, LOWS, choose, choose_frame, cut_table, format_table

    try:
        splits = tuple(split or ["val"])
        for m in manifest:
            parse_manifest_arg(m, splits)
        cut_list = [float(c) for c in cuts.split(",")] if cuts else list(CUTS)
        low_list = (
            [None if v.strip() == "none" else float(v) for v in lows.split(",")] if lows else list(LOWS)
        )
        if any(not 0 < c < 1 for c in cut_list) or any(v is not None and not 0 < v < 1 for v in low_list):
            raise ValueError("cuts and lows lie strictly between 0 and 1")
        z_list = (
            [None] + [float(z) for z in frame_zs.split(",") if z.strip() != "none"] if frame_zs else [None]
        )
        if any(z is not None and z <= 0 for z in z_list):
            raise ValueError("frame z cuts are positive")
        rows = cut_table(model, manifest, cut_list, low_list, splits, z_list)
    except (FileNotFoundError, ValueError) as exc:
        _refuse(str(exc))
    typer.echo(format_table(rows))
    best = choose(rows)
    typer.echo(f"best scratch F1: cut {best['heat_cut']}, low {best['heat_low']}")
    frame_z = choose_frame(rows, best) if len(z_list) > 1 else None
    if len(z_list) > 1:
        typer.echo(f"frame reader: {'off' if frame_z is None else f'z {frame_z}'}")
    if write:
        path = fine_sibling(model)
        changes = {}
        if len(z_list) > 1:  # the z chosen, and the low its lines were grown from
            low = next((r["frame_z_low"] for r in rows if r.get("frame_z") == frame_z), None)
            changes = {"frame_z": frame_z, "frame_z_low": low}
        card = update_fine_card(
            path,
            heat_cut=best["heat_cut"],
            heat_low=best["heat_low"],
            metrics={k: v for k, v in best.items() if k.startswith("scratch_") and isinstance(v, float)},
            notes=f"heat cut chosen on whole photos ({', '.join(manifest)}) by scratch F1",
            **changes,
        )
        typer.echo(f"{path}: heat cut {card.heat_cut}, low {card.heat_low}, frame z {card.frame_z}")


def rebuild_checkpoint(
    model: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="an exported FP32 .onnx file")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the checkpoint to write (.pt)")],
    config: Annotated[
        Path,
        typer.Option("--config", "-c", exists=True, dir_okay=False, help="training config: its train photos"),
    ],
    photos: Annotated[int, typer.Option("--photos", min=1, help="photos per train source")] = 16,
) -> None:
    """An exported model's network as a training checkpoint (`init_weights` starts a run from it): its
    folded BatchNorms unfolded with statistics measured on the config's train photos, checked against
    ONNX Runtime."""
    from training.from_onnx import RebuildError, card_of, checkpoint_from_onnx
    from training.packaging import sample_photos

    cfg = load_cli_config(config)
    try:
        card = card_of(model)
        images = sample_photos(
            [s.manifest for s in cfg.data.train if Path(s.manifest).is_file()],
            ("train",),
            photos,
            card.input_size,
        )
        if len(images) == 0:
            _refuse(f"{config}: its train sources hold no photos")
        rep = checkpoint_from_onnx(model, out, images, card)
    except RebuildError as exc:
        _refuse(str(exc))
    typer.echo(
        f"wrote {out}: max |diff| against ONNX Runtime on {rep['photos']} photos "
        f"{rep['max_diff_identity']:.1e} (BatchNorm identity), {rep['max_diff_statistics']:.1e} (statistics restored)"
    )


def register(app: typer.Typer) -> None:
    for name, command in (
        ("train", train),
        ("train-fine", train_fine),
        ("calibrate", calibrate),
        ("evaluate", evaluate),
        ("export", export),
        ("quantize", quantize),
        ("export-fine", export_fine),
        ("fine-cut", fine_cut),
        ("rebuild-checkpoint", rebuild_checkpoint),
    ):
        app.command(name)(command)
