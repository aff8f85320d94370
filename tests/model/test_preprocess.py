"""Photo decoding and letterboxing: every mode grades, bad files get machine-readable codes."""

from __future__ import annotations

import io
import math
from dataclasses import astuple

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from model.preprocess import MAX_PIXELS, PAD_VALUE, DecodeError, decode, letterbox, prepare, to_nchw


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _photo(w=320, h=200) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (200, 30, 30)  # red left half: lets us check orientation
    arr[:, w // 2 :] = (30, 30, 200)
    return Image.fromarray(arr)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("RGB", "JPEG"),
        ("RGB", "PNG"),
        ("RGB", "WEBP"),
        ("L", "PNG"),
        ("RGBA", "PNG"),
        ("CMYK", "JPEG"),
        ("P", "PNG"),
        ("I;16", "PNG"),
        ("LA", "PNG"),
    ],
)
def test_every_mode_decodes_to_rgb_uint8(mode, fmt):
    img = (
        _photo().convert(mode)
        if mode != "I;16"
        else Image.fromarray((np.ones((50, 80)) * 40000).astype(np.uint16))
    )
    rgb, factor = decode(_encode(img, fmt))
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert factor == 1.0
    if mode == "I;16":
        assert 150 < rgb.mean() < 160  # 40000/65535*255 = 155.6: scaled, not clipped


def test_exif_orientation_is_applied():
    img = _photo(320, 200)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    rgb, _ = decode(_encode(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert rgb.shape[:2] == (320, 200)  # portrait now
    top, bottom = rgb[10, 100].astype(int), rgb[-10, 100].astype(int)
    assert top[0] > top[2] and bottom[2] > bottom[0]  # the red half is on top after rotating


def test_large_jpeg_decodes_at_reduced_scale_for_a_small_model():
    big = _encode(_photo(4000, 3000), "JPEG", quality=80)
    rgb, factor = decode(big, target=384)
    assert factor in (2.0, 4.0, 8.0)
    assert max(rgb.shape[:2]) >= 384
    _canvas, lb = letterbox(rgb, 384, factor)
    corner = lb.to_original(np.array([[lb.pad_x + 0.0, lb.pad_y + 0.0]]))
    assert corner == pytest.approx(np.array([[0.0, 0.0]]), abs=1e-6)
    far = lb.to_original(np.array([[lb.pad_x + rgb.shape[1] * lb.scale, lb.pad_y + rgb.shape[0] * lb.scale]]))
    assert far == pytest.approx(np.array([[4000.0, 3000.0]]), rel=0.01)


def test_letterbox_keeps_aspect_and_pads():
    canvas, lb = letterbox(np.full((100, 200, 3), 7, np.uint8), 64)
    assert canvas.shape == (64, 64, 3)
    assert lb.pad_y == 16 and lb.pad_x == 0
    assert (canvas[0] == PAD_VALUE).all() and (canvas[32] == 7).all()


def test_prepare_and_nchw():
    arr, _ = prepare(_encode(_photo(), "PNG"), 96)
    batch = to_nchw(arr)
    assert batch.shape == (1, 3, 96, 96) and batch.flags.c_contiguous


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_file"),
        (b"hello, this is text", "not_an_image"),
        (_encode(_photo(), "JPEG")[:300], "corrupt_image"),
        (_encode(_photo(), "GIF"), "unsupported_format"),
    ],
)
def test_bad_files_get_machine_readable_codes(data, code):
    with pytest.raises(DecodeError) as info:
        decode(data)
    assert info.value.code == code


def test_decompression_bomb_is_refused_before_decoding():
    side = int(MAX_PIXELS**0.5) + 100
    bomb = _encode(Image.new("L", (side, side)), "PNG", optimize=True)
    assert len(bomb) < 1_000_000  # tiny file, huge image
    with pytest.raises(DecodeError) as info:
        decode(bomb)
    assert info.value.code == "too_many_pixels"


def _pillow_decode(data, target):
    """Pillow's own decode, as `decode` was before simplejpeg: draft, EXIF transpose, RGB."""
    from model.preprocess import _draft_box

    img = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
    full_w = img.width
    if target is not None:
        img.draft("RGB", _draft_box(*img.size, target))
    factor = full_w / img.width
    return np.asarray(ImageOps.exif_transpose(img).convert("RGB")), factor


