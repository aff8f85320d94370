"""A fine network beside the served model (`NAME.fine.onnx`): loaded with it, run on high-resolution
photos, refused when broken; without one nothing changes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from model.export import export_fine_onnx
from model.fine_network import FineNet
from model.fine_pass import FineCard
from model.inference import frame_photo, infer
from model.taxonomy import View
from serving.pipeline import fine_stage, grade_device, resolve_device, run_direct
from serving.predictor import ModelLoadError, load_model
from tests.serving.conftest import encode
from tests.serving.tiny_model import device_photo


@pytest.fixture(scope="module")
def with_fine(model_path, tmp_path_factory):
    d = tmp_path_factory.mktemp("fine")
    shutil.copy(model_path, d / "tiny.onnx")
    torch.manual_seed(0)
    net = FineNet(pretrained=False, encoder="tiny").eval()
    card = FineCard(name="tiny-fine", version="0.0.1", tile_px=64, margin_px=8, heat_cut=0.5, max_tiles=2)
    tiles = np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8)
    worst = export_fine_onnx(net, d / "tiny.fine.onnx", card, tiles)
    assert worst < 1e-3
    return d / "tiny.onnx"


def test_the_fine_file_beside_a_model_loads_with_it(with_fine, model_path):
    model = load_model(with_fine, intra_op_threads=1)
    assert model.fine is not None
    assert model.fine.card.name == "tiny-fine" and model.fine.card.tile_px == 64
    out = model.fine.run(np.zeros((3, 3, 64, 64), np.uint8))
    assert {k: v.shape for k, v in out.items()} == {
        k: (3, 1, 64, 64) for k in ("heat", "width_px", "contrast")
    }
    assert model.version == f"{model.card.version}+fine-0.0.1"  # a grading's record names both files
    assert load_model(with_fine, intra_op_threads=1, fine=False).fine is None
    assert load_model(model_path, intra_op_threads=1).fine is None  # no sibling, no fine pass


def test_a_broken_fine_file_refuses_the_model(with_fine, tmp_path):
    shutil.copy(with_fine, tmp_path / "tiny.onnx")
    (tmp_path / "tiny.fine.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelLoadError, match=r"tiny\.fine\.onnx"):
        load_model(tmp_path / "tiny.onnx", intra_op_threads=1)


def test_grading_runs_the_fine_pass_on_a_fine_photo(with_fine):
    model = load_model(with_fine, intra_op_threads=1)
    device = resolve_device(None, "phone")
    # 3000 px tall, the device 80% of it: about 0.06 mm a pixel for a typical phone.
    photo = encode(device_photo(width=2400, height=3000))
    frames = [frame_photo(photo, model.input_size)]
    (inferred,) = infer(
        frames, model.card, lambda images: run_direct(model, images), None, fine_stage(model, device)
    )
    assert inferred.fine is not None
    assert 0 < len(inferred.fine.tiles) <= model.fine.card.max_tiles
    assert inferred.fine.covered.any()
    grading = grade_device(run_direct, model, [photo], device=device, standards=["backmarket"])
    assert grading.grades["backmarket"].grade
    assert grading.model_version.endswith("+fine-0.0.1")
    for inst in grading.photos[0].instances:
        assert inst.measurement.contrast is None or 0.0 <= inst.measurement.contrast <= 1.0
    # Alone (no spare_cores said), its 7.2 MP decode started before the reduced one; with busy cores
    # none started early: the same grading either way.
    busy = grade_device(
        run_direct, model, [photo], device=device, standards=["backmarket"], spare_cores=lambda: False
    )
    assert busy.photos[0].instances == grading.photos[0].instances
    assert busy.grades == grading.grades
    # A web-sized photo of the same device is too coarse: no fine pass.
    small = [frame_photo(encode(device_photo()), model.input_size)]
    (coarse,) = infer(
        small, model.card, lambda images: run_direct(model, images), None, fine_stage(model, device)
    )
    assert coarse.fine is None


def test_the_fine_pass_reads_each_photo_as_the_view_the_caller_says(with_fine, monkeypatch):
    import model.inference as inference

    seen = []
    real = inference.fine_pass

    def spy(*args, **kwargs):
        seen.append(kwargs.get("view", args[8] if len(args) > 8 else None))
        return real(*args, **kwargs)

    monkeypatch.setattr(inference, "fine_pass", spy)
    model = load_model(with_fine, intra_op_threads=1)
    photo = encode(device_photo(width=2400, height=3000))
    device = resolve_device(None, "phone")
    graded = grade_device(
        run_direct, model, [photo, photo], device=device, standards=["backmarket"], views=[View.TOP, None]
    )
    assert seen[0] is View.TOP  # the caller's
    assert seen[1] is graded.photos[1].view  # the network's, as the grading took it
    assert graded.photos[0].view is View.TOP


def test_the_service_serves_the_fine_pass_unless_told_not_to(with_fine, settings):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    for fine_pass, expected in ((True, "+fine-0.0.1"), (False, None)):
        s = settings.model_copy(
            update={"model_path": with_fine, "models_dir": with_fine.parent, "fine_pass": fine_pass}
        )
        with TestClient(create_app(s)) as client:
            model = client.app.state.svc.slot.current
            assert (model.fine is not None) is fine_pass
            assert model.version.endswith(expected) if expected else "+fine" not in model.version


def test_fine_pass_is_a_setting(monkeypatch):
    from serving.settings import Settings

    assert Settings().fine_pass is True
    monkeypatch.setenv("REFURBGRADE_FINE_PASS", "false")
    assert Settings().fine_pass is False


def test_the_offline_grader_reads_the_same_setting(with_fine, tmp_path, monkeypatch):
    import json

    from serving.batch_grader import run_batch
    from serving.photo_batch import Batch

    photo = tmp_path / "phone.jpg"
    photo.write_bytes(encode(device_photo(width=2400, height=3000)))

    def version() -> str:
        out = tmp_path / "out.jsonl"
        batch = Batch((photo,), standard="backmarket", device_kind="phone", jsonl=out)
        rc = run_batch(batch, model_path=with_fine, threads=1)
        assert rc == 0, rc
        return json.loads(out.read_text().splitlines()[0])["model_version"]

    assert version().endswith("+fine-0.0.1")
    monkeypatch.setenv("REFURBGRADE_FINE_PASS", "false")
    assert "+fine" not in version()
    monkeypatch.setenv("REFURBGRADE_FINE_PASS", "maybe")  # refused, as the service refuses it
    batch = Batch((photo,), standard="backmarket", device_kind="phone", jsonl=tmp_path / "x.jsonl")
    rc = run_batch(batch, model_path=with_fine, threads=1)
    assert rc == 2


def test_a_tiles_maps_do_not_depend_on_how_many_tiles_run_at_once(with_fine):
    """`run_tiles` runs TILE_BATCH tiles at once (faster a tile on 2 cores than 8); what each tile gives
    is the same as run one by one, through ONNX Runtime."""
    from model.fine_pass import TILE_BATCH, run_tiles

    model = load_model(with_fine, intra_op_threads=1)
    canvas = np.random.default_rng(3).integers(0, 256, (150, 230, 3), dtype=np.uint8)
    cells = [(0, 0), (1, 0), (2, 1), (3, 2), (0, 2)]  # 48 px a cell: more cells than TILE_BATCH
    assert len(cells) > TILE_BATCH
    one = run_tiles(canvas, cells, model.fine.card, model.fine.run, batch=1)
    together = run_tiles(canvas, cells, model.fine.card, model.fine.run)
    assert np.asarray(one["covered"]).sum() > 0
    for name, value in one.items():
        np.testing.assert_allclose(np.asarray(together[name]), np.asarray(value), atol=1e-6, err_msg=name)


def test_a_device_the_fine_pass_read_is_trusted_by_its_own_grading(with_fine, tmp_path):
    """`Thresholds.fine_grading`: the grade calibration and review threshold of a device the fine pass
    read; a device it did not read keeps the card's others."""
    from model.export import update_card
    from model.rules import GradeCalibration, load_standard

    names = load_standard("backmarket").grade_names
    k = len(names)
    flat = GradeCalibration(  # "whatever the rules say, every grade is as likely": 1/k each
        grades=names, matrix=tuple(tuple([1.0 / k] * k) for _ in names), devices=40, standard_version="x"
    )
    shutil.copy(with_fine, tmp_path / "tiny.onnx")
    shutil.copy(with_fine.with_suffix(".fine.onnx"), tmp_path / "tiny.fine.onnx")
    card = load_model(with_fine, intra_op_threads=1).card
    device = resolve_device(None, "phone")
    fine = {"grade_calibration": {"backmarket": flat}, "needs_review_below": 0.15, "devices": 40}

    def graded(fine_grading: dict, photo: np.ndarray, **more):
        thresholds = {**card.thresholds.model_dump(mode="json"), **more, "fine_grading": fine_grading}
        update_card(tmp_path / "tiny.onnx", thresholds=thresholds)
        model = load_model(tmp_path / "tiny.onnx", intra_op_threads=1)
        return grade_device(run_direct, model, [encode(photo)], device=device, standards=["backmarket"])

    large, small = device_photo(width=2400, height=3000), device_photo()
    read = graded(fine, large, needs_review_below=0.6).grades["backmarket"]
    assert read.review_threshold == 0.15
    assert read.probabilities[read.grade] == pytest.approx(1.0 / k)  # the flat calibration, not the rules'
    unread = graded(fine, small, needs_review_below=0.6).grades["backmarket"]
    assert unread.review_threshold == 0.6
    assert unread.probabilities[unread.grade] != pytest.approx(1.0 / k)
    # Where no threshold kept the promise on validation (1.0), the reason says so, not "0.20 < 1.00".
    checked = graded({**fine, "needs_review_below": 1.0}, large)
    assert checked.grades["backmarket"].needs_review
    (reason,) = [r for r in checked.review_reasons if r.startswith("backmarket: top grade")]
    assert "no probability was right often enough on validation" in reason and "< 1.00" not in reason
    # A fine grading for a standard serving does not know refuses the file, as the coarse one does.
    with pytest.raises(ModelLoadError, match="nosuch"):
        graded({**fine, "grade_calibration": {"nosuch": flat}}, small)
