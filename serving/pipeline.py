"""From photo bytes to a graded device: decode, model, post-processing, grading rules.

Shared by the API and the offline batch grader, so both grade identically. Decoding, the network's
passes and the crop to the device are `model.inference` — the same module evaluation and calibration
call (`tests/test_inference_parity.py` checks that both sides get the same instances and grades). The
model runs through a `MicroBatcher` in the service and directly (`run_direct`) in the offline grader.

Photo verdicts: the model's quality class, except that a photo in which post-processing finds no
device is always `no_device`. Such photos are flagged, not refused: they contribute no defects, the
grading is still answered (201) and `needs_review` is raised, with the actionable message in the
photo's verdict and in each grade's advice. A photo that cannot be decoded at all is refused
(`PhotoError`, a 422 in the API).

No evidence, no grade: the rules get the views of the usable photos, so a device that no usable photo
shows is `ungradable` under every standard (never the best grade of a device nobody saw) unless sure
damage on the unusable photos forces the last grade, and one without a usable front or back photo says
which it lacks (`missing_views`) and goes to review unless its grade is already the last. Defects found
on a photo that is not usable still count: they can only make a grade worse.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace

import numpy as np

from model.card import ModelCard
from model.catalogue import lookup_device
from model.damage import glass_zones
from model.detail import NOMINAL_LENGTH_MM, detail_advice
from model.device_kind import guess_kind
from model.display import display_advice, is_lit, lit_crack_advice
from model.exposure import device_exposure
from model.fine_instances import photo_instances
from model.fine_pass import FineStage
from model.glare import blown_share, glare_advice, surface_hidden
from model.inference import Frame, Inferred, batched, frame_photo, infer, screen_lit
from model.instances import DefectInstance
from model.plane import view_share
from model.postprocess import estimate_scale
from model.preprocess import DETAIL, DecodeError, decoded_pixels
from model.rules import GradeCalibration, GradeResult, grade, list_standards, load_standard
from model.rules.engine import UNGRADABLE, counted
from model.taxonomy import QUALITY_MESSAGES, DefectType, DeviceKind, PhotoQuality, View, Zone
from serving.predictor import Model
from serving.tracing import span

# runs a model on letterboxed photos -> per-photo outputs (no batch axis)
RunFn = Callable[[Model, Sequence[np.ndarray]], list[dict[str, np.ndarray]]]


class PhotoError(ValueError):
    """A photo of a request that cannot be graded: which one, and the decoder's code."""

    def __init__(self, index: int, filename: str | None, error: DecodeError):
        self.index = index
        self.code = error.code
        name = f" ({filename})" if filename else ""
        super().__init__(f"photo {index + 1}{name}: {error}")  # counted from 1, as in every message


