from __future__ import annotations

from pathlib import Path

import pytest

from bundler.bundle.tree import Bundle
from tests.unit.tiny import make_tiny


@pytest.fixture
def tiny(tmp_path: Path) -> Bundle:
    """A bundle tree with one code version, its records and its checksums."""
    return make_tiny(tmp_path / "tiny")
