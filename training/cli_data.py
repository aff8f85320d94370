"""Data commands of the CLI: `refurbgrade synth` (synthetic photos) and `refurbgrade import` (real datasets).

Heavy modules (the generator, the importers) are imported inside the commands, so `refurbgrade --help`
stays fast and torch is never imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
err = Console(stderr=True)


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
    gallery: Annotated[
        Path | None,
        typer.Option(
            "--gallery", help="draw a contact sheet of N samples to this image (.png or .jpg) instead"
        ),
    ] = None,
) -> None:
    """Generate synthetic device photos with exact defect masks, mm sizes, zones and grades."""
    from training.synth.generator import SynthConfig, generate, parse_mix

    try:
        kwargs: dict = {
            "seed": seed,
            "size": size,
            "target_standard": standard,
            "p_real_background": p_real_background,
            "p_composite": p_composite,
        }
        if grade_mix:
            kwargs["grade_mix"] = parse_mix(grade_mix)
        if quality_mix:
            kwargs["quality_mix"] = parse_mix(quality_mix)
        cfg = SynthConfig(**kwargs)
        cfg.grades_and_weights()  # unknown grade names fail here, before any work
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    if gallery is not None:
        from training.synth.gallery import draw_gallery

        path = draw_gallery(cfg, min(n, 64), gallery)
        console.print(f"gallery of {min(n, 64)} samples: {path}")
        return
    if out is None:
        err.print("[red]error:[/] --out is required (or --gallery PNG)")
        raise typer.Exit(2)
    manifest = generate(cfg, n, out, workers=workers)
    console.print(f"{n} photos, manifest: {manifest}")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
    try:
        from training.data.cli import import_command
    except ModuleNotFoundError as exc:  # importers not written yet
        if exc.name != "training.data.cli":
            raise
    else:
        app.command("import")(import_command)
