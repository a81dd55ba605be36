"""Feature service settings: parsing, validation and the per-caller bounds."""

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
    ("FEATURE_READ_TIMEOUT_S", "0"), ("FEATURE_MEMORY_LAYOUT", "planar"),
    ("FEATURE_INFERENCE", "gpu"), ("FEATURE_THREADS", "-2"), ("FEATURE_CALIBRATION_S", "-1"),
    ("FEATURE_CALLER_WEIGHTS", "trainer=0"), ("FEATURE_CALLER_WEIGHTS", "trainer"),
    ("FEATURE_STREAM_IDLE_S", "0"),
])
def test_bad_values_name_the_variable(env: str, value: str) -> None:
    with pytest.raises(ConfigError, match=env):
        load(Config, {env: value})


def test_settings_left_at_auto_are_measured_and_caller_bounds_default_to_a_quarter() -> None:
    auto = load(Config, {})
    assert (auto.precision, auto.memory_layout, auto.threads, auto.max_batch,
            auto.decode_workers, auto.inference) == ("auto", "auto", 0, 0, 0, "auto")
    assert auto.calibration_s > 0
    assert auto.caller_bytes == auto.max_inflight_bytes // 4
    assert auto.caller_calls == auto.max_concurrent_rpcs // 4
    given = load(Config, {"FEATURE_PRECISION": "int8", "FEATURE_CALLER_MAX_BYTES": "1000",
                          "FEATURE_CALLER_MAX_CALLS": "3",
                          "FEATURE_CALLER_WEIGHTS": "trainer=2, team-a=1"})
    assert (given.precision, given.caller_bytes, given.caller_calls) == ("int8", 1000, 3)
    assert given.caller_weights == (("trainer", 2), ("team-a", 1))
    unbounded = load(Config, {"FEATURE_MAX_CONCURRENT_RPCS": "0"})
    assert unbounded.caller_calls == 0
