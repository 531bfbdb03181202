"""Learning curves: training loss and validation video accuracy per epoch, per run.

One panel per stage and modality, one line per seed, so a user sees at a glance whether a
modality learned at all, whether stage 2 improved on stage 1, and whether seeds agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def learning_curves(path: Path, histories: dict[str, dict[int, list[dict[str, Any]]]]) -> Path:
    """Write a PNG with, per run name, loss (solid) and val video accuracy (dashed) per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(histories)
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        accuracy_axis = ax.twinx()
        for seed, rows in histories[name].items():
            epochs = [row["epoch"] for row in rows]
            line, = ax.plot(epochs, [row["train_loss"] for row in rows],
                            label=f"seed {seed} loss")
            if rows and rows[0].get("val"):
                accuracy_axis.plot(epochs, [row["val"]["video"]["accuracy"] for row in rows],
                                   linestyle="--", color=line.get_color())
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("train loss (solid)")
        accuracy_axis.set_ylabel("val video accuracy (dashed)")
        accuracy_axis.set_ylim(0, 1)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
