"""Shared test fixtures. Real data lives outside the repo; tests that need it skip without it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _fixtures_root() -> Path | None:
    env = os.environ.get("VITLENS_FIXTURES")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "fixtures")
    for path in candidates:
        if path.is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The real-data folder (``$VITLENS_FIXTURES`` or ``../shared/fixtures``); skips when absent."""
    root = _fixtures_root()
    if root is None:
        pytest.skip("real test data not found: set VITLENS_FIXTURES or place it at ../shared/fixtures")
    return root


@pytest.fixture(scope="session")
def parity(fixtures: Path) -> Path:
    path = fixtures / "parity"
    if not path.is_dir():
        pytest.skip(f"official parity fixtures not found under {fixtures}")
    return path
