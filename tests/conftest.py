"""Shared pytest fixtures."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def real_data() -> Path:
    """../shared/test_data/real beside the project root; missing data fails."""
    path = ROOT.parent / "shared" / "test_data" / "real"
    if not path.is_dir():
        pytest.fail(f"real test data missing: {path}")
    return path
