"""Test doubles and image generators for the feature service tests.

`TinyExtractor` is a deterministic stand-in for the real models (it follows the same
Extractor interface) so batching, caching and error handling can be tested in
milliseconds; the real `lite` extractor is exercised in test_lite.py.
"""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from feature_service.extractors.base import (
    Choices,
    Extractor,
    ExtractorInfo,
    Settings,
    evidence_vector,
)

# An image of exactly this colour makes TinyExtractor.extract fail for its whole batch.
POISON = (13, 13, 13)


class TinyExtractor(Extractor):
    """Embedding: a 4x4 grey thumbnail plus the mean colour (19 values). Evidence: one
    "detection" whose score is the image's mean red level, with a fixed box."""

    min_side = 8

    def __init__(self, delay_s: float = 0.0, version: str = "1", padding: int = 0) -> None:
        self.padding = padding  # zeros appended to the embedding, for large responses
        self.info = ExtractorInfo(name="tiny", version=version, embedding_dim=19 + padding,
                                  backbone="4x4 thumbnail", detector="mean red",
                                  target_class="bicycle", device="cpu")
        self.delay_s = delay_s
        self.batches: list[int] = []
        self.lock = threading.Lock()
        # Prepared images not yet through the model, now and at most.
        self.waiting = self.most_waiting = 0

    def prepare(self, image: Image.Image) -> object:
        with self.lock:
            self.waiting += 1
            self.most_waiting = max(self.most_waiting, self.waiting)
        return thumbnail(image)

    def preparer(self):  # type: ignore[no-untyped-def]
        return thumbnail

    def extract(self, prepared: list[object]) -> np.ndarray:
        with self.lock:
            self.batches.append(len(prepared))
        time.sleep(self.delay_s)
        with self.lock:
            self.waiting -= len(prepared)
        out = []
        for pixels in prepared:
            assert isinstance(pixels, np.ndarray)
            mean = pixels.reshape(-1, 3).mean(axis=0)
            if np.allclose(mean * 255, POISON, atol=0.5):
                raise ValueError("poisoned image")
            evidence = evidence_vector(np.array([mean[0]]), np.array([[0.1, 0.2, 0.6, 0.7]]))
            out.append(np.concatenate([pixels.mean(axis=2).ravel(), mean,
                                       np.zeros(self.padding), evidence]))
        return np.stack(out).astype(np.float32)

    def expected(self, image: Image.Image) -> np.ndarray:
        """What the service should return for `image` (already RGB and upright)."""
        return self.extract([self.prepare(image)])[0]


def thumbnail(image: Image.Image) -> np.ndarray:
    """TinyExtractor's preparation (picklable, for decoding worker processes)."""
    assert image.mode == "RGB"
    return np.asarray(image.resize((4, 4)), dtype=np.float32) / 255.0


@dataclass(frozen=True)
class TinyBuilder:
    """Builds TinyExtractor in the feature service's worker processes (workers.Builder);
    precision "bfloat16" stands for a second, slower way of computing to choose from."""
    delay_s: float = 0.0
    name: str = "tiny"
    device: str = "cpu"

    def __call__(self, settings: Settings) -> TinyExtractor:
        delay = self.delay_s * (20 if settings.precision == "bfloat16" else 1)
        return TinyExtractor(delay_s=delay)

    def choices(self) -> Choices:
        return Choices(("float32", "bfloat16"), ("contiguous",), (4, 1, 16))

    def check(self) -> None:
        pass


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def solid(color: tuple[int, int, int], size: tuple[int, int] = (32, 24)) -> Image.Image:
    return Image.new("RGB", size, color)


def gradient(size: tuple[int, int] = (40, 30), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header declares width x height (a decompression bomb)."""
    data = encode(Image.new("L", (1, 1)), "PNG")
    ihdr_at = data.index(b"IHDR")
    body = struct.pack(">II", width, height) + data[ihdr_at + 12:ihdr_at + 17]
    chunk = b"IHDR" + body
    patched = chunk + struct.pack(">I", zlib.crc32(chunk))
    return data[:ihdr_at] + patched + data[ihdr_at + len(patched):]


def exif_rotated_jpeg(size: tuple[int, int] = (40, 20), orientation: int = 6) -> bytes:
    image = gradient(size)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif, quality=95)


def animated_gif() -> bytes:
    first, second = solid((255, 0, 0)), solid((0, 0, 255))
    return encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)


def sixteen_bit_png(level: int = 32896) -> bytes:
    array = np.full((24, 32), level, dtype=np.uint16)
    return encode(Image.fromarray(array), "PNG")


def cmyk_jpeg() -> bytes:
    return encode(solid((200, 40, 40)).convert("CMYK"), "JPEG", quality=95)


SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" '
       b'height="10"><rect width="10" height="10" fill="red"/></svg>')
HTML = b"<!doctype html><html><body><h1>Not an image</h1></body></html>"
