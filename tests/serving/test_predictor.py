"""The predictor (loading and verifying model files), micro-batching, and train/serve preprocessing parity."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest

from model.preprocess import prepare
from model.rules import load_standard
from model.taxonomy import View
from serving.batching import MicroBatcher, QueueFullError
from serving.pipeline import Device, grade_device, prepare_photos, run_direct
from serving.predictor import ModelLoadError, load_model
from tests.serving.conftest import encode
from tests.serving.tiny_model import (
    build_tiny_model,
    build_tiny_model_proto,
    calibrated_card,
    device_photo,
    tiny_card,
)


@pytest.fixture(scope="module")
def model(model_path):
    return load_model(model_path, intra_op_threads=1)


def test_everything_comes_from_the_model_file(model):
    assert model.card.version == "tiny-1" and model.input_size == 128
    assert len(model.sha256) == 64
    out = model.run(np.zeros((3, 3, 128, 128), np.uint8))
    assert out["defect_probs"].shape == (3, 6, 32, 32) and out["view_probs"].shape == (3, 6)


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("not onnx", "cannot load"),
        ("no card", "no model card"),
        ("bad card", "invalid model card"),
        ("wrong input size in card", "test run failed|shape"),
        ("missing output", "output"),
        ("calibration for other grades", "grade calibration for ctia is for grades"),
        ("calibration for an unknown standard", "unknown standard 'nope'"),
    ],
)
def test_broken_model_files_are_refused(tmp_path: Path, breakage, message):
    path = tmp_path / "m.onnx"
    proto = build_tiny_model_proto()
    if breakage == "not onnx":
        path.write_bytes(b"\x00garbage")
    else:
        if breakage == "no card":
            del proto.metadata_props[:]
        elif breakage == "bad card":
            proto.metadata_props[0].value = '{"name": "x"}'
        elif breakage == "wrong input size in card":
            # the graph pools by 4 on 128 px; a card claiming 96 px promises 24 x 24 masks that never come
            proto.metadata_props[0].value = tiny_card(input_size=96, mask_stride=2).to_json()
        elif breakage == "missing output":
            del proto.graph.output[3]
        elif breakage.startswith("calibration"):
            name = "ctia" if breakage.endswith("grades") else "nope"
            proto.metadata_props[0].value = calibrated_card(name, ("A", "B")).to_json()
        onnx.save(proto, str(path))
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)


def test_serving_preprocessing_is_trainings(tmp_path, jpeg):
    """Training loads photos with model.preprocess.prepare from files; serving from uploaded bytes."""
    f = tmp_path / "a.jpg"
    f.write_bytes(jpeg)
    train_img, train_lb = prepare(f, 128)
    (served,) = prepare_photos([jpeg], 128)
    assert np.array_equal(served.image, train_img) and served.letterbox == train_lb


def test_serving_has_no_preprocessing_of_its_own():
    """No resizing, normalisation constants or letterboxing of its own: only model.preprocess's."""
    import re

    src = "\n".join(p.read_text() for p in (Path(__file__).parents[2] / "serving").rglob("*.py"))
    for forbidden in (r"cv2\.resize", r"\bMEAN\b", r"\bSTD\b", r"/ ?255\b", r"\bletterbox\("):
        assert not re.search(forbidden, src), forbidden


def test_batched_and_single_runs_agree(model):
    imgs = [prepare(encode(device_photo(w, h)), 128)[0] for w, h in [(800, 600), (600, 800), (500, 500)]]
    together = run_direct(model, imgs)
    alone = [run_direct(model, [i])[0] for i in imgs]
    for a, b in zip(together, alone, strict=True):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_micro_batcher_groups_concurrent_photos(model):
    sizes = []
    batcher = MicroBatcher(max_batch=8, max_wait_s=0.05, max_queue=64, on_batch=lambda n, _s: sizes.append(n))
    img = prepare(encode(device_photo()), 128)[0]
    try:
        with ThreadPoolExecutor(8) as pool:
            outs = list(pool.map(lambda _: batcher.run(model, [img])[0], range(8)))
    finally:
        batcher.stop()
    assert sum(sizes) == 8 and max(sizes) > 1
    ref = run_direct(model, [img])[0]
    for o in outs:
        np.testing.assert_allclose(o["defect_probs"], ref["defect_probs"], rtol=1e-5, atol=1e-6)


def test_micro_batcher_waits_at_most_max_wait(model):
    batcher = MicroBatcher(max_batch=8, max_wait_s=0.02, max_queue=8)
    img = np.zeros((128, 128, 3), np.uint8)
    try:
        batcher.run(model, [img])  # warm-up
        t = time.perf_counter()
        batcher.run(model, [img])
        assert time.perf_counter() - t < 0.5
    finally:
        batcher.stop()


