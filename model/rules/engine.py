"""Applying a standard to a device's defect instances: the grade, the reasons, the probabilities.

Semantics of a limit (they make grading monotone — more, larger or more visible defects never improve
a grade): a limit holds when every instance it selects is within its size and visibility bounds and
there are at most `max_count` of them. A line's visibility (`invisible_at_cm`) is read from its width
and contrast by `model.visibility`; without a measured contrast, from its width alone
(`model.rules.schema.Limit`). A grade is admitted when all its limits hold; the device gets the best
admitted grade (the last grade admits anything).

The deterministic grade counts the instances whose confidence is at least `present_at` (0.5) and whose
role is "defect" (`counted`): a zone-level crack's fragments (role "evidence") and candidates below the
cut are listed in answers, never counted. The
probabilities treat each instance as real with its confidence, independently: exact enumeration for
up to `EXACT_MAX` uncertain instances, otherwise Monte Carlo with a fixed seed. Both paths share one
vectorised evaluator, so they cannot disagree on what a set of instances grades as.

No evidence, no grade: a caller that says which views its usable photos show (`views`) gets
`UNGRADABLE` when there are none — never the best grade of a device nobody could see — unless what the
unusable photos still show forces the last grade (poor photos hide defects, they do not invent sure
ones); when a view a device needs is missing (`REQUIRED_VIEWS`: front and back), the grade with
`missing_views`, advice, and `needs_review` unless the grade is already the last (an unseen side can
only lower a grade). Without `views` (the rules CLI, evaluation), instances are graded as given.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from model.instances import DefectInstance
from model.rules.calibration import GradeCalibration
from model.rules.schema import GRADED_TYPES, UNGRADABLE, Limit, Standard, load_standard
from model.taxonomy import REQUIRED_VIEWS, DefectType, DeviceKind, View, Zone, plural
from model.visibility import visibility_index, visible_up_to_cm

EXACT_MAX = 12  # 2**12 = 4096 subsets: still a few milliseconds
N_SAMPLES = 4096
SEED = 20261125
PRESENT_AT = 0.5  # the deterministic grade counts an instance from this confidence on
# Without the device's model, sizes are estimated from the standard's reference length for its kind; a
# device may be this much shorter or longer (our choice: the bundled catalogue's phones run from 12%
# under to 12% over the 150 mm reference, its tablets from 22% under to 12% over 250 mm, its laptops
# from 2% under to 15% over 310 mm, and smaller laptops exist). A grade that another length in this
# range would change is decided by the unknown size, not by what the photos show: a person should
# look (or the caller give the model).
SCALE_RANGE = (0.85, 1.15)

ZONE_WORDS = {Zone.SCREEN: "screen", Zone.BODY: "back", Zone.FRAME: "frame", Zone.CAMERA: "camera"}
VIEW_WORDS = {View.FRONT: "the screen", View.BACK: "the back and its camera"}  # what a view shows


class GradeResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    standard: str
    standard_version: str
    grade: str
    listable: bool
    # For every grade better than `grade`: why it was barred, in words a refurbisher understands.
    barred: dict[str, list[str]]
    # Calibrated on validation devices when the model card has a calibration for the standard
    # (`model.rules.calibration`, and `method` says so); otherwise the rules under the instances'
    # uncertainty alone.
    probabilities: dict[str, float]
    needs_review: bool
    review_threshold: float
    method: str  # "exact" or "sampled (N)"
    scale_known: bool
    advice: list[str]
    # Views the device needs (REQUIRED_VIEWS) that no usable photo showed: what they show was not graded.
    missing_views: list[str] = Field(default_factory=list)
    # The grade hinges on the device's size, which is unknown: with sizes estimated from the reference
    # length, another length within `SCALE_RANGE` of it gives another grade (`_scale_decides`).
    scale_decides: bool = False
    # The grade hinges on the device's kind, which its photos did not show at 9 to 1 (nobody named it):
    # graded as the other kind, it gets another grade (`serving.pipeline.grade_device`).
    kind_decides: bool = False

    @property
    def gradable(self) -> bool:
        return self.grade != UNGRADABLE


def counted(inst: DefectInstance, present_at: float = PRESENT_AT) -> bool:
    """Whether `grade` counts this instance in the grade: a type the standards grade, the role "defect"
    (not a fragment of a zone-level defect) and a confidence of at least `present_at`. The others are
    candidates: they weigh in the probabilities only (evidence not at all)."""
    return inst.type in GRADED_TYPES and inst.role == "defect" and inst.confidence >= present_at


@dataclass(frozen=True)
class _Sized:
    """An instance's sizes in mm (estimated from the reference length when the scale is unknown)."""

    length: float
    width: float
    area: float
    rel: tuple[float, float, float] | None  # relative sizes, when that is how it was measured
    contrast: float | None = None  # measured contrast of a line in mm (None: unmeasured, or relative)


