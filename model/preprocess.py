"""Photo preprocessing shared by training, evaluation and serving — the one place its constants live.

decode: bytes or path -> RGB uint8 HxWx3, EXIF orientation applied, JPEGs decoded at reduced scale
(libjpeg's DCT scaling: Pillow's `draft` chooses it, simplejpeg decodes colour JPEGs with it, Pillow
the rest) when the model needs far fewer pixels, other formats (which cannot decode at reduced scale)
box-reduced right after decoding so that only one full-size buffer ever exists, any mode (CMYK, 16-bit,
alpha, grayscale, palette) converted to RGB without float copies, a pixel limit against decompression
bombs, and JPEGs too short for the size their header claims refused.
`decoded_pixels` says from the header alone how many pixels `decode` will hold at once (the service
budgets them across requests).
letterbox: keep the aspect ratio, pad to a square of the model's input size with `PAD_VALUE`; optionally
of a crop of the photo (the device, for the second pass of `model.crop`), recorded in the `Letterbox`.
Normalisation (`MEAN`, `STD`) happens inside the ONNX graph, so serving feeds uint8.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

# ImageNet statistics, in 0..255 units: the pretrained backbone expects them.
MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
PAD_VALUE = 114  # neutral grey letterbox padding
MAX_PIXELS = 60_000_000  # ~50 MP phone photos pass; decompression bombs do not
# JPEGs decode at reduced scale down to this many times the model's input size, not less: a device
# filling half the frame still has real pixels for its crop (model.crop), at a fraction of a full decode.
DETAIL = 2
SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "HEIF", "MPO", "BMP", "TIFF"})

try:  # HEIC photos from iPhones; optional so that a minimal install still decodes JPEG/PNG
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - the serve extra always has it
    pass


class DecodeError(ValueError):
    """A photo that cannot be used; `code` is machine-readable (the API returns it)."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class Letterbox:
    """How a photo was placed in the model's square input, to map results back to its pixels."""

    scale: float  # model pixels per decoded-photo pixel
    pad_x: int
    pad_y: int
    width: int  # decoded photo size (after EXIF transpose, before draft scaling is undone)
    height: int
    draft_factor: float = 1.0  # original pixels per decoded pixel (JPEG reduced-scale decode)
    # The part of the decoded photo that was letterboxed, (x0, y0, x1, y1) in decoded pixels; None: all.
    crop: tuple[int, int, int, int] | None = None

    @property
    def region(self) -> tuple[int, int, int, int]:
        """The letterboxed part of the decoded photo, (x0, y0, x1, y1)."""
        return self.crop if self.crop is not None else (0, 0, self.width, self.height)

    @property
    def region_size(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.region
        return x1 - x0, y1 - y0

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        """Model-input coordinates -> coordinates in the original, full-size photo."""
        out = (np.asarray(xy, dtype=float) - (self.pad_x, self.pad_y)) / self.scale
        return (out + self.region[:2]) * self.draft_factor

    def to_model(self, xy: np.ndarray) -> np.ndarray:
        """Original-photo coordinates -> model-input coordinates (the inverse of `to_original`)."""
        out = np.asarray(xy, dtype=float) / self.draft_factor - self.region[:2]
        return out * self.scale + (self.pad_x, self.pad_y)


# A Huffman-coded JPEG spends at least one bit on every 8x8 block's DC coefficient (sequential or
# progressive), so its file holds at least width * height / 512 bytes; fewer means data is missing
# (libjpeg pads a scan cut short by a marker with grey and only warns, so Pillow would decode it).
_JPEG_MIN_BITS_PER_BLOCK = 1
# EXIF orientation -> the transpose that shows the photo upright (as `ImageOps.exif_transpose`).
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _size_of(data: bytes | str | Path) -> int:
    return len(data) if isinstance(data, bytes | bytearray) else Path(data).stat().st_size


def _open(data: bytes | str | Path) -> Image.Image:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    if isinstance(data, bytes | bytearray) and not data:
        raise DecodeError("empty_file", "the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data)) if isinstance(data, bytes | bytearray) else Image.open(data)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError("too_many_pixels", f"the image has more than {MAX_PIXELS} pixels") from exc
    except UnidentifiedImageError as exc:
        raise DecodeError("not_an_image", "the file is not an image in a supported format") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # truncated inside the header
        raise DecodeError("corrupt_image", f"the image data is truncated or corrupt: {exc}") from exc
    if img.format not in SUPPORTED_FORMATS:
        raise DecodeError(
            "unsupported_format", f"{img.format} images are not supported (use JPEG, PNG, WebP, HEIC)"
        )
    if img.width * img.height > MAX_PIXELS:
        raise DecodeError("too_many_pixels", f"the image has more than {MAX_PIXELS} pixels")
    if img.format in {"JPEG", "MPO"}:
        blocks = -(-img.width // 8) * -(-img.height // 8)
        if _size_of(data) * 8 < blocks * _JPEG_MIN_BITS_PER_BLOCK:
            raise DecodeError(
                "corrupt_image",
                f"the image data is truncated: {_size_of(data)} bytes cannot hold a "
                f"{img.width}x{img.height} JPEG",
            )
    return img


def _draft_box(full_w: int, full_h: int, target: int) -> tuple[int, int]:
    # draft keeps both sides >= the requested box, so ask for the box of the longer side.
    scale = target / max(full_w, full_h)
    return max(1, int(full_w * scale)), max(1, int(full_h * scale))


def decoded_pixels(data: bytes | str | Path, target: int | None = None) -> int:
    """How many pixels `decode(data, target)` holds at full size, from the header alone: a JPEG's
    reduced-scale size, any other format's full size (it decodes whole before it is reduced). Raises
    DecodeError as `decode` would for a file whose header is already unusable."""
    img = _open(data)
    if target is not None and img.format in {"JPEG", "MPO"}:
        img.draft("RGB", _draft_box(*img.size, target))
    return img.width * img.height


def decode(data: bytes | str | Path, target: int | None = None) -> tuple[np.ndarray, float]:
    """Decode a photo to RGB uint8. With `target`, JPEGs may decode at 1/2, 1/4 or 1/8 scale as long as
    the longer side stays at least `target`. Returns the array and the draft factor (>= 1)."""
    arr, draft_factor = decode_upright(data, target)
    return np.ascontiguousarray(arr), draft_factor


def decode_upright(data: bytes | str | Path, target: int | None) -> tuple[np.ndarray, float]:
    """`decode`, whose array may be a turned view of the decoded one (EXIF orientation): whoever keeps
    only part of it copies only that part (`decode_part`, and its `whole` made early)."""
    img = _open(data)
    full_w, full_h = img.size
    if target is not None and img.format not in {"JPEG", "MPO"}:
        return _decode_reduced(img, target)
    if target is not None:
        img.draft("RGB", _draft_box(full_w, full_h, target))
    draft_factor = full_w / img.size[0]  # draft sets the reduced size before any pixel is decoded
    fast = _colour_jpeg(img, data)
    if fast is not None:
        return fast, draft_factor
    try:
        # In place: without an orientation tag the copying variant copies the whole photo for nothing.
        ImageOps.exif_transpose(img, in_place=True)
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise DecodeError("corrupt_image", f"the image data is truncated or corrupt: {exc}") from exc
    return _to_rgb(img), draft_factor


def _colour_jpeg(img: Image.Image, data: bytes | str | Path) -> np.ndarray | None:
    """A colour JPEG decoded by simplejpeg at the scale `img.draft` chose, upright (a view when turned);
    None for anything else (grey, CMYK), or a file libjpeg warns about: Pillow decodes those, and
    refuses the truncated ones.

    The same libjpeg-turbo pixels as Pillow's (a test checks every orientation and scale), about twice
    as fast on a 12 MP photo (33 against 62-100 ms, `benchmarks/bench_decode.py`): straight into an
    RGB array, without Pillow's copy of the photo into bytes and then into the array."""
    if img.format not in {"JPEG", "MPO"} or img.mode != "RGB":
        return None
    buf = data if isinstance(data, bytes | bytearray) else Path(data).read_bytes()
    w, h = img.size
    try:
        # libjpeg's smallest scale that keeps draft's size (1/2, 1/4, 1/8 or 1) is draft's own scale.
        rgb = simplejpeg.decode_jpeg(buf, colorspace="RGB", min_width=w, min_height=h, strict=True)
    except ValueError:  # strict: any libjpeg warning (a truncated scan, extraneous bytes)
        return None
    if rgb.shape[:2] != (h, w):
        return None
    turn = _ORIENT_ARRAY.get(img.getexif().get(0x0112))
    return turn(rgb) if turn else rgb


# `_ORIENT`'s transposes on an H x W x C array.
_ORIENT_ARRAY = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


@dataclass(frozen=True)
class DecodedPart:
    """Part of a decoded photo: `rgb` is `crop` (x0, y0, x1, y1) of the whole decoded array, which is
    `size` (w, h) pixels at `draft_factor` (as `decode` returns it)."""

    rgb: np.ndarray
    draft_factor: float
    size: tuple[int, int]
    crop: tuple[int, int, int, int]


def decode_part(
    data: bytes | str | Path,
    target: int | None,
    box: tuple[float, float, float, float] | None,
    whole: tuple[np.ndarray, float] | None = None,
) -> DecodedPart:
    """`decode`, keeping only `box` (x0, y0, x1, y1 in the photo's full-size pixels; None: all of it):
    the fine pass reads a photo a second time, finer, for the device's box. `whole`: what
    `decode_upright(data, target)` gives, where it was already decoded (`model.inference`).

    Only the part is copied, and only where the photo was turned (its array a view with reversed or
    swapped strides): the fine pass keeps the device's box of a 12 MP photo, and turning or copying the
    rest costs about 10 ms for nothing. An upright photo's box is a view whose rows are each contiguous,
    which OpenCV and numpy read as they are: copying it cost 5-6 ms a 12 MP photo."""
    whole, draft = whole if whole is not None else decode_upright(data, target)
    h, w = whole.shape[:2]
    x0, y0, x1, y1 = 0, 0, w, h
    if box is not None:
        x0, y0 = max(0, int(box[0] / draft)), max(0, int(box[1] / draft))
        x1, y1 = min(w, math.ceil(box[2] / draft)), min(h, math.ceil(box[3] / draft))
    part = whole[y0:y1, x0:x1]
    if not rows_contiguous(part):
        part = np.ascontiguousarray(part)
    return DecodedPart(part, draft, (w, h), (x0, y0, x1, y1))


def rows_contiguous(a: np.ndarray) -> bool:
    """Whether each row of the H x W x C array `a` is one contiguous run of bytes, rows in order: what
    OpenCV takes without a copy (a row step of its own, as a crop of a larger array has)."""
    item = a.itemsize
    return a.ndim == 3 and a.strides[2] == item and a.strides[1] == a.shape[2] * item and a.strides[0] > 0


def _decode_reduced(img: Image.Image, target: int) -> tuple[np.ndarray, float]:
    """A format without reduced-scale decoding (PNG, WebP, HEIC, ...): decode whole, then at once
    box-reduce by the largest power of two that keeps the longer side >= `target` (as JPEG's draft
    does), before any conversion or rotation copies the full-size pixels. A 7500x7900 16-bit PNG peaks
    at its raw buffer plus one byte a pixel instead of ~25 bytes a pixel."""
    full_w = img.width
    try:
        orientation = img.getexif().get(0x0112)
        img.load()
        # a power of two, as JPEG's draft: photo sizes divide by it, so one factor maps both axes back
        factor = 1 << ((max(img.size) // target).bit_length() - 1) if max(img.size) >= target else 1
        if factor >= 2:
            img = _reducible(img).reduce(factor)
        reduced_w = img.width  # before rotation: `Letterbox` maps back with one factor for both axes
        method = _ORIENT.get(orientation)
        if method is not None:
            img = img.transpose(method)
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise DecodeError("corrupt_image", f"the image data is truncated or corrupt: {exc}") from exc
    return _to_rgb(img), full_w / reduced_w


def _reducible(img: Image.Image) -> Image.Image:
    """`img` in a mode `Image.reduce` takes, converted without full-size float copies."""
    if img.mode in _INT_MODES:
        return Image.fromarray(_int_to_u8(img), "L")
    if img.mode in {"P", "PA"}:
        return img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    if img.mode == "1":
        return img.convert("L")
    return img


_INT_MODES = {"I;16", "I;16B", "I;16L", "I"}


def _int_to_u8(img: Image.Image) -> np.ndarray:
    """A 16/32-bit grey image -> uint8 (65535 or 255 full scale), strip by strip: never a full-size
    float, int64 or byte copy of a large photo beside its own buffer."""
    hi = 65535 if int(img.getextrema()[1]) > 255 else 255
    w, h = img.size
    out = np.empty((h, w), dtype=np.uint8)
    for y in range(0, h, 256):
        rows = np.asarray(img.crop((0, y, w, min(h, y + 256))), dtype=np.int64)
        out[y : y + 256] = np.clip(rows, 0, hi) * 255 // hi
    return out


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in _INT_MODES:
        arr = _int_to_u8(img)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info):
        # Composite transparent areas on white, as a marketplace would display them.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    rgb = img if img.mode == "RGB" else img.convert("RGB")  # convert("RGB") copies an RGB image too
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def letterbox(
    rgb: np.ndarray,
    size: int,
    draft_factor: float = 1.0,
    crop: tuple[int, int, int, int] | None = None,
) -> tuple[np.ndarray, Letterbox]:
    """Fit `rgb` (or its `crop`, (x0, y0, x1, y1) in its pixels) into a size x size canvas, keeping the
    aspect ratio, centred, padded with PAD_VALUE."""
    full_h, full_w = rgb.shape[:2]
    if crop is not None:
        x0, y0, x1, y1 = (int(v) for v in crop)
        if not (0 <= x0 < x1 <= full_w and 0 <= y0 < y1 <= full_h):
            raise ValueError(f"crop {crop} is not inside the {full_w}x{full_h} photo")
        crop = (x0, y0, x1, y1)
        rgb = rgb[y0:y1, x0:x1]
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (nw, nh), interpolation=interp)
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    canvas[py : py + nh, px : px + nw] = resized
    lb = Letterbox(
        scale=scale, pad_x=px, pad_y=py, width=full_w, height=full_h, draft_factor=draft_factor, crop=crop
    )
    return canvas, lb


def decode_for(data: bytes | str | Path, size: int) -> tuple[np.ndarray, float]:
    """Decode a photo for a model of input `size`: at least `DETAIL` x `size` pixels on the longer side
    where the photo has them, so that the crop-to-device second pass (`model.crop`) sees real pixels."""
    return decode(data, target=size * DETAIL)


def prepare(
    data: bytes | str | Path, size: int, crop: tuple[int, int, int, int] | None = None
) -> tuple[np.ndarray, Letterbox]:
    """decode + letterbox: the model input (size x size x 3 uint8) for one photo (or its `crop`, in the
    pixels `decode_for` gives)."""
    rgb, factor = decode_for(data, size)
    return letterbox(rgb, size, factor, crop)


def prepare_keeping_photo(data: bytes | str | Path, size: int) -> tuple[np.ndarray, Letterbox, np.ndarray]:
    """`prepare`, also returning the decoded photo: the crop-to-device pass letterboxes it again."""
    rgb, factor = decode_for(data, size)
    return (*letterbox(rgb, size, factor), rgb)


def to_nchw(batch_hwc: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """(N, H, W, 3), (H, W, 3) or a sequence of (H, W, 3) uint8 -> (N, 3, H, W) uint8, contiguous:
    the one layout change between decoded photos and the network's input."""
    if not isinstance(batch_hwc, np.ndarray):
        batch_hwc = np.stack(batch_hwc)
    if batch_hwc.ndim == 3:
        batch_hwc = batch_hwc[None]
    return np.ascontiguousarray(batch_hwc.transpose(0, 3, 1, 2))
