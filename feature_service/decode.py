"""Encoded bytes to an upright RGB image, within a pixel limit.

The size is read from the header before any pixel is decoded, so a decompression bomb
is refused without allocating it. Large JPEGs are decoded at a reduced scale (draft
mode) when the model only needs `min_side` pixels on the short side.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from feature_service.outcomes import ItemFailure, Kind

# Raster formats worth decoding; anything else Pillow might identify is refused.
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
_WHITE = (255, 255, 255)


def decode(data: bytes, *, max_pixels: int, min_side: int = 0) -> Image.Image:
    """An RGB image, or ItemFailure(BAD_IMAGE / TOO_LARGE)."""
    if not data:
        raise ItemFailure(Kind.BAD_IMAGE, "empty image")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check is global; ours is per call and exact.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = opened.size
            if width * height > max_pixels:
                raise ItemFailure(Kind.TOO_LARGE,
                                  f"{width}x{height} exceeds {max_pixels} pixels")
            if width < 1 or height < 1:
                raise ItemFailure(Kind.BAD_IMAGE, f"image has no pixels ({width}x{height})")
            if opened.format == "JPEG" and min_side > 0:
                opened.draft("RGB", (min_side, min_side))
            opened.seek(0)  # the first frame of an animation
            opened.load()
            return to_rgb(ImageOps.exif_transpose(opened))
    except Image.DecompressionBombError:
        raise ItemFailure(Kind.TOO_LARGE, f"image exceeds {max_pixels} pixels") from None
    except UnidentifiedImageError:
        raise ItemFailure(Kind.BAD_IMAGE, "not a supported image format") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ItemFailure(Kind.BAD_IMAGE, f"cannot decode image: {exc}") from None


def declared_pixels(data: bytes) -> int:
    """Width x height as the header declares them (0 when it cannot be read): what the
    scheduler weighs an image by, without decoding a pixel."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as opened:
                width, height = opened.size
    except Exception:  # the decoder reports what is wrong with it, later
        return 0
    return width * height


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited over white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _scaled_to_8bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _scaled_to_8bit(image: Image.Image) -> Image.Image:
    # Pillow's convert() clips 16-bit and float values at 255, washing the image out.
    values = np.asarray(image, dtype=np.float32)
    if image.mode != "F":  # 16-bit samples, whichever integer mode holds them
        scaled = np.clip(values, 0, 65535) / 257.0
    else:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0
    gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")