def _sizes(inst: DefectInstance, ref_mm: float) -> _Sized:
    m = inst.measurement
    if m.units == "mm":
        return _Sized(m.length, m.width, m.area, None, m.contrast)
    # Relative units keep the size bounds as before: a contrast is no use without the width in mm.
    return _Sized(m.length * ref_mm, m.width * ref_mm, m.area * ref_mm**2, (m.length, m.width, m.area))


def _visibility(limit: Limit, s: _Sized) -> float | None:
    """The instance's visibility index at the limit's `invisible_at_cm`, where that is what judges it
    (`Limit`'s docstring): a measured contrast, or no width bound that applies to it. None: the limit
    has no visibility bound, or its width bound stands in for it (no contrast measured)."""
    if limit.invisible_at_cm is None:
        return None
    if s.contrast is not None:
        return visibility_index(s.width, s.contrast, limit.invisible_at_cm)
    if limit.max_width_mm is not None or (s.rel is not None and limit.max_width_rel is not None):
        return None
    return visibility_index(s.width, None, limit.invisible_at_cm)


def _breaches(limit: Limit, s: _Sized) -> set[str]:
    """Which of a limit's bounds one instance exceeds: "length", "width", "area", "visible" (relative
    bounds first when unscaled; a width judged by visibility is not also held to the width bound)."""
    vis = _visibility(limit, s)
    out = {"visible"} if vis is not None and vis >= 1.0 else set()
    checks = (
        ("length", limit.max_length_rel, limit.max_length_mm, 0, s.length),
        ("width", limit.max_width_rel, None if vis is not None else limit.max_width_mm, 1, s.width),
        ("area", limit.max_area_rel, limit.max_area_mm2, 2, s.area),
    )
    for name, rel_bound, mm_bound, k, value_mm in checks:
        if s.rel is not None and rel_bound is not None:
            if s.rel[k] > rel_bound:
                out.add(name)
        elif mm_bound is not None and value_mm > mm_bound:
            out.add(name)
    return out


def _oversize(limit: Limit, s: _Sized) -> bool:
    """Whether one instance exceeds a limit's size or visibility bounds."""
    return bool(_breaches(limit, s))


