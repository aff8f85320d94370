"""The default config's generated sets are the ones `make model` makes: a set named in
training/configs/default.yaml that no Makefile line generates would fail the next recalibration
on a fresh machine (`[Errno 2] No such file`), or be fitted from a stale copy left on one."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _generated_manifests(node) -> set[str]:
    """Every datasets/generated/... manifest a config (or part of one) names, as its folder path."""
    if isinstance(node, dict):
        found = set()
        for key, value in node.items():
            if key == "manifest" and isinstance(value, str) and "datasets/generated/" in value:
                found.add(value.split("datasets/generated/", 1)[1].rsplit("/manifest.jsonl", 1)[0])
            else:
                found |= _generated_manifests(value)
        return found
    if isinstance(node, list):
        return set().union(*(_generated_manifests(v) for v in node))
    return set()


def test_every_generated_set_the_default_config_names_is_made_by_make_model():
    config = yaml.safe_load((ROOT / "training/configs/default.yaml").read_text())
    sets = _generated_manifests(config)
    assert {"synth_train", "synth_damage", "real_turned", "real_turned_other", "fine/devices_val"} <= sets
    makefile = (ROOT / "Makefile").read_text()
    # A set is made where a line tests for its manifest and, failing that, writes it (--out).
    made = {m.group(1) for m in re.finditer(r"--out \$\(SYNTH\)/([\w/]+)", makefile)}
    made |= {f"fine/{m.group(1)}" for m in re.finditer(r"--out \$\(FINE\)/(\w+)", makefile)}
    assert sets - made == set(), f"named in default.yaml, made by no Makefile line: {sorted(sets - made)}"
