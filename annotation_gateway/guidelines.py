"""The task's instructions for the page's guidelines panel, from configuration: a text (or
a text file) and example images, local files being served by index so that no path ever
travels to the browser."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from annotation_gateway.config import Config
from annotation_gateway.errors import ApiError

# Plenty for instructions; a file larger than this is cut, not a reason to fail.
MAX_TEXT_CHARS = 20_000
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp"})
MAX_IMAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Example:
    location: str  # an image file or an http(s) URL
    caption: str

    @property
    def remote(self) -> bool:
        return self.location.startswith(("http://", "https://"))


@dataclass(frozen=True)
class Guidelines:
    text: str
    examples: tuple[Example, ...]

    @classmethod
    def from_config(cls, config: Config) -> Guidelines:
        text = config.guidelines
        if config.guidelines_file:
            text = Path(config.guidelines_file).read_text(encoding="utf-8", errors="replace")
        examples = []
        for entry in config.guidelines_examples:
            location, _, caption = entry.partition("|")
            examples.append(Example(location.strip(), caption.strip()))
        return cls(text.strip()[:MAX_TEXT_CHARS], tuple(examples))

    def body(self) -> dict[str, Any]:
        return {"text": self.text, "examples": [
            {"url": e.location if e.remote else f"/api/guidelines/examples/{n}",
             "caption": e.caption} for n, e in enumerate(self.examples)]}

    def local_image(self, raw_index: str) -> tuple[Path, str]:
        """(path, content type) of example `raw_index`, a local image file."""
        if not raw_index.isdigit() or int(raw_index) >= len(self.examples):
            raise ApiError(404, "not_found", "no such example image")
        example = self.examples[int(raw_index)]
        content_type = mimetypes.guess_type(example.location)[0] or ""
        if example.remote or content_type not in IMAGE_TYPES:
            raise ApiError(404, "not_found", "no such example image")
        return Path(example.location), content_type


async def serve_example(guidelines: Guidelines, raw_index: str) -> web.FileResponse:
    path, content_type = guidelines.local_image(raw_index)
    try:
        size = path.stat().st_size
    except OSError:
        raise ApiError(404, "not_found", "the example image is gone") from None
    if size > MAX_IMAGE_BYTES:
        raise ApiError(404, "not_found", "the example image is too large to serve")
    return web.FileResponse(path, headers={"Content-Type": content_type,
                                           "Cache-Control": "private, max-age=3600"})