class _Compiled:
    """A standard applied to one list of instances, as boolean matrices for fast evaluation."""

    def __init__(self, std: Standard, instances: Sequence[DefectInstance], ref_mm: float):
        self.std = std
        self.instances = list(instances)
        self.sized = [_sizes(i, ref_mm) for i in self.instances]
        self.limits: list[tuple[int, Limit]] = [
            (g, lim) for g, grade in enumerate(std.grades) for lim in grade.limits
        ]
        n, m = len(self.instances), len(self.limits)
        self.matched = np.zeros((n, m), dtype=bool)
        self.oversize = np.zeros((n, m), dtype=bool)
        for j, (_, lim) in enumerate(self.limits):
            for i, inst in enumerate(self.instances):
                if inst.type in lim.types and inst.zone in lim.zones:
                    self.matched[i, j] = True
                    self.oversize[i, j] = _oversize(lim, self.sized[i])
        self.max_count = np.array(
            [lim.max_count if lim.max_count is not None else np.iinfo(np.int32).max for _, lim in self.limits]
        )
        self.grade_of_limit = np.array([g for g, _ in self.limits], dtype=int)

    def best_grade(self, present: np.ndarray) -> np.ndarray:
        """present: (S, n) booleans, one row per hypothetical set of real instances -> (S,) grade index."""
        p = present.astype(np.int32)
        counts = p @ self.matched.astype(np.int32)  # (S, m)
        big = (p @ self.oversize.astype(np.int32)) > 0
        holds = (counts <= self.max_count) & ~big  # (S, m)
        n_grades = len(self.std.grades)
        admitted = np.ones((present.shape[0], n_grades), dtype=bool)
        for g in range(n_grades):
            cols = self.grade_of_limit == g
            if cols.any():
                admitted[:, g] = holds[:, cols].all(axis=1)
        return admitted.argmax(axis=1)  # first admitted; the last grade always is

    def reasons(self, present: np.ndarray, grade_index: int) -> list[str]:
        """Why grade `grade_index` is not admitted by the instances marked present."""
        out = []
        grade = self.std.grades[grade_index]
        for j, (g, lim) in enumerate(self.limits):
            if g != grade_index:
                continue
            sel = [i for i in range(len(self.instances)) if present[i] and self.matched[i, j]]
            too_many = lim.max_count is not None and len(sel) > lim.max_count
            big = [i for i in sel if self.oversize[i, j]]
            if too_many or big:
                out.append(_describe(self, sel, big, lim, grade.name))
        return out


def _fmt(x: float) -> str:
    return f"{x:.1f}" if x >= 1 else f"{x:.2f}"


def _describe(c: _Compiled, sel: list[int], big: list[int], lim: Limit, grade_name: str) -> str:
    by_type: dict[DefectType, int] = {}
    for i in sel:
        by_type[c.instances[i].type] = by_type.get(c.instances[i].type, 0) + 1
    what = " and ".join(plural(t, n) for t, n in by_type.items())
    zones = sorted({c.instances[i].zone for i in sel}, key=list(Zone).index)
    where = " and ".join(ZONE_WORDS[z] for z in zones)
    # A length of 0 was not measured (a glass judged cracked as a whole, no line traced: model.damage):
    # the sentence quotes only sizes that were. Nor does it quote a crack's: no standard bounds one, and
    # on real photos the fragments traced cover a part of a shattered glass (the median counted crack on
    # the real validation photos spread over 0.05 of the device's length), so "the longest ≈8 mm" on a
    # spider web over the whole screen would mislead the person reading it.
    measured = [i for i in sel if c.sized[i].length > 0 and c.instances[i].type is not DefectType.CRACK]
    estimated = any(c.sized[i].rel is not None for i in measured)
    approx = "≈" if estimated else ""
    found = f"{what} on the {where}"
    if measured:
        found += f", the longest {approx}{_fmt(max(c.sized[i].length for i in measured))} mm"
    breaches = {i: _breaches(lim, c.sized[i]) for i in big}
    too_wide = [i for i in big if "width" in breaches[i]]
    if too_wide:
        found += f", the widest {approx}{_fmt(max(c.sized[i].width for i in too_wide))} mm"
    seen = [i for i in big if "visible" in breaches[i]]
    if seen and lim.invisible_at_cm is not None:
        found += _seen_words(c, seen, lim.invisible_at_cm)
    if lim.is_bar:
        allowed = f"{grade_name} allows none"
    else:
        parts = []
        if lim.max_count is not None:
            parts.append(f"at most {lim.max_count}")
        sizes = lim.size_words(_fmt)
        if sizes:
            # "each up to 3.0 mm long, invisible at 20 cm", but "each invisible at 20 cm" alone
            lead = "each " if sizes[0].startswith("invisible") else "each up to "
            parts.append(lead + ", ".join(sizes))
        allowed = f"{grade_name} allows " + ", ".join(parts)
    note = " (sizes estimated: the device's scale is unknown)" if estimated else ""
    return f"{found}; {allowed}{note}"


