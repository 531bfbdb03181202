"""Shared pytest fixtures for the whole test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
"""Real third-party samples (iMiGUE OpenPose frames, label table) kept beside the checkout,
not inside it: they may not be redistributed with the project."""


CONVERT_ENV = Path(__file__).resolve().parents[1] / "artifacts" / "build-env"
"""The TFLite->ONNX conversion environment (TensorFlow, tf2onnx): created by the first
build that converts a keypoint engine (about a minute, needs the package index once) and
reused by every later test run, as ``hidemo engines build`` reuses it."""


@pytest.fixture(scope="session")
def convert_env_root() -> Path:
    """Where builds in tests keep the conversion environment (see :data:`CONVERT_ENV`)."""
    return CONVERT_ENV


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
    """The ``tiny`` profile's engines, built once per test session: random-weight
    perception and classifier (~15 s) and the keypoint engines converted from MediaPipe's
    real models (~1 min; plus about a minute the first time, to create the conversion
    environment).

    Tests must not modify this folder: copy it first (``shutil.copytree``) to tamper.
    """
    from engines.profiles import get_profile
    from export.build import build_profile

    engine_dir = tmp_path_factory.mktemp("tiny_engines")
    outcomes = build_profile(get_profile("tiny"), engine_dir,
                             locator=_empty_weights(tmp_path_factory),
                             convert_env=CONVERT_ENV)
    assert all(o.action == "built" for o in outcomes), outcomes
    return engine_dir


def _empty_weights(tmp_path_factory: pytest.TempPathFactory):
    from engines.sources import WeightsLocator

    return WeightsLocator(tmp_path_factory.mktemp("no_weights"))
