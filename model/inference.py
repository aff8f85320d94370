"""Decoded photos -> network outputs in each photo's frame: the one inference path.

Serving (`serving.pipeline`), evaluation and calibration (`training.predict`) all call `infer`, so the
steps between a decoded photo and the maps post-processing reads cannot drift apart between them:

1. `frame_photo`: decode (reduced-scale where the photo allows) and letterbox to the input size,
   keeping the decoded photo for step 3;
2. the first pass of the network on the whole photo;
3. when the card says `crop_to_device`: the device's box in the first pass's zone map
   (`model.crop.device_box`), that box letterboxed at the input size, and a second pass on it (with
   `crop_upright`, a device lying wide turned long side up for it and its maps turned back);
4. the merge: the crop's maps, the whole photo's photo-level verdicts (`model.crop.merge_outputs`);
5. the card's photo probes (`model.probes`), where it has them: the view and quality verdicts read from
   the encoder's features in place of the network's heads;
6. with a `FineStage` (a fine network beside the model, `model.fine_pass`): the fine pass on
   native-resolution tiles of the device, from the encoded photo, its maps kept on `Inferred.fine`.

The network is a plain callable on a list of letterboxed photos (`Run`): serving hands it an ONNX
Runtime session behind its micro-batcher, training a PyTorch module or an ORT session (`batched` turns
either's N x 3 x S x S runner into one). Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from model.card import Thresholds
from model.crop import crop_input, merge_outputs, turned, turned_back, upright_turns
from model.detail import NOMINAL_LENGTH_MM
from model.device_kind import guess_kind
from model.display import is_lit, lit_share
from model.fine_pass import FineMaps, FineStage, beside, fine_pass
from model.outputs import network_view
from model.preprocess import (
    DecodeError,
    Letterbox,
    decode_upright,
    decoded_pixels,
    prepare_keeping_photo,
    to_nchw,
)
from model.probes import apply_probes
from model.taxonomy import View, Zone

Outputs = dict[str, np.ndarray]  # one photo's network outputs by contract name, no batch axis
# The network on letterboxed photos (each S x S x 3 uint8) -> one `Outputs` per photo, in order.
Run = Callable[[Sequence[np.ndarray]], list[Outputs]]
# The network on one N x 3 x S x S uint8 batch -> each output with its leading N axis.
RunNCHW = Callable[[np.ndarray], dict[str, np.ndarray]]


class PassSpec(Protocol):
    """What inference needs to know of a model: a `model.card.ModelCard` has all three."""

    @property
    def input_size(self) -> int: ...

    @property
    def crop_to_device(self) -> bool: ...

    @property
    def crop_upright(self) -> bool: ...

    @property
    def thresholds(self) -> Thresholds: ...


@dataclass(frozen=True)
class Frame:
    """A photo as the network saw it: its letterboxed input and how the photo sits in it."""

    image: np.ndarray  # letterboxed model input, S x S x 3 uint8
    letterbox: Letterbox
    decoded: np.ndarray | None = None  # the decoded photo, kept for the crop pass (None for a crop)
    source: bytes | str | Path | None = None  # the encoded photo, for the fine pass's own decode
    # Its full-scale decode, started on a thread before the reduced one (`frame_photo(..., whole=True)`).
    whole: Callable[[], tuple[np.ndarray, float]] | None = field(default=None, compare=False, repr=False)

    @property
    def size(self) -> int:
        """Side of the frame the letterbox and the maps are in."""
        return self.image.shape[0]

    @property
    def original_size(self) -> tuple[int, int]:
        """The photo's width and height (EXIF orientation applied), before any reduced-scale decode."""
        lb = self.letterbox
        return round(lb.width * lb.draft_factor), round(lb.height * lb.draft_factor)


