"""The evaluation report: the headline figures, and `report.md` with its plots, from evaluate's metrics.

`headline(metrics)` picks the few figures that lead the report and go into the model card and the
README. `write_report` turns a metrics dict (`training.evaluate.compute_metrics`, as saved in
metrics.json) into markdown and PNG plots (`training.plots`); it computes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HEADLINE_STANDARD = "backmarket"


def headline(metrics: dict) -> dict[str, float]:
    """The few numbers that go into the model card and the README."""
    out = {}
    g = metrics["grades"].get(HEADLINE_STANDARD)
    if g:
        out["bm_grade_accuracy"] = g["accuracy"]
        out["bm_qwk"] = g["qwk"]
        out["bm_ece"] = g["ece"]
        out["bm_rule_ece"] = g["rule_ece"]
        out["bm_auto_share"] = g["auto_share"]
        out["bm_auto_accuracy"] = g["auto_accuracy"]
    for key, v in metrics["image_auroc"].items():
        out[f"auroc_{key.replace('/', '_')}"] = v["auroc"]
    for key, v in metrics.get("image_auroc_graded", {}).items():
        if key.endswith("/crack"):  # the crack the rules count: what a cracked phone is graded on
            out[f"auroc_graded_{key.replace('/', '_')}"] = v["auroc"]
    if metrics["scratch_length"]["n"]:
        out["scratch_length_median_rel_error"] = metrics["scratch_length"]["median_rel_error"]
    for k in ("zone_miou", "view_accuracy", "quality_accuracy", "ms_per_photo"):
        if metrics[k] == metrics[k]:
            out[k] = metrics[k]
    return out


def _auroc_table(auroc: dict[str, dict], title: str, intro: str = "") -> list[str]:
    """An image-level AUROC section (none without a source and type that has both classes)."""
    if not auroc:
        return []
    head = ["", f"## Image-level AUROC{title}", ""]
    head += [intro, ""] if intro else []
    head += ["| source / type | AUROC | photos | positives |", "| --- | --- | --- | --- |"]
    return head + [f"| {k} | {_fmt(v['auroc'])} | {v['n']} | {v['positives']} |" for k, v in auroc.items()]


def _per_zone(iou: dict[str, float]) -> str:
    """Each zone's IoU in brackets, or nothing where no photo's zones were known."""
    return f" ({', '.join(f'{k} {v:.3f}' for k, v in iou.items())})" if iou else ""


def _fine_note(thresholds: dict, g: dict) -> str:
    """What the review threshold sentence adds for the devices the fine pass read."""
    fine = thresholds.get("fine_grading")
    share = g.get("fine_share") or 0.0
    if not share:
        return ""
    if not fine:
        return f"; the fine pass read {_fmt(share)} of the devices, graded as the others"
    return (
        f"; {fine['needs_review_below']} and the fine pass's own grade calibration for the "
        f"{_fmt(share)} of devices it read"
    )


def _fmt(x) -> str:
    if isinstance(x, float):
        return "n/a" if x != x else f"{x:.3f}"
    return str(x)


def _passes(metrics: dict) -> str:
    if not metrics.get("crop_to_device"):
        return "."
    upright = " (turned long side up where it lies wide)" if metrics.get("crop_upright") else ""
    return f", both passes: whole photo, then the device crop{upright}."


def write_report(metrics: dict, report_dir: Path, title: str, compare: dict | None = None) -> Path:
    """`report_dir`/report.md and its plots; `compare`: a second model's metrics, tabled beside."""
    from training import plots  # matplotlib only when a report is drawn

    report_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Evaluation: {title}",
        "",
        f"Model `{metrics['model']}` ({metrics['kind']}), "
        f"{metrics['n_photos']} photos. Scale source per photo: {metrics['scale_source']}.",
        "",
    ]
    lines += ["## Headline", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in headline(metrics).items()]
    if compare is not None:
        a, b = headline(metrics), headline(compare)
        lines += [
            "",
            f"## Compared with `{compare['model']}` ({compare['kind']})",
            "",
            "| metric | this model | compared | difference |",
            "| --- | --- | --- | --- |",
        ]
        for k in a:
            if k in b:
                lines.append(f"| {k} | {_fmt(a[k])} | {_fmt(b[k])} | {_fmt(a[k] - b[k])} |")
    inst = metrics["instances"]
    if inst:
        lines += [
            "",
            "## Defect instances (matched by dilated-mask IoU >= 0.2) and soft pixel IoU",
            "",
            "| type | precision | recall | F1 | TP | FP | FN | pixel IoU |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for t, v in inst.items():
            lines.append(
                f"| {t} | {_fmt(v['precision'])} | {_fmt(v['recall'])} | {_fmt(v['f1'])} | {v['tp']} | "
                f"{v['fp']} | {v['fn']} | {_fmt(metrics['pixel_iou'].get(t, float('nan')))} |"
            )
        plots.plot_bars(
            {t: {k: v[k] for k in ("precision", "recall", "f1")} for t, v in inst.items()},
            "instances per defect type",
            report_dir / "instances.png",
        )
        lines += ["", "![instances](instances.png)"]
    lines += [
        "",
        "## Zones, view, photo quality",
        "",
        f"Zone mIoU {_fmt(metrics['zone_miou'])}{_per_zone(metrics['zone_iou'])}; "
        f"view accuracy {_fmt(metrics['view_accuracy'])}; quality accuracy {_fmt(metrics['quality_accuracy'])}.",
    ]
    sl = metrics["scratch_length"]
    lines += [
        "",
        "## Scratch length (synthetic photos, true length known)",
        "",
        f"{sl['n']} matched scratches: median relative error {_fmt(sl['median_rel_error'])}, "
        f"median absolute error {_fmt(sl['median_abs_error_mm'])} mm.",
    ]
    if sl["n"]:
        # The target is a 15% median error: the band shows which scratches meet it.
        plots.plot_measured_vs_true(sl["pairs"], 0.15, "scratch length", report_dir / "length_error.png")
        lines += ["", "![length error](length_error.png)"]
    lines += _auroc_table(metrics["image_auroc"], " (score = highest pixel probability of the type)")
    lines += _auroc_table(
        metrics.get("image_auroc_graded", {}),
        ", as graded (score = the highest confidence of a defect of the type)",
        "What the rules see: a glass zone's crack is the zone-damage model's probability, not the crack "
        "map's peak pixel (`benchmarks/bench_real.py` scores photos so).",
    )
    for std, g in metrics["grades"].items():
        lines += [
            "",
            f"## Grades: {std} ({g['devices']} devices)",
            "",
            f"Accuracy {_fmt(g['accuracy'])}, quadratic weighted kappa {_fmt(g['qwk'])}, ECE {_fmt(g['ece'])}"
            + (
                f" (grade probabilities calibrated on validation devices; the rules' own: ECE {_fmt(g['rule_ece'])})."
                if g.get("calibrated")
                else " (the rules' probabilities; the card has no grade calibration for this standard)."
            ),
            "",
            f"At the card's needs-review threshold ({metrics['thresholds'].get('needs_review_below')}"
            + _fine_note(metrics["thresholds"], g)
            + "): "
            f"{_fmt(g['auto_share'])} of devices graded without review, {_fmt(g['auto_accuracy'])} of those right. "
            "Accuracy of the most confident 10% / 25% / 50% of devices: "
            + " / ".join(_fmt(v) for v in g["selective_accuracy"].values())
            + (
                " (ranked by the rules' own probability: "
                + " / ".join(_fmt(v) for v in g["rule_selective_accuracy"].values())
                + ")."
                if g.get("calibrated")
                else "."
            ),
        ]
        plots.plot_confusion(
            np.array(g["confusion"]),
            g["labels"],
            f"{std}: true vs predicted",
            report_dir / f"confusion_{std}.png",
        )
        plots.plot_reliability(
            g["reliability"],
            g["ece"],
            f"{std}: reliability",
            report_dir / f"reliability_{std}.png",
            (g["rule_reliability"], g["rule_ece"]) if g.get("calibrated") else None,
        )
        chosen = metrics["thresholds"].get("needs_review_below")
        plots.plot_coverage(g["coverage"], chosen, report_dir / f"coverage_{std}.png")
        lines += [
            "",
            f"![confusion](confusion_{std}.png) ![reliability](reliability_{std}.png) ![coverage](coverage_{std}.png)",
        ]
    real = metrics.get("real_grades") or {}
    if real:
        lines += [
            "",
            "## Grades on real photos, per source (set labels)",
            "",
            "Each real photo graded as one device. Its labels say only cracked, worn or intact, so a grade is "
            "right when it is one its set allows (cracked: the grades of cracked glass; worn: any listable "
            "grade; intact: those better than cracked glass). The mean probability is the grade's own: where "
            "a set allows several grades it sits below the share right.",
            "",
            "| source | standard | devices | right | mean probability | graded without review | of those right |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {src} | {std} | {g['devices']} | {_fmt(g['right'])} | {_fmt(g['mean_probability'])} | "
            f"{_fmt(g['auto_share'])} | {_fmt(g['auto_right'])} |"
            for src, by_std in real.items()
            for std, g in by_std.items()
        ]
    lines += [
        "",
        "## Thresholds used (from the model card / checkpoint calibration)",
        "",
        "```json",
        json.dumps(metrics["thresholds"], indent=2),
        "```",
        "",
        f"Inference: median {_fmt(metrics['ms_per_photo'])} ms per photo in batches of 8 during this run "
        "(see benchmarks/bench_model.py for controlled timings)" + _passes(metrics),
        *([f"Machine: {metrics['machine'].removeprefix('cpu: ')}."] if metrics.get("machine") else []),
    ]
    path = report_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
