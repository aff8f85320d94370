"""Registers the training-side CLI commands. Kept torch-free at import: each command imports what it needs.

Data commands (synth, import) live in `training.cli_data`; model commands (train, evaluate, export) in
`training.cli_model`.
"""

from __future__ import annotations

import importlib

import typer


def register(app: typer.Typer) -> None:
    for name in ("training.cli_data", "training.cli_model"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # not written yet
                continue
            raise
        module.register(app)
