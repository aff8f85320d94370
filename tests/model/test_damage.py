"""Zone-level damage (`model.damage`): a shattered screen whose crack map breaks into faint fragments is
one crack of the screen, with the zone model's probability; its fragments, and the scratches on glass a counted
crack lies on, are evidence, not defects."""

from __future__ import annotations

import numpy as np
import pytest

from model.card import Thresholds
from model.damage import (
    FEATURES,
    GLASS_ZONES,
    ZoneDamageModel,
    glass_zones,
    judge_zone_damage,
    lines_on_cracked_glass,
    one_glass_side,
    zone_damage,
    zone_features,
)
from model.fine_instances import photo_instances
from model.instances import mm
from model.outputs import DEFECT_CHANNELS, ZONE_CHANNELS
from model.postprocess import Scale, extract_instances
from model.preprocess import letterbox
from model.rules import grade
from model.taxonomy import DefectType, DeviceKind, View, Zone

CELLS, SIZE = 32, 128
SCREEN = ZONE_CHANNELS.index("screen")
CRACK = DEFECT_CHANNELS.index("crack")


def _maps(crack_value: float, n_fragments: int) -> tuple[np.ndarray, np.ndarray]:
    """A screen over cells 4..28 x 8..24 and `n_fragments` short crack strokes of `crack_value` on it."""
    zone = np.zeros((len(ZONE_CHANNELS), CELLS, CELLS), np.float32)
    zone[0] = 1
    zone[0, 4:28, 8:24] = 0
    zone[SCREEN, 4:28, 8:24] = 1
    defect = np.zeros((len(DEFECT_CHANNELS), CELLS, CELLS), np.float32)
    rng = np.random.default_rng(0)
    for _ in range(n_fragments):
        y, x = int(rng.integers(5, 26)), int(rng.integers(9, 21))
        defect[CRACK, y, x : x + 3] = crack_value
    return defect, zone


# "More crack map on the screen, more likely cracked": weights on the top share and the touched share.
MODEL = ZoneDamageModel(weights=(0.0, 1.0, 1.0, 0.0), bias=6.0, photos=100, positives=50)


def test_features_need_enough_of_the_zone_and_grow_with_the_crack_map():
    maps = dict(zip(("defect_probs", "zone_probs"), _maps(0.3, 12), strict=True))
    assert zone_features(maps, Zone.BODY) is None  # no back glass in view
    faint = zone_features(dict(zip(("defect_probs", "zone_probs"), _maps(0.3, 3), strict=True)), Zone.SCREEN)
    strong = zone_features(maps, Zone.SCREEN)
    assert faint is not None and strong is not None and len(strong) == len(FEATURES)
    assert (strong >= faint).all() and (strong > faint).any()


def test_a_card_refuses_a_zone_model_for_a_zone_that_is_not_glass_and_features_of_another_version():
    with pytest.raises(ValueError, match="not glass"):
        Thresholds(defect_pixel={"crack": 0.5}, zone_damage={"frame": MODEL})
    with pytest.raises(ValueError, match="crack-map features"):
        ZoneDamageModel(weights=(1.0,), bias=0.0, photos=1, positives=1)
    with pytest.raises(ValueError, match="mean has 1 values for 2 weights"):
        ZoneDamageModel(
            features="encoder_s16_v1", mean=(0.0,), weights=(1.0, 2.0), bias=0.0, photos=1, positives=1
        )


