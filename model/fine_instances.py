"""The fine pass's maps -> measured scratches, and every instance of one photo (coarse and fine).
Torch-free.

`fine_instances` reads the stitched maps of `model.fine_pass.FineMaps`: centreline pixels are those at
`FineCard.heat_cut`; each connected group is split into strokes and measured along its centreline by
the same post-processing as the coarse maps (`model.postprocess`, measure="fine", `model.strokes`), so a
tile seam never splits a scratch. A scratch's width and contrast are the fine network's own heads
(median along its centreline): the heat ridge is as wide as the network draws it, not as the scratch is.

`photo_instances` is what serving, evaluation and calibration call for one photo: the coarse pass's
instances (`model.postprocess.extract_instances`), with the coarse scratches that lie where the fine
pass looked replaced by the fine pass's.
"""

from __future__ import annotations

import cv2
import numpy as np

from model.card import Thresholds
from model.fine_pass import FineMaps
from model.instances import DefectInstance, Measurement
from model.outputs import feature_maps
from model.postprocess import (
    Scale,
    _pieces,
    extract_instances,
    instance_confidence,
    outline,
    vote_zone,
)
from model.taxonomy import DefectType, View

# Fine scratches are single lines: strokes joined across at most this turn (`model.strokes`).
FINE_STROKE_OPTIONS = {"max_turn_deg": 20.0}


def lines_mask(heat: np.ndarray, cut: float, low: float | None) -> np.ndarray:
    """Centreline pixels (uint8 0/1): at `cut`, or with `low` the connected pixels at `low` that hold
    one at `cut` (hysteresis)."""
    strong = heat >= cut
    if low is None or low >= cut or not strong.any():
        return strong.astype(np.uint8)
    n, labels = cv2.connectedComponents((heat >= low).astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[np.unique(labels[strong])] = True
    keep[0] = False
    return keep[labels].astype(np.uint8)


def fine_instances(
    fine: FineMaps,
    scale: Scale,
    min_confidence: float,
    photo_index: int = 0,
    view: View | None = None,
) -> list[DefectInstance]:
    """Measured scratches in `fine`'s maps, read with its card's cuts. Sizes in `scale`'s units (mm when
    the device's length is known); each scratch's zone from the coarse zone map on the canvas (as the
    view shows it)."""
    card = fine.card
    heat = np.where(fine.covered, fine.heat, 0.0)
    binary = lines_mask(heat, card.heat_cut, card.heat_low)
    if not binary.any():
        return []
    clb = fine.letterbox
    unit = scale.per_px * clb.draft_factor / clb.scale  # canvas pixel -> scale units
    min_len = card.min_length_mm / fine.mm_per_px
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    out: list[DefectInstance] = []
    for k in range(1, n):
        x, y, w, h = (int(v) for v in stats[k, :4])
        if max(w, h) < min_len:
            continue
        sub = labels[y : y + h, x : x + w] == k
        for comp, measured, _line in _pieces(
            sub, DefectType.SCRATCH, 0.0, True, "fine", dict(FINE_STROKE_OPTIONS)
        ):
            length, _, _, contour = measured
            if length < min_len:
                continue
            on = comp.astype(bool)
            h_here = heat[y : y + h, x : x + w][on]
            peak = float(h_here.max())
            conf = instance_confidence(peak, card.heat_cut)
            if conf < min_confidence:
                continue
            # The heads are meaningful on the ridge: read them where heat is near its local peak.
            ridge = h_here >= 0.5 * peak  # never empty: a piece grown by hysteresis may lack a cut pixel
            width_px = float(np.median(fine.width_px[y : y + h, x : x + w][on][ridge]))
            contrast = float(np.median(fine.contrast[y : y + h, x : x + w][on][ridge]))
            if contrast < card.min_contrast:
                continue
            polygon, box = outline(contour, clb, (x, y))
            zone = vote_zone(fine.zones[y : y + h, x : x + w][on], view)
            out.append(
                DefectInstance(
                    type=DefectType.SCRATCH,
                    zone=zone,
                    photo_index=photo_index,
                    view=view,
                    box=box,
                    polygon=polygon,
                    confidence=conf,
                    measurement=Measurement(
                        units=scale.units,
                        length=length * unit,
                        width=width_px * unit,
                        area=length * width_px * unit * unit,
                        contrast=min(max(contrast, 0.0), 1.0),
                    ),
                )
            )
    return out


def in_fine_tiles(inst: DefectInstance, fine: FineMaps) -> bool:
    """Whether an instance's centre lies where the fine pass looked."""
    if not inst.polygon:
        return False
    centre = np.asarray(inst.polygon, float).mean(axis=0, keepdims=True)
    cx, cy = fine.letterbox.to_model(centre)[0]
    h, w = fine.covered.shape
    return 0 <= cx < w and 0 <= cy < h and bool(fine.covered[int(cy), int(cx)])


def merge_fine(
    coarse: list[DefectInstance], fine: list[DefectInstance], maps: FineMaps
) -> list[DefectInstance]:
    """The coarse instances, less their scratches inside the fine tiles, then the fine scratches."""
    kept = [i for i in coarse if not (i.type == DefectType.SCRATCH and in_fine_tiles(i, maps))]
    return kept + fine


def photo_instances(
    outputs: dict[str, np.ndarray],
    lb,
    input_size: int,
    thresholds: Thresholds,
    scale: Scale,
    photo_index: int = 0,
    view: View | None = None,
    fine: FineMaps | None = None,
) -> list[DefectInstance]:
    """Every measured instance of one photo: the coarse maps' (`extract_instances`), and where the fine
    pass ran (`fine`), its scratches in place of the coarse ones it covers."""
    coarse = extract_instances(
        outputs["defect_probs"],
        outputs["zone_probs"],
        lb,
        thresholds,
        scale,
        input_size,
        photo_index,
        view,
        features=feature_maps(outputs),
    )
    if fine is None:
        return coarse
    found = fine_instances(fine, scale, thresholds.min_instance_confidence, photo_index, view)
    return merge_fine(coarse, found, fine)
