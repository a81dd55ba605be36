"""Where items come from: a folder of images, a CSV manifest (`local`), or Open Images
(`openimages`, with checked downloads in `download` and the address policy in `policy`).

Every loader yields batches of `Item`s with a `Progress`; the catalog collects them so the
service can work on the parts already loaded. `images` reads a local item's image (or its
thumbnail) for the browser.
"""

from trainer_service.datasets.base import Item, Progress, is_url
from trainer_service.datasets.catalog import Catalog

__all__ = ["Catalog", "Item", "Progress", "is_url"]
