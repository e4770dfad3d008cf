"""Shared test fixtures. Real data lives outside the repo: tests that need it skip without it on a user's clone,
and fail under ``CI=true``, where the parity claims of the README must be checked, not skipped."""
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


def missing_data(reason: str) -> None:
    """Skip for a user without the real data; fail in CI, where skipping would hide a broken claim."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: real-data tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The real-data folder (``$VITLENS_FIXTURES`` or ``../shared/fixtures``)."""
    root = _fixtures_root()
    if root is None:
        missing_data("real test data not found: set VITLENS_FIXTURES or place it at ../shared/fixtures")
    return root


@pytest.fixture(scope="session")
def parity(fixtures: Path) -> Path:
    path = fixtures / "parity"
    if not path.is_dir():
        missing_data(f"official parity fixtures not found under {fixtures}")
    return path
