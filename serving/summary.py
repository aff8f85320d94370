"""The table `refurbgrade grade` prints on stderr at the end, offline and through a server alike."""

from __future__ import annotations

from collections import Counter

OUTCOMES = ("graded", "needs_review", "ungradable", "skipped")


def outcome(grades: dict[str, str], needs_review: bool) -> str:
    """graded, needs_review or ungradable (no standard could grade the device)."""
    if grades and all(g == "ungradable" for g in grades.values()):
        return "ungradable"
    return "needs_review" if needs_review else "graded"


def print_summary(counts: Counter, *, skipped_what: str = "files") -> None:
    """One table: devices graded without review, needing review, ungradable, and what was skipped."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "graded", "needs review", "ungradable", f"skipped ({skipped_what})", title="refurbgrade grade"
    )
    table.add_row(*(str(counts.get(k, 0)) for k in OUTCOMES))
    Console(stderr=True, width=100).print(table)
