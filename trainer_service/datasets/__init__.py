"""Where items come from: a folder of images, a CSV manifest, or Open Images.

Every loader yields batches of `Item`s with a `Progress`; the catalog collects them so the
service can work on the parts already loaded.
"""

from trainer_service.datasets.base import Item, Progress, is_url
from trainer_service.datasets.catalog import Catalog

__all__ = ["Catalog", "Item", "Progress", "is_url"]
