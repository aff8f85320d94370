"""The console script's conveniences: --version, `devices list/search`, "did you mean" for unknown
standards and devices, help text that fills the terminal."""

from __future__ import annotations

import subprocess
import sys
from itertools import pairwise
from pathlib import Path

from typer.testing import CliRunner

from refurbgrade.cli import build, reflow

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


def test_reflow_joins_a_paragraphs_lines_and_keeps_lists():
    doc = """Summary line.

        A paragraph wrapped
        at some width.
        - a list item
        - another
          continued

        \f
        Click's help ends here.
        """
    assert reflow(doc) == (
        "Summary line.\n\nA paragraph wrapped at some width.\n- a list item\n- another continued"
    )


def _command_paths(app) -> list[list[str]]:
    paths = [[info.name or info.callback.__name__.replace("_", "-")] for info in app.registered_commands]
    for group in app.registered_groups:
        paths.append([group.name])
        paths += [
            [group.name, info.name or info.callback.__name__.replace("_", "-")]
            for info in group.typer_instance.registered_commands
        ]
    return paths


def test_every_help_fills_an_80_column_terminal():
    # A docstring wrapped at 100 columns used to print with a short line after every full one at 80
    # (Typer keeps a paragraph's line breaks): `grade --help` read "... and on stderr at the" / "end ...".
    app = build()
    paths = _command_paths(app)
    assert len(paths) > 30
    ragged = []
    for path in paths:
        r = runner.invoke(app, [*path, "--help"], terminal_width=80)
        assert r.exit_code == 0, path
        prose = [
            line.strip()
            for line in r.output.splitlines()
            if not any(c in line for c in "│╭╰") and not line.strip().startswith("Usage")
        ]
        ragged += [
            (path, a) for a, b in pairwise(prose) if a and b and len(a) < 50 and not b.startswith("- ")
        ]
    assert not ragged
    r = runner.invoke(app, ["grade", "--help"], terminal_width=80)
    assert "on stderr at the end each device's grades" in " ".join(r.output.split())
