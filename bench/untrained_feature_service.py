"""`python -m bench.untrained_feature_service`: the real feature service (gRPC, batching,
LMDB cache) around `resnext50-frcnn` built with random weights, for speed and memory
measurements where the pretrained weights cannot be fetched (`make weights` needs the
internet).

The arithmetic per image is the same as with the pretrained weights: the same
architectures, input sizes and 1,000 region proposals; only how many boxes survive NMS
can differ. Its features mean nothing, and its extractor version says "untrained", so
they can never mix with real ones. It lives in bench/, out of the product's reach.
"""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as feature_service/__main__.py

from feature_service.config import Config
from hitl.config import load_or_exit
from hitl.logs import setup_logging


def main() -> None:
    config = load_or_exit(Config)
    setup_logging("feature", config.log_level)
    from feature_service.extractors.resnext_frcnn import ResNeXtFrcnnExtractor
    from feature_service.extractors.runtime import resolve_device
    from feature_service.server import build_service

    extractor = ResNeXtFrcnnExtractor.untrained(resolve_device(config.device),
                                                precision=config.precision)

    async def serve() -> None:  # the server must be built inside the running loop
        await build_service(config, extractor).run_until_signal()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
