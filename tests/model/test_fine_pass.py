"""The fine pass (model.fine_pass, model.fine_instances): tiles proposed where lines are, stitched maps in
the device's frame, scratches measured from them in mm, and the coarse scratches they replace."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from model.card import Thresholds
from model.fine_instances import merge_fine, photo_instances
from model.fine_pass import FineCard, FineStage, choose_cells, fine_pass, fine_sibling
from model.inference import Inferred, frame_photo, with_fine
from model.instances import DefectInstance, Measurement
from model.outputs import DEFECT_CHANNELS, VIEW_CLASSES, ZONE_CHANNELS
from model.plane import view_share
from model.postprocess import estimate_scale
from model.taxonomy import DefectType, DeviceKind, View, Zone

SIZE, STRIDE = 128, 4
LENGTH_MM = 100.0  # the device's long side: 2000 px -> 0.05 mm per pixel
DEVICE = (200, 300, 2200, 1300)  # x0, y0, x1, y1 in the photo
LINE = ((900, 800), (1300, 800))  # a 400 px (20 mm) dark line, 3 px wide, on the back


def _photo() -> np.ndarray:
    img = np.full((1600, 2400, 3), 30, np.uint8)
    x0, y0, x1, y1 = DEVICE
    img[y0:y1, x0:x1] = 170
    cv2.line(img, LINE[0], LINE[1], (20, 20, 20), 3)
    return img


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _coarse(frame, scratch_at=None) -> dict[str, np.ndarray]:
    """Coarse outputs in `frame`: the device as the body zone; optionally a coarse scratch cell."""
    n = SIZE // STRIDE
    zone = np.zeros((len(ZONE_CHANNELS), n, n), np.float32)
    zone[0] = 1.0
    (a, b), (c, d) = frame.letterbox.to_model(np.array(DEVICE, float).reshape(2, 2)) / STRIDE
    body = ZONE_CHANNELS.index(Zone.BODY.value)
    zone[0, round(b) : round(d), round(a) : round(c)] = 0.0
    zone[body, round(b) : round(d), round(a) : round(c)] = 1.0
    defect = np.zeros((len(DEFECT_CHANNELS), n, n), np.float32)
    if scratch_at is not None:
        (x, y) = frame.letterbox.to_model(np.array([scratch_at], float))[0] / STRIDE
        defect[DEFECT_CHANNELS.index("scratch"), int(y), int(x) : int(x) + 3] = 0.9
    return {"defect_probs": defect, "zone_probs": zone, "view_probs": np.array([0.0, 1.0, 0.0, 0.0, 0.0])}


def _dark_lines(batch: np.ndarray) -> dict[str, np.ndarray]:
    """A stand-in fine network: heat on dark pixels, width 3 px, contrast 0.6."""
    dark = (batch.mean(axis=1, keepdims=True) < 60).astype(np.float32)
    return {"heat": dark, "width_px": np.full_like(dark, 3.0), "contrast": np.full_like(dark, 0.6)}


def _card(**kw) -> FineCard:
    return FineCard(name="test", version="0", **kw)


def test_the_fine_file_sits_beside_either_precision():
    assert fine_sibling("models/default.onnx").name == "default.fine.onnx"
    assert fine_sibling("models/default.int8.onnx").name == "default.fine.onnx"


def test_the_fine_card_reads_back_and_refuses_what_it_cannot_read():
    card = _card(heat_cut=0.9)
    assert FineCard.from_metadata({"refurbgrade.fine_card": card.to_json()}) == card
    with pytest.raises(ValueError, match="no fine card"):
        FineCard.from_metadata({})
    with pytest.raises(ValueError, match="invalid fine card"):
        FineCard.from_metadata({"refurbgrade.fine_card": '{"name": "x"}'})


def test_tiles_go_to_coarse_evidence_first_then_lines_then_the_screen():
    net = {(0, 0): 2.0, (5, 5): 9.0}
    line = {(1, 1): 3.0, (2, 2): 0.5}  # (2, 2): too little line to propose
    crit = {(3, 3): 50.0, (4, 4): 10.0, (5, 5): 1.0}
    plan = choose_cells(net, line, crit, k=4, min_line=2.0)
    assert plan.proposed == 3
    assert plan.cells == ((5, 5), (0, 0), (1, 1), (3, 3))
    assert choose_cells(net, line, crit, k=1, min_line=2.0).cells == ((5, 5),)


def test_a_hairline_is_found_in_the_tiles_and_measured_in_mm():
    data = _png(_photo())
    frame = frame_photo(data, SIZE)
    outputs = _coarse(frame)
    card = _card(max_tiles=4, heat_cut=0.5)
    stage = FineStage(card, _dark_lines, LENGTH_MM)
    fine = fine_pass(outputs, frame.letterbox, SIZE, data, frame.original_size, stage)
    assert fine is not None and not fine.fallback
    assert fine.mm_per_px == pytest.approx(0.05, rel=0.05)
    assert 0 < len(fine.tiles) <= 4
    thresholds = Thresholds(defect_pixel={n: 0.5 for n in DEFECT_CHANNELS})
    scale = estimate_scale(outputs["zone_probs"], frame.letterbox, SIZE, LENGTH_MM)
    insts = photo_instances(outputs, frame.letterbox, SIZE, thresholds, scale, fine=fine)
    scratches = [i for i in insts if i.type == DefectType.SCRATCH]
    assert len(scratches) == 1
    (s,) = scratches
    assert s.zone == Zone.BODY
    assert s.measurement.units == "mm"
    assert s.measurement.length == pytest.approx(20.0, rel=0.1)
    assert s.measurement.width == pytest.approx(3 * 0.05, rel=0.1)
    assert s.measurement.contrast == pytest.approx(0.6)
    # The polygon is in the photo's pixels, along the drawn line.
    xs, ys = np.asarray(s.polygon).T
    assert xs.min() > 880 and xs.max() < 1320 and ys.min() > 790 and ys.max() < 810


def test_the_pass_measures_a_side_view_against_the_side_it_shows():
    """The same 2000 px of device as a phone's top edge (its width, about half its length): about
    0.024 mm a pixel, fine enough for a card that a 0.05 mm back is too coarse for."""
    data = _png(_photo())
    frame = frame_photo(data, SIZE)
    card = _card(max_tiles=4, heat_cut=0.5, coarsest_mm=0.04, fine_mm=0.02)
    stage = FineStage(card, _dark_lines, LENGTH_MM, kind=DeviceKind.PHONE)
    back = _coarse(frame)
    assert fine_pass(back, frame.letterbox, SIZE, data, frame.original_size, stage) is None
    top = dict(back, view_probs=np.eye(len(VIEW_CLASSES), dtype=np.float32)[VIEW_CLASSES.index("top")])
    fine = fine_pass(top, frame.letterbox, SIZE, data, frame.original_size, stage)
    share = view_share(View.TOP, DeviceKind.PHONE)
    assert fine is not None and fine.mm_per_px == pytest.approx(0.05 * share, rel=0.05)
    # The caller's view over the network's: a photo the caller calls its top edge, the network its back.
    said = fine_pass(back, frame.letterbox, SIZE, data, frame.original_size, stage, view=View.TOP)
    assert said is not None and said.mm_per_px == pytest.approx(fine.mm_per_px)
    assert with_fine(Inferred(frame, back), stage, view=View.TOP).fine.mm_per_px == fine.mm_per_px
    assert with_fine(Inferred(frame, back), stage).fine is None


def test_a_card_that_does_not_fill_runs_only_the_proposed_tiles():
    """Without evidence anywhere (no coarse candidate, no line), a card that fills spends its tiles on
    the grade-critical zones; one with `fill_critical` off runs none, and still reads the photo."""
    img = _photo()
    x0, y0, x1, y1 = DEVICE
    img[y0:y1, x0:x1] = 170  # the line painted over: a clean device
    data = _png(img)
    frame = frame_photo(data, SIZE)
    outputs = _coarse(frame)
    screen = ZONE_CHANNELS.index(Zone.SCREEN.value)
    outputs["zone_probs"][screen] = outputs["zone_probs"][ZONE_CHANNELS.index(Zone.BODY.value)]
    outputs["zone_probs"][ZONE_CHANNELS.index(Zone.BODY.value)] = 0.0  # a front view: its screen is critical
    runs = {}
    for fill in (True, False):
        card = _card(max_tiles=3, heat_cut=0.5, fill_critical=fill)
        fine = fine_pass(
            outputs, frame.letterbox, SIZE, data, frame.original_size, FineStage(card, _dark_lines, LENGTH_MM)
        )
        runs[fill] = fine
    assert runs[True] is not None and len(runs[True].tiles) == 3
    assert runs[False] is None or len(runs[False].tiles) == 0
    assert FineCard(name="old", version="0").fill_critical  # cards written before the field fill, as they did


def test_a_photo_too_coarse_for_the_fine_pass_gets_none():
    small = cv2.resize(_photo(), (600, 400), interpolation=cv2.INTER_AREA)  # 0.2 mm per pixel
    data = _png(small)
    frame = frame_photo(data, SIZE)
    outputs = _coarse(frame)
    stage = FineStage(_card(), _dark_lines, LENGTH_MM)
    assert with_fine(Inferred(frame, outputs), stage).fine is None


def test_without_a_device_there_is_no_fine_pass():
    data = _png(_photo())
    frame = frame_photo(data, SIZE)
    outputs = _coarse(frame)
    outputs["zone_probs"][:] = 0.0
    outputs["zone_probs"][0] = 1.0
    stage = FineStage(_card(), _dark_lines, LENGTH_MM)
    assert fine_pass(outputs, frame.letterbox, SIZE, data, frame.original_size, stage) is None


def _line_instance(x, y, half=5, type_=DefectType.SCRATCH) -> DefectInstance:
    """A thin horizontal instance centred on (x, y) in the photo's pixels."""
    return DefectInstance(
        type=type_,
        zone=Zone.BODY,
        polygon=[(x - half, y - 1), (x + half, y - 1), (x + half, y + 1), (x - half, y + 1)],
        box=(x - half, y - 1, x + half, y + 1),
        measurement=Measurement(units="mm", length=1.0, width=0.3, area=0.3),
    )


