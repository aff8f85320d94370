"""Decoding under hostile input (issue 20): a 16-bit PNG bomb decodes in bounded memory, non-JPEG photos
decode reduced like JPEGs do, a JPEG that claims more pixels than its bytes can hold is refused, and
`decoded_pixels` tells from the header what decoding will hold."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.preprocess import DecodeError, decode, decode_for, decoded_pixels, letterbox

ROOT = Path(__file__).resolve().parents[2]


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_a_16_bit_png_bomb_decodes_in_bounded_memory(tmp_path):
    """7500x7900 grey 16-bit, 130 KB: it used to peak at ~1.5 GB (float64 copies of every pixel)."""
    path = tmp_path / "bomb.png"
    Image.new("I;16", (7500, 7900), 1000).save(path, format="PNG")
    assert path.stat().st_size < 200_000
    code = textwrap.dedent(
        f"""
        import resource
        from model.preprocess import decode_for
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rgb, factor = decode_for({str(path)!r}, 384)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) // 1024, rgb.shape, factor)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split(maxsplit=1)
    grown_mb = int(out[0])
    assert grown_mb < 350, f"decoding grew the process by {grown_mb} MB"  # raw 113 MB + 1 byte/px
    assert "(988, 938, 3)" in out[1]


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_16_and_32_bit_grey_scale_as_before(mode):
    values = np.array([[0, 1, 255, 256, 257, 40000, 65535, 65534]], dtype=np.uint16)
    img = Image.fromarray(values) if mode == "I;16" else Image.fromarray(values.astype(np.int32), "I")
    buf = io.BytesIO()
    img.save(buf, format="PNG" if mode == "I;16" else "TIFF")
    rgb, _ = decode(buf.getvalue())
    expected = np.clip(values / 65535.0 * 255.0, 0, 255).astype(np.uint8)  # the former float formula
    assert np.abs(rgb[..., 0].astype(int) - expected.astype(int)).max() <= 1
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_png_decodes_reduced_and_letterboxes_like_the_full_photo():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    big = np.kron(small, np.ones((8, 8, 1), np.uint8))  # 3200x2400
    rgb, factor = decode_for(_png(Image.fromarray(big)), 384)
    assert factor == 4.0 and rgb.shape == (600, 800, 3)  # longer side >= 2 x 384, as JPEG's draft
    reduced, lb = letterbox(rgb, 384, factor)
    full, _ = letterbox(big, 384)
    assert np.abs(reduced.astype(int) - full.astype(int)).mean() < 2
    assert lb.to_original(np.array([[384.0, 0.0]]))[0, 0] == pytest.approx(3200, abs=1)


def test_exif_orientation_survives_the_reduced_decode():
    arr = np.zeros((1200, 1600, 3), np.uint8)
    arr[:, :800] = (200, 30, 30)  # red left half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", exif=exif.tobytes())
    rgb, factor = decode_for(buf.getvalue(), 384)
    assert rgb.shape == (800, 600, 3) and factor == 2.0  # portrait now, reduced 2x
    assert rgb[10, 300, 0] > 150 and rgb[-10, 300, 2] < 100  # red on top after the rotation


def test_a_jpeg_too_short_for_its_header_is_refused_before_decoding():
    buf = io.BytesIO()
    Image.new("RGB", (7000, 8000), (100, 100, 100)).save(buf, format="JPEG", quality=50)
    data = buf.getvalue()[:887] + b"\xff\xd9"
    with pytest.raises(DecodeError) as info:
        decode_for(data, 384)
    assert info.value.code == "corrupt_image" and "truncated" in str(info.value)
    with pytest.raises(DecodeError):
        decoded_pixels(data, 768)
    rgb, _ = decode_for(buf.getvalue(), 384)  # the whole file is fine
    assert rgb.shape == (1000, 875, 3)


def test_decoded_pixels_from_the_header():
    buf = io.BytesIO()
    Image.new("RGB", (4000, 3000), (1, 2, 3)).save(buf, format="JPEG")
    assert decoded_pixels(buf.getvalue(), 768) == 1000 * 750  # JPEG: the draft's quarter scale
    assert decoded_pixels(buf.getvalue()) == 4000 * 3000
    assert decoded_pixels(_png(Image.new("L", (4000, 3000)))) == 4000 * 3000  # PNG decodes whole
