"""Zone-level damage: is this photo's screen (or back glass) cracked, judged over the whole zone.

A shattered screen is a property of the glass, not of any one fragment of its crack map: the network's
crack map breaks a spider web into dozens of small pieces, each too faint to pass the crack cut on its
own. So a card may carry, per glass zone, a `ZoneDamageModel`: a logistic model over features of that
zone (`zone_features`), fitted on photos with image-level "cracked / not cracked" truth
(`training.damage`). Three kinds of features:

- `crack_map_v1`: a few statistics of the crack map inside the zone;
- `encoder_s16_v1`: the mean and the maximum, over the zone's cells, of each channel of the encoder's
  stride-16 features (the optional output `model.outputs.ENCODER_S16`): what the network sees there
  before its crack head, which tells a shattered screen from a scratched one or a wallpaper far better
  than the crack map (docs/model-history.md);
- `joint_s16_v1`: both, so that one model can lean on the encoder for real photos and on the crack map
  where the network's crack head is good (synthetic devices);
- `joint_s16_v2` (fitted since 2026-12-04): as v1 with two more statistics per channel, the mean of its
  top tenth of the zone's cells and its standard deviation. Where a pattern covers part of the glass
  they say how much and how unevenly, which the mean and the maximum alone do not; cross-fitted on the
  real fit photos (`benchmarks/bench_damage_cv.py`) it halved the crack calls on black-barred intact
  photos (the format shortcut) and on MSD's worn screens (docs/model-history.md).
- `joint_s16_v3` (fitted since 2026-12-04, later): v2 with the same four statistics of each channel of
  ImageNet's own stride-32 features before the crack map's (`model.outputs.IMAGENET_S32`: the wheel's
  Lite0 top blocks run on the frozen stride-16 features), which were never trained on synthetic
  devices. Alone they tell real cracks from wallpapers and wear best and miss synthetic cracks, which
  the crack map finds, so the fit weighs the crack map's statistics up (`training.damage.
  CRACK_MAP_EMPHASIS`). Cross-fitted against v2 (docs/model-history.md): intact phones_web screens
  called cracked 6.9% (7.5%), MSD's worn ones 2.9% (4.3%), cracked phones_web found 93.8% (91.3%),
  synthetic cracked screens found 78% (68%).

`judge_zone_damage` turns a zone's probability into one crack defect (its box and outline the union of
the fragments, its length how far they spread across the zone, 0 "not measured" without fragments) and
marks the fragments as `role="evidence"`: drawn and listed, never counted on their own.
`lines_on_cracked_glass` does the same to the scratches on glass a counted crack lies on: the network
reads a crack's branches as scratches too. A photo shows one glass side: `one_glass_side` keeps the
judged zones of the glass its view shows and of the glass most of its zone map says, not a sliver of
the other.

Torch-free: serving and evaluation both apply it inside `model.postprocess.extract_instances`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.instances import DefectInstance, Measurement
from model.outputs import DEFECT_CHANNELS, ENCODER_S16, IMAGENET_S32, ZONE_CHANNELS
from model.rules.engine import counted
from model.taxonomy import ZONES_BY_VIEW, DefectType, DeviceKind, View, Zone

CRACK = DEFECT_CHANNELS.index(DefectType.CRACK.value)
# Zones whose glass can crack as a whole: the display's cover glass, a phone's back glass.
GLASS_ZONES: tuple[Zone, ...] = (Zone.SCREEN, Zone.BODY)
# A laptop's body is its lid and base, metal or plastic: only its display is glass. Its lid photographed
# is a back view; judged as glass, a lid's vents, labels and wear were read as a shattered screen (the
# real laptop_scratch photos: 7 of the 15 validation lids graded Unlistable, 6 of them without review).
GLASS_BY_KIND: dict[DeviceKind, tuple[Zone, ...]] = {DeviceKind.LAPTOP: (Zone.SCREEN,)}


def glass_zones(kind: DeviceKind | str | None) -> tuple[Zone, ...]:
    """The zones that are glass on a device of `kind` (all of `GLASS_ZONES` when unknown)."""
    return GLASS_BY_KIND.get(DeviceKind(kind), GLASS_ZONES) if kind is not None else GLASS_ZONES


MIN_ZONE_CELLS = 24  # fewer mask cells of the zone: too little glass in view to judge it
# A zone crack's fragments are drawn as the crack where their box covers at least this share of the
# zone's box; under it, the zone's outline is (`judge_zone_damage`). Of the 117 real validation photos
# (phones_web and cracked_screens, 2026-12-06) with a zone crack, 52 had no fragment and 54 of the
# other 65 had them cover under 25% (most under 2%: one line by the home button of a screen shattered
# edge to edge).
TRACED_SHARE = 0.25
TOP_SHARE = 0.02  # the top 2% of the zone's cells (at least one): a pattern's strongest part
LOW_CUT = 0.15  # a cell "touched" by the crack map, far below any instance cut
EPS = 1e-4
FEATURES: tuple[str, ...] = ("logit_max", "logit_top", "logit_touched", "logit_mean")
CRACK_MAP = "crack_map_v1"
ENCODER_POOL = "encoder_s16_v1"
JOINT = "joint_s16_v1"  # the encoder's pooled features, then the crack map's statistics
JOINT_V2 = "joint_s16_v2"  # as JOINT, each channel pooled four ways (`_encoder_pool`)
JOINT_V3 = "joint_s16_v3"  # as JOINT_V2 with IMAGENET_S32 pooled four ways before the crack map's
# The optional model outputs (`model.outputs.FEATURE_OUTPUTS`) each kind of features reads.
NEEDS: dict[str, tuple[str, ...]] = {
    CRACK_MAP: (),
    ENCODER_POOL: (ENCODER_S16,),
    JOINT: (ENCODER_S16,),
    JOINT_V2: (ENCODER_S16,),
    JOINT_V3: (ENCODER_S16, IMAGENET_S32),
}
TOP_CELLS = 0.1  # joint_s16_v2's "top": the mean of a channel's top tenth of the zone's feature cells


def _logit(p: float) -> float:
    p = min(max(p, EPS), 1 - EPS)
    return math.log(p / (1 - p))


def zone_features(outputs: Mapping[str, np.ndarray], zone: Zone, kind: str = CRACK_MAP) -> np.ndarray | None:
    """One photo's features of `zone` (the cells whose most likely zone it is), of `kind`; None when the
    photo shows too little of the zone, or lacks the output the kind reads."""
    cells = outputs["zone_probs"].argmax(axis=0) == ZONE_CHANNELS.index(zone.value)
    n = int(cells.sum())
    if n < MIN_ZONE_CELLS:
        return None
    if kind in (ENCODER_POOL, JOINT, JOINT_V2, JOINT_V3):
        pooled = _encoder_pool(outputs.get(ENCODER_S16), cells, four_ways=kind in (JOINT_V2, JOINT_V3))
        if pooled is None or kind == ENCODER_POOL:
            return pooled
        if kind == JOINT_V3:
            imagenet = _encoder_pool(outputs.get(IMAGENET_S32), cells, four_ways=True)
            if imagenet is None:
                return None
            pooled = np.concatenate([pooled, imagenet])
        return np.concatenate([pooled, _crack_stats(outputs["defect_probs"], cells)])
    return _crack_stats(outputs["defect_probs"], cells)


def crack_stats_slice(kind: str, n_features: int) -> slice:
    """Where the crack map's statistics sit in a joint_s16_v3 feature vector of `n_features` (last); an
    empty slice for any other kind."""
    return slice(n_features - len(FEATURES), n_features) if kind == JOINT_V3 else slice(0, 0)


def _crack_stats(defect_probs: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The crack map's maximum, top share, share of cells touched and mean over `cells`, as logits."""
    n = int(cells.sum())
    crack = defect_probs[CRACK][cells].astype(np.float64)
    k = max(1, round(TOP_SHARE * n))
    top = float(np.partition(crack, n - k)[n - k :].mean())
    return np.array(
        [
            _logit(float(crack.max())),
            _logit(top),
            _logit(float((crack >= LOW_CUT).mean())),
            _logit(float(crack.mean())),
        ]
    )


