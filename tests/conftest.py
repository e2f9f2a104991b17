"""The whole suite shares one build cache, its own (never the user's ~/.cache/bundler/builds):
the many builds of one interpreter are materialized once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bundler.build import cache


@pytest.fixture(scope="session", autouse=True)
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    before = os.environ.get(cache.ENV)
    os.environ[cache.ENV] = str(tmp_path_factory.mktemp("build-cache"))
    yield
    if before is None:
        os.environ.pop(cache.ENV, None)
    else:
        os.environ[cache.ENV] = before


# The property tests (tests/unit/test_properties_*.py) are bounded in examples and in time, and
# keep no example database: a run is the same on CI and on a fresh clone.
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is a test dependency; without it those modules skip
    pass
else:
    settings.register_profile(
        "bundler", max_examples=150, deadline=None, database=None, derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    settings.load_profile("bundler")
