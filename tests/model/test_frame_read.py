"""The frame reader (model.frame_read) and its path through the fine pass: a scratch along the rim of a
front or back view is found, measured in mm and reported on the frame; the rim's own edges, the
background beyond it and a side view are not read."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from model.card import Thresholds
from model.fine_instances import photo_instances
from model.fine_pass import FineCard, FineStage, fine_pass
from model.frame_read import read_frame
from model.inference import frame_photo
from model.outputs import DEFECT_CHANNELS, VIEW_CLASSES, ZONE_CHANNELS
from model.postprocess import estimate_scale
from model.taxonomy import DefectType, View, Zone

RES = 0.05  # mm per pixel
RIM_MM = 1.0
LINE_MM = 8.0


def _px(mm: float) -> int:
    return round(mm / RES)


def _rounded(img: np.ndarray, box: tuple[int, int, int, int], r: int, value: int) -> None:
    """A filled rounded rectangle (x0, y0, x1, y1 inclusive) of corner radius r."""
    x0, y0, x1, y1 = box
    cv2.rectangle(img, (x0 + r, y0), (x1 - r, y1), value, -1)
    cv2.rectangle(img, (x0, y0 + r), (x1, y1 - r), value, -1)
    for cx, cy in ((x0 + r, y0 + r), (x1 - r, y0 + r), (x0 + r, y1 - r), (x1 - r, y1 - r)):
        cv2.circle(img, (cx, cy), r, value, -1)


def _device(
    width_mm=24.0, length_mm=40.0, margin_mm=3.0, line=True, outside=False, seed=0, rim_mm=RIM_MM
) -> tuple[np.ndarray, np.ndarray, dict]:
    """A grey canvas at RES: a textured background, a device with a bright `rim_mm` rim around a
    dark panel, and (line) a bright 8 mm line 0.15 mm wide along the middle of the rim's top side
    (outside: the same line 0.6 mm outside the outline instead). Returns the canvas, the coarse zone map (the
    device drawn in 2 mm cells, as a coarse pass places it) and where things are."""
    rng = np.random.default_rng(seed)
    h, w = _px(length_mm + 2 * margin_mm), _px(width_mm + 2 * margin_mm)
    texture = cv2.GaussianBlur(rng.normal(0, 25, (h, w)).astype(np.float32), (0, 0), 6)
    img = np.clip(120 + texture, 0, 255).astype(np.uint8)
    m = _px(margin_mm)
    outer = (m, m, w - m - 1, h - m - 1)
    _rounded(img, outer, _px(4.0), 190)
    rim = _px(rim_mm)
    _rounded(img, (outer[0] + rim, outer[1] + rim, outer[2] - rim, outer[3] - rim), _px(3.0), 40)
    y = m + _px(rim_mm / 2) if not outside else m - _px(0.6)
    x0 = w // 2 - _px(LINE_MM / 2)
    if line or outside:
        cv2.line(img, (x0, y), (x0 + _px(LINE_MM), y), 235, 3)
    img = np.clip(img + rng.normal(0, 2.0, img.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    _rounded(mask, outer, _px(4.0), 1)
    cell = _px(2.0)
    coarse = cv2.resize(mask, (w // cell, h // cell), interpolation=cv2.INTER_AREA)
    zones = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_NEAREST)
    return img, zones, {"y": y, "x0": x0, "x1": x0 + _px(LINE_MM)}


def test_a_scratch_along_the_rim_is_found_and_measured():
    img, zones, where = _device()
    lines = read_frame(img, zones, RES, 4.0, 10.0)
    assert len(lines) == 1
    (line,) = lines
    assert line.length_px * RES == pytest.approx(LINE_MM, rel=0.15)
    assert line.width_px * RES <= 0.4
    assert 0.05 < line.contrast <= 1.0
    assert line.z >= 10.0
    # On the drawn line: its centre within half a millimetre of the line's row and inside its ends.
    assert np.abs(line.centre[:, 1] - where["y"]).max() <= _px(0.5)
    assert line.centre[:, 0].min() >= where["x0"] - _px(1.0)
    assert line.centre[:, 0].max() <= where["x1"] + _px(1.0)


def test_a_clean_rim_and_the_background_beyond_it_read_as_nothing():
    for kw in ({"line": False}, {"line": False, "outside": True}):
        img, zones, _ = _device(**kw)
        assert read_frame(img, zones, RES, 4.0, 10.0) == []


def test_a_faint_line_passes_a_low_cut_and_not_a_high_one():
    img, zones, _ = _device()
    lines = read_frame(img, zones, RES, 4.0, 4.0)
    assert lines and lines[0].z < 1e3
    assert read_frame(img, zones, RES, 4.0, lines[0].z + 1.0) == []


def test_a_rim_too_narrow_for_its_pixels_is_not_read():
    # At 0.11 mm per pixel (MSD's phones), a 1 mm rim has rows enough to read a line within it; a 0.5 mm
    # one (a glass edge's chamfer) has three, where a line cannot be told from its edges moving.
    coarse = 0.11
    found = {}
    for rim_mm in (1.0, 0.5):
        img, zones, _ = _device(rim_mm=rim_mm)
        f = RES / coarse
        small = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        small_zones = cv2.resize(zones, small.shape[::-1], interpolation=cv2.INTER_NEAREST)
        found[rim_mm] = read_frame(small, small_zones, coarse, 4.0, 8.0)
    assert [round(line.length_px * coarse) for line in found[1.0] if line.z > 50] == [LINE_MM]
    assert found[0.5] == []


# The same device as a photo through the fine pass: 0.05 mm per pixel, as a 12 MP photo shows a phone.
SIZE, STRIDE = 128, 4


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.repeat(img[..., None], 3, axis=2)).save(buf, format="PNG")
    return buf.getvalue()


def _coarse(frame, zones_px: np.ndarray, view: int) -> dict[str, np.ndarray]:
    """Coarse outputs in `frame`: the device's cells as the body zone, the view one-hot."""
    n = SIZE // STRIDE
    lb = frame.letterbox
    ys, xs = np.mgrid[0:n, 0:n]
    centres = lb.to_original((np.stack([xs.ravel(), ys.ravel()], 1) + 0.5) * STRIDE)
    h, w = zones_px.shape
    inside = np.zeros(n * n, bool)
    ok = (centres[:, 0] >= 0) & (centres[:, 1] >= 0) & (centres[:, 0] < w) & (centres[:, 1] < h)
    inside[ok] = zones_px[centres[ok, 1].astype(int), centres[ok, 0].astype(int)] > 0
    zone = np.zeros((len(ZONE_CHANNELS), n, n), np.float32)
    zone[0] = (~inside).reshape(n, n)
    zone[ZONE_CHANNELS.index(Zone.BODY.value)] = inside.reshape(n, n)
    views = np.zeros(6, np.float32)
    views[view] = 1.0
    defect = np.zeros((len(DEFECT_CHANNELS), n, n), np.float32)
    return {"defect_probs": defect, "zone_probs": zone, "view_probs": views}


