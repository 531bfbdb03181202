"""Shared pytest fixtures for the whole test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
"""Real third-party samples (iMiGUE OpenPose frames, label table) kept beside the checkout,
not inside it: they may not be redistributed with the project."""


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The shared real-data fixtures folder; skips the test when it is not there."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(
            "../shared/fixtures not found: the real-data tests need the shared fixtures "
            "beside the checkout"
        )
    return SHARED_FIXTURES