class RequestError(ValueError):
    """A grading request whose options are unusable (unknown standard, device model, views)."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class Device:
    """What the caller told us about the device, resolved against the catalogue."""

    kind: DeviceKind = DeviceKind.PHONE
    model_name: str | None = None  # the catalogue's name when known
    length_mm: float | None = None
    # Who said what kind of device it is: "caller" (its device_kind, or a Device built with a kind),
    # "catalogue" (its device_model), "photos" (the kind probe, `model.device_kind`: the caller said
    # neither) or "default" (the caller said neither and the model cannot tell: a phone).
    kind_source: str = "caller"


KIND_UNSAID = "default"


def below(p: float, t: float) -> tuple[str, str]:
    """`p` and `t` (p < t) written with the fewest decimals, from two, that show p below t: "0.96 < 0.96"
    read as a mistake on a grade whose probability was 0.958."""
    for d in (2, 3, 4):
        if round(p, d) < round(t, d):
            return f"{p:.{d}f}", f"{t:.{d}f}"
    return f"{math.floor(p * 1e4) / 1e4:.4f}", f"{t:.4f}"


@dataclass
class PhotoResult:
    index: int
    width: int  # original photo size, EXIF orientation applied
    height: int
    view: View
    view_source: str  # "caller" or "model"
    view_confidence: float
    quality: PhotoQuality
    quality_confidence: float
    device_found: bool
    instances: list[DefectInstance] = field(default_factory=list)
    # The device's length at the photo's scale (model.detail); a side view shows a shorter side of it.
    device_length_px: float | None = None
    glare_share: float | None = None  # its main surface's share blown out (model.glare)
    lit_share: float | None = None  # its screen's share showing a picture: the display is on (model.display)

    @property
    def usable(self) -> bool:
        return self.quality is PhotoQuality.USABLE

    @property
    def surface_hidden(self) -> bool:
        """Its view's main surface mostly blown out (`model.glare.surface_hidden`): read for the rest of
        the device, the view not seen."""
        return surface_hidden(self.glare_share)

    @property
    def message(self) -> str:
        return QUALITY_MESSAGES[self.quality]


@dataclass
class DeviceGrading:
    photos: list[PhotoResult]
    grades: dict[str, GradeResult]
    device: Device
    model_version: str
    model_name: str
    model_sha256: str

    @property
    def instances(self) -> list[DefectInstance]:
        return [i for p in self.photos for i in p.instances]

    @property
    def review_reasons(self) -> list[str]:
        out = []
        for name, g in self.grades.items():
            if g.grade == UNGRADABLE:
                out.append(f"{name}: ungradable, no usable photo of the device")
            elif g.review_threshold >= 1.0 and g.probabilities[g.grade] < g.review_threshold:
                # The card found no threshold that left 95% of such gradings right on validation
                # (`Thresholds.fine_grading` on 12 MP photos today): "0.95 < 1.00" would read as a miss.
                out.append(
                    f"{name}: top grade {g.grade} has probability {g.probabilities[g.grade]:.2f}; on "
                    "photos like these no probability was right often enough on validation, so every "
                    "such grading is checked"
                )
            elif g.probabilities[g.grade] < g.review_threshold:
                p, t = below(g.probabilities[g.grade], g.review_threshold)
                out.append(f"{name}: top grade {g.grade} has probability {p} < {t}")
            if g.gradable and g.scale_decides:
                out.append(
                    f"{name}: {g.grade} depends on the device's size, which is unknown (sizes estimated "
                    "from a typical one): give the device model, or check"
                )
            if g.gradable and g.kind_decides:
                out.append(
                    f"{name}: {g.grade} depends on what kind of device this is, which the photos do not "
                    f"show for sure (graded as a {self.device.kind.value}): give device_kind, or check"
                )
        # A missing view is a reason where it left a grade unsure (an upper bound, `model.rules.grade`),
        # said with the standards it left unsure: a shattered front is Back Market's last grade whatever
        # the back shows, CTIA's D and R2's C6 are not (its back may make them E and C7).
        unsure: dict[str, list[str]] = {}
        for name, g in self.grades.items():
            if g.gradable and g.needs_review:
                for v in g.missing_views:
                    unsure.setdefault(v, []).append(name)
        out += [
            f"no usable {v} photo: graded without it ({', '.join(names)}: it could show worse)"
            for v, names in sorted(unsure.items())
        ]
        # An unusable photo matters where it left a grade unsure (through the views it did not show);
        # then it says why. A sure grade (a shattered screen, whatever the rest) needs no person for it.
        if out:  # photos numbered as people count them, like the advice
            out += [f"photo {p.index + 1}: {p.message}" for p in self.photos if not p.usable]
        return out

    @property
    def needs_review(self) -> bool:
        return bool(self.review_reasons)

    @property
    def gradable(self) -> bool:
        """False when no photo was usable: every standard's grade is then `ungradable`."""
        return any(g.gradable for g in self.grades.values())

    @property
    def scale_units(self) -> str:
        return "mm" if self.device.length_mm is not None else "relative"


def resolve_device(device_model: str | None, device_kind: str | None) -> Device:
    """Catalogue lookup; raises RequestError for an unknown model or kind."""
    kind = None
    if device_kind:
        try:
            kind = DeviceKind(device_kind.strip().lower())
        except ValueError as exc:
            raise RequestError(
                "invalid_device_kind",
                f"device_kind must be one of {', '.join(k.value for k in DeviceKind)}, got {device_kind!r}",
            ) from exc
    if device_model and device_model.strip():
        try:
            spec = lookup_device(device_model)
        except KeyError as exc:  # UnknownDeviceError, with suggestions in its message
            raise RequestError("unknown_device_model", str(exc)) from exc
        source = "caller" if kind else "catalogue"
        return Device(kind=kind or spec.kind, model_name=spec.name, length_mm=spec.length, kind_source=source)
    return Device(kind=kind) if kind else Device(kind_source=KIND_UNSAID)


