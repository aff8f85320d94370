"""The tables `refurbgrade grade` prints on stderr at the end, offline and through a server alike: each
device's grades and why (for a batch small enough to read), then the outcomes.

The JSON lines on stdout (or `--jsonl`) are for programs; a person who grades a few photos at a terminal
reads these: per device its grade and probability per standard, whether it goes to review, and why it
is not one grade better (the first standard's reason for the grade above its own, as the answer's
`reasons` give it), or why it has no grade.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

OUTCOMES = ("graded", "needs_review", "ungradable", "skipped")
# More devices than this: the table of devices is left out (the JSON lines have them), and a line says so.
MAX_DEVICE_ROWS = 30
UNGRADABLE = "ungradable"


@dataclass(frozen=True)
class DeviceLine:
    """One device's row in the table of devices."""

    name: str
    grades: dict[str, tuple[str, float]]  # per standard: its grade and that grade's probability
    needs_review: bool
    why: str


def device_line(
    name: str,
    grades: Mapping[str, str],
    probabilities: Mapping[str, Mapping[str, float]],
    reasons: Mapping[str, Mapping[str, Sequence[str]]],
    needs_review: bool,
    advice: Mapping[str, Sequence[str]] | None = None,
) -> DeviceLine:
    """A device's row from its answer: `reasons` per standard, better grade -> why it was barred (in the
    standard's order, best first; "ungradable" -> why there is no grade). An ungradable device's why is
    the first standard's first `advice` where it has one: the photo's verdict ("photo 1: too blurry,
    retake ..."), which says more than "no usable photo"."""
    first = next(iter(grades), None)
    why = ""
    if first is not None:
        barred = dict(reasons.get(first) or {})
        if grades[first] == UNGRADABLE:
            told = list((advice or {}).get(first) or ()) + list(barred.get(UNGRADABLE) or ())
            why = told[0] if told else "no usable photo of the device"
        elif barred:
            why = next(iter(list(barred.values())[-1]), "")  # the grade just above this one's first reason
        else:
            why = "nothing counted against the top grade"
    return DeviceLine(
        name,
        {n: (g, float((probabilities.get(n) or {}).get(g, 0.0))) for n, g in grades.items()},
        needs_review,
        why,
    )


def outcome(grades: dict[str, str], needs_review: bool) -> str:
    """graded, needs_review or ungradable (no standard could grade the device)."""
    if grades and all(g == "ungradable" for g in grades.values()):
        return "ungradable"
    return "needs_review" if needs_review else "graded"


def kind_read(kind: str, source: str | None) -> str | None:
    """The count key of a device whose kind was read from its photos as other than the default phone."""
    return f"read as {kind}" if source == "photos" and kind != "phone" else None


def keep_line(devices: list[DeviceLine], line: DeviceLine) -> None:
    """`line` added to `devices` while the table can still show them all: a batch of a million devices
    keeps `MAX_DEVICE_ROWS` + 1 (enough to know the table is left out), not a million."""
    if len(devices) <= MAX_DEVICE_ROWS:
        devices.append(line)


def print_devices(devices: Sequence[DeviceLine], console) -> None:
    """The table of devices (`device_line`), or for more than `MAX_DEVICE_ROWS` a line saying where
    they are."""
    from rich.table import Table

    if not devices:
        return
    if len(devices) > MAX_DEVICE_ROWS:
        console.print(f"over {MAX_DEVICE_ROWS} devices: each one's grades and reasons are in the JSON lines")
        return
    standards = list(devices[0].grades)
    table = Table("device", *standards, "review", "why", title="devices")
    for d in devices:
        cells = [
            f"{g} ({p:.2f})" if g != UNGRADABLE else g
            for g, p in (d.grades.get(n, ("-", 0.0)) for n in standards)
        ]
        table.add_row(d.name, *cells, "yes" if d.needs_review else "no", d.why)
    console.print(table)


def print_summary(
    counts: Counter, *, skipped_what: str = "files", devices: Sequence[DeviceLine] = ()
) -> None:
    """The table of `devices` (`print_devices`), then one table: devices graded without review, needing
    review, ungradable, and what was skipped; then how many devices were graded as another kind than a
    phone because their photos showed one (`kind_read`), so that a batch graded without --device-kind
    says it."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, width=120)
    print_devices(devices, console)
    table = Table(
        "graded", "needs review", "ungradable", f"skipped ({skipped_what})", title="refurbgrade grade"
    )
    table.add_row(*(str(counts.get(k, 0)) for k in OUTCOMES))
    console.print(table)
    for key, n in sorted(counts.items()):
        if key.startswith("read as ") and n:
            kind = key.removeprefix("read as ")
            what = f"{n} devices graded as {kind}s" if n > 1 else f"1 device graded as a {kind}"
            console.print(f"{what}, read from the photos: give --device-kind to set the kind")
