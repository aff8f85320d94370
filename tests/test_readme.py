"""The README and docs/ stay honest where that is cheap to check: the README is short and stays inside the
repository, every relative link (and its #anchor) leads somewhere, and every `refurbgrade <command>` they
show is a command the console script has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from refurbgrade.cli import build

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
# `refurbgrade CMD [SUB]` as a command line: after the start, a space, a slash (.venv/bin/refurbgrade) or `-m `.
COMMAND = re.compile(r"(?:^|(?<=[\s/]))refurbgrade[ \t]+([a-z][\w-]*)(?:[ \t]+([a-z][\w-]*))?")


def _without_code(text: str) -> str:
    text = FENCE.sub("", text)
    return "\n".join(line for line in text.splitlines() if not line.startswith("    "))


def _code(text: str) -> list[str]:
    """Code the page shows: fenced blocks, indented blocks and inline spans."""
    blocks = FENCE.findall(text)
    indented = [line for line in FENCE.sub("", text).splitlines() if line.startswith("    ")]
    return blocks + indented + INLINE_CODE.findall(FENCE.sub("", text))


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_anchor(m) for m in re.findall(r"^#{1,6}\s+(.+)$", FENCE.sub("", page.read_text()), re.M)}


def test_readme_is_short_and_stays_inside_the_repository():
    text = README.read_text()
    assert len(text.splitlines()) < 160, "the README is a front page; details go to docs/"
    for page in PAGES:
        assert "../shared" not in page.read_text(), f"{page.name} points outside the repository"
    assert "DESIGN.md" not in text


def test_readme_shows_the_set_up_commands_and_a_grading():
    text = README.read_text()
    head = "\n".join(text.splitlines()[:60])  # the first screen
    for needed in ("make run", "make test", "refurbgrade keys create", "curl ", "/v1/gradings", "report.md"):
        assert needed in head, needed


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_somewhere(page):
    broken = []
    for target in LINK.findall(_without_code(page.read_text())):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif not dest.resolve().is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, broken


def _commands() -> dict[str, set[str] | None]:
    """Top-level command -> its subcommands (None for a plain command)."""
    group = typer.main.get_command(build())
    return {
        name: (set(cmd.commands) if hasattr(cmd, "commands") else None)
        for name, cmd in group.commands.items()
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cli_commands_named_exist(page):
    commands = _commands()
    unknown = []
    for code in _code(page.read_text()):
        for cmd, sub in COMMAND.findall(code):
            if cmd not in commands:
                unknown.append(f"refurbgrade {cmd}")
            elif commands[cmd] is not None and sub and sub not in commands[cmd]:
                unknown.append(f"refurbgrade {cmd} {sub}")
    assert not unknown, f"{page.name} names commands that do not exist: {unknown}"


def test_the_command_pattern_sees_what_a_page_shows():
    shown = _code(
        "    .venv/bin/refurbgrade keys create --role auditor\n`python -m refurbgrade train`, `refurbgrade.cli`"
    )
    found = [m for c in shown for m in COMMAND.findall(c)]
    assert ("keys", "create") in found and ("train", "") in found and len(found) == 2
