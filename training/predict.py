"""Running a model over manifest photos, the way serving does: PyTorch checkpoint or ONNX file, same outputs.

`load_predictor(path)` accepts a `.pt` checkpoint or an `.onnx` file and returns a callable on uint8
N x 3 x S x S batches giving the contract's outputs as numpy arrays, plus the thresholds to use
(calibrated ones from the checkpoint or the card; defaults otherwise). `predict(items, predictor)`
yields one `Prediction` per photo with its letterbox, so `model.postprocess` can map results back to the
photo's pixels and millimetres exactly as serving does -- including the crop-to-device second pass
(`model.crop`) when the predictor's `crop_to_device` says so (then `image` and `lb` are the crop's).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.card import Thresholds
from model.crop import crop_input, merge_outputs, stitch_all, tiled_input, window_images
from model.manifest import resolve
from model.outputs import DEFECT_CHANNELS, OUTPUT_NAMES
from model.preprocess import Letterbox, prepare_keeping_photo
from training.dataset import Item


@dataclass
class Predictor:
    run: object  # callable: uint8 NCHW -> dict name -> array
    input_size: int
    mask_stride: int
    thresholds: Thresholds
    kind: str  # "torch" or "onnx"
    name: str
    crop_to_device: bool = False
    seconds: list[float] = field(default_factory=list)  # per-batch inference time
    crop_zoom: float = 1.0  # above 1: the zoomed, tiled second pass (`model.crop.tiled_input`)

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        out = self.run(batch)
        self.seconds.append((time.perf_counter() - t0) / len(batch))
        return out


def default_thresholds() -> Thresholds:
    return Thresholds(defect_pixel={name: 0.5 for name in DEFECT_CHANNELS})


def torch_predictor(
    net,
    thresholds: Thresholds | None = None,
    name: str = "model",
    crop_to_device: bool = False,
    crop_zoom: float = 1.0,
) -> Predictor:
    import torch

    net = net.eval()

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = net(torch.from_numpy(batch))
        return {k: v.numpy() for k, v in out._asdict().items()}

    return Predictor(
        run,
        net.input_size,
        net.mask_stride,
        thresholds or default_thresholds(),
        "torch",
        name,
        crop_to_device,
        crop_zoom=crop_zoom,
    )


def load_predictor(path: str | Path, threads: int = 2) -> Predictor:
    path = Path(path)
    if path.suffix == ".onnx":
        from model.export import _session, read_card

        card = read_card(path)
        sess = _session(path, threads)

        def run(batch: np.ndarray) -> dict[str, np.ndarray]:
            from model.outputs import INPUT_NAME

            return dict(zip(OUTPUT_NAMES, sess.run(list(OUTPUT_NAMES), {INPUT_NAME: batch}), strict=True))

        return Predictor(
            run,
            card.input_size,
            card.mask_stride,
            card.thresholds,
            "onnx",
            path.name,
            card.crop_to_device,
            crop_zoom=card.crop_zoom,
        )
    from training.train import load_checkpoint

    net, ckpt = load_checkpoint(path)
    cal = ckpt.get("calibration")
    thresholds = Thresholds.model_validate(cal["thresholds"]) if cal else None
    return torch_predictor(
        net,
        thresholds,
        path.name,
        bool(ckpt["config"].get("crop_to_device", False)),
        float((cal or {}).get("crop_zoom", ckpt["config"].get("crop_zoom", 1.0))),
    )


@dataclass
class Prediction:
    item: Item
    image: np.ndarray  # letterboxed model input (a zoomed pass: its larger canvas), H x W x 3 uint8
    lb: Letterbox
    outputs: dict[str, np.ndarray]  # this photo's outputs, no batch axis

    @property
    def size(self) -> int:
        """Side of the frame `lb` and the maps are in: the input size, or a zoomed pass's canvas."""
        return self.image.shape[0]


def _nchw(images: list[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))


def predict(items: list[Item], predictor: Predictor, batch_size: int = 8) -> Iterator[Prediction]:
    size = predictor.input_size
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        loaded = [prepare_keeping_photo(resolve(it.manifest, it.record.image), size) for it in chunk]
        prepared = [(img, lb) for img, lb, _ in loaded]
        out = predictor(_nchw([p[0] for p in prepared]))
        outputs = [{k: v[i] for k, v in out.items()} for i in range(len(chunk))]
        if predictor.crop_to_device and predictor.crop_zoom > 1:
            _zoomed_pass(predictor, loaded, prepared, outputs)
        elif predictor.crop_to_device:
            second = {
                i: crop
                for i, (o, (_, lb)) in enumerate(zip(outputs, prepared, strict=True))
                if (crop := crop_input(loaded[i][2], lb, o["zone_probs"], size)) is not None
            }
            if second:
                crops = list(second)
                out2 = predictor(_nchw([second[i][0] for i in crops]))
                # Latency is per photo: the crop pass's time is added to its batch's, over all photos.
                t2 = predictor.seconds.pop() * len(crops)
                predictor.seconds[-1] += t2 / len(chunk)
                for j, i in enumerate(crops):
                    outputs[i] = merge_outputs(outputs[i], {k: v[j] for k, v in out2.items()})
                    prepared[i] = second[i]
        for it, (img, lb), o in zip(chunk, prepared, outputs, strict=True):
            yield Prediction(it, img, lb, o)


def _zoomed_pass(predictor: Predictor, loaded, prepared: list, outputs: list) -> None:
    """The zoomed, tiled second pass (`model.crop.tiled_input`) for one batch, in place: each photo
    with a device gets the stitched maps of its canvas, and the canvas as its frame."""
    size, stride = predictor.input_size, predictor.mask_stride
    tiled = {
        i: t
        for i, (o, (_, lb)) in enumerate(zip(outputs, prepared, strict=True))
        if (t := tiled_input(loaded[i][2], lb, o["zone_probs"], size, stride, predictor.crop_zoom))
        is not None
    }
    if not tiled:
        return
    images = window_images(tiled, size)
    out2 = predictor(_nchw(images))
    # Latency is per photo, as for the plain crop: the windows' time is spread over the batch.
    t2 = predictor.seconds.pop() * len(images)
    predictor.seconds[-1] += t2 / len(outputs)
    per_window = [{k: v[j] for k, v in out2.items()} for j in range(len(images))]
    for i, maps in stitch_all(tiled, per_window, stride).items():
        outputs[i] = merge_outputs(outputs[i], maps)
        prepared[i] = (tiled[i].canvas, tiled[i].lb)