@pytest.mark.parametrize("orientation", range(1, 9))
def test_decode_gives_pillows_pixels_at_every_orientation_and_scale(orientation, tmp_path):
    """A colour JPEG goes through simplejpeg: exactly the array and draft factor Pillow gives, whatever
    the EXIF orientation and the reduced scale, from bytes or a path, for `decode` and `decode_part`
    alike; a grey JPEG and a PNG go through Pillow."""
    from model.preprocess import _colour_jpeg, decode_part

    rng = np.random.default_rng(orientation)
    arr = cv2.GaussianBlur(rng.integers(0, 256, (181, 243, 3), dtype=np.uint8), (5, 5), 0)
    arr[20:60, 30:200] = (200, 40, 10)  # an asymmetric patch: every orientation moves it elsewhere
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(Image.fromarray(arr), "JPEG", exif=exif.tobytes(), quality=90)
    path = tmp_path / "p.jpg"
    path.write_bytes(data)
    for target in (None, 181, 91, 46, 23):
        want, want_draft = _pillow_decode(data, target)
        for source in (data, path):
            for got, got_draft in (decode(source, target), astuple(decode_part(source, target, None))[:2]):
                assert got_draft == want_draft and got.shape == want.shape and got.flags.c_contiguous
                assert np.array_equal(got, want), (orientation, target)
    grey = _encode(Image.fromarray(arr[..., 0]), "JPEG", quality=90)
    png = _encode(Image.fromarray(arr), "PNG")
    for other in (grey, png):
        assert np.array_equal(decode_part(other, 91, None).rgb, decode(other, 91)[0])
    # The colour JPEG took simplejpeg's path (the speed this is for), the grey one Pillow's.
    assert _colour_jpeg(Image.open(io.BytesIO(data)), data) is not None
    assert _colour_jpeg(Image.open(io.BytesIO(grey)), grey) is None


def test_a_jpeg_libjpeg_warns_about_is_pillows_to_judge():
    """simplejpeg is strict; what it refuses, Pillow decides: a scan cut short is refused as truncated
    (the size check in the header passes), a JPEG with extraneous bytes after its end decodes."""
    data = _encode(_photo(640, 480), "JPEG", quality=95)
    with pytest.raises(DecodeError) as info:
        decode(data[: len(data) * 3 // 4])
    assert info.value.code == "corrupt_image"
    rgb, _ = decode(data + b"\x00" * 64)
    assert np.array_equal(rgb, decode(data)[0])


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_decode_part_is_the_box_of_decodes_array(orientation):
    """The fine pass keeps the device's box (full-size pixels) of the photo read again: exactly that
    part of `decode`'s array, outward to whole pixels at the draft scale and clipped to the photo, for a
    colour JPEG (converted to RGB after cropping), a grey one and a PNG alike."""
    from model.preprocess import decode_part, decode_upright, rows_contiguous

    rng = np.random.default_rng(orientation)
    arr = cv2.GaussianBlur(rng.integers(0, 256, (181, 243, 3), dtype=np.uint8), (5, 5), 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    colour = _encode(Image.fromarray(arr), "JPEG", exif=exif.tobytes(), quality=90)
    grey = _encode(Image.fromarray(arr[..., 0]), "JPEG", quality=90)
    png = _encode(Image.fromarray(arr), "PNG")
    box = (17.5, 9.2, 140.1, 400.0)  # past the bottom edge in every orientation
    for data in (colour, grey, png):
        for target in (None, 91):
            whole, draft = decode(data, target)
            part = decode_part(data, target, box)
            x0, y0 = int(box[0] / draft), int(box[1] / draft)
            x1, y1 = min(whole.shape[1], math.ceil(box[2] / draft)), whole.shape[0]
            assert part.draft_factor == draft and part.size == (whole.shape[1], whole.shape[0])
            assert part.crop == (x0, y0, x1, y1) and rows_contiguous(part.rgb)
            assert np.array_equal(part.rgb, whole[y0:y1, x0:x1]), (orientation, target)
            upright, _ = decode_upright(data, target)
            # A box of an upright photo is a view of the decoded array; a turned one is copied.
            assert np.shares_memory(decode_part(data, target, box, (upright, draft)).rgb, upright) == (
                upright.flags.c_contiguous
            ), (orientation, target)
