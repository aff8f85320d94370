"""The console script: composes the subcommands each package registers.

Each package's `cli` module exposes `register(app)`. They keep heavy imports (torch, onnxruntime,
FastAPI) inside the command functions, so `refurbgrade --help` is fast and the `serve` install, which
has no torch, can still run every serving command.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="refurbgrade",
    help="Cosmetic grading of used devices from photos: defect model + versioned grading rules.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"refurbgrade {version('refurbgrade')}")
        except PackageNotFoundError:
            typer.echo("refurbgrade (not installed: run from a checkout without pip install)")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version"
    ),
) -> None:
    """Cosmetic grading of used devices from photos: defect model + versioned grading rules."""


# Packages whose cli module registers commands, in help order.
COMMAND_MODULES = ("model.cli", "serving.cli", "serving.cli_reviews", "serving.cli_regrade", "training.cli")


def build() -> typer.Typer:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A package whose cli module does not exist yet, or an extra that is not installed.
            if exc.name == name or exc.name in {n.split(".")[0] for n in COMMAND_MODULES}:
                continue
            raise
        module.register(app)
    return app


def main() -> None:
    build()()
