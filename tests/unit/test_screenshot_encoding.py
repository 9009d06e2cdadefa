"""Screenshots always fit the 1 MB budget: scaled (and for JPEG, lower quality) only as far as needed."""

from __future__ import annotations

import io
import os

from PIL import Image

from agentbay_mcp.backends.records_desktop import Screenshot
from agentbay_mcp.services.desktop.screenshot_encoding import MAX_IMAGE_BYTES, encode


def noise(width: int, height: int) -> Screenshot:
    """Random pixels: the worst case for any compressor (a 1280x800 PNG of it is about 3 MB)."""
    return Screenshot(data=os.urandom(width * height * 4), format="bgrx", width=width, height=height)


def flat(width: int, height: int) -> Screenshot:
    return Screenshot(data=bytes([40, 80, 120, 0]) * (width * height), format="bgrx", width=width, height=height)


def test_a_simple_screen_is_encoded_at_full_size() -> None:
    image = encode(flat(1280, 800), "png", None)
    assert (image.width, image.height, image.format) == (1280, 800, "png")
    decoded = Image.open(io.BytesIO(image.data))
    assert decoded.size == (1280, 800)
    assert decoded.convert("RGB").getpixel((5, 5)) == (120, 80, 40)  # BGRX read the right way round


def test_an_incompressible_screen_is_scaled_until_it_fits() -> None:
    for fmt in ("png", "jpeg"):
        image = encode(noise(1280, 800), fmt, None)  # type: ignore[arg-type]
        assert len(image.data) <= MAX_IMAGE_BYTES, (fmt, len(image.data))
        decoded = Image.open(io.BytesIO(image.data))
        assert decoded.format == fmt.upper()
        assert decoded.size == (image.width, image.height)
        if fmt == "png":
            assert image.width < 1280  # random pixels cannot fit at full size as PNG
        assert abs(image.width / image.height - 1280 / 800) < 0.01  # aspect ratio kept


def test_max_width_scales_down_never_up() -> None:
    assert encode(flat(1280, 800), "png", 640).width == 640
    assert (encode(flat(1280, 800), "jpeg", 4000).width, encode(flat(1280, 800), "jpeg", 4000).height) == (1280, 800)


def test_encoded_input_is_reencoded() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (1, 2, 3)).save(buffer, "PNG")
    shot = Screenshot(data=buffer.getvalue(), format="png", width=300, height=200)
    image = encode(shot, "jpeg", 150)
    assert (image.format, image.width, image.height) == ("jpeg", 150, 100)
