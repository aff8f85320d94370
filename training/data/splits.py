"""Grouping photos by source photo or device, and assigning train/val/test splits by group.

Augmented or transformed copies of one photo, and photos of one physical device, must never straddle
splits. A group key is derived from the file name:

- `roboflow` (default): Roboflow exports name copies `<source>_<ext>.rf.<hash>.jpg`; the key is
  `<source>` with the extension suffix (`_jpg`, `-_jpeg`, ...) and transformed-copy markers (`_t_0`)
  removed, so `IMG_2695_t_0_jpg.rf.x.jpg` and `IMG_2695_jpeg.rf.y.jpg` share the key `IMG_2695`.
- `runs:N`: the roboflow key, then names that differ only in a trailing number chain into one group
  when consecutive numbers are at most N apart (camera numbering: IMG_4890..IMG_4896 is one laptop;
  MSD's runs of consecutive IDs).
- `file`: every file its own group (only for sets known to hold no copies).
An explicit table (file -> group, e.g. handsets identified by eye) overrides all of these.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import PurePath

SPLITS = ("train", "val", "test")
_EXT_SUFFIX = re.compile(r"[-_.]+(jpe?g|png|bmp|webp|heic|tiff?)$", re.IGNORECASE)
_COPY_MARK = re.compile(r"_t_\d+$")
_TRAILING_NUMBER = re.compile(r"^(.*?)(\d+)$")
# Roboflow split folder names -> ours
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "valid": "val",
    "val": "val",
    "validation": "val",
    "test": "test",
}


def roboflow_key(filename: str) -> str:
    """The source photo a Roboflow export file came from (see the module docstring)."""
    stem = PurePath(filename).name
    stem = stem.split(".rf.")[0] if ".rf." in stem else PurePath(stem).stem
    prev = None
    while prev != stem:  # suffixes stack: 'x_t_0_jpg' -> 'x_t_0' -> 'x'
        prev = stem
        stem = _EXT_SUFFIX.sub("", stem)
        stem = _COPY_MARK.sub("", stem)
    return stem.rstrip("-_ ") or stem


def run_groups(keys: Iterable[str], gap: int) -> dict[str, str]:
    """Chain keys PREFIX+number whose numbers are at most `gap` apart; each key -> its run's first key."""
    by_prefix: dict[str, list[tuple[int, str]]] = defaultdict(list)
    out: dict[str, str] = {}
    for k in set(keys):
        m = _TRAILING_NUMBER.match(k)
        if m:
            by_prefix[m.group(1)].append((int(m.group(2)), k))
        else:
            out[k] = k
    for items in by_prefix.values():
        items.sort()
        head, last = items[0][1], items[0][0]
        for num, k in items:
            if num - last > gap:
                head = k
            out[k] = head
            last = num
    return out


def group_keys(files: list[str], mode: str = "roboflow", table: Mapping[str, str] | None = None) -> list[str]:
    """Group key of each file (same order). `table` maps a file name or path to a group explicitly."""
    if mode == "file":
        keys = [str(PurePath(f).name) for f in files]
    elif mode == "roboflow":
        keys = [roboflow_key(f) for f in files]
    elif mode.startswith("runs:"):
        try:
            gap = int(mode.split(":", 1)[1])
        except ValueError as exc:
            raise ValueError(f"group mode {mode!r}: expected runs:N with an integer N") from exc
        base = [roboflow_key(f) for f in files]
        runs = run_groups(base, gap)
        keys = [runs[b] for b in base]
    else:
        raise ValueError(f"unknown group mode {mode!r}; use roboflow, runs:N or file")
    if table:
        keys = [table.get(f, table.get(PurePath(f).name, k)) for f, k in zip(files, keys, strict=True)]
    return keys


def _unit(seed: int, group: str) -> float:
    h = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def assign_splits(
    groups: list[str],
    preferred: list[str | None] | None = None,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
) -> list[str]:
    """A split per item such that all items of a group share it.

    With `preferred` (the split the source shipped), a group keeps the split most of its items had
    (ties go to train, so a leaked copy moves out of val/test rather than into it). Groups without a
    preference are dealt out in a seeded order to whichever split is furthest below its share.
    """
    chosen: dict[str, str] = {}
    if preferred is not None:
        votes: dict[str, Counter] = defaultdict(Counter)
        for g, p in zip(groups, preferred, strict=True):
            if p is not None:
                votes[g][p] += 1
        for g, c in votes.items():
            top = max(c.values())
            chosen[g] = next(s for s in SPLITS if c.get(s, 0) == top)
    # The rest: groups in a seeded hash order, each to the split furthest below its share of photos.
    # Sets with few, unequal groups (MSD: a handful of handsets) still get every split near its share.
    size = Counter(groups)
    free = sorted((g for g in size if g not in chosen), key=lambda g: _unit(seed, g))
    want = {"train": 1.0 - val - test, "val": val, "test": test}
    have = Counter({s: 0 for s in SPLITS})
    for g, s in chosen.items():
        have[s] += size[g]
    total = len(groups)
    for g in free:
        s = max(SPLITS, key=lambda s: want[s] * total - have[s])
        chosen[g] = s
        have[s] += size[g]
    return [chosen[g] for g in groups]


def straddling(groups: Iterable[str], splits: Iterable[str]) -> dict[str, set[str]]:
    """Groups found in more than one split (should be empty)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for g, s in zip(groups, splits, strict=True):
        seen[g].add(s)
    return {g: s for g, s in seen.items() if len(s) > 1}