def coarsen(cells: np.ndarray, side: int) -> np.ndarray:
    """The cells of a `side` x `side` grid (a feature map's) that hold some of the square mask `cells`."""
    f = cells.shape[0] // side
    return cells[: side * f, : side * f].reshape(side, f, side, f).any(axis=(1, 3))


def _encoder_pool(
    features: np.ndarray | None, cells: np.ndarray, four_ways: bool = False
) -> np.ndarray | None:
    """Each channel's mean and maximum over the feature cells that hold some of the zone's mask cells;
    `four_ways`: then the mean of its top `TOP_CELLS` of those cells (at least one) and its standard
    deviation too."""
    if features is None:
        return None
    mask = coarsen(cells, features.shape[-1])
    v = features[:, mask].astype(np.float64)
    stats = [v.mean(axis=1), v.max(axis=1)]
    if four_ways:
        k = max(1, round(TOP_CELLS * v.shape[1]))
        stats += [np.sort(v, axis=1)[:, -k:].mean(axis=1), v.std(axis=1)]
    return np.concatenate(stats)


class ZoneDamageModel(BaseModel):
    """P(the zone's glass is cracked) = sigmoid(weights . (zone_features - mean) / scale + bias), fitted
    on photos with cracked / not truth (`training.damage.fit_zone_damage`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: Literal["crack_map_v1", "encoder_s16_v1", "joint_s16_v1", "joint_s16_v2", "joint_s16_v3"] = (
        CRACK_MAP
    )
    mean: tuple[float, ...] = ()  # the features' standardisation; empty: none
    scale: tuple[float, ...] = ()
    weights: tuple[float, ...]
    bias: float
    photos: int = Field(ge=0, description="validation photos it was fitted on")
    positives: int = Field(ge=0)
    sources: dict[str, int] = Field(default_factory=dict, description="photos per source")

    @model_validator(mode="after")
    def _matches_features(self) -> ZoneDamageModel:
        if self.features == CRACK_MAP and len(self.weights) != len(FEATURES):
            raise ValueError(f"{len(self.weights)} weights for the {len(FEATURES)} crack-map features")
        for name in ("mean", "scale"):
            if getattr(self, name) and len(getattr(self, name)) != len(self.weights):
                raise ValueError(
                    f"{name} has {len(getattr(self, name))} values for {len(self.weights)} weights"
                )
        if any(v <= 0 for v in self.scale):
            raise ValueError("scale must be positive")
        return self

    def probability(self, features: np.ndarray) -> float:
        x = np.asarray(features, dtype=np.float64)
        if self.mean:
            x = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        z = float(np.dot(self.weights, x) + self.bias)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def zone_damage(
    outputs: Mapping[str, np.ndarray], models: Mapping[str, ZoneDamageModel]
) -> dict[Zone, float]:
    """P(cracked) for each glass zone the card has a model for and the photo shows enough of."""
    out = {}
    for zone in GLASS_ZONES:
        model = models.get(zone.value)
        f = None if model is None else zone_features(outputs, zone, model.features)
        if f is not None:
            out[zone] = model.probability(f)
    return out


def _outline_points(fragments: Sequence[DefectInstance]) -> np.ndarray:
    """Every point of the fragments' outlines (a box's corners where one has no polygon), N x 2."""
    return np.array([p for f in fragments for p in (f.polygon or _box_corners(f.box))], np.float32)


def _extent_polygon(fragments: Sequence[DefectInstance]) -> list[tuple[float, float]]:
    hull = cv2.convexHull(_outline_points(fragments))[:, 0, :]
    return [(float(x), float(y)) for x, y in hull]


def _extent(fragments: Sequence[DefectInstance], within: tuple[float, float, float, float] | None) -> float:
    """How far a crack pattern spreads, in photo pixels: the greatest distance between two points of its
    fragments' outlines, each held to `within` (the cracked zone's box: a crack on the screen ends at
    the screen's edge, however far a fragment's outline runs onto the frame)."""
    pts = _outline_points(fragments)
    if within is not None:
        x0, y0, x1, y1 = within
        pts = np.clip(pts, (x0, y0), (x1, y1)).astype(np.float32)
    hull = cv2.convexHull(pts)[:, 0, :].astype(np.float64)
    return float(np.sqrt(((hull[:, None, :] - hull[None, :, :]) ** 2).sum(-1)).max())


def _area(box) -> float:
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def _box_corners(box) -> list[tuple[float, float]]:
    x0, y0, x1, y1 = box
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def one_glass_side(
    judged: Mapping[Zone, float], cells: Mapping[Zone, int], shown: Sequence[Zone]
) -> dict[Zone, float]:
    """The judged zones a photo's crack may rest on. A photo shows one glass side, so of two judged
    glass zones only the glass its view shows (`shown`) and the glass the zone map gives most `cells`
    count: the second keeps a photo whose view the network got wrong (a cracked screen it called a back
    view is still mostly "screen" on the zone map). A sliver of the other glass's label is not judged:
    on MSD's bare screens the zone map puts a strip of "back" along an edge (4-15% of the glass), and
    the back glass's model read that strip as a shattered back, p 0.78-0.97, on a scratched screen
    photographed 1 EV darker and on 1 of the 20 validation screens as they are
    (`benchmarks/bench_robustness.py`, docs/model-history.md)."""
    if len(judged) < 2 or not cells:
        return dict(judged)
    largest = max(judged, key=lambda z: cells.get(z, 0))
    return {z: p for z, p in judged.items() if z == largest or z in shown}


def judge_zone_damage(
    instances: list[DefectInstance],
    judged: dict[Zone, float],
    zone_box: dict[Zone, tuple[float, float, float, float]],
    units: str,
    per_px: float,
    min_confidence: float,
    photo_index: int = 0,
    view: View | None = None,
    glass: tuple[Zone, ...] = GLASS_ZONES,
    cells: Mapping[Zone, int] | None = None,
    outlines: Mapping[Zone, list[tuple[float, float]]] | None = None,
) -> list[DefectInstance]:
    """`instances` with the photo's glass crack fragments turned into evidence and, where a judged
    zone's probability of being cracked reaches `min_confidence`, one crack defect for it. Its length
    is how far the fragments spread (`_extent`: the longest distance across them, within the zone's
    box; `per_px`: `units` per photo pixel), its width the widest fragment's. Where the map left no
    fragment (the glass is judged cracked from its look as a whole: a web thumbnail's crack lines
    under the map's lowest cut) nothing was traced to measure: the length and width are 0, "not
    measured", which no limit reads as too long and the reasons do not quote (it was the zone box's
    diagonal, up to 145% of the device's length: "the longest ≈217 mm" on a phone). `cells`: how many
    of the zone map's cells each judged zone has (`one_glass_side`; without it every judged zone
    counts).

    Its box and outline, what the overlay draws, are the fragments' union where they spread over at
    least `TRACED_SHARE` of the zone's box, and otherwise the zone's outline (`outlines`, the zone
    map's region in the photo, `model.geometry.mask_outline`; without it the zone's box): the traced
    lines are then a corner of a glass judged cracked as a whole, and a box round them said the crack
    was there alone (a Galaxy's screen shattered edge to edge drawn as a box round one line by the
    home button). The fragments stay listed as evidence, and the overlay draws those the crack map is
    sure of in full colour (`serving.overlays`), so a single impact's spider is still shown where it
    is. Why not their union when one is sure: on generated impacts that is the whole crack, but on real
    photos a sure line is often a corner of a shattered glass (9 of the 54 of `TRACED_SHARE`'s count had
    one: a Galaxy S3 cracked from its top left, its sure line by the home button), and the crack map
    touches about 2% of the glass in both, so nothing in the maps tells the two apart.

    A photo shows one glass side: every crack fragment on glass is evidence once a glass zone is
    judged, whichever glass zone the view put it on, and the crack is put on the glass the view shows
    (a screen judged on a photo the network calls a back view is the back glass), so zones follow the
    view as every other instance's do. `glass`: the zones that are glass on this device
    (`glass_zones`); a view whose glass face is not glass on it (a laptop's lid: a back view) gets no
    zone crack, and its crack fragments stay defects of their own."""
    judged = {z: p for z, p in judged.items() if z in glass}
    shown = ZONES_BY_VIEW.get(view, GLASS_ZONES) if view is not None else GLASS_ZONES
    mine = [z for z in glass if z in shown]
    if not judged or (not mine and any(z in shown for z in GLASS_ZONES)):
        return list(instances)
    judged = one_glass_side(judged, cells or {}, shown)
    out = [
        i.model_copy(update={"role": "evidence"})
        if i.type is DefectType.CRACK and i.zone in glass and i.role == "defect"
        else i
        for i in instances
    ]
    fragments = [i for i in out if i.type is DefectType.CRACK and i.role == "evidence"]
    for judged_zone, p in judged.items():
        if p < min_confidence:
            continue
        # On the glass the view shows; a view with no glass face at all (a side view) keeps the judged zone.
        zone = judged_zone if judged_zone in shown else (mine[0] if mine else judged_zone)
        glass_box = zone_box[judged_zone]
        polygon = list((outlines or {}).get(judged_zone) or _box_corners(glass_box))
        xy = np.asarray(polygon)
        box = (*xy.min(axis=0), *xy.max(axis=0))
        width = length = 0.0
        if fragments:
            width = max(f.measurement.width for f in fragments)
            length = _extent(fragments, glass_box) * per_px
            boxes = np.array([f.box for f in fragments])
            traced = (*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0))
            if _area(traced) >= TRACED_SHARE * _area(glass_box):
                box, polygon = traced, _extent_polygon(fragments)
        x0, y0, x1, y1 = (float(v) for v in box)
        out.append(
            DefectInstance(
                type=DefectType.CRACK,
                zone=zone,
                photo_index=photo_index,
                view=view,
                box=(x0, y0, x1, y1),
                polygon=polygon,
                confidence=float(p),
                measurement=Measurement(units=units, length=length, width=width, area=length * width),
            )
        )
    return out


def lines_on_cracked_glass(
    instances: Sequence[DefectInstance], glass: tuple[Zone, ...] = GLASS_ZONES
) -> list[DefectInstance]:
    """`instances` with every scratch on a glass zone that a counted crack lies on (`model.rules.engine.
    counted`) turned into evidence of that crack: listed and drawn, never counted, not in the
    probabilities.

    Why: on cracked glass the coarse scratch map and the fine network both read the crack's branches
    and splinters as scratches (the real validation photos, 2026-12-06: 22 of the 107 graded with a cracked
    glass zone listed 1-7 "scratches" beside the crack, fine and coarse alike), and the reasons then
    said "1 crack and 7 scratches on the screen". In no standard can a scratch change the grade of
    glass already cracked (Back Market: Unlistable; CTIA D and R2 C6 bound cracks, chips and dents
    only), so the lines are the crack's evidence, as its fragments are. Only a counted crack: an
    uncertain one (an MSD screen's zone crack at 0.25) lies on the very scratch the photo shows.
    `glass`: the device's glass zones (`glass_zones`): a laptop lid's crack leaves its scratches as
    they are."""
    cracked = {i.zone for i in instances if i.type is DefectType.CRACK and i.zone in glass and counted(i)}
    return [
        i.model_copy(update={"role": "evidence"})
        if i.type is DefectType.SCRATCH and i.zone in cracked and i.role == "defect"
        else i
        for i in instances
    ]