def resolve_standards(standard: str | None) -> list[str]:
    """A comma-separated list of standard names (all bundled standards when empty)."""
    known = list_standards()
    if not standard or not standard.strip():
        return known
    names = [s.strip().lower() for s in standard.split(",") if s.strip()]
    unknown = [s for s in names if s not in known]
    if unknown:
        raise RequestError(
            "unknown_standard", f"unknown standard {', '.join(unknown)}; known: {', '.join(known)}"
        )
    return list(dict.fromkeys(names))


def resolve_views(views: str | None, n_photos: int) -> list[View | None]:
    """Comma-separated views, one per photo, in upload order (empty entries: the model decides)."""
    if not views or not views.strip():
        return [None] * n_photos
    parts = [v.strip().lower() for v in views.split(",")]
    if len(parts) != n_photos:
        raise RequestError("invalid_views", f"views lists {len(parts)} entries for {n_photos} photos")
    out: list[View | None] = []
    for p in parts:
        if not p:
            out.append(None)
            continue
        try:
            out.append(View(p))
        except ValueError as exc:
            raise RequestError(
                "invalid_views", f"unknown view {p!r}; known: {', '.join(v.value for v in View)}"
            ) from exc
    return out


# reserves the pixels a photo's decoding holds, while it decodes (serving.limits.PixelBudget.hold)
HoldPixels = Callable[[int], AbstractContextManager]


def prepare_photos(
    datas: Sequence[bytes],
    size: int,
    filenames: Sequence[str | None] = (),
    hold_pixels: HoldPixels | None = None,
    whole: bool = False,
) -> list[Frame]:
    """Decode and letterbox a request's photos (`model.inference.frame_photo`), one after the other;
    raises PhotoError naming the first photo that cannot be decoded. `hold_pixels`: each photo reserves
    what its header says decoding will hold, until it is decoded (and reduced). `whole`: each large
    photo's full-scale decode for the fine pass starts first, beside its reduced one."""
    out = []
    for k, data in enumerate(datas):
        try:
            if hold_pixels is None:
                out.append(frame_photo(data, size, whole))
                continue
            with hold_pixels(decoded_pixels(data, size * DETAIL)):
                out.append(frame_photo(data, size, whole))
        except DecodeError as exc:
            raise PhotoError(k, filenames[k] if k < len(filenames) else None, exc) from exc
    return out


def analyse_photo(
    inferred: Inferred,
    card: ModelCard,
    device: Device,
    index: int,
    view: View | None = None,
) -> PhotoResult:
    """One photo's network outputs -> its verdict and measured defects (with the fine pass's scratches
    where it ran)."""
    outputs, size = inferred.outputs, inferred.size
    view_probs = outputs["view_probs"]
    if view is None:
        k = int(np.argmax(view_probs))
        view_res, view_source, view_conf = View(card.taxonomy.views[k]), "model", float(view_probs[k])
    else:
        k = card.taxonomy.views.index(view.value)
        view_res, view_source, view_conf = view, "caller", 1.0
    # Measured against the side the view shows: a phone's top edge is its width, not its length.
    share = view_share(view_res, device.kind, device.model_name)
    scale = estimate_scale(outputs["zone_probs"], inferred.letterbox, size, device.length_mm, share)
    q_probs = outputs["quality_probs"]
    q = int(np.argmax(q_probs))
    quality, q_conf = PhotoQuality(card.taxonomy.qualities[q]), float(q_probs[q])
    if quality is PhotoQuality.BAD_EXPOSURE and scale.device_found:
        # "Too dark or blown out" is about the device, not a white sheet behind it (model/exposure.py).
        exposure = device_exposure(inferred.frame.image, outputs["zone_probs"])
        if exposure is not None and exposure.well_exposed:
            # The next verdict the probe gives, among those a found device can have.
            ruled_out = {PhotoQuality.BAD_EXPOSURE.value, PhotoQuality.NO_DEVICE.value}
            names = card.taxonomy.qualities
            q = max((k for k, n in enumerate(names) if n not in ruled_out), key=lambda k: q_probs[k])
            quality, q_conf = PhotoQuality(names[q]), float(q_probs[q])
    if not scale.device_found:
        quality = PhotoQuality.NO_DEVICE
        q_conf = max(q_conf, float(q_probs[card.taxonomy.qualities.index(PhotoQuality.NO_DEVICE.value)]))
    instances: list[DefectInstance] = []
    glare = lit = None
    if scale.device_found:
        glare = blown_share(inferred.frame.image, outputs["zone_probs"], view_res, glass_zones(device.kind))
        if view_res is View.FRONT:
            lit = screen_lit(inferred)
        instances = photo_instances(
            outputs,
            inferred.letterbox,
            size,
            card.thresholds,
            scale,
            photo_index=index,
            view=view_res,
            fine=inferred.fine,
            glass=glass_zones(device.kind),
            lit=is_lit(lit),
        )
    w, h = inferred.frame.original_size
    return PhotoResult(
        index=index,
        width=w,
        height=h,
        view=view_res,
        view_source=view_source,
        view_confidence=view_conf,
        quality=quality,
        quality_confidence=q_conf,
        device_found=scale.device_found,
        instances=instances,
        device_length_px=scale.device_length_px,
        glare_share=glare,
        lit_share=lit,
    )