def test_full_queue_refuses_instead_of_waiting(model):
    gate = threading.Event()

    class Slow:
        """A model whose runs block until released, so the queue fills."""

        def __init__(self, inner):
            self.inner = inner

        def run(self, batch):
            gate.wait(5)
            return self.inner.run(batch)

    slow = Slow(model)
    batcher = MicroBatcher(max_batch=2, max_wait_s=0, max_queue=4)
    img = np.zeros((128, 128, 3), np.uint8)
    try:
        first = batcher.submit(slow, [img, img])  # taken by the worker, blocks in run
        time.sleep(0.1)
        queued = batcher.submit(slow, [img, img, img])
        with pytest.raises(QueueFullError):
            batcher.submit(slow, [img, img])  # 3 waiting + 2 > 4: all or nothing
        assert batcher.depth == 3
        gate.set()
        for f in first + queued:
            assert f.result(5)["view_probs"].shape == (6,)
    finally:
        gate.set()
        batcher.stop()


def test_a_swapped_model_never_shares_a_batch(model, tmp_path):
    from tests.serving.tiny_model import build_tiny_model

    build_tiny_model(tmp_path / "m96.onnx", tiny_card(input_size=96))
    other = load_model(tmp_path / "m96.onnx", intra_op_threads=1)
    batcher = MicroBatcher(max_batch=8, max_wait_s=0.05, max_queue=16)
    try:
        a = batcher.submit(model, [np.zeros((128, 128, 3), np.uint8)] * 2)
        b = batcher.submit(other, [np.zeros((96, 96, 3), np.uint8)] * 2)
        assert [f.result(5)["defect_probs"].shape for f in a + b] == [(6, 32, 32)] * 2 + [(6, 24, 24)] * 2
    finally:
        batcher.stop()


def test_grade_device_without_http(model, jpeg):
    g = grade_device(run_direct, model, [jpeg], device=Device(length_mm=146.7), standards=["ctia"])
    assert g.grades["ctia"].grade != "A" and g.instances[0].type.value == "scratch"
    assert g.instances[0].measurement.units == "mm"


def test_grade_device_reports_the_cards_calibrated_probabilities(model, tmp_path):
    """A clean device seen front and back: the rules are certain of the best grade; the card says how
    often it is right."""
    names = load_standard("ctia").grade_names
    path = tmp_path / "cal.onnx"
    build_tiny_model(path, calibrated_card("ctia", names, first_right=0.3))
    calibrated = load_model(path, intra_op_threads=1)
    clean = [encode(device_photo(scratch=False))] * 2
    views = [View.FRONT, View.BACK]
    plain = grade_device(run_direct, model, clean, device=Device(), standards=["ctia"], views=views)
    g = grade_device(run_direct, calibrated, clean, device=Device(), standards=["ctia", "r2"], views=views)
    assert plain.grades["ctia"].probabilities["A"] == 1.0 and not plain.grades["ctia"].needs_review
    ctia = g.grades["ctia"]
    assert ctia.grade == "A" and ctia.probabilities["A"] == pytest.approx(0.3)
    assert ctia.needs_review and "calibrated on 50" in ctia.method
    assert (
        g.grades["r2"].probabilities[g.grades["r2"].grade] == 1.0
    )  # no calibration for r2: as the rules say


def test_micro_batcher_does_not_wait_when_nothing_else_is_in_flight(model):
    batcher = MicroBatcher(max_batch=8, max_wait_s=0.5, max_queue=8, expect_more=lambda: False)
    img = np.zeros((128, 128, 3), np.uint8)
    try:
        batcher.run(model, [img])
        t = time.perf_counter()
        batcher.run(model, [img])
        assert time.perf_counter() - t < 0.25  # not the 0.5 s bound
    finally:
        batcher.stop()


def test_crop_to_device_runs_a_second_pass_on_the_device(tmp_path):
    """A card asking for crop-to-device: a second batch of device crops, results in the photo's pixels."""
    path = tmp_path / "crop.onnx"
    build_tiny_model(path, tiny_card().model_copy(update={"crop_to_device": True}))
    cropping = load_model(path, intra_op_threads=1)
    batches = []

    def run(m, images):
        batches.append(len(images))
        return run_direct(m, images)

    photo = device_photo(800, 600)  # device x 240..560, y 60..540; scratch rows 285..315, x 304..496
    jpeg = encode(photo, "PNG")
    device = Device(length_mm=146.7)
    g = grade_device(
        run,
        cropping,
        [jpeg, encode(device_photo(800, 600, device=False), "PNG")],
        device=device,
        standards=["ctia"],
    )
    assert batches == [2, 1]  # both photos, then only the one with a device
    assert not g.photos[1].device_found
    (s,) = [i for i in g.photos[0].instances if i.type.value == "scratch"]
    x0, y0, x1, y1 = s.box
    assert 290 <= x0 <= 320 and 480 <= x1 <= 510 and 270 <= y0 <= 300 and 300 <= y1 <= 330
    plain_path = tmp_path / "plain.onnx"
    build_tiny_model(plain_path)
    plain = grade_device(run_direct, load_model(plain_path), [jpeg], device=device, standards=["ctia"])
    (p,) = [i for i in plain.photos[0].instances if i.type.value == "scratch"]
    # The scratch is 192 of the device's 480 px: 58.7 mm; both passes measure it, the crop no worse.
    true = 146.7 * 192 / 480
    assert abs(s.measurement.length - true) <= abs(p.measurement.length - true) + 1.0
    assert s.measurement.length == pytest.approx(true, rel=0.1)