def _fine_maps():
    data = _png(_photo())
    frame = frame_photo(data, SIZE)
    outputs = _coarse(frame, scratch_at=(1000, 800))
    card = _card(max_tiles=2, heat_cut=0.5)
    fine = fine_pass(
        outputs, frame.letterbox, SIZE, data, frame.original_size, FineStage(card, _dark_lines, LENGTH_MM)
    )
    assert fine is not None
    return frame, outputs, fine


def test_a_coarse_scratch_gives_way_only_to_a_fine_scratch_on_it():
    _, _, fine = _fine_maps()
    inside, outside = _line_instance(1000, 800), _line_instance(400, 1200)
    chip = inside.model_copy(update={"type": DefectType.CHIP})
    # The tiles looked at `inside` and found nothing: it stays (a wide gouge the fine network misses).
    assert merge_fine([inside, outside, chip], [], fine) == [inside, outside, chip]
    # A fine scratch on it replaces it; one 10 mm away (200 px at 0.05 mm/px) does not.
    on, far = _line_instance(1002, 801), _line_instance(1000, 1000)
    assert merge_fine([inside, outside, chip], [on], fine) == [outside, chip, on]
    assert merge_fine([inside, outside, chip], [far], fine) == [inside, outside, chip, far]


def test_a_line_on_a_coarse_crack_is_not_a_fine_scratch():
    frame, outputs, fine = _fine_maps()
    thresholds = Thresholds(defect_pixel={n: 0.5 for n in DEFECT_CHANNELS})
    scale = estimate_scale(outputs["zone_probs"], frame.letterbox, SIZE, LENGTH_MM)

    def fine_scratches(outputs):
        insts = photo_instances(outputs, frame.letterbox, SIZE, thresholds, scale, fine=fine)
        return [i for i in insts if i.type == DefectType.SCRATCH and i.measurement.contrast is not None]

    assert len(fine_scratches(outputs)) == 1
    # The coarse pass calls the same line a crack (its cells over the whole line, end cells included):
    # the fine pass leaves it to the crack.
    crack = {k: v.copy() for k, v in outputs.items()}
    crack["defect_probs"][:] = 0.0
    (x0, y), (x1, _) = frame.letterbox.to_model(np.array(LINE, float)) / STRIDE
    crack["defect_probs"][DEFECT_CHANNELS.index("crack"), int(y), int(x0) - 1 : int(x1) + 2] = 0.9
    insts = photo_instances(crack, frame.letterbox, SIZE, thresholds, scale, fine=fine)
    assert any(i.type == DefectType.CRACK for i in insts)
    assert fine_scratches(crack) == []


