"""The training side's commands, registered on the `refurbgrade` app in help order.

`training.cli.data`: the commands that make manifests (synth, import). `training.cli.models`: the
commands over model files (train, calibrate, evaluate, export, quantize). Each command is a thin layer
over plain functions and imports them (and torch) inside its body, so `refurbgrade --help` stays fast
and a serving install without torch can still list every command.
"""

from __future__ import annotations

import typer

from training.cli import data, models


def register(app: typer.Typer) -> None:
    data.register(app)
    models.register(app)
