"""``hidemo label``'s settings record: the defaults its --help shows are its own, a config
file is overridden by the options given, and bad values name the option or field."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from training.pseudo.label_cli import CONFIG_OPTIONS, add_label_parser, load_config
from training.pseudo.label_config import LabelConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hidemo")
    add_label_parser(parser.add_subparsers(dest="job"))
    return parser


def test_every_option_is_a_field_and_help_shows_the_fields_default() -> None:
    label = next(action for action in _parser()._subparsers._group_actions[0].choices.values()
                 if action.prog.endswith("label"))
    defaults = LabelConfig()
    checked = 0
    for action in label._actions:
        if action.dest not in CONFIG_OPTIONS:
            continue
        assert action.dest in LabelConfig.model_fields, action.dest
        assert action.default is None, f"--{action.dest} must default to None (config)"
        shown = re.search(r"\(default: ([^)]+)\)", action.help or "")
        value = getattr(defaults, action.dest)
        if shown and value is not None:  # a None field's help says what it falls back to
            expected = f"{value:g}" if isinstance(value, float) else str(value)
            assert shown.group(1) == expected, action.dest
            checked += 1
    assert checked >= 12


def test_options_override_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"timeout_s": 30, "max_retry_after_s": 5, "frames": 4}))
    args = _parser().parse_args(["label", "--config", str(config), "--timeout-s", "2.5",
                                 "--ids", "a, b,"])
    loaded = load_config(args)
    assert (loaded.timeout_s, loaded.max_retry_after_s, loaded.frames) == (2.5, 5, 4)
    assert loaded.ids == ["a", "b"] and loaded.max_attempts == 5
    plain = load_config(_parser().parse_args(["label"]))
    assert (plain.timeout_s, plain.max_retry_after_s) == (120.0, 120.0)


@pytest.mark.parametrize(("data", "options", "message"), [
    ({"timeout_s": 0}, {}, "timeout_s in --config"),
    ({}, {"timeout_s": -1.0}, "--timeout-s: Input should be greater than 0"),
    ({}, {"timeout_s": float("nan")}, "--timeout-s"),
    ({}, {"max_retry_after_s": float("inf")}, "--max-retry-after-s"),
    ({}, {"max_retry_after_s": 3601.0}, "--max-retry-after-s"),
    ({"max_attempts": 0}, {}, "max_attempts in --config"),
    ({"GEMINI_API_KEY": "abc"}, {}, "never holds a key"),
    ({"token": "abc"}, {}, "never holds a key"),
    ({"crop": "face"}, {}, "crop in --config"),
])
def test_bad_values_name_the_option_or_the_field(tmp_path: Path, data: dict, options: dict,
                                                 message: str) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=re.escape(message)):
        LabelConfig.load(config, options)


def test_an_api_key_env_name_is_fine_and_a_missing_file_is_named(tmp_path: Path) -> None:
    assert LabelConfig.load(None, {"api_key_env": "MY_KEY"}).api_key_env == "MY_KEY"
    with pytest.raises(FileNotFoundError, match="no such file"):
        LabelConfig.load(tmp_path / "none.json", {})
