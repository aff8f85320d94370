"""Overlays: a PNG of a photo with each defect outlined and labelled, what counted apart from the rest.

Rendered from the stored photo and the stored defects (original-photo pixel coordinates), at most
`max_side` pixels on the longer side, so an overlay can always be re-made from what was stored. The
API renders one on first request and keeps it in the blob store; the batch grader writes them to a
folder.

Counted defects (those the grade rests on, `counted` in the answer) are drawn in their type's colour
with a thick outline, their box when they are small (`BOX_BELOW`) and a full label (type, size,
confidence; no size for a crack, as in the reasons) on a solid background.
Candidates (below the engine's cut) and evidence (fragments of a zone-level defect, lines on cracked
glass) are thin, translucent outlines (a crack fragment at the engine's cut or above, thin and opaque:
where a glass outlined whole was seen cracked); a candidate gets a short, dim label (type and
confidence) only where there is room next to it. Labels never overlap: each is placed greedily,
counted ones first (most confident first), at the first free spot around its box; a counted label with
no free spot nearby goes to the nearest free spot in the photo with a leader line. A legend in a
corner says how many of each there are.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model.preprocess import decode
from model.rules.engine import PRESENT_AT
from serving.schemas import is_counted, is_measured

COLOURS = {
    "scratch": (255, 196, 0),
    "crack": (255, 40, 40),
    "chip": (255, 120, 0),
    "dent": (170, 80, 255),
    "stain": (0, 190, 255),
    "smudge": (140, 140, 140),
}
CANDIDATE_ALPHA = 120  # of 255: candidates' outlines and labels show through to the photo
LABEL_BG = (0, 0, 0)
# A counted defect's box is drawn round its outline when the box is under this share of the overlay's
# longer side: it marks where a small defect is. A large one (a cracked glass zone's outline, a tilted
# phone's screen) is its own mark, and its box round it was a second frame taking in the table.
BOX_BELOW = 0.25

Rect = tuple[float, float, float, float]


@dataclass(frozen=True)
class PlacedLabel:
    """A label as drawn: its text, its rectangle in overlay pixels, and its style."""

    defect: int  # index into the defects given
    text: str
    rect: Rect
    style: str  # "counted" or "candidate"


@dataclass(frozen=True)
class Rendered:
    png: bytes
    labels: list[PlacedLabel]
    size: tuple[int, int]


@cache
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


def is_own_mark(polygon: Sequence, box: Sequence[float], width: float, height: float) -> bool:
    """Whether a defect's outline is its own mark, drawn without its box: an outline (3 points or more)
    whose box's longer side is at least `BOX_BELOW` of the picture's (`width`, `height`, in the units of
    `box`). The overlay and the review page draw by this one rule."""
    return len(polygon) >= 3 and max(box[2] - box[0], box[3] - box[1]) >= BOX_BELOW * max(width, height)


def is_sure_evidence(d: dict) -> bool:
    """A crack fragment kept as evidence (`role`) that the model is sure of: traced at the confidence a
    crack of its own would count from. A glass judged cracked as a whole is outlined whole when its
    lines cover a corner of it (`model.damage.judge_zone_damage`), and these show where in it the crack
    was traced. Not a scratch on cracked glass (evidence too): drawn opaque it would read as a scratch."""
    return (
        d.get("role") == "evidence"
        and d.get("type") == "crack"
        and (d.get("confidence") or 0.0) >= PRESENT_AT
    )


def _label(d: dict) -> str:
    # A crack's size is quoted on the photo no more than in the reasons (model.rules.engine._describe):
    # the lines traced on real photos cover a part of a shattered glass, and its box shows where they are.
    if not is_measured(d) or d["type"] == "crack":
        return f"{d['type']} ({d['confidence']:.2f})"
    if d.get("length_mm") is not None:
        size = f"{d['length_mm']:.1f} mm"
    else:
        size = f"{100 * d['length']:.1f}% of length"
    return f"{d['type']} {size} ({d['confidence']:.2f})"


def _short_label(d: dict) -> str:
    return f"{d['type']} {d['confidence']:.2f}"


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _free(r: Rect, taken: Sequence[Rect], width: int, height: int) -> bool:
    inside = r[0] >= 0 and r[1] >= 0 and r[2] <= width and r[3] <= height
    return inside and not any(_overlaps(r, t) for t in taken)


def _spots(box: Rect, w: float, h: float, gap: float, rings: int) -> list[tuple[float, float]]:
    """Top-left corners to try for a w x h label beside `box`: above, below, then either side, then
    the same a label's height further out each ring."""
    x0, y0, x1, y1 = box
    out = []
    for k in range(rings):
        dy = k * (h + gap)
        out += [
            (x0, y0 - h - gap - dy),
            (x0, y1 + gap + dy),
            (x1 - w, y0 - h - gap - dy),
            (x1 - w, y1 + gap + dy),
            (x1 + gap + k * w, y0),
            (x0 - w - gap - k * w, y0),
        ]
    return out