def _no_lines(batch: np.ndarray) -> dict[str, np.ndarray]:
    zero = np.zeros((batch.shape[0], 1, *batch.shape[2:]), np.float32)
    return {"heat": zero, "width_px": zero, "contrast": zero}


@pytest.mark.parametrize(
    ("view", "frame_z", "found"),
    [(1, 10.0, True), (0, 10.0, True), (1, None, False), (2, 10.0, False)],
    ids=["back", "front", "card-without-frame", "side-view"],
)
def test_the_fine_pass_reports_rim_scratches_on_the_frame(view, frame_z, found):
    img, zones, _ = _device(length_mm=100.0, width_mm=50.0)
    data = _png(img)
    frame = frame_photo(data, SIZE)
    outputs = _coarse(frame, zones, view)
    card = FineCard(name="test", version="0", max_tiles=2, frame_z=frame_z, frame_z_low=4.0)
    stage = FineStage(card, _no_lines, 100.0)
    fine = fine_pass(outputs, frame.letterbox, SIZE, data, frame.original_size, stage)
    thresholds = Thresholds(defect_pixel={n: 0.5 for n in DEFECT_CHANNELS})
    scale = estimate_scale(outputs["zone_probs"], frame.letterbox, SIZE, 100.0)
    as_view = View(VIEW_CLASSES[view])
    insts = photo_instances(outputs, frame.letterbox, SIZE, thresholds, scale, view=as_view, fine=fine)
    on_frame = [i for i in insts if i.type == DefectType.SCRATCH and i.zone == Zone.FRAME]
    if not found:
        assert on_frame == []
        return
    assert len(on_frame) == 1
    (s,) = on_frame
    assert s.measurement.units == "mm"
    assert s.measurement.length == pytest.approx(LINE_MM, rel=0.2)
    assert s.confidence >= 0.5
    assert s.polygon and s.box[2] > s.box[0]


