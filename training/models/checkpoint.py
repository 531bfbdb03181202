"""Save and load a trained window classifier as a folder: weights plus the config to rebuild it.

``model.safetensors`` (weights only: nothing is unpickled on load) and ``config.json``
(``{"format", "model": ClassifierConfig, "extra": {...}}``; ``extra`` carries the window
spec the model was trained on, and training information). ``hidemo train`` installs its final
model as such a folder at ``<weights_dir>/classifier/<profile>/``, where the engine export
finds it and hashes it (a new checkpoint makes the classifier engine stale).

Example:
    >>> save_checkpoint(model, config, Path("weights/classifier/edge"),
    ...                 {"window": {"window_seconds": 8.0}})  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from training.models.classifier import HiddenEmotionClassifier
from training.models.config import ClassifierConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "hidemo-window-classifier/1"


def is_checkpoint(folder: Path) -> bool:
    """True when ``folder`` holds both checkpoint files."""
    return (Path(folder) / WEIGHTS_FILE).is_file() and (Path(folder) / CONFIG_FILE).is_file()


def save_checkpoint(model: HiddenEmotionClassifier, config: ClassifierConfig, folder: Path,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write the two files, each to a temporary name then renamed (weights first, config
    last: a folder with a config always has the weights that go with it)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous()
             for name, tensor in model.state_dict().items()}
    tmp = folder / f".{WEIGHTS_FILE}.tmp"
    save_file(state, str(tmp), metadata={"format": FORMAT})
    os.replace(tmp, folder / WEIGHTS_FILE)
    data = {"format": FORMAT, "model": config.to_dict(), "extra": extra or {}}
    tmp = folder / f".{CONFIG_FILE}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, folder / CONFIG_FILE)
    return folder


def load_checkpoint(
    folder: Path,
) -> tuple[HiddenEmotionClassifier, ClassifierConfig, dict[str, Any]]:
    """Rebuild the model from ``config.json`` and load the weights strictly (in eval mode)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not is_checkpoint(folder):
        raise FileNotFoundError(f"no classifier checkpoint in {folder} (needs {WEIGHTS_FILE} "
                                f"and {CONFIG_FILE}; `hidemo train` writes them)")
    data = json.loads((folder / CONFIG_FILE).read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{folder / CONFIG_FILE}: format {data.get('format')!r}, this hidemo "
                         f"reads {FORMAT!r}")
    config = ClassifierConfig.from_dict(data["model"])
    model = HiddenEmotionClassifier(config)
    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)), strict=True)
    return model.eval(), config, dict(data.get("extra", {}))