def place_labels(
    items: Sequence[tuple[Rect, float, float, bool]], width: int, height: int, taken: Sequence[Rect] = ()
) -> list[tuple[Rect, bool] | None]:
    """Greedy placement of labels that never overlap each other or `taken`. `items`: (box, label
    width, label height, must) in drawing priority order; a label that must be shown (a counted
    defect's) falls back to the free spot nearest its box anywhere in the image. Returns per item its
    rectangle and whether it sits away from its box (draw a leader line), or None (no room)."""
    placed: list[Rect] = list(taken)
    out: list[tuple[Rect, bool] | None] = []
    for box, w, h, must in items:
        gap = 2.0
        spot = None
        for x, y in _spots(box, w, h, gap, rings=4 if must else 2):
            x = min(max(x, 0.0), width - w)  # slide along an edge rather than give up
            r = (x, y, x + w, y + h)
            if _free(r, placed, width, height):
                spot = (r, False)
                break
        if spot is None and must:
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            step = max(h / 2, 4.0)
            grid = [
                (x, y)
                for y in np.arange(0.0, max(height - h, 0.0) + 1e-6, step)
                for x in np.arange(0.0, max(width - w, 0.0) + 1e-6, step)
            ]
            grid.sort(key=lambda p: (p[0] + w / 2 - cx) ** 2 + (p[1] + h / 2 - cy) ** 2)
            for x, y in grid:
                r = (float(x), float(y), float(x) + w, float(y) + h)
                if _free(r, placed, width, height):
                    spot = (r, True)
                    break
        if spot is not None:
            placed.append(spot[0])
        out.append(spot)
    return out


def _nearest_point(r: Rect, x: float, y: float) -> tuple[float, float]:
    return min(max(x, r[0]), r[2]), min(max(y, r[1]), r[3])


