"""Screenshots to PNG or JPEG under a byte budget (Pillow), scaled down only as far as needed.

A screenshot comes from a sandbox or a cloud session, so nothing is decoded past what its own
dimensions allow: raw pixels must match them exactly, and an encoded image is checked against them
(and against MAX_PIXELS) from its header, before a single pixel is inflated.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from agentbay_mcp.backends.records_desktop import Screenshot
from agentbay_mcp.errors import BackendError

MAX_IMAGE_BYTES = 1_000_000
_JPEG_QUALITIES = (85, 70, 55)
_SHRINK = 0.75
#: The largest screen decoded: 8K UHD (the local backend's own screens are at most 3840x2160).
MAX_PIXELS = 7680 * 4320


@dataclass(frozen=True)
class EncodedImage:
    """An encoded screenshot and what it is."""

    data: bytes
    format: Literal["png", "jpeg"]
    width: int
    height: int


def _decode(shot: Screenshot) -> Image.Image:
    if shot.width * shot.height > MAX_PIXELS:
        raise BackendError(f"The screenshot is {shot.width}x{shot.height}, larger than any screen served; retry.")
    if shot.format == "bgrx":
        if len(shot.data) != shot.width * shot.height * 4:
            raise BackendError("The screenshot's pixels do not match its size; retry take_screenshot.")
        return Image.frombuffer("RGB", (shot.width, shot.height), shot.data, "raw", "BGRX", 0, 1)
    try:
        with Image.open(io.BytesIO(shot.data), formats=[shot.format.upper()]) as image:
            # The header alone, before any pixel is inflated: a small file may claim a huge image.
            if image.size != (shot.width, shot.height):
                raise BackendError(
                    f"The screenshot claims {shot.width}x{shot.height} but its image is "
                    f"{image.size[0]}x{image.size[1]}; retry take_screenshot."
                )
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BackendError(f"The screenshot is not a readable {shot.format} image; retry take_screenshot.") from exc


def _encode(image: Image.Image, fmt: Literal["png", "jpeg"], quality: int) -> bytes:
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, "PNG", compress_level=3)  # level 3: most of level 9's size at a fraction of the time
    else:
        image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def encode(
    shot: Screenshot, fmt: Literal["png", "jpeg"], max_width: int | None, budget: int = MAX_IMAGE_BYTES
) -> EncodedImage:
    """Scale to `max_width` (never up), then encode; shrink (and for JPEG lower quality) until under budget."""
    image = _decode(shot)
    if max_width is not None and max_width < image.width:
        image = image.resize(
            (max_width, max(1, round(image.height * max_width / image.width))), Image.Resampling.BILINEAR
        )
    while True:
        for quality in _JPEG_QUALITIES if fmt == "jpeg" else (0,):
            data = _encode(image, fmt, quality)
            if len(data) <= budget:
                return EncodedImage(data, fmt, image.width, image.height)
        if image.width <= 64:
            return EncodedImage(data, fmt, image.width, image.height)  # a 64-pixel-wide image is never 1 MB
        size = (max(1, int(image.width * _SHRINK)), max(1, int(image.height * _SHRINK)))
        image = image.resize(size, Image.Resampling.BILINEAR)