def grade_instances(
    instances: Sequence[DefectInstance],
    standards: Sequence[str],
    device: Device,
    review_threshold: float,
    calibration: Mapping[str, GradeCalibration] | None = None,
    photos: Sequence[PhotoResult] | None = None,
) -> dict[str, GradeResult]:
    """Each standard's grade; `calibration`: the model card's grade calibrations, by standard.
    `photos`: the device's photo verdicts; the usable ones' views decide whether there is anything to
    grade and which views are missing, the others' messages become retake advice (None: instances
    alone, as the rules CLI grades them)."""
    calibration = calibration or {}
    views = None if photos is None else {p.view for p in photos if p.usable and not p.surface_hidden}
    glimpsed = {p.view for p in photos or () if p.usable and p.surface_hidden}
    retakes = [f"photo {p.index + 1}: {p.message}" for p in photos or () if not p.usable]
    # Usable photos too coarse for the hairline tiers ask for a closer one (model.detail), and those
    # whose surface glare blows out for another (model.glare); said only where the grade is one of
    # those tiers: a device graded Unlistable needs no better photo.
    coarse = [
        advice
        for p in photos or ()
        if p.usable
        for advice in (
            detail_advice(
                p.index + 1,
                p.device_length_px,
                device.length_mm,
                device.kind,
                view_share(p.view, device.kind, device.model_name),
            ),
            glare_advice(p.index + 1, p.glare_share, p.view),
            display_advice(p.index + 1, p.lit_share),
        )
        if advice
    ]
    # A crack counted on a lit screen may be the picture's own lines (model.display): where the grading
    # goes to a person anyway, the photo that would settle it is one with the display off.
    cracked = {
        i.photo_index
        for i in instances
        if i.type is DefectType.CRACK and i.zone is Zone.SCREEN and counted(i)
    }
    lit_cracks = [
        advice
        for p in photos or ()
        if p.usable and p.index in cracked
        for advice in (lit_crack_advice(p.index + 1, p.lit_share),)
        if advice
    ]
    out = {}
    for name in standards:
        result = grade(
            instances,
            load_standard(name),
            device_kind=device.kind,
            review_threshold=review_threshold,
            calibration=calibration.get(name),
            views=views,
            retakes=retakes,
            glimpsed=glimpsed,
        )
        if coarse and result.listable:
            result = result.model_copy(update={"advice": [*result.advice, *coarse]})
        if lit_cracks and result.needs_review and not result.listable and result.gradable:
            result = result.model_copy(update={"advice": [*result.advice, *lit_cracks]})
        out[name] = result
    return out


