"""The console script: composes the subcommands each package registers.

Each package's `cli` module exposes `register(app)`. They keep heavy imports (torch, onnxruntime,
FastAPI) inside the command functions, so `refurbgrade --help` is fast and the `serve` install, which
has no torch, can still run every serving command.
"""

from __future__ import annotations

import importlib

import typer


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"refurbgrade {version('refurbgrade')}")
        except PackageNotFoundError:
            typer.echo("refurbgrade (not installed: run from a checkout without pip install)")
        raise typer.Exit()


def _options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version"
    ),
) -> None:
    """Cosmetic grading of used devices from photos: defect model + versioned grading rules."""


# Packages whose cli module registers commands, in help order.
COMMAND_MODULES = ("model.cli", "serving.cli", "serving.cli_reviews", "serving.cli_regrade", "training.cli")


def build() -> typer.Typer:
    """A new app with every package's commands.

    New on each call: registering onto one module-level app made every call add the whole command
    set again, and Typer converts every registered command on each invocation, so a process that
    built the app many times (the test suite: about 60 times) spent seconds per command on it.
    """
    app = typer.Typer(
        name="refurbgrade",
        help="Cosmetic grading of used devices from photos: defect model + versioned grading rules.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    app.callback()(_options)
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
