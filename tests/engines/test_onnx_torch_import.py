"""onnx2torch imports where PyPI's torchvision cannot load, and leaves no fake behind."""

from __future__ import annotations

import subprocess
import sys


def test_onnx2torch_imports_and_later_import_checks_see_no_torchvision() -> None:
    """In a fresh interpreter (what a stage process is): after onnx2torch is imported with
    the placeholder, ``find_spec("torchvision")`` (transformers' availability check) works
    and says what is really installed."""
    code = ("import importlib.util, sys\n"
            "real = importlib.util.find_spec('torchvision') is not None\n"
            "from engines.backends.onnx_torch import import_onnx2torch\n"
            "import_onnx2torch()\n"
            "after = importlib.util.find_spec('torchvision') is not None\n"
            "print(real, after)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    real, after = result.stdout.split()
    assert real == after, result.stdout
