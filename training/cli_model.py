"""`refurbgrade train | calibrate | evaluate | export | quantize`: the model commands. Torch-free at
import (each command imports what it needs), so `refurbgrade --help` stays fast and serving installs can
list commands."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated

import typer


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def sample_photos(manifests: list[str], splits: tuple[str, ...], n: int, size: int, seed: int = 0):
    """Up to n photos per manifest, letterboxed to the model size, N x 3 x S x S uint8."""
    import numpy as np

    from model.manifest import resolve
    from model.preprocess import prepare, to_nchw
    from training.dataset import load_items

    out = []
    for m in manifests:
        items = load_items(m, splits)
        rng = np.random.default_rng(seed)
        for i in rng.permutation(len(items))[:n]:
            it = items[int(i)]
            out.append(prepare(resolve(it.manifest, it.record.image), size)[0])
    return to_nchw(out) if out else np.zeros((0, 3, size, size), np.uint8)


def skimage_photos(size: int):
    """Real photographs that ship with scikit-image (a dev dependency): parity on natural images."""
    try:
        from skimage import data
    except ImportError:
        return []
    from model.preprocess import letterbox

    return [letterbox(img, size)[0] for img in (data.chelsea(), data.coffee(), data.astronaut())]


def verification_photos(manifests: list[str], size: int):
    """The parity photos: 6 per manifest (every split) plus scikit-image's real photographs."""
    import numpy as np

    from model.preprocess import to_nchw

    photos = sample_photos(manifests, ("train", "val", "test"), 6, size)
    real = skimage_photos(size)
    return np.concatenate([photos, to_nchw(real)]) if real else photos


def write_int8(fp32: Path, out: Path, train_manifests: list[str], verify_images) -> None:
    """Static INT8 of `fp32`, calibrated on 64 training photos per training manifest; verified vs FP32."""
    from model.export import ExportVerificationError, quantize_int8, read_card, summary

    calib = sample_photos(train_manifests, ("train",), 64, read_card(fp32).input_size, seed=1)
    try:
        rep = quantize_int8(fp32, out, calib, verify_images)
    except ExportVerificationError as exc:
        typer.echo(f"{out}: {exc} (the file is kept as {out.with_suffix('.failed.onnx')})", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); INT8 vs FP32:")
    typer.echo(summary(rep))


