"""The rules CLI: list, show, grade from JSON, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from refurbgrade.cli import build

runner = CliRunner()
app = build()
SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "samples" / "instances_example.json"


def test_standards_list_and_show():
    out = runner.invoke(app, ["standards", "list"])
    assert out.exit_code == 0
    assert "backmarket" in out.stdout and "Premium" in out.stdout
    out = runner.invoke(app, ["standards", "show", "ctia"])
    assert out.exit_code == 0 and "Cracked cover glass" in out.stdout and "max_count=5" in out.stdout


def test_rules_grade_sample_as_json():
    out = runner.invoke(app, ["rules", "grade", str(SAMPLE), "--standard", "backmarket", "--json"])
    assert out.exit_code == 0, out.output
    (result,) = json.loads(out.stdout)
    assert result["grade"] == "Good"
    assert result["needs_review"] is True  # the 6.2 mm scratch is certain, the screen scratch is 40%
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-9
    assert any("smudges" in a for a in result["advice"])


def test_rules_grade_human_summary_covers_all_standards():
    out = runner.invoke(app, ["rules", "grade", str(SAMPLE)])
    assert out.exit_code == 0
    for name in ("backmarket", "ctia", "r2"):
        assert name in out.stdout


def test_bad_instance_file_names_the_file_and_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"type": "scratch", "zone": "lid", "length_mm": 3}]))
    out = runner.invoke(app, ["rules", "grade", str(bad)])
    assert out.exit_code == 2
    assert "bad.json" in out.output and "instance 0" in out.output
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    out = runner.invoke(app, ["rules", "grade", str(broken)])
    assert out.exit_code == 2 and "not valid JSON" in out.output


def test_unknown_standard_is_an_error():
    out = runner.invoke(app, ["rules", "grade", str(SAMPLE), "--standard", "ebay"])
    assert out.exit_code == 2 and "unknown standard" in out.output


def test_rules_grade_reads_a_measured_contrast_and_show_lists_the_visibility_bound(tmp_path):
    out = runner.invoke(app, ["standards", "show", "backmarket"])
    assert out.exit_code == 0 and "invisible_at_cm=20" in out.stdout.replace("\n", "")
    faint, contrasty = (
        {"type": "scratch", "zone": "body", "length_mm": 2.5, "width_mm": 0.1, "contrast": c}
        for c in (0.03, 0.3)
    )
    grades = []
    for inst in (faint, contrasty):
        path = tmp_path / "one.json"
        path.write_text(json.dumps({"instances": [inst]}))
        out = runner.invoke(app, ["rules", "grade", str(path), "--standard", "backmarket", "--json"])
        assert out.exit_code == 0, out.output
        grades.append(json.loads(out.stdout)[0]["grade"])
    assert grades == ["Excellent", "Fair"]
