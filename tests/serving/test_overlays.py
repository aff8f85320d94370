"""Overlays: counted defects drawn apart from candidates, labels that never overlap, old gradings too."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image

from serving.overlays import COLOURS, place_labels, render
from serving.review.events import fold
from tests.serving.conftest import encode
from tests.serving.tiny_model import device_photo


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _defect(k: int, x: float, y: float, conf: float, kind: str = "scratch", **extra) -> dict:
    box = [x, y, x + 40 + 7 * (k % 5), y + 12 + 3 * (k % 4)]
    polygon = [[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]]
    return {
        "type": kind,
        "zone": "screen",
        "confidence": conf,
        "box": box,
        "polygon": polygon,
        "units": "mm",
        "length": 5.0 + k,
        "width": 0.1,
        "area": 0.5,
        "length_mm": 5.0 + k,
        "length_rel": None,
        **extra,
    }


@pytest.fixture(scope="module")
def busy() -> tuple[bytes, list[dict]]:
    """A cracked-looking photo: 40 instances piled on a small patch of the screen, 4 of them counted."""
    rng = np.random.default_rng(18)
    defects = []
    for k in range(40):
        x, y = rng.uniform(300, 420), rng.uniform(200, 330)
        counted = k % 10 == 0
        conf = float(rng.uniform(0.5, 1.0) if counted else rng.uniform(0.05, 0.49))
        kind = "crack" if k % 3 else "scratch"
        defects.append(_defect(k, x, y, conf, kind, counted=counted, role="defect"))
    defects.append(_defect(40, 350, 250, 0.9, "crack", counted=False, role="evidence"))
    return encode(device_photo(scratch=False)), defects


def test_labels_of_a_busy_photo_never_overlap_and_every_counted_defect_has_one(busy):
    photo, defects = busy
    out = render(photo, defects)
    rects = [label.rect for label in out.labels]
    assert not any(_overlap(a, b) for a, b in itertools.combinations(rects, 2))
    w, h = out.size
    assert all(min(r[0], r[1]) >= 0 and r[2] <= w and r[3] <= h for r in rects)
    counted = {k for k, d in enumerate(defects) if d["counted"]}
    assert {label.defect for label in out.labels if label.style == "counted"} == counted
    assert all(label.style == "candidate" for label in out.labels if label.defect not in counted)
    assert 40 not in {label.defect for label in out.labels}  # evidence: outlined, never labelled
    assert any(label.style == "candidate" for label in out.labels)  # some candidates got room
    full = next(
        lbl for lbl in out.labels if lbl.style == "counted" and defects[lbl.defect]["type"] == "scratch"
    )
    assert "mm" in full.text and "(" in full.text


def test_counted_and_candidate_labels_look_different(busy):
    """A counted label is its type's full colour on black; a candidate's is dimmed into the photo."""
    photo, defects = busy
    out = render(photo, defects)
    img = np.asarray(Image.open(io.BytesIO(out.png)).convert("RGB")).astype(int)

    def pure_colour_pixels(label) -> int:
        x0, y0, x1, y1 = (round(v) for v in label.rect)
        patch = img[y0:y1, x0:x1]
        colour = np.array(COLOURS[defects[label.defect]["type"]])
        return int((np.abs(patch - colour).sum(axis=-1) < 30).sum())

    counted = [pure_colour_pixels(lbl) for lbl in out.labels if lbl.style == "counted"]
    candidates = [pure_colour_pixels(lbl) for lbl in out.labels if lbl.style == "candidate"]
    # (a candidate's label may sit over a counted outline, which shows through it)
    assert min(counted) > 50 and max(candidates) < min(counted) / 5


def test_old_gradings_without_counted_still_render():
    """Defects stored before `counted` existed: the engine's rule decides which are drawn as counted."""
    photo = encode(device_photo(scratch=False))
    old = [_defect(0, 320, 250, 0.9), _defect(1, 420, 250, 0.2), _defect(2, 320, 350, 0.9, "smudge")]
    out = render(photo, old)
    assert {lbl.defect: lbl.style for lbl in out.labels} == {0: "counted", 1: "candidate", 2: "candidate"}


def test_greedy_placement_falls_back_to_a_free_spot_for_what_must_show():
    box = (50.0, 50.0, 60.0, 60.0)
    items = [(box, 30.0, 10.0, True)] * 12 + [(box, 30.0, 10.0, False)] * 12
    spots = place_labels(items, 200, 200, taken=[(0.0, 0.0, 200.0, 20.0)])
    must = spots[:12]
    assert all(s is not None for s in must) and any(away for _, away in must)
    rects = [(0.0, 0.0, 200.0, 20.0)] + [r for r, _ in filter(None, spots)]
    assert not any(_overlap(a, b) for a, b in itertools.combinations(rects, 2))


