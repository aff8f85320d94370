"""`scripts/check_synth_current.py`: `make model` refuses synthetic sets an older generator drew."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from training.synth.generator import GENERATOR_VERSION

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location(
        "check_synth_current", ROOT / "scripts/check_synth_current.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _set(folder: Path, meta: dict | None) -> None:
    folder.mkdir(parents=True)
    record = {
        "image": "images/000000.jpg",
        "source": "synthetic",
        **({"meta": meta} if meta is not None else {}),
    }
    (folder / "manifest.jsonl").write_text(json.dumps(record) + "\n")


def test_sets_of_another_generator_are_refused_by_name(tmp_path, capsys):
    check = _script()
    _set(tmp_path / "synth_val", {"generator": GENERATOR_VERSION, "seed": 202})
    _set(tmp_path / "real_degraded", {"fault": "blurry"})  # not drawn by the generator: passes
    _set(tmp_path / "fine" / "patches_train", None)
    assert check.main([str(tmp_path)]) == 0

    _set(tmp_path / "synth_test", {"generator": "1", "seed": 303})
    _set(tmp_path / "fine" / "devices_val", {"generator": "1", "seed": 708})
    assert check.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"synth_test: drawn by generator 1, this is generator {GENERATOR_VERSION}" in err
    assert "devices_val: drawn by generator 1" in err and "synth_val" not in err
    assert "delete these sets" in err


def test_a_missing_folder_or_an_unreadable_manifest_is_not_a_stale_set(tmp_path):
    check = _script()
    assert check.main([str(tmp_path / "absent")]) == 0
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.jsonl").write_text("{not json\n")
    assert check.main([str(tmp_path)]) == 0
