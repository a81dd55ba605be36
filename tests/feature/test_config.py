"""Feature service settings: parsing, validation and the automatic batch limit."""

from __future__ import annotations

import pytest

from feature_service.config import Config
from hitl.config import ConfigError, load


def test_defaults_load() -> None:
    config = load(Config, {})
    assert (config.port, config.metrics_port, config.extractor) == (50051, 9101,
                                                                    "resnext50-frcnn")
    assert config.url_allowlist == ()


def test_allowlist_takes_hosts_addresses_and_blocks() -> None:
    config = load(Config, {"FEATURE_URL_ALLOWLIST": "127.0.0.1, 10.1.0.0/16,images.local,::1"})
    assert config.url_allowlist == ("127.0.0.1", "10.1.0.0/16", "images.local", "::1")


@pytest.mark.parametrize(("env", "value"), [
    ("FEATURE_URL_ALLOWLIST", "10.0.0.0/33"), ("FEATURE_URL_ALLOWLIST", "bad host!"),
    ("FEATURE_MAX_BATCH", "-1"), ("FEATURE_DEVICE", "tpu"), ("FEATURE_MAX_ITEMS", "0"),
    ("FEATURE_PRECISION", "float8"), ("FEATURE_CACHE_MAX_BYTES", "4096"),
    ("FEATURE_READ_TIMEOUT_S", "0"),
])
def test_bad_values_name_the_variable(env: str, value: str) -> None:
    with pytest.raises(ConfigError, match=env):
        load(Config, {env: value})


def test_the_batch_limit_is_small_for_faster_rcnn_on_a_cpu_unless_set() -> None:
    auto = load(Config, {})
    assert auto.batch_limit("resnext50-frcnn", "cpu") == 2
    assert auto.batch_limit("resnext50-frcnn", "cuda") == 32
    assert auto.batch_limit("lite", "cpu") == 8
    assert load(Config, {"FEATURE_MAX_BATCH": "8"}).batch_limit("resnext50-frcnn", "cpu") == 8
