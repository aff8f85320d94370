"""The console script: composes the subcommands each package registers.

Each package's `cli` module exposes `register(app)`. They keep heavy imports (torch, onnxruntime,
FastAPI) inside the command functions, so `refurbgrade --help` is fast and the `serve` install, which
has no torch, can still run every serving command.
"""

from __future__ import annotations

import importlib
import inspect

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


def reflow(doc: str) -> str:
    """A docstring with each paragraph on one line, for Typer to wrap to the terminal.

    Typer 0.29's help keeps the line breaks of every paragraph after the first, so a docstring wrapped
    at this code's 100 columns printed ragged in an 80-column terminal (a short line after every full
    one). A line starting "- " stays a line of its own (a list), and a paragraph starting with Click's
    no-rewrap mark (a backspace) stays as written; what follows a form feed (Click's "help ends
    here") is left out, as Typer would.
    """
    paragraphs = inspect.cleandoc(doc).partition("\f")[0].strip().split("\n\n")
    out = []
    for paragraph in paragraphs:
        if paragraph.startswith("\b"):
            out.append(paragraph)
            continue
        lines: list[str] = []
        for line in paragraph.splitlines():
            text = line.strip()
            if lines and not text.startswith("- "):
                lines[-1] = f"{lines[-1]} {text}"
            else:
                lines.append(text)
        out.append("\n".join(lines))
    return "\n\n".join(out)


def _reflow_helps(app: typer.Typer) -> None:
    """Every command's help (from its docstring, where it gives none) through `reflow`, subcommands too;
    the same on each call, so the packages' module-level sub-apps can go through it again."""
    for info in app.registered_commands:
        doc = info.help or (inspect.getdoc(info.callback) if info.callback else None)
        if doc:
            info.help = reflow(doc)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            _reflow_helps(group.typer_instance)


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
    _reflow_helps(app)
    return app


def main() -> None:
    build()()
