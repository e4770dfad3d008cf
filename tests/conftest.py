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


def fixture_folder(fixtures: Path, name: str) -> Path:
    """``fixtures/name``, or the skip (fail under CI) that says it is missing."""
    path = fixtures / name
    if not path.is_dir():
        missing_data(f"fixture folder {name}/ not found under {fixtures}")
    return path


@pytest.fixture(scope="session")
def parity(fixtures: Path) -> Path:
    """Outputs of the official 3D code on tiny random models."""
    return fixture_folder(fixtures, "parity")


@pytest.fixture(scope="session")
def modality_parity(fixtures: Path) -> Path:
    """Outputs of the official depth, audio, tactile, EEG and one-stop code on tiny random models."""
    return fixture_folder(fixtures, "parity-modalities")
