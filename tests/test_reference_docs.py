"""The reference pages are generated from the code, and the committed ones are current.

``docs/reference/config.md`` (the run configuration's pydantic models),
``docs/reference/cli.md`` (the argparse parsers) and ``docs/prediction.schema.json`` (the
prediction model) are regenerated here and compared with the committed files; a stale one
fails with the command that regenerates it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from hidemo import docs
from hidemo.cli import build_parser
from stream.config import RunConfig, SourceConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted(docs.generated(), key=str), ids=str)
def test_the_committed_file_is_what_the_code_generates(path: Path) -> None:
    committed = ROOT / path
    assert committed.is_file(), f"{path} is missing: run `{docs.COMMAND}`"
    assert committed.read_text() == docs.generated()[path], (
        f"{path} is stale: run `{docs.COMMAND}` and commit the result")


def test_every_configuration_key_has_a_row_with_its_description() -> None:
    page = docs.config_reference()
    keys = 0
    for title, model in docs.config_sections(RunConfig, SourceConfig):
        for name, field in model.model_fields.items():
            key = name if title == "top level" else f"{title}.{name}"
            rows = [line for line in page.splitlines() if line.startswith(f"| `{key}` |")]
            assert len(rows) == 1, f"{key}: {len(rows)} rows"
            assert docs.cell(docs.prose(field.description)) in rows[0]
            keys += 1
    assert keys >= 80  # every section walked, not just the top level


def test_a_key_without_a_description_is_refused() -> None:
    class Section(BaseModel):
        documented: int = 1
        """Says what it is."""
        bare: int = 2

    assert Section.model_fields["documented"].description is None  # no docstrings here
    with pytest.raises(ValueError, match=r"Section\.bare has no description"):
        docs.described(Section, "bare", Section.model_fields["bare"])


def test_every_command_and_option_is_on_the_cli_page() -> None:
    page = docs.cli_reference()
    commands = list(docs.walk_parsers(build_parser()))
    assert len(commands) >= 15
    for path, parser, _ in commands:
        assert f"`{' '.join(path)}`" in page
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in page, f"{' '.join(path)} {flag}"


def test_check_names_the_stale_file_and_the_command(tmp_path: Path) -> None:
    for path in docs.generated():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    assert docs.stale(tmp_path) == []
    target = tmp_path / "docs/reference/config.md"
    target.write_text(target.read_text().replace("| `profile` |", "| `profil` |"))
    assert docs.stale(tmp_path) == [Path("docs/reference/config.md")]
    assert docs.write(tmp_path) == [Path("docs/reference/config.md")]
    assert docs.stale(tmp_path) == []


def test_the_command_checks_the_checkout() -> None:
    result = subprocess.run([sys.executable, "-m", "hidemo.docs", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