@dataclass(frozen=True)
class Inferred:
    """One photo's network outputs and the frame their maps are in (the crop's, after a crop pass)."""

    frame: Frame
    outputs: Outputs
    fine: FineMaps | None = None  # the fine pass's maps, where it ran
    # The screen's lit share (`model.display.lit_share`) where the fine pass's step measured it, so the
    # post-processing does not measure it again (`screen_lit`).
    lit: float | None = None

    @property
    def letterbox(self) -> Letterbox:
        return self.frame.letterbox

    @property
    def size(self) -> int:
        return self.frame.size


def frame_photo(data: bytes | str | Path, size: int, whole: bool = False) -> Frame:
    """Decode and letterbox one photo (raises `model.preprocess.DecodeError`). `whole`: a large photo's
    full-scale decode, for the fine pass, is started first on a thread of its own (`Frame.whole`)."""
    early = _start_whole(data) if whole else None
    image, lb, decoded = prepare_keeping_photo(data, size)
    return Frame(image, lb, decoded, data, early)


def infer(
    frames: Sequence[Frame],
    spec: PassSpec,
    run: Run,
    cpu: AbstractContextManager | None = None,
    fine: FineStage | None = None,
    views: Sequence[View | None] | None = None,
) -> list[Inferred]:
    """Run the network on `frames` as `spec` says: the first pass, then the crop pass where a device
    was found, then the card's photo probes, then with `fine` the fine pass on each photo that shows
    its device finely enough (where `fine.guess_kind`, at the typical length of the kind the photos
    show, `model.device_kind`). `cpu` (a semaphore, say) is held around the CPU-heavy crop step but not
    while `run` works, so concurrent requests waiting for a shared batch do not hold the cores."""
    early = _early_decodes(frames, fine)
    outputs = run([f.image for f in frames])
    if len(outputs) != len(frames):
        raise ValueError(f"the network gave {len(outputs)} outputs for {len(frames)} photos")
    done = [Inferred(f, o) for f, o in zip(frames, outputs, strict=True)]
    if spec.crop_to_device:
        with cpu if cpu is not None else nullcontext():
            crops = {k: c for k, d in enumerate(done) if (c := crop_frame(d, spec.input_size)) is not None}
            up = spec.crop_upright
            turns = {k: upright_turns(done[k].outputs["zone_probs"]) if up else 0 for k in crops}
        if crops:
            crop_outputs = run([turned(c.image, turns[k]) for k, c in crops.items()])
            for (k, crop), out in zip(crops.items(), crop_outputs, strict=True):
                done[k] = Inferred(crop, merge_outputs(done[k].outputs, turned_back(out, turns[k])))
    probes = spec.thresholds.photo_probes
    done = [with_probes(d, probes) for d in done] if probes else done
    if fine is None:
        return done
    if fine.guess_kind and (guess := guess_kind([d.outputs for d in done])) is not None:
        fine = replace(fine, length_mm=NOMINAL_LENGTH_MM[guess.kind], kind=guess.kind, model_name=None)
    with cpu if cpu is not None else nullcontext():
        return [with_fine(d, fine, early.get(k), views[k] if views else None) for k, d in enumerate(done)]


# Photos from this many pixels on have their full-scale decode started beside the coarse passes: a
# 12 MP JPEG takes 35-40 ms to decode, which the fine pass would otherwise wait for (a phone filling a
# 12 MP photo is about 0.05 mm a pixel, the scale the fine pass reads it at); smaller ones decode in a
# few ms.
EARLY_DECODE_PIXELS = 4_000_000


def _start_whole(data: bytes | str | Path) -> Callable[[], tuple[np.ndarray, float]] | None:
    """A large photo's full-scale decode started on a thread (None for a small photo). Started before
    the reduced-scale decode rather than beside the coarse passes, it has a core to itself while that
    decode runs: on 2 cores a 12 MP photo's grading took about 8 ms less at the median in process
    (docs/fine-pass.md, session 45)."""
    try:
        if decoded_pixels(data) < EARLY_DECODE_PIXELS:
            return None
    except DecodeError:
        return None  # the reduced decode says what is wrong with the photo, as without this
    return _decode_beside(data)


