"""The console script's conveniences: --version, `devices list/search`, "did you mean" for unknown
standards and devices."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from refurbgrade.cli import build

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_version():
    r = subprocess.run(
        [sys.executable, "-m", "refurbgrade", "--version"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0 and r.stdout.startswith("refurbgrade 0.")


def test_devices_list_and_search():
    app = build()
    r = runner.invoke(app, ["devices", "list", "--kind", "tablet"], terminal_width=200)
    assert r.exit_code == 0 and "iPad" in r.stdout and "iPhone" not in r.stdout
    r = runner.invoke(app, ["devices", "search", "iphone 13 mini"], terminal_width=200)
    assert r.exit_code == 0 and "iPhone 13 mini" in r.stdout and "131.5 x 64.2 x 7.65" in r.stdout
    r = runner.invoke(app, ["devices", "search", "pixle 8"], terminal_width=200)
    assert r.exit_code == 1 and "did you mean Pixel 8" in r.output
    r = runner.invoke(app, ["devices", "list", "--kind", "toaster"])
    assert r.exit_code == 2


def test_unknown_standard_suggests_the_closest():
    r = runner.invoke(build(), ["standards", "show", "ctai"], terminal_width=200)
    assert r.exit_code == 2 and "did you mean ctia?" in r.output


def test_each_build_is_a_new_app_with_one_copy_of_each_command():
    # One shared app registered onto again by every build() gathered every command once per call,
    # and Typer converts them all on each invocation: tests got seconds slower per command.
    first, second = build(), build()
    assert first is not second
    names = [c.name or c.callback.__name__ for c in second.registered_commands]
    groups = [g.name for g in second.registered_groups]
    assert len(names) == len(set(names)) and len(groups) == len(set(groups))
    assert len(second.registered_commands) == len(first.registered_commands) > 20
    r = runner.invoke(second, ["--version"])
    assert r.exit_code == 0 and r.stdout.startswith("refurbgrade")
