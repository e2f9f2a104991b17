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
