"""The table `refurbgrade grade` prints on stderr at the end, offline and through a server alike."""

from __future__ import annotations

from collections import Counter

OUTCOMES = ("graded", "needs_review", "ungradable", "skipped")


def outcome(grades: dict[str, str], needs_review: bool) -> str:
    """graded, needs_review or ungradable (no standard could grade the device)."""
    if grades and all(g == "ungradable" for g in grades.values()):
        return "ungradable"
    return "needs_review" if needs_review else "graded"


def kind_read(kind: str, source: str | None) -> str | None:
    """The count key of a device whose kind was read from its photos as other than the default phone."""
    return f"read as {kind}" if source == "photos" and kind != "phone" else None


def print_summary(counts: Counter, *, skipped_what: str = "files") -> None:
    """One table: devices graded without review, needing review, ungradable, and what was skipped; then
    how many devices were graded as another kind than a phone because their photos showed one
    (`kind_read`), so that a batch graded without --device-kind says it."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "graded", "needs review", "ungradable", f"skipped ({skipped_what})", title="refurbgrade grade"
    )
    table.add_row(*(str(counts.get(k, 0)) for k in OUTCOMES))
    console = Console(stderr=True, width=100)
    console.print(table)
    for key, n in sorted(counts.items()):
        if key.startswith("read as ") and n:
            kind = key.removeprefix("read as ")
            what = f"{n} devices graded as {kind}s" if n > 1 else f"1 device graded as a {kind}"
            console.print(f"{what}, read from the photos: give --device-kind to set the kind")
