"""The grading rules engine: documented examples, monotonicity, probabilities, reasons, bad files, and
the visibility bound (`invisible_at_cm`)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.instances import DefectInstance, Measurement, mm
from model.rules import StandardError, grade, grade_probabilities, list_standards, load_standard
from model.rules.engine import EXACT_MAX, UNGRADABLE, counted
from model.rules.schema import load_standard_file, parse_standard
from model.taxonomy import DefectType, View, Zone

STANDARDS = list_standards()
GRADED = [t for t in DefectType if t is not DefectType.SMUDGE]


def test_bundled_standards_are_the_three_named_ones():
    assert STANDARDS == ["backmarket", "ctia", "r2"]
    assert load_standard("backmarket").grade_names == ("Premium", "Excellent", "Good", "Fair", "Unlistable")
    assert load_standard("ctia").grade_names == ("A", "B", "C", "D", "E")


@pytest.mark.parametrize(
    ("name", "example"),
    [(s, ex) for s in STANDARDS for ex in load_standard(s).examples],
    ids=lambda v: v if isinstance(v, str) else v.name,
)
def test_documented_examples_grade_as_documented(name, example):
    instances = [
        mm(d.type, d.zone, d.length_mm, d.width_mm, d.area_mm2, contrast=d.contrast) for d in example.defects
    ]
    assert grade(instances, name).grade == example.expect


instance_strategy = st.builds(
    lambda t, z, length, width, conf: mm(t, z, length, width, confidence=conf),
    st.sampled_from(GRADED),
    st.sampled_from(list(Zone)),
    st.floats(0.05, 60.0),
    st.floats(0.01, 2.0),
    st.sampled_from([1.0, 0.9, 0.7]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(instance_strategy, max_size=8), instance_strategy, st.sampled_from(STANDARDS))
def test_adding_a_defect_never_improves_the_grade(instances, extra, name):
    std = load_standard(name)
    before = std.index(grade(instances, std).grade)
    after = std.index(grade([*instances, extra], std).grade)
    assert after >= before


@settings(max_examples=150, deadline=None)
@given(st.lists(instance_strategy, min_size=1, max_size=8), st.data(), st.sampled_from(STANDARDS))
def test_enlarging_a_defect_never_improves_the_grade(instances, data, name):
    std = load_standard(name)
    i = data.draw(st.integers(0, len(instances) - 1))
    factor = data.draw(st.floats(1.0, 5.0))
    m = instances[i].measurement
    bigger = instances[i].model_copy(
        update={
            "measurement": Measurement(
                units="mm", length=m.length * factor, width=m.width * factor, area=m.area * factor**2
            )
        }
    )
    enlarged = [*instances[:i], bigger, *instances[i + 1 :]]
    assert std.index(grade(enlarged, std).grade) >= std.index(grade(instances, std).grade)


@settings(max_examples=100, deadline=None)
@given(st.lists(instance_strategy, max_size=16), st.sampled_from(STANDARDS))
def test_probabilities_sum_to_one_and_cover_every_grade(instances, name):
    probs, method = grade_probabilities(instances, name)
    assert list(probs) == list(load_standard(name).grade_names)
    assert sum(probs.values()) == pytest.approx(1.0)
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    uncertain = sum(1 for i in instances if i.confidence < 1.0)
    assert method == ("exact" if uncertain <= EXACT_MAX else "sampled (4096)")


@pytest.mark.parametrize("name", STANDARDS)
def test_no_defect_gives_the_best_grade_with_certainty(name):
    std = load_standard(name)
    result = grade([], std)
    assert result.grade == std.grade_names[0]
    assert result.barred == {}
    assert result.probabilities[std.grade_names[0]] == 1.0
    assert not result.needs_review


@settings(max_examples=100, deadline=None)
@given(st.lists(instance_strategy, max_size=6), st.floats(0.5, 80), st.floats(0.5, 1.0))
def test_a_cracked_screen_is_never_listable_on_back_market(instances, length, conf):
    crack = mm("crack", "screen", length, 0.2, confidence=conf)
    result = grade([*instances, crack], "backmarket")
    assert result.grade == "Unlistable"
    assert not result.listable


def test_smudges_never_lower_a_grade_but_ask_for_a_clean_retake():
    smudges = [mm("smudge", z, 30.0, 20.0, photo_index=2) for z in Zone]
    result = grade(smudges, "backmarket")
    assert result.grade == "Premium"
    assert result.advice and "photo 3" in result.advice[0]


def test_reasons_say_what_was_found_and_what_the_grade_allows():
    scratches = [
        mm("scratch", "body", 6.2, 0.2),
        mm("scratch", "body", 2.0, 0.1),
        mm("scratch", "body", 1.0, 0.1),
    ]
    result = grade(scratches, "backmarket")
    assert result.grade == "Good"
    (reason,) = result.barred["Excellent"]
    assert reason.startswith("3 scratches on the back, the longest 6.2 mm")
    assert "Excellent allows at most 5, each up to 3.0 mm long" in reason
    assert set(result.barred) == {"Premium", "Excellent"}


def test_a_bar_is_worded_as_allowing_none():
    result = grade([mm("crack", "screen", 30.0)], "backmarket")
    # A crack's size bounds no grade and is quoted nowhere (model.rules.engine._describe)
    assert "1 crack on the screen; Fair allows none" in result.barred["Fair"]
    result = grade([mm("scratch", "screen", 30.0, 0.6)], "backmarket")
    assert any(r.startswith("1 scratch on the screen, the longest 30.0 mm") for r in result.barred["Fair"])


def test_exact_probabilities_match_a_hand_computation():
    # One certain 2 mm scratch (Excellent) and one 70%-likely 6 mm scratch (would make it Good).
    insts = [mm("scratch", "body", 2.0, 0.1), mm("scratch", "body", 6.0, 0.2, confidence=0.7)]
    result = grade(insts, "backmarket")
    assert result.grade == "Good"
    assert result.probabilities["Good"] == pytest.approx(0.7)
    assert result.probabilities["Excellent"] == pytest.approx(0.3)
    assert result.needs_review  # 0.7 < 0.8
    assert not grade(insts, "backmarket", review_threshold=0.6).needs_review


def test_sampled_probabilities_are_deterministic_and_close_to_exact():
    # 20 uncertain hairlines (sampled) vs the binomial truth: Premium admits at most 2.
    insts = [mm("scratch", "body", 0.5, 0.03, confidence=0.1) for _ in range(20)]
    p1, method = grade_probabilities(insts, "backmarket")
    p2, _ = grade_probabilities(insts, "backmarket")
    assert method.startswith("sampled") and p1 == p2
    from math import comb

    premium = sum(comb(20, k) * 0.1**k * 0.9 ** (20 - k) for k in range(3))
    assert p1["Premium"] == pytest.approx(premium, abs=0.025)


def test_relative_measurements_use_relative_fallbacks_and_say_so():
    rel = DefectInstance(
        type="scratch",
        zone="body",
        measurement=Measurement(units="relative", length=0.04, width=0.001, area=4e-5),
    )
    result = grade([rel], "backmarket")  # 0.04 x 150 mm reference = 6 mm
    assert result.grade == "Good"
    assert not result.scale_known
    assert "≈6.0 mm" in result.barred["Excellent"][0]
    assert "scale is unknown" in result.barred["Excellent"][0]


def _rel(kind, zone, length, width, area):
    return DefectInstance(
        type=kind, zone=zone, measurement=Measurement(units="relative", length=length, width=width, area=area)
    )


@pytest.mark.parametrize(
    ("instance", "device_kind", "decides"),
    [
        # A laptop lid's dent of 0.034 of its length: 10.5 mm at the 310 mm reference, over Fair's
        # 10 mm; 9.0 mm for a 264 mm laptop (Fair), 12.1 mm for a 357 mm one.
        (_rel("dent", "body", 0.034, 0.01, 1e-4), "laptop", True),
        (_rel("dent", "body", 0.02, 0.01, 1e-4), "laptop", False),  # 5.3-7.1 mm: Fair at any length
        (_rel("scratch", "body", 0.04, 0.001, 4e-5), "phone", False),  # 5.1-6.9 mm: Good throughout
        (_rel("scratch", "body", 0.045, 0.001, 4.5e-5), "phone", True),  # 5.7-7.8 mm: Good or Fair
        (_rel("crack", "screen", 0.01, 0.001, 1e-5), "phone", False),  # any crack: Unlistable
        (mm("dent", "body", 10.5, 4.0, 30.0), "laptop", False),  # measured in mm: the size is known
    ],
    ids=["lid-dent-near-10mm", "lid-dent-small", "scratch-in-good", "scratch-near-7mm", "crack", "in-mm"],
)
def test_a_grade_the_unknown_size_decides_goes_to_review(instance, device_kind, decides):
    """Without the device's model, sizes are estimated from a typical length; a grade that another
    length in `SCALE_RANGE` would change is sent to review, whatever its probability."""
    result = grade([instance], "backmarket", device_kind=device_kind, review_threshold=0.0)
    assert result.scale_decides is decides
    assert result.needs_review is decides


def test_malformed_standard_names_file_field_and_problem(tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text(
        "standard: mine\ntitle: t\nversion: '1'\nsource: s\ngrades:\n"
        "  - name: A\n    summary: s\n    limits:\n      - {zones: [screen], types: [scratch], max_cout: 0}\n"
        "  - name: B\n    summary: s\n"
    )
    with pytest.raises(StandardError) as info:
        load_standard_file(bad)
    message = str(info.value)
    assert str(bad) in message
    assert "grades.0.limits.0" in message
    assert "max_cout" in message


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            "grades: [{name: A, summary: s, limits: [{zones: [screen], types: [smudge], max_count: 0}]}, {name: B, summary: s}]",
            "smudge",
        ),
        (
            "grades: [{name: A, summary: s}, {name: B, summary: s, limits: [{zones: any, types: [crack], max_count: 0}]}]",
            "last grade",
        ),
        (
            "grades: [{name: A, summary: s, limits: [{zones: [lid], types: [crack], max_count: 0}]}, {name: B, summary: s}]",
            "zones",
        ),
        (
            "grades: [{name: A, summary: s, limits: [{zones: [body], types: [dent]}]}, {name: B, summary: s}]",
            "max_count",
        ),
        ("grades: [{name: A, summary: s}, {name: A, summary: s}]", "unique"),
        ("grades: [{name: A, summary: s}, {name: Ungradable, summary: s}]", "reserved"),
        ("grades: [: broken", "not valid YAML"),
    ],
)
def test_each_malformed_standard_is_rejected_with_its_problem(tmp_path, body, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(f"standard: bad\ntitle: t\nversion: '1'\nsource: s\n{body}\n")
    with pytest.raises(StandardError, match=problem):
        load_standard_file(path)


def test_unknown_bundled_standard_lists_the_known_ones():
    with pytest.raises(StandardError, match="backmarket, ctia, r2"):
        load_standard("nope")


# -- no evidence, no grade; what counted -------------------------------------------------------------

views_strategy = st.sets(st.sampled_from(list(View)), min_size=1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(instance_strategy, max_size=8), views_strategy, st.sampled_from(STANDARDS))
def test_views_never_change_the_grade_only_say_what_was_not_seen(instances, views, name):
    """With any usable view, the grade, reasons and probabilities are the instances' (so adding or
    enlarging a defect still never improves it); a missing front or back is said, and sent to review
    unless the grade is already the last (an unseen side can only lower a grade)."""
    plain = grade(instances, name)
    seen = grade(instances, name, views=views)
    assert (seen.grade, seen.barred, seen.probabilities) == (plain.grade, plain.barred, plain.probabilities)
    missing = [v for v in ("front", "back") if View(v) not in views]
    assert seen.missing_views == missing
    last = seen.grade == load_standard(name).grade_names[-1]
    assert seen.needs_review == (plain.needs_review or (bool(missing) and not last))
    assert all(any(v in a for a in seen.advice) for v in missing)


@settings(max_examples=60, deadline=None)
@given(st.lists(instance_strategy, max_size=8), st.sampled_from(STANDARDS))
def test_no_usable_photo_is_ungradable_unless_what_it_shows_forces_the_last_grade(instances, name):
    std = load_standard(name)
    result = grade(instances, std, views=(), retakes=["photo 1: too blurry, retake with the device in focus"])
    plain = grade(instances, std)
    if plain.grade == std.grade_names[-1]:  # sure damage even on unusable photos: the worst grade holds
        assert (result.grade, result.barred, result.probabilities) == (
            plain.grade,
            plain.barred,
            plain.probabilities,
        )
        assert result.missing_views == ["front", "back"] and result.advice[-1].startswith(
            "photo 1: too blurry"
        )
        return
    assert result.grade == UNGRADABLE and not result.gradable and not result.listable
    assert result.needs_review
    assert result.probabilities == dict.fromkeys(std.grade_names, 0.0)  # a reviewer's choices stay
    assert result.barred == {UNGRADABLE: ["no usable photo of the device: nothing to grade from"]}
    assert result.advice[0].startswith("photo 1: too blurry") and "front and a back" in result.advice[-1]
    assert result.missing_views == ["front", "back"]


def test_one_front_photo_grades_the_screen_and_asks_for_the_back():
    result = grade([mm("scratch", "screen", 12.0, 0.2)], "backmarket", views={View.FRONT})
    assert result.grade == "Fair" and result.listable
    assert result.missing_views == ["back"] and result.needs_review
    assert result.advice[0] == "no usable back photo: the back and its camera not graded, add one"


def test_a_shattered_screen_on_a_dark_photo_is_unlistable_not_ungradable():
    result = grade([mm("crack", "screen", 40.0, 0.3)], "backmarket", views=(), retakes=["photo 1: too dark"])
    assert result.grade == "Unlistable" and not result.listable and not result.needs_review
    assert result.missing_views == ["front", "back"] and "photo 1: too dark" in result.advice
    faint = grade([mm("crack", "screen", 40.0, 0.3, confidence=0.4)], "backmarket", views=())
    assert faint.grade == "ungradable"  # a crack it is not sure of proves nothing on an unusable photo


def test_a_cracked_screen_seen_from_the_front_needs_no_back_photo_to_be_sure():
    """Unlistable is the last grade: whatever the back shows cannot change it, so no review for it."""
    result = grade([mm("crack", "screen", 40.0, 0.3)], "backmarket", views={View.FRONT})
    assert result.grade == "Unlistable" and result.missing_views == ["back"]
    assert not result.needs_review and result.advice  # still says the back was not seen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.builds(
            lambda inst, conf, role: inst.model_copy(update={"confidence": conf, "role": role}),
            instance_strategy,
            st.sampled_from([1.0, 0.8, 0.5, 0.49, 0.2, 0.05]),
            st.sampled_from(["defect", "defect", "evidence"]),
        ),
        max_size=10,
    ),
    st.sampled_from(STANDARDS),
)
def test_the_grade_is_the_grade_of_the_counted_instances(instances, name):
    """`counted` is exactly what the deterministic grade rests on: the counted instances, made certain,
    grade the same, and the others (candidates, evidence) change nothing."""
    kept = [i.model_copy(update={"confidence": 1.0}) for i in instances if counted(i)]
    assert grade(kept, name).grade == grade(instances, name).grade


def test_counted_needs_a_graded_type_the_defect_role_and_the_cut():
    assert counted(mm("scratch", "screen", 5.0, confidence=0.5))
    assert not counted(mm("scratch", "screen", 5.0, confidence=0.49))
    assert not counted(mm("smudge", "screen", 5.0))
    assert not counted(mm("crack", "screen", 5.0, role="evidence"))
    assert counted(mm("crack", "screen", 5.0, confidence=0.3), present_at=0.3)


# -- visibility: invisible_at_cm ---------------------------------------------------------------------

# A standard whose line limits are visibility only (no width stand-in): the width-only criterion of
# model.visibility judges the lines without a contrast, and relative-unit ones on their estimate.
VISIBILITY_ONLY = parse_standard(
    """
