"""The package directions of the rooms (docs/architecture.md) hold: import-linter's
contracts in pyproject.toml (``[tool.importlinter]``), lazy imports inside functions
included.

.ci/run also runs ``lint-imports``; this test makes a plain ``pytest`` catch a wrong-way
import too (e.g. stream importing training would load torch into every stage).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    pytest.importorskip("importlinter", reason="import-linter is in the dev extra")
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
