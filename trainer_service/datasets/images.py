"""Images of local datasets, read for the browser: the original bytes or a thumbnail."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import grpc
from PIL import Image

from hitl.redact import without_addresses
from trainer_service.datasets import Catalog
from trainer_service.domain import TrainerError

THUMBNAIL_SIDE = 256


async def item_image(catalog: Catalog, item_id: str, thumbnail: bool) -> tuple[bytes, str]:
    """(bytes, content type) of an item's image; public URLs are not fetched here."""
    item = catalog.find(item_id)
    if item is None:
        raise TrainerError(grpc.StatusCode.NOT_FOUND, f"no item {item_id!r}")
    if item.is_remote:
        raise TrainerError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"item {item_id!r} is at a public URL: {item.location}")
    try:
        return await asyncio.to_thread(read_image, Path(item.location), thumbnail)
    except FileNotFoundError:
        raise TrainerError(grpc.StatusCode.NOT_FOUND,
                           f"the image of {item_id!r} is missing") from None
    except (OSError, Image.DecompressionBombError) as exc:
        # A decompression bomb is not an OSError, but it is just as unreadable.
        raise TrainerError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"the image of {item_id!r} cannot be read: "
                           f"{without_addresses(str(exc))}") from None


def read_image(path: Path, thumbnail: bool) -> tuple[bytes, str]:
    data = path.read_bytes()
    if not thumbnail:
        image_format = Image.open(io.BytesIO(data)).format or "JPEG"
        return data, Image.MIME.get(image_format, "application/octet-stream")
    with Image.open(io.BytesIO(data)) as original:
        original.draft("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        image = original.convert("RGB")
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
    return out.getvalue(), "image/jpeg"
