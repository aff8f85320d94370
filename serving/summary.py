"""The tables `refurbgrade grade` prints on stderr at the end, offline and through a server alike: each
device's grades and why (for a batch small enough to read), then the outcomes.

The JSON lines on stdout (or `--jsonl`) are for programs; a person who grades a few photos at a terminal
reads these: per device its grade and probability per standard, which standards send it to review, and
why it is not one grade better (the first standard's reason for the grade above its own, as the answer's
`reasons` give it), or why it has no grade; and for a device sent to review, the first of the answer's
`review_reasons` (the review column alone said which standards, never why).

A device goes to review when any standard it was graded to sends it there, and the standards promise
differently: CTIA's E (damage inside the display) is never told from a photo, so every cracked phone
graded to CTIA goes to a person while Back Market's Unlistable (0.97) does not. "yes" for every row
told a refurbisher nothing; the review column and the count under the outcomes name the standards.
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
    review: tuple[str, ...]  # the standards that send it to review (none: graded without)
    why: str
    to_review: str = ""  # why it goes to review: the answer's first review reason, and how many more

    @property
    def needs_review(self) -> bool:
        return bool(self.review)

    @property
    def review_cell(self) -> str:
        """The review column: "no", "all" (every standard of the row), or the standards that send it."""
        if not self.review:
            return "no"
        every = len(self.grades) > 1 and set(self.review) == set(self.grades)
        return "all" if every else ", ".join(self.review)

    @property
    def why_cell(self) -> str:
        """The why column: why not a better grade (or no grade), then why a person should look."""
        return f"{self.why}\nreview: {self.to_review}" if self.to_review else self.why


def device_line(
    name: str,
    grades: Mapping[str, str],
    probabilities: Mapping[str, Mapping[str, float]],
    reasons: Mapping[str, Mapping[str, Sequence[str]]],
    review: Mapping[str, bool],
    advice: Mapping[str, Sequence[str]] | None = None,
    review_reasons: Sequence[str] = (),
) -> DeviceLine:
    """A device's row from its answer: `reasons` per standard, better grade -> why it was barred (in the
    standard's order, best first; "ungradable" -> why there is no grade); `review` per standard, whether
    it sends the device to review (the answer's `needs_review` of each grade). An ungradable device's why is
    the first standard's first `advice` where it has one: the photo's verdict ("photo 1: too blurry,
    retake ..."), which says more than "no usable photo". `review_reasons`: the answer's, of which the row
    keeps the first (with how many more the JSON holds) where a standard graded the device and sends it
    to review; an ungradable device's why already says what is wrong."""
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
    sent = tuple(n for n in grades if review.get(n))
    to_review = ""
    if sent and review_reasons and any(g != UNGRADABLE for g in grades.values()):
        more = len(review_reasons) - 1
        to_review = review_reasons[0] + (f" (+{more} more in the JSON)" if more else "")
    return DeviceLine(
        name,
        {n: (g, float((probabilities.get(n) or {}).get(g, 0.0))) for n, g in grades.items()},
        sent,
        why,
        to_review,
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


def tally(
    counts: Counter,
    lines: list[DeviceLine],
    line: DeviceLine,
    needs_review: bool,
    kind: str,
    kind_source: str | None,
) -> None:
    """One graded device counted, offline and through a server alike: its outcome (`outcome`, with the
    device's `needs_review`), each standard that sent a gradable one to review ("review by <name>",
    which `print_summary` reports), its kind where read from the photos (`kind_read`); and its row kept
    (`keep_line`)."""
    status = outcome({n: g for n, (g, _) in line.grades.items()}, needs_review)
    counts[status] += 1
    if status != "ungradable":
        counts.update(f"review by {n}" for n in line.review)
    if read := kind_read(kind, kind_source):
        counts[read] += 1
    keep_line(lines, line)


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
        table.add_row(d.name, *cells, d.review_cell, d.why_cell)
    console.print(table)


def print_summary(
    counts: Counter,
    *,
    skipped_what: str = "files",
    devices: Sequence[DeviceLine] = (),
    standards: Sequence[str] = (),
) -> None:
    """The table of `devices` (`print_devices`), then one table: devices graded without review, needing
    review, ungradable, and what was skipped; then, where graded to more than one of `standards`, how
    many devices each sent to review (`tally`'s counts); then how many devices were graded as another
    kind than a phone because their photos showed one (`kind_read`), so that a batch graded without
    --device-kind says it."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, width=120)
    print_devices(devices, console)
    table = Table(
        "graded", "needs review", "ungradable", f"skipped ({skipped_what})", title="refurbgrade grade"
    )
    table.add_row(*(str(counts.get(k, 0)) for k in OUTCOMES))
    console.print(table)
    graded = counts.get("graded", 0) + counts.get("needs_review", 0)
    if len(standards) > 1 and counts.get("needs_review", 0):
        each = ", ".join(f"{n} {counts.get(f'review by {n}', 0)}" for n in standards)
        console.print(f"sent to review, of {graded} graded devices, by standard: {each}")
    for key, n in sorted(counts.items()):
        if key.startswith("read as ") and n:
            kind = key.removeprefix("read as ")
            what = f"{n} devices graded as {kind}s" if n > 1 else f"1 device graded as a {kind}"
            console.print(f"{what}, read from the photos: give --device-kind to set the kind")