@pytest.mark.parametrize("spare", [True, False, None], ids=["alone", "busy", "offline"])
def test_the_rim_is_read_beside_the_tiles_only_with_cores_to_spare(spare, monkeypatch):
    """The service lets the rim be read on a thread of its own only while a grading is alone
    (`FineStage.spare_cores`); busy, it reads on the grading's thread. The lines are the same."""
    import threading

    import model.fine_pass as fine_pass_module

    threads = []
    real = fine_pass_module.read_frame

    def spy(*args):
        threads.append(threading.current_thread())
        return real(*args)

    monkeypatch.setattr(fine_pass_module, "read_frame", spy)
    img, zones, _ = _device(length_mm=100.0, width_mm=50.0)
    data = _png(img)
    frame = frame_photo(data, SIZE)
    outputs = _coarse(frame, zones, 1)
    card = FineCard(name="test", version="0", max_tiles=2, frame_z=10.0, frame_z_low=4.0)
    stage = FineStage(card, _no_lines, 100.0, None if spare is None else (lambda: spare))
    fine = fine_pass(outputs, frame.letterbox, SIZE, data, frame.original_size, stage)
    assert len(threads) == 1
    assert (threads[0] is threading.current_thread()) == (spare is False)
    assert len(fine.frame) >= 1


def test_no_device_or_a_speck_of_one_reads_nothing():
    img, zones, _ = _device()
    assert read_frame(img, np.zeros_like(zones), RES, 4.0, 10.0) == []
    speck = np.zeros_like(zones)
    speck[100:140, 100:140] = 1  # 2 x 2 mm: no outline to follow
    assert read_frame(img, speck, RES, 4.0, 10.0) == []


@pytest.mark.parametrize("shape, window", [((7, 90), 15), ((5, 10), 15), ((3, 40), 4)])
def test_the_running_median_is_scipys_wrapped_median_filter(shape, window):
    """`_running_median` takes its median over a sliding window for speed; it must stay scipy's
    median filter (mode wrap) of the block means exactly, the strip being closed."""
    from scipy.ndimage import median_filter

    from model.frame_read import _running_median

    rng = np.random.default_rng(3)
    values = rng.normal(100, 20, (shape[0], shape[1] * 4)).astype(np.float32)
    got = _running_median(values, 4, window)
    means = values.reshape(shape[0], shape[1], 4).mean(axis=2)
    want = median_filter(means, size=(1, min(window, shape[1]) | 1), mode="wrap").astype(np.float32)
    want = cv2.resize(want, (shape[1] * 4, shape[0]), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("res", [0.02, 0.05, 0.055, 0.0625, 0.08, 0.1, 0.109, 0.2, 0.45, 2.0])
def test_the_rims_rows_by_whole_numbers_are_its_millimetres(res):
    """`_rim_rows` tests whole rows against two bounds instead of each row's distance in millimetres:
    the same rows, the float rounding at the bounds included; none where no row fits (a coarse strip)."""
    from model.frame_read import RIM_MM, _rows_within

    rows = 60
    lo, hi = _rows_within(RIM_MM, res, rows)
    want = [d for d in range(rows + 1) if RIM_MM[0] <= d * res <= RIM_MM[1]]
    assert [d for d in range(rows + 1) if lo <= d <= hi] == want
    # 3 x 0.1 is 0.30000000000000004 in floats: outside (0.2, 0.3), as the distance test had it.
    assert _rows_within((0.2, 0.3), 0.1, rows) == (2, 2)
    assert _rows_within((0.25, 0.3), 1.0, rows) == (rows + 1, -1)


def test_the_seam_follows_the_strongest_edge_and_prefers_staying_put():
    """`_seam`'s dynamic programme: a step edge that moves by two rows half-way is followed, and in a
    blank strip (a tie everywhere) the seam does not wander."""
    from model.frame_read import _seam

    strip = np.zeros((40, 400), np.float32)
    strip[:15, :200] = 200.0
    strip[:17, 200:] = 200.0
    rows = _seam(strip, 10, 3)
    assert abs(rows[50] - 14.5) <= 1.0 and abs(rows[350] - 16.5) <= 1.0
    flat = _seam(np.full((40, 400), 50.0, np.float32), 10, 3)
    assert np.ptp(flat) == 0.0