def _seen_words(c: _Compiled, seen: list[int], distance_cm: float) -> str:
    """e.g. ", visible at 20 cm (from up to 34 cm)", or "(by its width alone, ...)" without a contrast:
    the farthest distance any of them is seen from, a number a refurbisher can check."""
    farthest = max(visible_up_to_cm(c.sized[i].width, c.sized[i].contrast) for i in seen)
    alone = "by its width alone, " if all(c.sized[i].contrast is None for i in seen) else ""
    return f", visible at {distance_cm:g} cm ({alone}from up to {farthest:.0f} cm)"


def _relevant(instances: Sequence[DefectInstance]) -> list[DefectInstance]:
    return [i for i in instances if i.type in GRADED_TYPES and i.confidence > 0 and i.role == "defect"]


def _resolve(standard: Standard | str) -> Standard:
    return load_standard(standard) if isinstance(standard, str) else standard


def grade_probabilities(
    instances: Sequence[DefectInstance],
    standard: Standard | str,
    device_kind: DeviceKind | str = DeviceKind.PHONE,
) -> tuple[dict[str, float], str]:
    """Probability of each grade given each instance's confidence, and the method used."""
    return _probabilities(_compile(instances, standard, device_kind))


def _compile(
    instances: Sequence[DefectInstance], standard: Standard | str, device_kind: DeviceKind | str
) -> _Compiled:
    std = _resolve(standard)
    return _Compiled(std, _relevant(instances), std.reference_length_mm[DeviceKind(device_kind)])


def _probabilities(c: _Compiled) -> tuple[dict[str, float], str]:
    std, insts = c.std, c.instances
    conf = np.array([i.confidence for i in insts], dtype=float)
    sure = conf >= 1.0
    unsure = np.flatnonzero(~sure)
    k = len(unsure)
    if k <= EXACT_MAX:
        # All 2**k subsets of the uncertain instances, with their exact probabilities.
        bits = ((np.arange(2**k)[:, None] >> np.arange(k)[None, :]) & 1).astype(bool)
        present = np.tile(sure, (2**k, 1))
        present[:, unsure] = bits
        pu = conf[unsure]
        weights = np.prod(np.where(bits, pu, 1 - pu), axis=1) if k else np.ones(1)
        method = "exact"
    else:
        rng = np.random.default_rng(SEED)
        present = rng.random((N_SAMPLES, len(insts))) < conf[None, :]
        weights = np.full(N_SAMPLES, 1.0 / N_SAMPLES)
        method = f"sampled ({N_SAMPLES})"
    idx = c.best_grade(present)
    probs = np.bincount(idx, weights=weights, minlength=len(std.grades))
    probs = probs / probs.sum()
    return {name: float(p) for name, p in zip(std.grade_names, probs, strict=True)}, method


