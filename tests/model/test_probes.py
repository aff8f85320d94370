"""Photo probes (`model.probes`): the distribution a probe gives, the head's split of the side views,
their place in inference, and the card's checks."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from model.card import Thresholds
from model.outputs import ENCODER_S16, QUALITY_CLASSES, VIEW_CLASSES
from model.probes import PhotoProbe, apply_probes, pooled_features

C = 3  # encoder channels in these tests


def _outputs(channel_value: float, view_head=None) -> dict[str, np.ndarray]:
    enc = np.zeros((C, 4, 4), np.float32)
    enc[0] = channel_value
    view = np.full(len(VIEW_CLASSES), 1 / len(VIEW_CLASSES)) if view_head is None else np.asarray(view_head)
    quality = np.full(len(QUALITY_CLASSES), 1 / len(QUALITY_CLASSES))
    return {
        ENCODER_S16: enc,
        "view_probs": view.astype(np.float32),
        "quality_probs": quality.astype(np.float32),
    }


def _view_probe(head_split=()) -> PhotoProbe:
    d = 2 * C + len(VIEW_CLASSES) + len(QUALITY_CLASSES)
    w_front = [0.0] * d
    w_front[0] = 5.0  # the first channel's mean says front
    return PhotoProbe(
        classes=("front", "back", "left", "right"),
        mean=(0.0,) * d,
        scale=(1.0,) * d,
        weights=(tuple(w_front), tuple(-v for v in w_front), (0.0,) * d, (0.0,) * d),
        bias=(0.0, 0.0, 1.0, 1.0),
        head_split=head_split,
        photos=10,
    )


def laptop_probe(channels: int, weight: float) -> PhotoProbe:
    """A kind probe whose log-odds of a laptop are `weight` x the first encoder channel's mean, for
    outputs with `channels` encoder channels (also used by tests/serving/test_device_glass.py)."""
    d = 2 * channels + len(VIEW_CLASSES) + len(QUALITY_CLASSES)
    return PhotoProbe(
        classes=("laptop", "phone"),
        mean=(0.0,) * d,
        scale=(1.0,) * d,
        weights=((weight,) + (0.0,) * (d - 1), (0.0,) * d),
        bias=(0.0, 0.0),
        photos=10,
    )


def test_pooled_features_are_each_channels_mean_and_max_then_the_heads_log_probabilities():
    out = _outputs(2.0)
    out[ENCODER_S16][1, 0, 0] = 8.0
    f = pooled_features(out)
    assert f.shape == (2 * C + len(VIEW_CLASSES) + len(QUALITY_CLASSES),)
    assert f[0] == 2.0 and f[1] == pytest.approx(0.5) and f[C + 1] == 8.0
    assert f[2 * C] == pytest.approx(np.log(1 / len(VIEW_CLASSES)))
    assert pooled_features({"view_probs": np.ones(6)}) is None


def test_a_probe_replaces_the_heads_verdict_and_unseen_classes_get_nothing():
    probe = _view_probe()
    front = apply_probes(_outputs(2.0), {"view": probe})["view_probs"]
    back = apply_probes(_outputs(-2.0), {"view": probe})["view_probs"]
    assert VIEW_CLASSES[int(front.argmax())] == "front" and VIEW_CLASSES[int(back.argmax())] == "back"
    assert front.sum() == pytest.approx(1.0) and front.dtype == np.float32
    for unseen in set(VIEW_CLASSES) - set(probe.classes):
        assert front[VIEW_CLASSES.index(unseen)] == 0.0
    untouched = _outputs(2.0)
    assert apply_probes(untouched, {}) is untouched
    no_features = {k: v for k, v in untouched.items() if k != ENCODER_S16}
    assert apply_probes(no_features, {"view": probe}) is no_features


def test_the_head_splits_the_side_views_share():
    head = np.zeros(len(VIEW_CLASSES))
    head[VIEW_CLASSES.index("right")] = 0.9
    head[VIEW_CLASSES.index("left")] = 0.1
    plain = apply_probes(_outputs(0.0, head), {"view": _view_probe()})["view_probs"]
    split = apply_probes(_outputs(0.0, head), {"view": _view_probe(("left", "right"))})["view_probs"]
    sides = [VIEW_CLASSES.index("left"), VIEW_CLASSES.index("right")]
    assert plain[sides[0]] == pytest.approx(plain[sides[1]])  # the probe alone cannot tell the sides
    assert split[sides].sum() == pytest.approx(plain[sides].sum())  # the probe's share, kept
    assert split[sides[1]] == pytest.approx(9 * split[sides[0]])  # split as the head says


def test_the_card_refuses_probes_for_unknown_verdicts_or_classes():
    Thresholds(defect_pixel={}, photo_probes={"view": _view_probe()})
    with pytest.raises(ValidationError, match="only"):
        Thresholds(defect_pixel={}, photo_probes={"zone": _view_probe()})
    with pytest.raises(ValidationError, match="lacks"):
        Thresholds(defect_pixel={}, photo_probes={"quality": _view_probe()})
    with pytest.raises(ValidationError, match="weight rows"):
        PhotoProbe(classes=("front",), mean=(0.0,), scale=(1.0,), weights=(), bias=(0.0,), photos=1)


def test_inference_applies_the_cards_probes():
    from types import SimpleNamespace

    from model.inference import Frame, infer
    from model.preprocess import letterbox

    image = np.zeros((32, 32, 3), np.uint8)
    frame = Frame(image, letterbox(image, 32)[1])
    spec = SimpleNamespace(
        input_size=32,
        crop_to_device=False,
        thresholds=Thresholds(defect_pixel={}, photo_probes={"view": _view_probe()}),
    )
    done = infer([frame], spec, lambda images: [_outputs(-2.0) for _ in images])
    assert VIEW_CLASSES[int(done[0].outputs["view_probs"].argmax())] == "back"


@pytest.mark.parametrize(("guess", "length"), [(True, 310.0), (False, 150.0)])
def test_the_fine_pass_takes_the_length_of_the_kind_the_photos_show(monkeypatch, guess, length):
    """Where nobody said what the device is, the tiles' pixel size comes from the kind the probe reads
    (a laptop's typical 310 mm), not from the phone it was by default."""
    from types import SimpleNamespace

    import model.inference as inference
    from model.fine_pass import FineStage
    from model.preprocess import letterbox

    laptop = laptop_probe(C, 5.0)
    image = np.zeros((32, 32, 3), np.uint8)
    frame = inference.Frame(image, letterbox(image, 32)[1])
    spec = SimpleNamespace(
        input_size=32,
        crop_to_device=False,
        thresholds=Thresholds(defect_pixel={}, photo_probes={"kind": laptop}),
    )
    seen = []
    monkeypatch.setattr(
        inference, "with_fine", lambda d, stage, whole=None, view=None: seen.append(stage.length_mm) or d
    )
    stage = FineStage(card=None, run=None, length_mm=150.0, guess_kind=guess)
    inference.infer([frame], spec, lambda images: [_outputs(2.0) for _ in images], fine=stage)
    assert seen == [length]
