"""Decoding the awkward images the web is full of, generated here with Pillow."""

from __future__ import annotations

import pytest
from PIL import Image

from feature_service.decode import decode, to_rgb
from feature_service.outcomes import ItemFailure, Kind
from tests.feature.helpers import (
    HTML,
    SVG,
    animated_gif,
    cmyk_jpeg,
    encode,
    exif_rotated_jpeg,
    gradient,
    png_declaring,
    sixteen_bit_png,
    solid,
)
from tests.support import PHOTOS, require_data

LIMIT = 4_000_000


def failure_kind(data: bytes, **kwargs: int) -> Kind:
    with pytest.raises(ItemFailure) as caught:
        decode(data, max_pixels=kwargs.get("max_pixels", LIMIT),
               min_side=kwargs.get("min_side", 0))
    return caught.value.kind


@pytest.mark.parametrize("data", [b"", HTML, SVG, b"\x89PNG\r\n\x1a\n" + b"\0" * 40,
                                  encode(gradient((200, 200)), "JPEG")[:600]],
                         ids=["empty", "html", "svg", "png-signature-only", "truncated-jpeg"])
def test_undecodable_bytes_are_bad_images(data: bytes) -> None:
    assert failure_kind(data) == Kind.BAD_IMAGE


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    assert failure_kind(png_declaring(50_000, 50_000)) == Kind.TOO_LARGE
    # Below Pillow's own warning level: our limit is what refuses it.
    assert failure_kind(png_declaring(3000, 3000), max_pixels=1_000_000) == Kind.TOO_LARGE


def test_one_pixel_image_decodes() -> None:
    image = decode(encode(solid((1, 2, 3), (1, 1)), "PNG"), max_pixels=LIMIT)
    assert image.size == (1, 1) and image.getpixel((0, 0)) == (1, 2, 3)


def test_cmyk_jpeg_becomes_rgb_with_its_colour() -> None:
    image = decode(cmyk_jpeg(), max_pixels=LIMIT)
    assert image.mode == "RGB"
    assert all(abs(a - b) <= 8 for a, b in zip(image.getpixel((5, 5)), (200, 40, 40),
                                                strict=True))


def test_sixteen_bit_png_keeps_its_grey_level() -> None:
    image = decode(sixteen_bit_png(level=32896), max_pixels=LIMIT)  # 50% grey
    assert image.mode == "RGB" and image.getpixel((3, 3)) == (128, 128, 128)


def test_animated_gif_gives_its_first_frame() -> None:
    image = decode(animated_gif(), max_pixels=LIMIT)
    assert image.getpixel((1, 1)) == (255, 0, 0)


def test_exif_orientation_is_applied() -> None:
    image = decode(exif_rotated_jpeg((40, 20), orientation=6), max_pixels=LIMIT)
    assert image.size == (20, 40)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "1", "I", "F", "YCbCr"])
def test_every_mode_becomes_rgb(mode: str) -> None:
    source = gradient((16, 8))
    image = source.convert(mode) if mode != "P" else source.quantize(16)
    assert to_rgb(image).mode == "RGB"


def test_transparency_is_composited_over_white() -> None:
    clear = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert decode(encode(clear, "PNG"), max_pixels=LIMIT).getpixel((0, 0)) == (255, 255, 255)


def test_large_jpegs_are_draft_decoded_down_to_the_model_size() -> None:
    data = (require_data(PHOTOS) / "dog.jpg").read_bytes()  # 768 x 576
    full = decode(data, max_pixels=LIMIT)
    reduced = decode(data, max_pixels=LIMIT, min_side=120)
    assert full.size == (768, 576)
    assert reduced.size == (192, 144)  # 1/4 scale: the smallest still >= 120 px
    assert decode(data, max_pixels=LIMIT, min_side=300).size == (768, 576)
