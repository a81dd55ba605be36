"""`python -m bench.untrained_feature_service`: the real feature service (gRPC, worker
processes, calibration, LMDB cache) around `resnext50-frcnn` built with random weights
(bench/untrained.py), for speed and memory measurements where the pretrained weights
cannot be fetched. Its extractor version says "untrained", so its features never mix
with real ones."""

from __future__ import annotations

from feature_service.__main__ import main  # sets OMP_WAIT_POLICY before torch loads
from feature_service.config import Config


def untrained(config: Config):  # type: ignore[no-untyped-def]
    from bench.untrained import UntrainedBuilder
    from feature_service.extractors.runtime import resolve_device

    return UntrainedBuilder(resolve_device(config.device))


if __name__ == "__main__":
    main(untrained)
