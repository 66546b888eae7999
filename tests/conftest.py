"""Shared test setup: float64 (through importing odelab), hypothesis profile, markers."""

import os

import pytest
from hypothesis import HealthCheck, settings

import odelab  # noqa: F401  (float64 on)

# Tests compile JAX programs: generous deadlines, few examples, deterministic in CI.
settings.register_profile(
    "odelab",
    max_examples=25,
    deadline=None,
    derandomize=os.environ.get("CI") == "true",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("odelab")


def pytest_collection_modifyitems(config, items):
    # Browser tests need Debian's chromium; they are part of the suite, not optional.
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(pytest.mark.slow)