def load_cli_config(config: Path, overrides: list[str] | None = None):
    """A training config with its paths made absolute; a bad file is a message and exit status 2."""
    from training.config import ConfigError, load_config, resolve_paths

    try:
        return resolve_paths(load_config(config, overrides or []), config.parent)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        config: Annotated[
            Path, typer.Option("--config", "-c", exists=True, dir_okay=False, help="YAML config")
        ],
        overrides: Annotated[
            list[str] | None, typer.Option("--set", help="override, e.g. optim.lr=3e-4")
        ] = None,
    ) -> None:
        """Train the defect network (single process, or under torchrun for DDP)."""
        from training.train import run_training

        best = run_training(load_cli_config(config, overrides))
        typer.echo(f"best checkpoint: {best}")

    @app.command("calibrate")
    def calibrate_cmd(
        model: Annotated[
            Path, typer.Argument(exists=True, dir_okay=False, help="checkpoint (.pt) or exported .onnx")
        ],
        manifest: Annotated[
            list[str] | None,
            typer.Option(
                "--manifest", "-m", help="PATH@splits; default: the run's (or --config's) val sources"
            ),
        ] = None,
        config: Annotated[
            Path | None,
            typer.Option(
                "--config", "-c", exists=True, dir_okay=False, help="training config: its val sources"
            ),
        ] = None,
        crop_to_device: Annotated[
            bool | None,
            typer.Option(
                "--crop-to-device/--no-crop-to-device",
                help="calibrate with the device-crop second pass (default: as the run / card says)",
            ),
        ] = None,
    ) -> None:
        """(Re)calibrate thresholds on validation data. A checkpoint keeps them inside; an .onnx file gets
        them in its card (and so does its .int8.onnx sibling, which shares the FP32 thresholds)."""
        import json

        from training.calibrate import calibrate
        from training.dataset import load_items

        onnx_file = model.suffix == ".onnx"
        if onnx_file:
            from model.export import read_card, update_card
            from training.predict import load_predictor

            card = read_card(model)
            if card.quantized:
                typer.echo(f"{model}: calibrate the FP32 file; its INT8 sibling follows", err=True)
                raise typer.Exit(2)
            target, crop_default, val_sources = load_predictor(model), card.crop_to_device, None
        else:
            from training.checkpoint import attach_calibration, load_checkpoint
            from training.config import TrainConfig

            target, ckpt = load_checkpoint(model)
            run_cfg = TrainConfig.model_validate(ckpt["config"])
            crop_default, val_sources = run_cfg.crop_to_device, run_cfg.data.val
        if config is not None:
            val_sources = load_cli_config(config).data.val
        items = []
        if manifest:
            for m in manifest:
                path, _, splits = m.partition("@")
                if not Path(path).is_file():
                    typer.echo(f"no such manifest: {path}", err=True)
                    raise typer.Exit(2)
                items += load_items(path, tuple(splits.split(",")) if splits else ("val",))
        elif val_sources:
            items = [it for s in val_sources for it in load_items(s.manifest, s.splits, s.limit)]
        if not items:
            typer.echo("no validation photos: give --manifest or --config", err=True)
            raise typer.Exit(2)
        crop = crop_default if crop_to_device is None else crop_to_device
        cal = calibrate(target, items, crop_to_device=crop)
        if onnx_file:
            changes = {"thresholds": cal["thresholds"], "crop_to_device": crop}
            update_card(model, **changes)
            sibling = model.with_suffix(".int8.onnx")
            if sibling.is_file():
                update_card(sibling, **changes)
                typer.echo(f"card updated in {model} and {sibling}")
            else:
                typer.echo(f"card updated in {model}")
            model.with_suffix(".calibration.json").write_text(json.dumps(cal, indent=2))
        else:
            attach_calibration(model, cal)
            model.with_name("calibration.json").write_text(json.dumps(cal, indent=2))
        typer.echo(json.dumps(cal["thresholds"], indent=2))

    @app.command("evaluate")
    def evaluate_cmd(
        model: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="checkpoint (.pt) or .onnx")],
        manifest: Annotated[
            list[str], typer.Option("--manifest", "-m", help="repeatable; PATH@train,val picks its splits")
        ],
        report: Annotated[Path, typer.Option("--report", help="folder for report.md, plots, metrics.json")],
        split: Annotated[
            list[str] | None, typer.Option("--split", help="splits to use (default: test)")
        ] = None,
        compare: Annotated[
            Path | None, typer.Option("--compare", help="a second model, e.g. the INT8 file")
        ] = None,
        limit: Annotated[int | None, typer.Option(help="at most this many photos")] = None,
        card_metrics: Annotated[
            bool, typer.Option("--card-metrics", help="write the headline (test_*) into the ONNX file's card")
        ] = False,
    ) -> None:
        """Evaluate on a manifest through serving's post-processing and the rules engine; write a report."""
        from training.evaluate import headline, run_evaluation

        for m in manifest:
            if not Path(m.partition("@")[0]).is_file():
                typer.echo(f"no such manifest: {m}", err=True)
                raise typer.Exit(2)
        metrics = run_evaluation(model, manifest, report, tuple(split or ["test"]), compare, limit)
        for k, v in headline(metrics).items():
            typer.echo(f"{k}: {v:.4f}")
        if card_metrics:
            if model.suffix != ".onnx":
                typer.echo("--card-metrics needs an .onnx model", err=True)
                raise typer.Exit(2)
            from model.export import update_card

            update_card(model, metrics={f"test_{k}": float(v) for k, v in headline(metrics).items()})
            typer.echo(f"card metrics updated in {model}")
        typer.echo(f"report: {report / 'report.md'}")

    @app.command("export")
    def export_cmd(
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
        import json

        from model.card import ModelCard, Thresholds
        from model.export import export_onnx, summary
        from training.checkpoint import load_checkpoint
        from training.config import TrainConfig
        from training.evaluate import headline
        from training.predict import default_thresholds

        net, ckpt = load_checkpoint(checkpoint)
        cfg = TrainConfig.model_validate(ckpt["config"])
        cal = ckpt.get("calibration")
        if cal is None:
            typer.echo("warning: checkpoint has no calibration; using 0.5 thresholds", err=True)
        thresholds = Thresholds.model_validate(cal["thresholds"]) if cal else default_thresholds()
        # The card runs the model the way its thresholds were calibrated.
        crop = bool(cal.get("crop_to_device", cfg.crop_to_device)) if cal else cfg.crop_to_device
        card_metrics = {
            k: float(v) for k, v in ckpt["history"][-1].items() if k.startswith("val_") and v == v
        }
        if metrics is not None:
            card_metrics |= {
                f"test_{k}": float(v)
                for k, v in headline(json.loads(metrics.read_text())).items()
                if v is not None and v == v  # undefined metrics stay out of the card
            }
        card = ModelCard(
            name=name,
            version=version,
            architecture=f"{ckpt['model_name']} {json.dumps(ckpt['model_overrides'], sort_keys=True)}",
            input_size=net.input_size,
            mask_stride=net.mask_stride,
            crop_to_device=crop,
            thresholds=thresholds,
            metrics=card_metrics,
            training_data_hash=ckpt.get("training_data_hash", "unknown"),
            git_commit=git_commit(),
            notes="thresholds calibrated on validation data; metrics: val_* from training, test_* from evaluate",
        )
        size = net.input_size
        manifests = (
            [str(m) for m in verify_manifest] if verify_manifest else [s.manifest for s in cfg.data.val]
        )
        images = verification_photos(manifests, size)
        if len(images) == 0:
            typer.echo("no photos to verify the export on (give --verify-manifest)", err=True)
            raise typer.Exit(2)
        rep = export_onnx(net, out, card, images)
        typer.echo(
            f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); ORT vs PyTorch on {len(images)} photos:"
        )
        typer.echo(summary(rep))
        if int8:
            write_int8(out, out.with_suffix(".int8.onnx"), [s.manifest for s in cfg.data.train], images)

    @app.command("quantize")
    def quantize_cmd(
        model: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the FP32 .onnx file")],
        config: Annotated[
            Path,
            typer.Option(
                "--config", "-c", exists=True, dir_okay=False, help="training config: its train/val sources"
            ),
        ],
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="default: MODEL with .int8.onnx")
        ] = None,
    ) -> None:
        """(Re)quantize an exported FP32 model to INT8 without its checkpoint: calibrated on the config's
        training photos, verified against the FP32 file on its validation photos (as `export --int8`)."""
        from model.export import read_card

        cfg = load_cli_config(config)
        card = read_card(model)
        if card.quantized:
            typer.echo(f"{model}: already quantized; give the FP32 file", err=True)
            raise typer.Exit(2)
        images = verification_photos([s.manifest for s in cfg.data.val], card.input_size)
        if len(images) == 0:
            typer.echo(f"{config}: its validation sources hold no photos to verify on", err=True)
            raise typer.Exit(2)
        write_int8(
            model, out or model.with_suffix(".int8.onnx"), [s.manifest for s in cfg.data.train], images
        )