def test_faint_fragments_of_a_shattered_screen_become_one_counted_crack():
    defect, zone = _maps(0.3, 14)  # every fragment below the 0.5 crack cut: none counts on its own
    photo = np.full((480, 480, 3), 200, np.uint8)
    _, lb = letterbox(photo, SIZE)
    scale = Scale("mm", 0.3, True, 480.0)
    cut = {n: 0.5 for n in DEFECT_CHANNELS} | {"crack": 0.25}  # the fragments are instances
    faint = {"crack": -2.0}  # calibrated as unlikely one by one, as the bundled model's fragments are
    plain = Thresholds(defect_pixel=cut, confidence_offset=faint)
    judged = Thresholds(defect_pixel=cut, confidence_offset=faint, zone_damage={"screen": MODEL})
    fragments = extract_instances(defect, zone, lb, plain, scale, SIZE, view=View.FRONT)
    assert len(fragments) >= 5 and all(i.confidence < 0.5 for i in fragments)
    assert grade(fragments, "backmarket").grade != "Unlistable"  # the failure the issue describes
    out = extract_instances(defect, zone, lb, judged, scale, SIZE, view=View.FRONT)
    defects = [i for i in out if i.role == "defect"]
    evidence = [i for i in out if i.role == "evidence"]
    assert len(evidence) == len(fragments) and len(defects) == 1
    (crack,) = defects
    p = zone_damage({"defect_probs": defect, "zone_probs": zone}, {"screen": MODEL})[Zone.SCREEN]
    assert (
        crack.type is DefectType.CRACK and crack.zone is Zone.SCREEN and crack.confidence == pytest.approx(p)
    )
    assert p > 0.9
    # Its box holds every fragment; its length is how far they spread, in mm: never more than the box's
    # diagonal, and at least as far as the two fragments farthest apart.
    x0, y0, x1, y1 = crack.box
    assert all(x0 <= f.box[0] and f.box[2] <= x1 and y0 <= f.box[1] and f.box[3] <= y1 for f in evidence)
    centres = np.array([[(f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2] for f in evidence])
    apart = max(np.hypot(*(a - b)) for a in centres for b in centres)
    assert apart * 0.3 <= crack.measurement.length <= np.hypot(x1 - x0, y1 - y0) * 0.3 + 1e-6
    result = grade(out, "backmarket")
    assert result.grade == "Unlistable"
    # one crack in the reasons, not fourteen, and no size: the fragments traced are a part of the pattern
    assert result.barred["Fair"] == ["1 crack on the screen; Fair allows none"]


def test_a_zone_judged_intact_keeps_its_fragments_as_evidence_only():
    defect, zone = _maps(0.3, 2)
    unlikely = ZoneDamageModel(weights=(0.0, 0.0, 0.0, 0.0), bias=-8.0, photos=10, positives=5)
    frag = mm("crack", "screen", 3.0, confidence=0.7, box=(10.0, 10.0, 20.0, 20.0))
    scratch = mm("scratch", "screen", 3.0, confidence=0.7)
    p = zone_damage({"defect_probs": defect, "zone_probs": zone}, {"screen": unlikely})
    out = judge_zone_damage([frag, scratch], p, {Zone.SCREEN: (0, 0, 100, 100)}, "mm", 0.1, 0.05)
    assert [i.role for i in out] == ["evidence", "defect"]  # no zone crack: below the minimum confidence
    assert grade(out, "backmarket").grade == grade([scratch], "backmarket").grade


def test_a_zone_judged_cracked_without_fragments_gets_the_zones_box_and_no_length():
    p = {Zone.SCREEN: 0.8}
    out = judge_zone_damage(
        [], p, {Zone.SCREEN: (5.0, 6.0, 105.0, 206.0)}, "relative", 0.01, 0.05, 2, View.FRONT
    )
    (crack,) = out
    assert crack.box == (5.0, 6.0, 105.0, 206.0) and crack.photo_index == 2 and crack.view is View.FRONT
    assert crack.measurement.units == "relative" and crack.confidence == pytest.approx(0.8)
    # Nothing was traced: not measured (it was the zone box's diagonal, 2.24 device lengths here), and
    # the reasons quote no length for it.
    assert crack.measurement.length == 0 and crack.measurement.width == 0
    result = grade(out, "backmarket")
    assert result.grade == "Unlistable"
    assert result.barred["Fair"] == ["1 crack on the screen; Fair allows none"]


def test_a_crack_patterns_length_is_its_spread_within_its_zone():
    # Two fragments at opposite corners of a V, one running past the screen's box onto the frame.
    a = mm("crack", "screen", 1.0, confidence=0.3, box=(30.0, 0.0, 40.0, 4.0))
    b = mm("crack", "screen", 1.0, confidence=0.3, box=(0.0, 60.0, 4.0, 130.0))
    screen = (0.0, 0.0, 60.0, 100.0)
    out = judge_zone_damage([a, b], {Zone.SCREEN: 0.9}, {Zone.SCREEN: screen}, "mm", 0.5, 0.05)
    (crack,) = [i for i in out if i.role == "defect"]
    # Farthest apart within the screen: (40, 0) to (0, 100); the union box's diagonal would be
    # hypot(40, 130), and the outline runs 30 px past the screen's edge.
    assert crack.measurement.length == pytest.approx(np.hypot(40.0, 100.0) * 0.5, rel=1e-4)
    # They spread over 40 x 130 of the screen's 60 x 100, over TRACED_SHARE: drawn where they are.
    assert crack.box == (0.0, 0.0, 40.0, 130.0)


def test_a_few_lines_traced_in_a_corner_of_a_glass_judged_cracked_draw_the_glass():
    # A screen judged shattered from its look, one short line traced by the home button (a Galaxy of
    # the real validation photos): the crack is drawn as the screen's outline, not as a box round that
    # line, which said the damage was there alone. Its length is still what was traced.
    line = mm("crack", "screen", 1.0, confidence=0.06, box=(40.0, 180.0, 44.0, 196.0))
    screen = (5.0, 6.0, 105.0, 206.0)
    outline = [(10.0, 6.0), (105.0, 10.0), (100.0, 206.0), (5.0, 200.0)]  # a tilted screen's hull
    out = judge_zone_damage(
        [line], {Zone.SCREEN: 0.99}, {Zone.SCREEN: screen}, "mm", 0.5, 0.05, outlines={Zone.SCREEN: outline}
    )
    (crack,) = [i for i in out if i.role == "defect"]
    assert crack.polygon == outline and crack.box == (5.0, 6.0, 105.0, 206.0)
    assert crack.measurement.length == pytest.approx(np.hypot(4.0, 16.0) * 0.5, rel=1e-4)
    # Without an outline, the zone's box.
    out = judge_zone_damage([line], {Zone.SCREEN: 0.99}, {Zone.SCREEN: screen}, "mm", 0.5, 0.05)
    (crack,) = [i for i in out if i.role == "defect"]
    assert crack.box == screen and len(crack.polygon) == 4


def test_encoder_features_are_pooled_over_the_zones_cells_only():
    _, zone = _maps(0.0, 0)  # screen over mask cells x 8..24, y 4..28 of 32
    features = np.zeros((3, 8, 8), np.float32)  # stride 4 x 4 = 16: 8 x 8 cells
    features[0, 1:7, 2:6] = 1.0  # inside the screen
    features[1, 0, 0] = 50.0  # outside it: never read
    features[2, 3, 3] = 2.0  # one cell inside: the maximum sees it, the mean a 24th of it
    f = zone_features({"zone_probs": zone, "encoder_s16": features}, Zone.SCREEN, "encoder_s16_v1")
    mean, top = f[:3], f[3:]
    assert mean[0] == pytest.approx(1.0) and top[0] == 1.0
    assert mean[1] == 0.0 and top[1] == 0.0
    assert top[2] == 2.0 and mean[2] == pytest.approx(2.0 / 24)
    assert zone_features({"zone_probs": zone}, Zone.SCREEN, "encoder_s16_v1") is None  # no such output


def test_a_standardised_encoder_model_reads_its_features_through_its_scale():
    model = ZoneDamageModel(
        features="encoder_s16_v1",
        mean=(1.0, 1.0),
        scale=(2.0, 2.0),
        weights=(1.0, 1.0),
        bias=0.0,
        photos=4,
        positives=2,
    )
    assert model.probability(np.array([1.0, 1.0])) == pytest.approx(0.5)
    assert model.probability(np.array([5.0, 5.0])) == pytest.approx(1 / (1 + np.exp(-4.0)))


def test_joint_features_are_the_encoders_then_the_crack_maps():
    defect, zone = _maps(0.3, 6)
    features = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    maps = {"defect_probs": defect, "zone_probs": zone, "encoder_s16": features}
    joint = zone_features(maps, Zone.SCREEN, "joint_s16_v1")
    np.testing.assert_array_equal(joint[:6], zone_features(maps, Zone.SCREEN, "encoder_s16_v1"))
    np.testing.assert_array_equal(joint[6:], zone_features(maps, Zone.SCREEN, "crack_map_v1"))


def test_v2_adds_each_channels_top_tenth_and_spread_over_the_zone_then_the_crack_map():
    defect, zone = _maps(0.3, 6)  # the screen covers 24 feature cells
    features = np.zeros((2, 8, 8), np.float32)
    features[0, 1:7, 2:6] = np.arange(24, dtype=np.float32).reshape(6, 4)  # 0..23 over the screen
    features[1, 0, 0] = 50.0  # outside the screen: never read
    maps = {"defect_probs": defect, "zone_probs": zone, "encoder_s16": features}
    v2 = zone_features(maps, Zone.SCREEN, "joint_s16_v2")
    assert v2.shape == (2 * 4 + 4,)
    mean, top, top_tenth, spread = v2[0:2], v2[2:4], v2[4:6], v2[6:8]
    np.testing.assert_array_equal(mean, zone_features(maps, Zone.SCREEN, "encoder_s16_v1")[:2])
    assert top[0] == 23.0 and top_tenth[0] == pytest.approx((23 + 22) / 2)  # round(0.1 * 24) = 2 cells
    assert spread[0] == pytest.approx(np.arange(24).std()) and (v2[[1, 3, 5, 7]] == 0.0).all()
    np.testing.assert_array_equal(v2[8:], zone_features(maps, Zone.SCREEN, "crack_map_v1"))
    # One cell of the zone: its top tenth is that cell, its spread nothing.
    one = np.zeros((8, 8), bool)
    one[3, 3] = True
    from model.damage import _encoder_pool

    cells = np.kron(one, np.ones((4, 4), bool))
    np.testing.assert_array_equal(
        _encoder_pool(features, cells, four_ways=True)[[0, 4, 6]], [features[0, 3, 3]] * 2 + [0.0]
    )


def test_the_judged_crack_is_on_the_glass_the_view_shows_and_takes_every_glass_fragment():
    """The network called the photo a back view, so its fragments were put on the back (zones follow
    the view); the screen model's judgement is then about that glass too: one crack, on the back."""
    on_back = mm("crack", "body", 3.0, confidence=0.7, box=(10.0, 10.0, 20.0, 20.0))
    on_frame = mm("crack", "frame", 3.0, confidence=0.7, box=(0.0, 0.0, 5.0, 5.0))
    out = judge_zone_damage(
        [on_back, on_frame],
        {Zone.SCREEN: 0.9},
        {Zone.SCREEN: (0, 0, 100, 100)},
        "mm",
        0.1,
        0.05,
        0,
        View.BACK,
    )
    assert [i.role for i in out] == ["evidence", "defect", "defect"]  # a chipped frame is not glass
    assert out[2].zone is Zone.BODY and out[2].confidence == pytest.approx(0.9)
    assert out[2].box == (0, 0, 100, 100)  # its one fragment covers 1% of the glass: the glass is drawn


def test_a_laptops_lid_is_not_glass_its_screen_is():
    """A laptop's lid photographed is a back view, and its lid is metal or plastic: a screen judged
    cracked on it is no crack, and its crack fragments stay defects of their own (their cut decides).
    Its front view's screen is glass as a phone's is."""
    laptop = glass_zones("laptop")
    assert laptop == (Zone.SCREEN,) and glass_zones(DeviceKind.PHONE) == glass_zones(None) == GLASS_ZONES
    frag = mm("crack", "body", 3.0, confidence=0.3, box=(10.0, 10.0, 20.0, 20.0))
    judged = {Zone.SCREEN: 0.95, Zone.BODY: 0.9}
    box = {Zone.SCREEN: (0, 0, 100, 100), Zone.BODY: (0, 0, 100, 100)}
    lid = judge_zone_damage([frag], judged, box, "mm", 0.1, 0.05, 0, View.BACK, laptop)
    assert lid == [frag]
    phone = judge_zone_damage([frag], {Zone.SCREEN: 0.95}, box, "mm", 0.1, 0.05, 0, View.BACK)
    # A phone's back is glass: the fragment is evidence of the back glass's crack.
    assert [(i.type, i.zone, i.role) for i in phone] == [
        (DefectType.CRACK, Zone.BODY, "evidence"),
        (DefectType.CRACK, Zone.BODY, "defect"),
    ]
    on_screen = mm("crack", "screen", 3.0, confidence=0.3, box=(10.0, 10.0, 20.0, 20.0))
    front = judge_zone_damage([on_screen], judged, box, "mm", 0.1, 0.05, 0, View.FRONT, laptop)
    assert [(i.zone, i.role, round(i.confidence, 2)) for i in front] == [
        (Zone.SCREEN, "evidence", 0.3),
        (Zone.SCREEN, "defect", 0.95),
    ]  # the body's 0.9 is not judged: not glass on a laptop


def test_v3_adds_the_imagenet_features_pooled_four_ways_and_needs_them():
    defect, zone = _maps(0.3, 6)  # the screen touches 8 of the 16 stride-32 cells: rows 0-3, columns 1-2
    s16 = np.random.default_rng(1).random((2, 8, 8)).astype(np.float32)
    s32 = np.zeros((3, 4, 4), np.float32)
    s32[:, 0, 0] = 99.0  # outside the screen: never read
    s32[0, 0:4, 1:3] = np.arange(8, dtype=np.float32).reshape(4, 2) + 1  # 1..8 over them
    maps = {"defect_probs": defect, "zone_probs": zone, "encoder_s16": s16, "imagenet_s32": s32}
    v3 = zone_features(maps, Zone.SCREEN, "joint_s16_v3")
    v2 = zone_features(maps, Zone.SCREEN, "joint_s16_v2")
    np.testing.assert_array_equal(v3[:8], v2[:8])  # the stride-16 encoder's four statistics
    np.testing.assert_array_equal(v3[-4:], v2[-4:])  # the crack map's, last
    mean, top = v3[8:11], v3[11:14]
    assert top[0] == 8.0 and 99.0 not in v3 and mean[1] == mean[2] == 0.0
    assert len(v3) == len(v2) + 4 * 3
    assert (
        zone_features({k: v for k, v in maps.items() if k != "imagenet_s32"}, Zone.SCREEN, "joint_s16_v3")
        is None
    )


def test_a_card_refuses_zone_damage_whose_features_its_file_does_not_give():
    from tests.serving.tiny_model import tiny_card

    zd = ZoneDamageModel(features="joint_s16_v3", weights=(1.0,), bias=0.0, photos=10, positives=5)
    card = tiny_card()
    thresholds = card.thresholds.model_copy(update={"zone_damage": {"screen": zd}})
    with pytest.raises(ValueError, match="imagenet_s32"):
        type(card).model_validate(
            {**card.model_dump(), "thresholds": thresholds.model_dump(), "feature_outputs": ("encoder_s16",)}
        )
    ok = type(card).model_validate(
        {
            **card.model_dump(),
            "thresholds": thresholds.model_dump(),
            "feature_outputs": ("encoder_s16", "imagenet_s32"),
        }
    )
    assert ok.thresholds.zone_damage["screen"].features == "joint_s16_v3"


def test_a_sliver_of_the_other_glass_is_not_judged():
    """A photo shows one glass side. On a front view the zone map may still label a strip along an
    edge "back" (MSD's dim bare screens); the back glass's model must not turn that strip into a crack
    on the screen. The glass the view shows and the glass the zone map shows most of are judged."""
    frag = mm("crack", "screen", 3.0, confidence=0.2, box=(10.0, 10.0, 20.0, 20.0))
    judged = {Zone.SCREEN: 0.05, Zone.BODY: 0.95}
    box = {Zone.SCREEN: (0, 0, 100, 100), Zone.BODY: (0, 90, 100, 100)}

    def cracks(view, cells):
        out = judge_zone_damage([frag], judged, box, "mm", 0.1, 0.05, 0, view, GLASS_ZONES, cells)
        return sorted(
            round(i.confidence, 2) for i in out if i.type is DefectType.CRACK and i.role == "defect"
        )

    # Front view, a strip of "back" (6% of the glass): only the screen's own 0.05 is judged.
    assert cracks(View.FRONT, {Zone.SCREEN: 3200, Zone.BODY: 200}) == [0.05]
    # The same judgement without the cells (callers that have none) keeps both, as before.
    assert cracks(View.FRONT, None) == [0.05, 0.95]
    # A front view whose zone map is mostly "back" keeps both: the view's glass and the largest.
    assert cracks(View.FRONT, {Zone.SCREEN: 1700, Zone.BODY: 2200}) == [0.05, 0.95]
    # A view the network got wrong (called back, mostly "screen"): the screen's judgement still counts.
    wrong_view = {Zone.SCREEN: 0.95, Zone.BODY: 0.2}
    out = judge_zone_damage(
        [frag],
        wrong_view,
        box,
        "mm",
        0.1,
        0.05,
        0,
        View.BACK,
        GLASS_ZONES,
        {Zone.SCREEN: 2000, Zone.BODY: 560},
    )
    assert max(i.confidence for i in out if i.role == "defect") == pytest.approx(0.95)
    assert one_glass_side({Zone.SCREEN: 0.3}, {Zone.SCREEN: 10}, (Zone.BODY,)) == {Zone.SCREEN: 0.3}


def test_post_processing_judges_the_back_glass_only_where_it_is_more_than_a_sliver():
    """Through `extract_instances`: the zone map's cells decide which glass a front photo is judged on."""
    defect, zone = _maps(0.3, 14)
    body = ZONE_CHANNELS.index("body")
    photo = np.full((480, 480, 3), 200, np.uint8)
    _, lb = letterbox(photo, SIZE)
    scale = Scale("mm", 0.3, True, 480.0)
    cut = {n: 0.5 for n in DEFECT_CHANNELS} | {"crack": 0.25}
    never = ZoneDamageModel(weights=(0.0, 0.0, 0.0, 0.0), bias=-8.0, photos=10, positives=5)
    card = Thresholds(defect_pixel=cut, zone_damage={"screen": never, "body": MODEL})

    def judged_cracks(rows):  # `rows` of the screen relabelled back glass
        z = zone.copy()
        z[SCREEN, rows, 8:24], z[body, rows, 8:24] = 0, 1
        out = extract_instances(defect, z, lb, card, scale, SIZE, view=View.FRONT)
        return [i for i in out if i.type is DefectType.CRACK and i.role == "defect"]

    # 4 of 24 rows (its fragments read 0.89 by the back glass's model): a sliver, the screen's model decides
    assert judged_cracks(slice(24, 28)) == []
    assert [i.zone for i in judged_cracks(slice(4, 18))] == [Zone.SCREEN]  # mostly "back": judged too


def test_scratches_on_glass_a_counted_crack_lies_on_are_its_evidence():
    crack = mm("crack", "screen", 40.0, confidence=0.9)
    on_screen = [mm("scratch", "screen", 5.0, confidence=c) for c in (0.9, 0.7, 0.3)]
    elsewhere = [mm("scratch", "body", 5.0, confidence=0.9), mm("scratch", "frame", 5.0, confidence=0.9)]
    chip = mm("chip", "screen", 1.0, confidence=0.9)
    out = lines_on_cracked_glass([crack, *on_screen, *elsewhere, chip])
    assert [i.role for i in out] == [
        "defect",
        "evidence",
        "evidence",
        "evidence",
        "defect",
        "defect",
        "defect",
    ]
    # The reasons name the crack, not the crack's branches as scratches; the grade is the same.
    before, after = grade([crack, *on_screen], "backmarket"), grade(out[:4], "backmarket")
    assert before.grade == after.grade == "Unlistable"
    assert any("scratch" in r for r in before.barred["Premium"])
    assert after.barred["Premium"] == [r for r in after.barred["Premium"] if "scratch" not in r]
    for standard in ("ctia", "r2"):  # cracked glass bounds cracks, chips and dents only
        assert grade([crack, *on_screen], standard).grade == grade(out[:4], standard).grade


def test_an_uncertain_crack_or_a_laptop_lid_leaves_its_scratches_counted():
    scratch = mm("scratch", "screen", 5.0, confidence=0.9)
    uncertain = mm("crack", "screen", 40.0, confidence=0.25)  # an MSD screen's zone crack, on its scratch
    assert [i.role for i in lines_on_cracked_glass([uncertain, scratch])] == ["defect", "defect"]
    evidence = mm("crack", "screen", 40.0, confidence=0.9).model_copy(update={"role": "evidence"})
    assert [i.role for i in lines_on_cracked_glass([evidence, scratch])] == ["evidence", "defect"]
    lid = [mm("crack", "body", 40.0, confidence=0.9), mm("scratch", "body", 5.0, confidence=0.9)]
    assert [i.role for i in lines_on_cracked_glass(lid, glass_zones("laptop"))] == ["defect", "defect"]
    assert [i.role for i in lines_on_cracked_glass(lid, glass_zones("phone"))] == ["defect", "evidence"]


def test_photo_instances_turn_the_scratch_map_on_a_judged_screen_into_evidence():
    defect, zone = _maps(0.3, 14)
    defect[DEFECT_CHANNELS.index("scratch"), 20, 10:18] = 0.9  # a crack's branch the scratch map read
    _, lb = letterbox(np.full((480, 480, 3), 200, np.uint8), SIZE)
    scale = Scale("mm", 0.3, True, 480.0)
    cut = {n: 0.5 for n in DEFECT_CHANNELS} | {"crack": 0.25}
    outputs = {"defect_probs": defect, "zone_probs": zone}
    plain = Thresholds(defect_pixel=cut, confidence_offset={"crack": -2.0})
    judged = Thresholds(defect_pixel=cut, confidence_offset={"crack": -2.0}, zone_damage={"screen": MODEL})

    def scratches(thresholds):
        insts = photo_instances(outputs, lb, SIZE, thresholds, scale, view=View.FRONT)
        return [i.role for i in insts if i.type is DefectType.SCRATCH]

    assert scratches(plain) == ["defect"]  # no crack counted: the line is a scratch
    assert scratches(judged) == ["evidence"]  # the screen judged cracked: the line is its evidence


def test_post_processing_draws_a_crack_judged_from_a_few_faint_lines_as_the_screens_outline():
    defect, zone = _maps(0.0, 0)
    defect[CRACK, 26, 9:12] = 0.3  # one short faint line in the screen's bottom-left corner
    photo = np.full((480, 480, 3), 200, np.uint8)
    _, lb = letterbox(photo, SIZE)
    cut = {n: 0.5 for n in DEFECT_CHANNELS} | {"crack": 0.25}
    sure = ZoneDamageModel(weights=(0.0, 0.0, 0.0, 0.0), bias=8.0, photos=100, positives=50)
    faint = {"crack": -2.0}  # the line's own confidence low, as the bundled model's faint fragments
    judged = Thresholds(defect_pixel=cut, confidence_offset=faint, zone_damage={"screen": sure})
    out = extract_instances(defect, zone, lb, judged, Scale("mm", 0.3, True, 480.0), SIZE, view=View.FRONT)
    (crack,) = [i for i in out if i.role == "defect"]
    (line,) = [i for i in out if i.role == "evidence"]
    # The screen is mask cells x 8..24, y 4..28 of 32 on a 128 px input of a 480 px photo: 15 px cells.
    assert crack.box == pytest.approx((120.0, 60.0, 360.0, 420.0))
    assert len(crack.polygon) == 4 and line.box[2] - line.box[0] < 0.25 * 240 and line.confidence < 0.5
    assert crack.measurement.length > 0  # what was traced is still measured


def test_a_zones_outline_is_its_largest_regions_hull_in_the_photo():
    from model.geometry import mask_box, mask_outline

    _, lb = letterbox(np.zeros((480, 480, 3), np.uint8), SIZE)
    mask = np.zeros((CELLS, CELLS), bool)
    for y in range(4, 28):  # a screen leaning right: each row one cell further
        mask[y, 8 + (y - 4) // 3 : 20 + (y - 4) // 3] = True
    mask[0, 0] = True  # a stray cell far away
    hull = np.array(mask_outline(mask, lb, SIZE))
    x0, y0 = hull.min(axis=0)
    x1, y1 = hull.max(axis=0)
    assert (x0, y0, x1, y1) == pytest.approx((120.0, 60.0, 405.0, 420.0))  # the stray cell left out
    assert mask_box(mask, lb, SIZE)[:2] == pytest.approx((0.0, 0.0))  # where the box takes it in
    # A hull, not a box: the leaning screen's top-right and bottom-left corners are not in it.
    import cv2

    inside = max(
        cv2.pointPolygonTest(hull.astype(np.float32)[:, None, :], p, False)
        for p in ((400.0, 70.0), (125.0, 415.0))
    )
    assert inside < 0