standard: vis
title: visibility only
version: "1"
source: tests
grades:
  - name: Near
    summary: invisible at 20 cm
    limits: [{zones: any, types: [scratch, crack], invisible_at_cm: 20}]
  - name: Far
    summary: invisible at 50 cm
    limits: [{zones: any, types: [scratch, crack], invisible_at_cm: 50}]
  - name: Seen
    summary: anything
""",
    "tests/vis.yaml",
)
VIS_STANDARDS = [*STANDARDS, VISIBILITY_ONLY]

measured_strategy = st.builds(
    lambda t, z, length, width, contrast, conf: mm(t, z, length, width, confidence=conf, contrast=contrast),
    st.sampled_from(GRADED),
    st.sampled_from(list(Zone)),
    st.floats(0.05, 60.0),
    st.floats(0.0, 2.0),
    st.one_of(st.none(), st.floats(0.0, 1.0)),
    st.sampled_from([1.0, 0.9, 0.7]),
)


def _std(s):
    return load_standard(s) if isinstance(s, str) else s


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(measured_strategy, min_size=1, max_size=8),
    st.data(),
    st.sampled_from(VIS_STANDARDS),
    st.sampled_from(["width", "contrast", "both"]),
)
def test_a_wider_or_higher_contrast_line_never_gets_a_better_grade(instances, data, std, what):
    std = _std(std)
    i = data.draw(st.integers(0, len(instances) - 1))
    m = instances[i].measurement
    update = {}
    if what in ("width", "both"):
        update["width"] = m.width * data.draw(st.floats(1.0, 5.0))
    if what in ("contrast", "both") and m.contrast is not None:
        update["contrast"] = data.draw(st.floats(m.contrast, 1.0))
    more = instances[i].model_copy(update={"measurement": m.model_copy(update=update)})
    changed = [*instances[:i], more, *instances[i + 1 :]]
    assert std.index(grade(changed, std).grade) >= std.index(grade(instances, std).grade)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(measured_strategy, max_size=8), measured_strategy, st.sampled_from(VIS_STANDARDS))
def test_adding_a_measured_line_never_improves_the_grade(instances, extra, std):
    std = _std(std)
    assert std.index(grade([*instances, extra], std).grade) >= std.index(grade(instances, std).grade)


@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 0.01), st.floats(0.0, 1.0), st.sampled_from(VIS_STANDARDS))
def test_relative_lines_grade_as_before_whatever_their_contrast(width, contrast, std):
    std = _std(std)

    def rel(c):
        return DefectInstance(
            type="scratch",
            zone="body",
            measurement=Measurement(
                units="relative", length=0.02, width=width, area=0.02 * width, contrast=c
            ),
        )

    assert grade([rel(contrast)], std).grade == grade([rel(None)], std).grade


def test_visibility_only_limits_fall_back_to_1_arcminute_without_a_contrast():
    assert grade([mm("scratch", "body", 5.0, 0.05)], VISIBILITY_ONLY).grade == "Near"  # 0.86' at 20 cm
    assert grade([mm("scratch", "body", 5.0, 0.06)], VISIBILITY_ONLY).grade == "Far"  # 1.03' at 20 cm
    assert grade([mm("scratch", "body", 5.0, 0.15)], VISIBILITY_ONLY).grade == "Seen"  # 1.03' at 50 cm
    # the same 0.15 mm line, measured faint: invisible at 20 cm; contrasty: visible at 50 cm
    assert grade([mm("scratch", "body", 5.0, 0.15, contrast=0.02)], VISIBILITY_ONLY).grade == "Near"
    assert grade([mm("scratch", "body", 5.0, 0.15, contrast=0.3)], VISIBILITY_ONLY).grade == "Seen"


def test_back_market_judges_measured_lines_by_visibility_and_unmeasured_ones_by_the_grader_widths():
    def bm(width, contrast=None, length=2.5):
        return grade([mm("scratch", "body", length, width, contrast=contrast)], "backmarket").grade

    # Without a contrast: the grader scale's widths, as before (0.15 mm Excellent, 0.3 mm Good).
    assert [bm(0.1), bm(0.2), bm(0.35)] == ["Excellent", "Good", "Fair"]
    # Measured: a faint 0.1 mm line is Excellent, a moderate one Good, a contrasty one Fair ...
    assert [bm(0.1, 0.03), bm(0.1, 0.1), bm(0.1, 0.3)] == ["Excellent", "Good", "Fair"]
    # ... and a faint 0.25 mm line, over the grader's 0.15 mm, is still invisible at 20 cm.
    assert bm(0.25, 0.02) == "Excellent"
    # Counts and lengths stay the grader scale's whatever the visibility.
    assert bm(0.1, 0.03, length=3.5) == "Good"


def test_reasons_say_from_how_far_a_line_is_seen():
    result = grade([mm("scratch", "body", 2.5, 0.1, contrast=0.1)], "backmarket")
    assert result.grade == "Good"
    (reason,) = result.barred["Excellent"]
    assert reason.startswith("1 scratch on the back, the longest 2.5 mm, visible at 20 cm (from up to 34 cm)")
    assert "Excellent allows at most 5, each up to 3.0 mm long, invisible at 20 cm" in reason
    assert "(by width alone: 0.15 mm wide)" in reason
    assert "the widest" not in reason  # its width is not what barred it
    alone = grade([mm("scratch", "body", 5.0, 0.1)], VISIBILITY_ONLY).barred["Near"][0]
    assert alone.endswith(
        "visible at 20 cm (by its width alone, from up to 34 cm); Near allows each invisible at 20 cm"
    )


@pytest.mark.parametrize(
    ("limit", "problem"),
    [
        ("{zones: [body], types: [scratch, chip], invisible_at_cm: 20}", "not for chip"),
        ("{zones: [body], types: [scratch], invisible_at_cm: 0}", "greater than 0"),
        ("{zones: [body], types: [scratch], invisible_at_cm: -5}", "greater than 0"),
    ],
)
def test_a_visibility_bound_must_be_positive_and_for_lines(tmp_path, limit, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "standard: bad\ntitle: t\nversion: '1'\nsource: s\n"
        f"grades: [{{name: A, summary: s, limits: [{limit}]}}, {{name: B, summary: s}}]\n"
    )
    with pytest.raises(StandardError, match=problem):
        load_standard_file(path)


def _without_visibility(std):
    """The standard with every `invisible_at_cm` removed: Back Market as it was before version 2026.12.0."""
    grades = [
        g.model_copy(
            update={"limits": tuple(lim.model_copy(update={"invisible_at_cm": None}) for lim in g.limits)}
        )
        for g in std.grades
    ]
    return std.model_copy(update={"grades": tuple(grades)})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(instance_strategy, max_size=8), st.sampled_from(STANDARDS))
def test_lines_without_a_contrast_grade_as_before_the_visibility_bound(instances, name):
    """The width-only stand-ins keep every grading without contrasts (the coarse pass, the generator's
    labels) exactly where it was."""
    std = load_standard(name)
    before = grade(instances, _without_visibility(std))
    after = grade(instances, std)
    assert (after.grade, after.probabilities) == (before.grade, before.probabilities)