def grade_device(
    run: RunFn,
    model: Model,
    datas: Sequence[bytes],
    *,
    device: Device,
    standards: Sequence[str],
    views: Sequence[View | None] | None = None,
    filenames: Sequence[str | None] = (),
    review_threshold: float | None = None,
    on_decoded: Callable[[], None] | None = None,
    cpu_slot: AbstractContextManager | None = None,
    hold_pixels: HoldPixels | None = None,
    spare_cores: Callable[[], bool] | None = None,
) -> DeviceGrading:
    """Grade one device from its photos (raises PhotoError for an undecodable photo).

    `on_decoded` is called once every photo has decoded, before the model runs: the service starts
    storing the photos there, so the disk writes overlap the inference instead of following it.
    `cpu_slot` (a semaphore, say) is held around the CPU-heavy steps but not while waiting for the model,
    so many concurrent requests do not thrash a few cores while their batch forms. `hold_pixels`: see
    `prepare_photos`. `spare_cores`: whether the fine pass may spread one photo's work over the cores
    now (`FineStage.spare_cores`; None: always). A `device` whose kind nobody said (`resolve_device`
    without a kind or a model) is graded as the kind its photos show (`model.device_kind`), and the
    grading's device says so (`kind_source` "photos").
    """
    slot = cpu_slot if cpu_slot is not None else nullcontext()
    fine = fine_stage(model, device, spare_cores)
    # A grading alone starts each large photo's full-scale decode before its reduced one, so that the
    # decode the fine pass waits for has a core to itself while the reduced one runs (model.inference).
    whole = fine is not None and fine.cores_free()
    # Spans (serving/tracing.py): nothing is created when tracing is off.
    with span("decode", {"photo.count": len(datas), "photo.bytes": sum(map(len, datas))}), slot:
        frames = prepare_photos(datas, model.input_size, filenames, hold_pixels, whole)
    if on_decoded is not None:
        on_decoded()
    views = list(views) if views is not None else [None] * len(datas)
    with span("model", {"model.version": model.version, "photo.count": len(frames)}):
        # The fine pass reads each photo as the view the grading takes it for (the caller's, if said).
        inferred = infer(frames, model.card, lambda images: run(model, images), slot, fine, views)
    guess = guess_kind([i.outputs for i in inferred]) if device.kind_source == KIND_UNSAID else None
    if guess is not None:
        device = replace(device, kind=guess.kind, kind_source="photos")
    with span("postprocess", {"photo.count": len(inferred)}) as sp, slot:
        photos = [analyse_photo(inf, model.card, device, k, views[k]) for k, inf in enumerate(inferred)]
        sp.set_attribute("defect.count", sum(len(p.instances) for p in photos))
    # A device the fine pass read is graded differently (it sees hairlines), so the card may trust its
    # grades by a calibration of their own (`Thresholds.fine_grading`).
    calibration, card_threshold = model.card.thresholds.grading(any(i.fine is not None for i in inferred))
    threshold = card_threshold if review_threshold is None else review_threshold
    instances = [i for p in photos for i in p.instances]
    with span("rules", {"standards": ",".join(standards)}):
        grades = grade_instances(instances, standards, device, threshold, calibration, photos)
    if guess is not None and not guess.sure:
        with span("postprocess", {"photo.count": len(inferred), "kind": guess.other.value}), slot:
            grades = _kind_decides(
                grades, inferred, model, replace(device, kind=guess.other), views, threshold, calibration
            )
    return DeviceGrading(
        photos=photos,
        grades=grades,
        device=device,
        model_version=model.version,
        model_name=model.card.name,
        model_sha256=model.sha256,
    )


def _kind_decides(
    grades: dict[str, GradeResult],
    inferred: Sequence[Inferred],
    model: Model,
    other: Device,
    views: Sequence[View | None],
    threshold: float,
    calibration: Mapping[str, GradeCalibration],
) -> dict[str, GradeResult]:
    """`grades` with each grade that the device's kind decides sent to review (`kind_decides`): the
    same photos analysed and graded as the `other` kind give another grade. Its fine maps are the ones
    the pass made at the guessed kind's length (not run again: on a phone and a laptop alike a second
    pass would read the same pixels)."""
    photos = [analyse_photo(inf, model.card, other, k, views[k]) for k, inf in enumerate(inferred)]
    alt = grade_instances(
        [i for p in photos for i in p.instances],
        list(grades),
        other,
        threshold,
        calibration,
        photos,
    )
    return {
        n: g if alt[n].grade == g.grade else g.model_copy(update={"kind_decides": True, "needs_review": True})
        for n, g in grades.items()
    }


def fine_stage(
    model: Model, device: Device, spare_cores: Callable[[], bool] | None = None
) -> FineStage | None:
    """The fine pass for `model` (None without a fine network): the device's length from the catalogue,
    else a typical one for its kind (it only sets the tiles' pixel size)."""
    if model.fine is None:
        return None
    length = device.length_mm or NOMINAL_LENGTH_MM[device.kind]
    guess = device.kind_source == KIND_UNSAID  # the pass takes the length of the kind the photos show
    return FineStage(
        model.fine.card,
        model.fine.run,
        length,
        spare_cores,
        guess_kind=guess,
        kind=device.kind,
        model_name=device.model_name,
    )


def run_direct(model: Model, images: Sequence[np.ndarray], max_batch: int = 8) -> list[dict[str, np.ndarray]]:
    """Run the model without the micro-batcher (offline grading), in chunks of `max_batch`."""
    return batched(model.run, max_batch)(images)
