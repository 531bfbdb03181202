"""The run configuration: source kinds, overrides, strict keys, stream ids."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from stream.config import load_config, source_kind


@pytest.mark.parametrize(("spec", "kind"), [("0", "camera"), ("demo", "demo"),
                                            ("rtsp://cam/live", "url"),
                                            ("http://x/y.mjpg", "url"), ("talk.mp4", "file")])
def test_source_kinds(spec: str, kind: str) -> None:
    assert source_kind(spec) == kind


def test_file_then_overrides_then_dotted(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("profile: tiny\nclassify:\n  stride_s: 2.0\nsources:\n  - spec: demo\n")
    config = load_config(path, {"duration": 5.0}, ["classify.smoothing=0.5",
                                                   "features.slow_ms=100"])
    assert config.profile == "tiny" and config.duration == 5.0
    assert config.classify.stride_s == 2.0 and config.classify.smoothing == 0.5
    assert config.features.slow_ms == 100
    assert config.stream_ids() == ["demo0"]
    assert config.keypoint_rate() == 5.0 and config.capture_fps() == 5.0


def test_unknown_keys_and_profiles_are_errors() -> None:
    with pytest.raises(ValidationError):
        load_config(None, None, ["classify.strid_s=1"])
    with pytest.raises(ValidationError):
        load_config(None, {"profile": "huge"})


def test_stream_ids_are_unique() -> None:
    config = load_config(None, {"sources": [{"spec": "demo"}, {"spec": "demo"}]})
    assert config.stream_ids() == ["demo0", "demo1"]
    with pytest.raises(ValidationError):
        load_config(None, {"sources": [{"spec": "demo", "id": "x"}, {"spec": "0", "id": "x"}]})


def test_automatic_batch_is_one_on_a_cpu_and_batches_on_a_gpu() -> None:
    from stream.config import GPU_MAX_BATCH, ClassifyConfig, StageConfig

    auto = StageConfig()
    assert auto.max_batch is None
    with pytest.raises(RuntimeError, match="for_device"):
        _ = auto.batch
    assert auto.for_device("cpu").batch == 1
    assert auto.for_device("cuda:0").batch == GPU_MAX_BATCH
    assert StageConfig(max_batch=3).for_device("cpu").batch == 3  # explicit wins
    assert ClassifyConfig().for_device("cpu").batch == 8  # windows are cheap: group them


def test_the_documented_configuration_example_loads(tmp_path: Path) -> None:
    """The ``run.yaml`` example of docs/running.md is what users copy: it must stay a valid
    config."""
    readme = (Path(__file__).parents[2] / "docs" / "running.md").read_text()
    start = readme.index("```yaml\nprofile:") + len("```yaml\n")
    path = tmp_path / "run.yaml"
    path.write_text(readme[start:readme.index("```", start)])
    config = load_config(path, {}, [])
    assert [source.kind for source in config.sources] == ["demo", "file", "url"]
    assert config.sources[2].read_timeout_s == 5.0


def test_a_source_timeout_the_watchdog_would_take_for_a_hang_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="hang_after_s"):
        load_config(None, {"sources": [{"spec": "rtsp://cam/live", "read_timeout_s": 40}]})
    load_config(None, {"sources": [{"spec": "rtsp://cam/live", "read_timeout_s": 40}],
                       "supervisor": {"hang_after_s": 60}})


def test_a_stream_id_longer_than_the_wire_allows_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="64 characters"):
        load_config(None, {"sources": [{"spec": "demo", "id": "x" * 65}]})


def test_keypoints_is_mediapipe_engines_or_auto() -> None:
    assert load_config(None, {}).keypoints == "auto"
    for choice in ("mediapipe", "engines", "auto"):
        assert load_config(None, {"keypoints": choice}).keypoints == choice
        assert load_config(None, None, [f"keypoints={choice}"]).keypoints == choice
    with pytest.raises(ValidationError):
        load_config(None, {"keypoints": "openpose"})


def test_the_run_command_takes_keypoints_from_its_flag() -> None:
    import argparse

    from stream.run.cli import add_run_parser, config_from_args

    parser = argparse.ArgumentParser()
    add_run_parser(parser.add_subparsers())
    args = parser.parse_args(["run", "--source", "demo", "--keypoints", "engines"])
    assert config_from_args(args).keypoints == "engines"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--source", "demo", "--keypoints", "gpu"])