def grade(
    instances: Sequence[DefectInstance],
    standard: Standard | str,
    *,
    device_kind: DeviceKind | str = DeviceKind.PHONE,
    review_threshold: float | None = None,
    present_at: float = PRESENT_AT,
    calibration: GradeCalibration | None = None,
    views: Collection[View | str] | None = None,
    retakes: Sequence[str] = (),
    glimpsed: Collection[View | str] = (),
) -> GradeResult:
    """Grade one device from the instances found on all its photos. `calibration` (the model card's
    for this standard) turns the probabilities into how often each grade is right on validation
    devices; `needs_review` then compares the calibrated probability of the grade.

    `views`: the views of the device's usable photos (None: not known, grade the instances as given).
    None at all gives `UNGRADABLE`; a required view missing is said (`missing_views`, advice) and sends
    the grading to review. `retakes`: what to do about the photos that could not be used (the
    pipeline's verdicts, "photo 2: too blurry, retake ..."), added to the advice. `glimpsed`: views
    of usable photos that hid their main surface (a front photo whose screen is blown out white,
    `model.glare.surface_hidden`): the device is graded from what they show, as from a side photo,
    but the view is not seen."""
    std = _resolve(standard)
    kind = DeviceKind(device_kind)
    threshold = std.review_threshold if review_threshold is None else review_threshold
    seen = None if views is None else {View(v) for v in views}
    shown = None if seen is None else seen | {View(v) for v in glimpsed}  # some of the device in view
    c = _compile(instances, std, kind)
    insts = c.instances
    if calibration is not None and calibration.grades != std.grade_names:
        raise ValueError(
            f"{std.standard}: grade calibration is for grades {list(calibration.grades)}, "
            f"the standard has {list(std.grade_names)}"
        )
    present = np.array([i.confidence >= present_at for i in insts], dtype=bool)
    g = int(c.best_grade(present[None, :])[0])
    last = len(std.grades) - 1
    if shown is not None and not shown and g < last:
        # No usable photo: nothing proves a better grade. Only damage that forces the last grade even
        # on photos that could not be used (a shattered screen in a dark photo) still decides it.
        return ungradable(std, kind, threshold, retakes)
    barred = {std.grades[b].name: c.reasons(present, b) for b in range(g)}
    probs, method = _probabilities(c)  # the same compiled matrices: built once per grading
    if calibration is not None:
        probs = calibration.apply(probs)
        method = f"{method}, calibrated on {calibration.devices} validation devices"
    chosen = std.grades[g]
    scale_decides = _scale_decides(c, present, g, std.reference_length_mm[kind])
    missing = [v for v in REQUIRED_VIEWS[kind] if seen is not None and v not in seen]
    advice = [f"no usable {v} photo: {VIEW_WORDS.get(v, 'that side')} not graded, add one" for v in missing]
    advice += retakes
    smudged = sorted(
        {i.photo_index for i in instances if i.type is DefectType.SMUDGE and i.confidence >= present_at}
    )
    if smudged:
        photos = ", ".join(str(p + 1) for p in smudged)
        advice.append(f"smudges on photo {photos}: clean the device and retake, dirt can hide defects")
    return GradeResult(
        standard=std.standard,
        standard_version=std.version,
        grade=chosen.name,
        listable=chosen.listable,
        barred=barred,
        probabilities=probs,
        # A missing view can only lower the grade (more defects never improve one): unless the grade is
        # already the last, what the photos show is an upper bound that a person should check.
        needs_review=probs[chosen.name] < threshold or (bool(missing) and g < last) or scale_decides,
        review_threshold=threshold,
        method=method,
        scale_known=all(i.scaled for i in insts),
        advice=advice,
        missing_views=[v.value for v in missing],
        scale_decides=scale_decides,
    )


def _scale_decides(c: _Compiled, present: np.ndarray, g: int, ref_mm: float) -> bool:
    """Whether the deterministic grade `g` changes when the device's length, unknown (some counted
    instance measured in relative units), is anywhere in `SCALE_RANGE` of the reference `ref_mm`.
    Sizes grow with the length and grades are monotone in sizes, so the two ends of the range bound
    every grade in between."""
    if not any(c.sized[i].rel is not None for i in np.flatnonzero(present)):
        return False
    for f in SCALE_RANGE:
        other = _Compiled(c.std, c.instances, ref_mm * f)
        if int(other.best_grade(present[None, :])[0]) != g:
            return True
    return False


def ungradable(
    standard: Standard | str,
    device_kind: DeviceKind | str = DeviceKind.PHONE,
    review_threshold: float | None = None,
    retakes: Sequence[str] = (),
) -> GradeResult:
    """The answer for a device that no usable photo shows: no grade, not listable, every grade's
    probability 0 (the keys still name the standard's grades, which a reviewer may overrule it to),
    the reason under `barred[UNGRADABLE]`, every required view missing, and what to retake."""
    std = _resolve(standard)
    return GradeResult(
        standard=std.standard,
        standard_version=std.version,
        grade=UNGRADABLE,
        listable=False,
        barred={UNGRADABLE: ["no usable photo of the device: nothing to grade from"]},
        probabilities=dict.fromkeys(std.grade_names, 0.0),
        needs_review=True,
        review_threshold=std.review_threshold if review_threshold is None else review_threshold,
        method="none: no usable photo",
        scale_known=False,
        advice=[*retakes, "send a front and a back photo of the whole device, in focus and in even light"],
        missing_views=[v.value for v in REQUIRED_VIEWS[DeviceKind(device_kind)]],
    )
