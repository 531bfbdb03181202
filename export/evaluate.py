"""``hidemo engines evaluate``: the built classifier engines on a training run's test set.

Closes the loop of "rebuild after retraining": the fp32 engine must score what the trained
torch model scored (same windows, onnxruntime instead of torch), and the optional int8
engine's accuracy drift is measured on the same windows. Writes ``RUN/engines_eval.json``.

Example:
    >>> evaluate_engines(Path("runs/edge"), Path("artifacts/engines/edge"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engines.adapters.classifier import CLASSIFIER_NAME, WindowClassifier
from engines.manifest import EngineMissing, manifest_path
from engines.provenance import git_commit, utc_now
from export.classifier import CLASSIFIER_INT8_NAME, int8_drift
from training.recipe import load_run_splits
from training.trainer import evaluate_scores

BATCH = 256


def evaluate_engines(run_dir: Path, engine_dir: Path) -> dict[str, Any]:
    """Metrics of each built classifier engine on the run's test windows, and int8 drift."""
    config, splits = load_run_splits(run_dir)
    windows = splits.test
    feeds = windows.batch.feeds()
    batches = [{k: v[lo:lo + BATCH] for k, v in feeds.items()}
               for lo in range(0, len(windows), BATCH)]
    labels = [windows.labels[lo:lo + BATCH] for lo in range(0, len(windows), BATCH)]
    report: dict[str, Any] = {"run": str(run_dir), "engine_dir": str(engine_dir),
                              "profile": config.profile, "test_windows": len(windows),
                              "engines": {}, "git_commit": git_commit(), "created": utc_now()}
    opened = {}
    try:
        for name in (CLASSIFIER_NAME, CLASSIFIER_INT8_NAME):
            if name == CLASSIFIER_INT8_NAME and not manifest_path(engine_dir, name).is_file():
                continue
            classifier = WindowClassifier.from_engine_dir(engine_dir, "onnxruntime", name=name,
                                                          max_batch=BATCH)
            opened[name] = classifier
            probs = classifier.classify(windows.batch).probs[:, 1]
            report["engines"][name] = {
                "manifest_source": classifier.manifest.source.description,
                "random_weights": classifier.random_weights,
                **evaluate_scores(windows, probs)}
        if CLASSIFIER_NAME not in opened:
            raise EngineMissing(f"no classifier engine in {engine_dir}",
                                f"hidemo engines build --profile {config.profile}")
        if CLASSIFIER_INT8_NAME in opened:
            report["int8_drift"] = int8_drift(opened[CLASSIFIER_NAME].engine,
                                              opened[CLASSIFIER_INT8_NAME].engine,
                                              batches, labels)
    finally:
        for classifier in opened.values():
            classifier.close()
    (Path(run_dir) / "engines_eval.json").write_text(json.dumps(report, indent=2))
    return report


def format_report(report: dict[str, Any], trained: dict[str, Any] | None) -> str:
    """One line per engine (and the torch model the run measured), then the int8 drift."""
    lines = [f"{'model':<34}{'window acc':>11}{'video acc':>11}{'video bal.acc':>15}"]

    def line(name: str, result: dict[str, Any]) -> str:
        return (f"{name:<34}{result['window']['accuracy']:>11.3f}"
                f"{result['video']['accuracy']:>11.3f}"
                f"{result['video']['balanced_accuracy']:>15.3f}")

    if trained is not None:
        lines.append(line("torch (the run's installed seed)", trained))
    for name, result in report["engines"].items():
        lines.append(line(f"{name} (onnxruntime)", result))
    drift = report.get("int8_drift")
    if drift:
        lines.append(f"int8 drift: window accuracy {drift['accuracy_fp32']:.4f} -> "
                     f"{drift['accuracy_int8']:.4f} (drop {drift['accuracy_drop']:+.4f}), "
                     f"decision flips {drift['decision_flips']:.4f}, max |dprob| "
                     f"{drift['max_prob_diff']:.4f} over {int(drift['windows'])} windows")
    return "\n".join(lines)


def installed_result(run_dir: Path) -> dict[str, Any] | None:
    """The test metrics the run recorded for the model it installed (None if not installed)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    installed = metrics.get("installed")
    if not installed:
        return None
    seed = str(installed["seed"])
    return metrics["stage2"]["all"]["seeds"][seed]["test"]


def run_profile(run_dir: Path) -> str:
    """The profile a training run used (to find its default engine folder)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run (no config.json)")
    return json.loads(path.read_text())["config"]["profile"]


def evaluate_command(run_dir: Path, engine_dir: Path) -> int:
    report = evaluate_engines(run_dir, engine_dir)
    print(format_report(report, installed_result(run_dir)))
    print(f"wrote {Path(run_dir) / 'engines_eval.json'}")
    return 0
