"""Overlays: a PNG of a photo with each defect outlined and labelled (type, size, confidence).

Rendered from the stored photo and the stored defects (original-photo pixel coordinates), at most
`max_side` pixels on the longer side, so an overlay can always be re-made from what was stored. The
API renders one on first request and keeps it in the blob store; the batch grader writes them to a
folder.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model.preprocess import decode

COLOURS = {
    "scratch": (255, 196, 0),
    "crack": (255, 40, 40),
    "chip": (255, 120, 0),
    "dent": (170, 80, 255),
    "stain": (0, 190, 255),
    "smudge": (140, 140, 140),
}


@cache
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


def _label(d: dict) -> str:
    if d.get("length_mm") is not None:
        size = f"{d['length_mm']:.1f} mm"
    else:
        size = f"{100 * d['length']:.1f}% of length"
    return f"{d['type']} {size} ({d['confidence']:.2f})"


def render_overlay(photo: bytes, defects: Sequence[dict], max_side: int = 1280) -> bytes:
    """PNG bytes. `defects` are API defect dicts (type, polygon, box, length, length_mm, confidence)."""
    rgb, draft = decode(photo, target=max_side)
    img = Image.fromarray(rgb)
    scale = min(1.0, max_side / max(img.size))
    if scale < 1.0:
        img = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR
        )
    to_img = scale / draft  # original-photo pixels -> overlay pixels
    draw = ImageDraw.Draw(img)
    font = _font(max(12, img.width // 60))
    line = max(2, img.width // 400)
    for d in defects:
        colour = COLOURS.get(d["type"], (255, 255, 255))
        pts = [(x * to_img, y * to_img) for x, y in d.get("polygon") or []]
        x0, y0, x1, y1 = (v * to_img for v in d["box"])
        if len(pts) >= 3:
            draw.polygon(pts, outline=colour, width=line)
        draw.rectangle((x0 - line, y0 - line, x1 + line, y1 + line), outline=colour, width=1)
        text = _label(d)
        tx, ty = x0, max(0, y0 - font.size - 2 * line) if hasattr(font, "size") else max(0, y0 - 14)
        bbox = draw.textbbox((tx, ty), text, font=font)
        draw.rectangle(bbox, fill=(0, 0, 0))
        draw.text((tx, ty), text, fill=colour, font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def overlay_array(photo: bytes, defects: Sequence[dict], max_side: int = 1280) -> np.ndarray:
    """The overlay as an RGB array (tests)."""
    return np.asarray(Image.open(io.BytesIO(render_overlay(photo, defects, max_side))).convert("RGB"))