def test_hysteresis_keeps_a_line_whole_where_its_heat_dips():
    from model.fine_instances import lines_mask

    heat = np.zeros((20, 60), np.float32)
    heat[10, 5:55] = 0.995
    heat[10, 25:30] = 0.7  # the line dips below the cut here
    heat[3, 5:15] = 0.7  # a faint line with no pixel at the cut: not a line
    alone = lines_mask(heat, 0.99, None)
    assert cv2.connectedComponents(alone)[0] - 1 == 2  # the cut alone breaks the line in two
    grown = lines_mask(heat, 0.99, 0.5)
    assert cv2.connectedComponents(grown)[0] - 1 == 1  # grown from the cut: one line
    assert grown[10, 25:30].all() and not grown[3].any()


def test_an_outline_meets_a_mask_in_its_box_as_on_the_whole_canvas():
    """merge_fine draws each coarse scratch in its own box (`_touches`): the same answer as drawing it on
    the whole canvas, including outlines that run off the canvas's edges."""
    from model.fine_instances import _touches, canvas_raster

    _, _, fine = _fine_maps()
    h, w = fine.heat.shape
    rng = np.random.default_rng(0)
    answers = set()
    x0, y0, x1, y1 = DEVICE
    for _ in range(60):
        mask = np.zeros((h, w), bool)
        for _ in range(3):
            y, x = rng.integers(0, h), rng.integers(0, w)
            mask[max(0, y - h // 8) : y + h // 8, max(0, x - w // 8) : x + w // 8] = True
        # In the photo's pixels, around the device (the canvas): some run off its edges.
        x, y = rng.uniform(x0 - 100, x1 + 100), rng.uniform(y0 - 100, y1 + 100)
        inst = _line_instance(x, y, half=float(rng.uniform(5, 400)))
        whole = bool((canvas_raster([inst], fine, 0.0) & mask).any())
        assert _touches(inst, fine, mask) == whole
        answers.add(whole)
    assert answers == {True, False}  # both outcomes were tried


def test_outlines_grown_only_within_boxes_are_those_grown_on_the_whole_canvas():
    """A zone crack's outline spans the screen; the fine pass grows it only in its tile groups' boxes
    (`canvas_raster(..., within)`): inside each box the same pixels as growing the whole canvas, outside
    them none, boxes off the canvas's edges included."""
    from model.fine_instances import canvas_raster

    _, _, fine = _fine_maps()
    h, w = fine.heat.shape
    rng = np.random.default_rng(1)
    x0, y0, x1, y1 = DEVICE
    grow_mm = 8 * fine.mm_per_px  # an 8 px disc
    grown_somewhere = False
    for _ in range(20):
        insts = [
            _line_instance(rng.uniform(x0, x1), rng.uniform(y0, y1), half=float(rng.uniform(5, 300)))
            for _ in range(int(rng.integers(1, 4)))
        ]
        whole = canvas_raster(insts, fine, grow_mm)
        boxes = []
        for _ in range(3):
            bx, by = int(rng.integers(-20, w)), int(rng.integers(-20, h))
            boxes.append((bx, by, bx + int(rng.integers(1, w // 3)), by + int(rng.integers(1, h // 3))))
        part = canvas_raster(insts, fine, grow_mm, within=boxes)
        inside = np.zeros((h, w), bool)
        for bx0, by0, bx1, by1 in boxes:
            inside[max(by0, 0) : by1, max(bx0, 0) : bx1] = True
        assert np.array_equal(part[inside], whole[inside])
        assert not part[~inside].any()
        grown_somewhere |= bool(part[inside].any() and (whole & ~canvas_raster(insts, fine, 0.0)).any())
    assert grown_somewhere  # the boxes met grown outlines, not only empty canvas


def test_tiles_touching_by_a_side_or_a_corner_are_one_group():
    """fine_instances reads the maps group by group: a line can cross from a tile into any tile that
    touches it, corners included (8-connected lines), and never into one that does not."""
    from model.fine_instances import tile_groups

    t = 64
    ell = [(0, 0, t, t), (0, t, t, 2 * t), (t, 2 * t, 2 * t, 3 * t)]  # down, then a corner to the right
    apart = (t + 1, 0, 2 * t, t - 1)  # inside the L's box, one pixel clear of each of its tiles
    away = (2 * t + 1, 0, 3 * t + 1, t)  # one pixel clear of `apart`
    groups = tile_groups([*ell, apart, away])
    assert sorted(map(sorted, groups)) == sorted([sorted(ell), [apart], [away]])
    assert tile_groups([]) == []


def test_the_line_filters_median_and_mad_are_numpys():
    """`median_and_mad` (from a histogram) gives exactly `np.median` and the median absolute deviation, odd
    and even counts, spread and piled-up values alike."""
    from model.fine_pass import median_and_mad

    rng = np.random.default_rng(0)
    samples = [
        rng.integers(0, 256, 1001, dtype=np.uint8),
        rng.integers(0, 256, 1000, dtype=np.uint8),
        np.minimum(rng.exponential(3.0, 5000), 255).astype(np.uint8),  # piled up near 0, as responses are
        np.array([7], np.uint8),
        np.array([0, 255], np.uint8),
        np.array([3, 3, 4, 9], np.uint8),
    ]
    for v in samples:
        med = float(np.median(v.astype(np.float32)))
        mad = float(np.median(np.abs(v.astype(np.float32) - med)))
        assert median_and_mad(np.bincount(v, minlength=256)) == (med, mad)


def _worst_line_contrast(scale: float, interpolation: int) -> int:
    """A dark line one pixel wide (contrast 100) shrunk by `scale`: its least contrast left in any canvas
    column, over every phase of the line against the output grid."""
    worst = 100
    for x in range(40, 48):
        img = np.full((32, 96), 200, np.uint8)
        img[:, x] = 100
        out = cv2.resize(img, (round(96 * scale), 32), interpolation=interpolation)
        worst = min(worst, 200 - int(out[16].min()))
    return worst


@pytest.mark.parametrize("scale", [0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.99])
def test_the_canvas_shrink_keeps_a_one_pixel_line_as_the_area_average_does(scale):
    """The canvas's shrink is bilinear only where bilinear never steps over a thin line more than the area
    average does (from 0.75); below, where it would (0.6: a third of the contrast gone), the area average."""
    from model.fine_pass import LINEAR_SHRINK_FROM, _shrink_interpolation

    chosen = _shrink_interpolation(scale)
    area = _worst_line_contrast(scale, cv2.INTER_AREA)
    assert (chosen == cv2.INTER_LINEAR) == (scale >= LINEAR_SHRINK_FROM)
    assert _worst_line_contrast(scale, chosen) >= area - 2
    if scale in (0.6, 0.7):
        assert _worst_line_contrast(scale, cv2.INTER_LINEAR) < area - 2  # why not bilinear everywhere


def test_cells_count_the_points_in_each_grid_cell():
    """`_cells` (one bincount) counts points per grid cell exactly as a loop over them does, cells off
    the canvas's origin and negative ones included, and none for no points; with weights, sums them."""
    from model.fine_pass import _cells

    rng = np.random.default_rng(5)
    for n, low in ((0, 0.0), (1, 0.0), (7, 0.0), (5000, 0.0), (5000, -600.0)):
        points = rng.uniform(low, 2000.0, (n, 2))
        want: dict[tuple[int, int], float] = {}
        for x, y in points:
            key = (int(np.floor(x / 256)), int(np.floor(y / 256)))
            want[key] = want.get(key, 0.0) + 1.0
        assert _cells(points, 256) == want
    assert _cells(np.array([[10.0, 300.0], [20.0, 310.0], [700.0, 5.0]]), 256) == {(0, 1): 2.0, (2, 0): 1.0}
    # With weights (tile scoring's screen-first area): each cell's sum of its points' weights.
    weighted = _cells(np.array([[10.0, 300.0], [20.0, 310.0], [700.0, 5.0]]), 256, np.array([1.0, 10.0, 1.0]))
    assert weighted == {(0, 1): 11.0, (2, 0): 1.0}


def test_the_line_filter_shrinks_by_whole_numbers_where_that_keeps_near_its_pixel_size():
    """A 12 MP phone's canvas (0.05-0.0625 mm a pixel) is shrunk by a half for the line filter, OpenCV's
    block average; coarser canvases to the filter's 0.1 mm as before, and from 0.1 mm not at all. A
    one-pixel line keeps more of its contrast through the half than through any fractional area shrink
    the filter used to make of such canvases."""
    from model.fine_pass import LINE_FILTER_RES_MM, line_filter_shrink

    for res in (0.05, 0.055, 0.06, 0.0625):
        assert line_filter_shrink(res) == 0.5
    for res in (0.07, 0.08, 0.09):
        assert line_filter_shrink(res) == pytest.approx(res / LINE_FILTER_RES_MM)
    assert line_filter_shrink(0.1) == line_filter_shrink(0.2) == 1.0
    half = _worst_line_contrast(0.5, cv2.INTER_AREA)
    assert half == 50
    assert all(half >= _worst_line_contrast(s, cv2.INTER_AREA) for s in (0.55, 0.6, 0.65, 0.7, 0.8, 0.9))


def test_the_line_filter_is_its_definition():
    """`line_filter` (OpenCV's histogram, threshold and mask) gives exactly what its docstring defines,
    written out in numpy: the larger of the top-hat and black-hat, above the device's median + K x
    MAD, inside the device less its outline band; bool, the shape of the image."""
    from model.fine_pass import LINE_FILTER_K, LINE_FILTER_MM, OUTLINE_MM, line_filter

    rng = np.random.default_rng(3)
    img = cv2.GaussianBlur(rng.integers(60, 200, (120, 150), dtype=np.uint8), (0, 0), 2.0)
    img[40, 20:130] = 20  # a dark line, and a bright one
    img[30:100, 90] = 250
    for px_mm in (0.05, 0.1, 0.2):
        device = np.zeros(img.shape, bool)
        device[10:110, 5:140] = True
        r = max(1, round(LINE_FILTER_MM / px_mm / 2))
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        g = cv2.GaussianBlur(img, (0, 0), 0.7)
        resp = np.maximum(
            cv2.morphologyEx(g, cv2.MORPH_TOPHAT, k), cv2.morphologyEx(g, cv2.MORPH_BLACKHAT, k)
        )
        inner = cv2.erode(
            device.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, round(OUTLINE_MM / px_mm))
        )
        inside = resp[inner > 0].astype(np.float64)
        med = np.median(inside)
        mad = np.median(np.abs(inside - med))
        want = (resp > med + LINE_FILTER_K * (mad + 1.0)) & (inner > 0)
        for dev in (device, device.astype(np.uint8)):
            got = line_filter(img, dev, px_mm)
            assert got.dtype == bool and got.shape == img.shape
            assert np.array_equal(got, want), px_mm
        assert want[40, 60] and want[60, 90]  # both lines are found, so the comparison means something
    assert not line_filter(img, np.zeros(img.shape, bool), 0.1).any()  # no device, no lines


def test_the_rim_read_beside_the_tiles_hands_back_its_lines_and_its_errors():
    """The rim is read on a thread beside the tiles (`fine_pass.beside`): its result, and an error it
    raises, reach the caller when it asks, never lost on the thread."""
    from model.fine_pass import beside

    assert beside(lambda: ("a line",))() == ("a line",)

    def broken():
        raise ValueError("the rim's canvas is empty")

    result = beside(broken)
    with pytest.raises(ValueError, match="canvas is empty"):
        result()


def test_a_decode_started_early_gives_the_fine_pass_the_same_canvas():
    """`model.inference` may start the full-scale decode beside the coarse passes; handed to the fine
    pass (`whole`), it is used where the pass reads the photo at full scale, with the same result."""
    from model.preprocess import decode_upright

    data = _png(_photo())
    frame = frame_photo(data, SIZE)
    outputs = _coarse(frame)
    stage = FineStage(_card(max_tiles=4, heat_cut=0.5), _dark_lines, LENGTH_MM)
    calls = []

    def whole():
        calls.append(1)
        return decode_upright(data, None)

    plain = fine_pass(outputs, frame.letterbox, SIZE, data, frame.original_size, stage)
    early = fine_pass(outputs, frame.letterbox, SIZE, data, frame.original_size, stage, whole)
    assert calls == [1]
    assert plain.tiles == early.tiles and plain.tiles
    for name in ("heat", "width_px", "contrast", "covered"):
        np.testing.assert_array_equal(np.asarray(getattr(plain, name)), np.asarray(getattr(early, name)))


def test_large_photos_start_their_full_decode_early_only_with_cores_to_spare():
    from model.inference import _early_decodes
    from model.preprocess import DecodeError, decode

    def jpeg(w, h):
        buf = io.BytesIO()
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG", quality=80)
        return buf.getvalue()

    big, small = jpeg(2400, 1800), jpeg(800, 600)
    frames = [frame_photo(big, SIZE), frame_photo(small, SIZE)]
    card = _card()
    early = _early_decodes(frames, FineStage(card, _dark_lines, LENGTH_MM))
    assert set(early) == {0}  # 4.3 MP from EARLY_DECODE_PIXELS on; 0.5 MP decodes in a few ms
    arr, factor = early[0]()
    np.testing.assert_array_equal(arr, decode(big)[0])
    assert factor == 1.0
    assert _early_decodes(frames, FineStage(card, _dark_lines, LENGTH_MM, lambda: False)) == {}
    assert _early_decodes(frames, None) == {}

    # Started with the frame, before its reduced decode (a grading alone, serving.pipeline): the same
    # pixels, and used even when the cores are busy by the time the model has run (it is under way).
    started = [frame_photo(big, SIZE, whole=True), frame_photo(small, SIZE, whole=True)]
    assert started[0].whole is not None and started[1].whole is None
    np.testing.assert_array_equal(started[0].image, frames[0].image)  # the frame itself unchanged
    busy = _early_decodes(started, FineStage(card, _dark_lines, LENGTH_MM, lambda: False))
    assert set(busy) == {0} and busy[0] is started[0].whole
    arr, factor = busy[0]()
    np.testing.assert_array_equal(arr, decode(big)[0])
    assert factor == 1.0
    with pytest.raises(DecodeError):  # a broken photo is refused as before, whatever the thread met
        frame_photo(big[: len(big) // 3], SIZE, whole=True)
    with pytest.raises(DecodeError):
        frame_photo(b"not a photo", SIZE, whole=True)


def test_a_tiles_window_is_the_padded_canvas_without_padding_it():
    """`run_tiles` cuts each tile's window (with its margin) straight from the canvas, reflected where it
    runs off: the same pixels as padding the whole canvas with BORDER_REFLECT_101 first, including
    canvases smaller than the margin (the reflection folds again)."""
    from model.fine_pass import _window

    rng = np.random.default_rng(5)
    for h, w, m, size in [(40, 70, 8, 32), (5, 9, 8, 24), (1, 30, 4, 12), (33, 33, 16, 48)]:
        canvas = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pad = 3 * size
        padded = cv2.copyMakeBorder(canvas, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
        for y0 in range(-m, h, 3):
            for x0 in range(-m, w, 5):
                want = padded[pad + y0 : pad + y0 + size, pad + x0 : pad + x0 + size]
                np.testing.assert_array_equal(_window(canvas, x0, y0, size), want)


def test_the_fallback_canvas_is_each_two_by_two_blocks_mean_where_the_photo_put_it():
    """Falling back from 0.05 to 0.1 mm a pixel halves the canvas. An odd-sized canvas made OpenCV's
    area average take its general path (2029 / 1014 is not 2): 20-40 ms for 6 MP, and pixels shifted by
    up to one at the far edge. Cut to whole 2 x 2 blocks, each output pixel is its block's mean, and the
    letterbox still maps it back to where that block is in the photo."""
    from model.fine_pass import _rescaled
    from model.preprocess import Letterbox

    rng = np.random.default_rng(7)
    canvas = rng.integers(0, 256, (201, 303, 3), dtype=np.uint8)
    lb = Letterbox(
        scale=0.8, pad_x=0, pad_y=0, width=1000, height=800, draft_factor=1, crop=(40, 30, 420, 290)
    )
    small, slb = _rescaled(canvas, lb, 0.5)
    assert small.shape == (100, 151, 3)
    blocks = canvas[:200, :302].reshape(100, 2, 151, 2, 3).astype(np.float32).mean(axis=(1, 3))
    assert np.abs(small.astype(np.float32) - blocks).max() <= 0.5
    # Output pixel (i, j)'s centre is the centre of canvas block (2i..2i+1, 2j..2j+1) in the photo.
    assert slb.scale == pytest.approx(0.4)
    centre = np.array([[10.5, 20.5]])  # output pixel (10, 20)'s centre, as x, y
    assert slb.to_original(centre) == pytest.approx(lb.to_original(np.array([[21.0, 41.0]])))
