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

from feature_service.__main__ import main  # sets OMP_WAIT_POLICY before torch loads
from feature_service.config import Config
from feature_service.extractors.base import Extractor


def untrained(config: Config) -> Extractor:
    from feature_service.extractors.resnext_frcnn import ResNeXtFrcnnExtractor
    from feature_service.extractors.runtime import resolve_device

    return ResNeXtFrcnnExtractor.untrained(resolve_device(config.device),
                                           precision=config.precision)


if __name__ == "__main__":
    main(untrained)
