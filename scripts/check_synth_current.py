"""Refuse synthetic sets drawn by an older generator: `make model` and `make fine-model` reuse whatever
`datasets/generated/` holds (each set is made only when its manifest is missing), so a set drawn before a
generator change would otherwise train and calibrate the next model silently.

    python scripts/check_synth_current.py datasets/generated

Every `manifest.jsonl` under the folder (two levels down) whose first record carries the generator's
version (`meta.generator`, `training.synth.generator.GENERATOR_VERSION`) must carry the current one.
Sets not drawn by the generator (real photos degraded or reformatted, cut patches) carry none and pass.
Exit 2 with the stale folders named, and what to do; 0 otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.synth.generator import GENERATOR_VERSION


def stale_sets(root: Path) -> list[tuple[Path, str]]:
    """(folder, its generator version) for each set under `root` drawn by another generator version."""
    out = []
    for manifest in sorted([*root.glob("*/manifest.jsonl"), *root.glob("*/*/manifest.jsonl")]):
        with manifest.open(encoding="utf-8") as f:
            first = f.readline()
        try:
            version = (json.loads(first).get("meta") or {}).get("generator")
        except (json.JSONDecodeError, AttributeError):
            continue  # not a manifest this check understands: the set's own reader will say so
        if version is not None and str(version) != GENERATOR_VERSION:
            out.append((manifest.parent, str(version)))
    return out


def main(argv: list[str]) -> int:
    roots = [Path(a) for a in argv] or [Path("datasets/generated")]
    stale = [s for root in roots if root.is_dir() for s in stale_sets(root)]
    for folder, version in stale:
        print(
            f"{folder}: drawn by generator {version}, this is generator {GENERATOR_VERSION}", file=sys.stderr
        )
    if stale:
        print(
            "delete these sets (and the sets cut from them, e.g. datasets/generated/fine) and run again: "
            "a model must not train or calibrate on another generator's photos",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