def render(photo: bytes, defects: Sequence[dict], max_side: int = 1280) -> Rendered:
    """The overlay of a photo and where its labels went. `defects` are API defect dicts (type,
    polygon, box, length, length_mm, confidence, counted, role)."""
    rgb, draft = decode(photo, target=max_side)
    img = Image.fromarray(rgb)
    scale = min(1.0, max_side / max(img.size))
    if scale < 1.0:
        img = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR
        )
    to_img = scale / draft  # original-photo pixels -> overlay pixels
    width, height = img.size
    # Sized on the long side, not the width: a portrait phone photo is shown fitted to its height,
    # and width // 60 gave its labels 13 px on a 1280 px tall overlay.
    side = max(width, height)
    line = max(2, side // 400)
    font = _font(max(12, side // 60))
    small = _font(max(10, round(font.size * 0.8)) if hasattr(font, "size") else 10)
    pad = max(2, line)

    counted = [k for k, d in enumerate(defects) if is_counted(d)]
    others = [k for k, d in enumerate(defects) if not is_counted(d)]
    counted.sort(key=lambda k: -defects[k]["confidence"])
    others.sort(key=lambda k: -defects[k]["confidence"])

    def scaled_box(d: dict) -> Rect:
        x0, y0, x1, y1 = (v * to_img for v in d["box"])
        return (x0 - line, y0 - line, x1 + line, y1 + line)

    def polygon(d: dict) -> list[tuple[float, float]]:
        return [(x * to_img, y * to_img) for x, y in d.get("polygon") or []]

    # Candidates and evidence: thin translucent outlines, under everything else; evidence the model is
    # sure of (a traced line of a glass judged cracked as a whole, drawn whole) thin but opaque.
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    faint = ImageDraw.Draw(layer)
    for k in others:
        sure = is_sure_evidence(defects[k])
        colour = (*COLOURS.get(defects[k]["type"], (255, 255, 255)), 255 if sure else CANDIDATE_ALPHA)
        thin = line if sure else 1
        pts = polygon(defects[k])
        if len(pts) >= 3:
            faint.polygon(pts, outline=colour, width=thin)
        else:
            faint.rectangle(scaled_box(defects[k]), outline=colour, width=thin)
    base = img.convert("RGBA")
    base.alpha_composite(layer)
    img = base.convert("RGB")
    draw = ImageDraw.Draw(img)
    for k in counted:
        colour = COLOURS.get(defects[k]["type"], (255, 255, 255))
        pts = polygon(defects[k])
        if len(pts) >= 3:
            draw.polygon(pts, outline=colour, width=2 * line)
        box = scaled_box(defects[k])
        if not is_own_mark(pts, box, width, height):
            draw.rectangle(box, outline=colour, width=line)

    # Labels: a legend first, then counted labels, then candidates' where there is room.
    legend = f"{len(counted)} counted" + (f", {len(others)} not counted (faint)" if others else "")
    lb = draw.textbbox((0, 0), legend, font=small)
    legend_rect = (0.0, 0.0, lb[2] - lb[0] + 2 * pad, lb[3] - lb[1] + 2 * pad)
    texts = {k: _label(defects[k]) for k in counted}
    texts |= {k: _short_label(defects[k]) for k in others if defects[k].get("role", "defect") == "defect"}
    order = [k for k in counted + others if k in texts]
    items = []
    for k in order:
        f = font if k in counted else small
        tb = draw.textbbox((0, 0), texts[k], font=f)
        items.append((scaled_box(defects[k]), tb[2] - tb[0] + 2 * pad, tb[3] - tb[1] + 2 * pad, k in counted))
    spots = place_labels(items, width, height, taken=[legend_rect])

    draw.rectangle(legend_rect, fill=LABEL_BG)
    draw.text((pad - lb[0], pad - lb[1]), legend, fill=(255, 255, 255), font=small)
    faint_labels = Image.new("RGBA", img.size, (0, 0, 0, 0))
    fdraw = ImageDraw.Draw(faint_labels)
    labels = []
    for k, spot in zip(order, spots, strict=True):
        if spot is None:
            continue
        rect, away = spot
        colour = COLOURS.get(defects[k]["type"], (255, 255, 255))
        if k in counted:
            if away:  # a leader line from the label to its box
                box = scaled_box(defects[k])
                start = _nearest_point(rect, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
                draw.line((*start, *_nearest_point(box, *start)), fill=colour, width=1)
            draw.rectangle(rect, fill=LABEL_BG)
            tb = draw.textbbox((0, 0), texts[k], font=font)
            draw.text((rect[0] + pad - tb[0], rect[1] + pad - tb[1]), texts[k], fill=colour, font=font)
            labels.append(PlacedLabel(k, texts[k], rect, "counted"))
        else:
            fdraw.rectangle(rect, fill=(*LABEL_BG, 90))
            tb = fdraw.textbbox((0, 0), texts[k], font=small)
            fdraw.text(
                (rect[0] + pad - tb[0], rect[1] + pad - tb[1]),
                texts[k],
                fill=(*colour, CANDIDATE_ALPHA + 40),
                font=small,
            )
            labels.append(PlacedLabel(k, texts[k], rect, "candidate"))
    base = img.convert("RGBA")
    base.alpha_composite(faint_labels)
    buf = io.BytesIO()
    base.convert("RGB").save(buf, format="PNG", compress_level=3)
    return Rendered(buf.getvalue(), labels, (width, height))


def render_overlay(photo: bytes, defects: Sequence[dict], max_side: int = 1280) -> bytes:
    """PNG bytes (see `render`)."""
    return render(photo, defects, max_side).png


def overlay_array(photo: bytes, defects: Sequence[dict], max_side: int = 1280) -> np.ndarray:
    """The overlay as an RGB array (tests)."""
    return np.asarray(Image.open(io.BytesIO(render_overlay(photo, defects, max_side))).convert("RGB"))