def test_a_glass_judged_cracked_with_nothing_traced_shows_no_size():
    """A zone crack without fragments has length 0, "not measured" (model.damage): its label and the
    review page say so, and do not draw it as "0.0 mm"; a measured one keeps its size."""
    photo = encode(device_photo(scratch=False))
    whole = _defect(0, 300, 200, 0.97, "crack", counted=True, role="defect") | {
        "length": 0.0,
        "width": 0.0,
        "area": 0.0,
        "length_mm": 0.0,
    }
    measured = _defect(1, 300, 330, 0.9, "scratch", counted=True, role="defect")
    # A crack's traced length is not quoted either (as in the reasons): its lines are a part of the glass.
    traced = _defect(2, 150, 120, 0.88, "crack", counted=True, role="defect")
    texts = {lbl.defect: lbl.text for lbl in render(photo, [whole, measured, traced]).labels}
    assert texts == {0: "crack (0.97)", 1: "scratch 6.0 mm (0.90)", 2: "crack (0.88)"}
    body = {
        "grades": {"backmarket": {"grade": "Unlistable", "probabilities": {"Unlistable": 1.0}}},
        "photos": [{"index": 0, "defects": [whole, measured, traced]}],
        "needs_review": False,
    }
    sizes = [d.size for d in fold(body, []).defects[0]]
    # A crack's size on the review page is what its lines traced, not the crack's.
    assert sizes == ["not measured", "6.0 mm × 0.10 mm", "traced 7.0 mm × 0.10 mm"]


def test_a_large_outline_is_drawn_without_a_box_round_it_and_a_small_defect_with_one():
    """A cracked glass zone's outline (a tilted screen) is its own mark: no box round it taking in the
    table. A small defect keeps its box, which shows where it is."""
    photo = encode(device_photo(scratch=False))
    w, h = Image.open(io.BytesIO(photo)).size
    tilted = [[0.3 * w, 0.1 * h], [0.9 * w, 0.3 * h], [0.7 * w, 0.9 * h], [0.1 * w, 0.7 * h]]
    glass = _defect(0, 0, 0, 0.99, "crack", counted=True, role="defect") | {
        "polygon": tilted,
        "box": [0.1 * w, 0.1 * h, 0.9 * w, 0.9 * h],
    }
    small = _defect(1, 0.05 * w, 0.85 * h, 0.9, "scratch", counted=True, role="defect")
    small["polygon"] = [
        [small["box"][0] + 10, small["box"][1] + 4],
        [small["box"][2] - 10, small["box"][3] - 4],
    ]
    rendered = render(photo, [glass, small])
    out = np.asarray(Image.open(io.BytesIO(rendered.png)).convert("RGB")).astype(int)
    scale = out.shape[1] / w

    def near(colour, x, y, r=3) -> bool:
        x, y = round(x * scale), round(y * scale)
        patch = out[max(y - r, 0) : y + r + 1, max(x - r, 0) : x + r + 1]
        return bool((np.abs(patch - np.array(colour)).sum(axis=-1) < 60).any())

    red, yellow = COLOURS["crack"], COLOURS["scratch"]
    assert near(red, 0.6 * w, 0.2 * h)  # on the outline's top edge
    assert not near(red, 0.8 * w, 0.9 * h)  # the box's bottom edge, off the outline: not drawn
    assert near(yellow, (small["box"][0] + small["box"][2]) / 2, small["box"][3])  # the small one's box


def test_a_crack_fragment_the_model_is_sure_of_is_drawn_opaque_inside_the_glass_outline():
    """A glass judged cracked as a whole is outlined whole; its fragment traced at 0.9 (a single impact's
    spider) shows where, in full colour, while a faint one (0.06) and a scratch on the cracked glass stay
    translucent."""
    photo = encode(device_photo(scratch=False))
    w, h = Image.open(io.BytesIO(photo)).size
    glass = _defect(0, 0, 0, 0.99, "crack", counted=True, role="defect") | {
        "polygon": [[0.1 * w, 0.1 * h], [0.9 * w, 0.1 * h], [0.9 * w, 0.9 * h], [0.1 * w, 0.9 * h]],
        "box": [0.1 * w, 0.1 * h, 0.9 * w, 0.9 * h],
    }
    sure = _defect(1, 0.3 * w, 0.3 * h, 0.9, "crack", counted=False, role="evidence")
    faint = _defect(2, 0.3 * w, 0.6 * h, 0.06, "crack", counted=False, role="evidence")
    line = _defect(3, 0.6 * w, 0.6 * h, 0.8, "scratch", counted=False, role="evidence")
    out = np.asarray(Image.open(io.BytesIO(render(photo, [glass, sure, faint, line]).png)).convert("RGB"))
    scale = out.shape[1] / w

    def pixel(x, y):
        return out[round(y * scale), round(x * scale)].astype(int)

    red = np.array(COLOURS["crack"])
    # The left edge of each fragment's polygon, half way down it.
    edge = [(d["box"][0], (d["box"][1] + d["box"][3]) / 2) for d in (sure, faint, line)]
    assert np.abs(pixel(*edge[0]) - red).sum() < 30  # opaque red
    assert np.abs(pixel(*edge[1]) - red).sum() > 60  # blended with the photo
    assert np.abs(pixel(*edge[2]) - np.array(COLOURS["scratch"])).sum() > 60


def test_a_portrait_photo_gets_labels_as_large_as_the_same_photo_landscape():
    """Labels are sized on the photo's long side: a portrait phone photo, shown fitted to its height,
    used to get labels sized on its narrow width (13 px on a 1280 px tall overlay)."""
    landscape = device_photo(1200, 800, scratch=False)
    portrait = np.ascontiguousarray(np.rot90(landscape))
    heights = []
    for rgb in (landscape, portrait):
        h, w = rgb.shape[:2]
        scratch = _defect(0, w * 0.4, h * 0.4, 0.9, "scratch", counted=True, role="defect")
        label = render(encode(rgb), [scratch]).labels[0]
        heights.append(label.rect[3] - label.rect[1])
    assert heights[0] == heights[1] and heights[0] >= 20