def _decode_beside(data: bytes | str | Path) -> Callable[[], tuple[np.ndarray, float]]:
    """The photo's full-scale decode (`decode_upright`) on a thread of its own; call the result to wait."""
    return beside(lambda: decode_upright(data, None), "refurbgrade-decode")


def _early_decodes(frames: Sequence[Frame], fine: FineStage | None) -> dict[int, Callable]:
    """The full-scale decode of each large photo: the one its frame started (`frame_photo(...,
    whole=True)`), else one started now on a thread beside the coarse passes while the cores have room
    (`FineStage.spare_cores`). Its result is used only where the fine pass reads the photo at full
    scale, and is then exactly what the pass would have decoded."""
    if fine is None:
        return {}
    out = {k: f.whole for k, f in enumerate(frames) if f.whole is not None}
    if not fine.cores_free():
        return out
    for k, f in enumerate(frames):
        w, h = f.original_size
        if k not in out and f.source is not None and w * h >= EARLY_DECODE_PIXELS:
            out[k] = _decode_beside(f.source)
    return out


def with_fine(
    inferred: Inferred,
    stage: FineStage,
    whole: Callable[[], tuple[np.ndarray, float]] | None = None,
    view: View | None = None,
) -> Inferred:
    """`inferred` with its fine pass's maps (unchanged where the photo gets none); `whole`: the photo's
    full-scale decode where it was started early; `view`: the photo's view as the caller says it (None:
    the network's), as the grading takes it."""
    f = inferred.frame
    if f.source is None:
        return inferred
    view = view if view is not None else network_view(inferred.outputs)
    # A lit display's picture has edges everywhere: the pass leaves its screen alone (model.display),
    # and on a front view its "body" too, which there is a patch of the picture the zone map misread (a
    # grey widget): a front view shows no back.
    share = screen_lit(inferred)
    skip = ((Zone.SCREEN, Zone.BODY) if view is View.FRONT else (Zone.SCREEN,)) if is_lit(share) else ()
    maps = fine_pass(
        inferred.outputs, f.letterbox, f.size, f.source, f.original_size, stage, whole, skip, view
    )
    return Inferred(f, inferred.outputs, inferred.fine if maps is None else maps, share)


def screen_lit(inferred: Inferred) -> float | None:
    """The photo's screen lit share (`model.display.lit_share`), measured once: where the fine pass's
    step measured it, its value (about 1.3 ms a photo, which a front view otherwise paid twice)."""
    if inferred.lit is not None:
        return inferred.lit
    return lit_share(inferred.frame.image, inferred.outputs["zone_probs"])


def with_probes(inferred: Inferred, probes) -> Inferred:
    """`inferred` with its view and quality verdicts from `probes` (`model.probes.apply_probes`)."""
    return Inferred(inferred.frame, apply_probes(inferred.outputs, probes), inferred.fine, inferred.lit)


def crop_frame(first: Inferred, size: int) -> Frame | None:
    """The crop pass's input for a photo after its first pass, or None when it needs none (no device
    found, the device already fills the photo, or the decoded photo was not kept)."""
    f = first.frame
    if f.decoded is None:
        return None
    crop = crop_input(f.decoded, f.letterbox, first.outputs["zone_probs"], size)
    return None if crop is None else Frame(*crop, source=f.source)


def batched(run_nchw: RunNCHW, max_batch: int = 8) -> Run:
    """A `Run` over a runner of N x 3 x S x S batches (ORT session, PyTorch module), in chunks of
    `max_batch` photos."""

    def run(images: Sequence[np.ndarray]) -> list[Outputs]:
        out: list[Outputs] = []
        for start in range(0, len(images), max_batch):
            chunk = images[start : start + max_batch]
            res = run_nchw(to_nchw(chunk))
            out += [{k: v[i] for k, v in res.items()} for i in range(len(chunk))]
        return out

    return run
