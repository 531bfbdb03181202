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


@pytest.fixture(scope="session")
def tiny_engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``tiny`` profile's engines, built once per test session (random weights, ~15 s).

    Tests must not modify this folder: copy it first (``shutil.copytree``) to tamper.
    """
    from engines.profiles import get_profile
    from export.build import build_profile

    engine_dir = tmp_path_factory.mktemp("tiny_engines")
    outcomes = build_profile(get_profile("tiny"), engine_dir,
                             locator=_empty_weights(tmp_path_factory))
    assert all(o.action == "built" for o in outcomes), outcomes
    return engine_dir


def _empty_weights(tmp_path_factory: pytest.TempPathFactory):
    from engines.sources import WeightsLocator

    return WeightsLocator(tmp_path_factory.mktemp("no_weights"))
