"""Do pseudo-labels help stage 2? Simulated teachers on the synthetic set, against gold only.

Usage (from the repository root, the tiny engines built in artifacts/engines/tiny)::

    nice -n 10 .venv/bin/python scripts/pseudo_label_study.py --out runs/pseudo-study

The synthetic set keeps ``--unlabelled-fraction`` of its training subjects unlabelled (the
pool). Simulated teachers (:mod:`training.pseudo.simulate`) of each accuracy label the pool
and the val and test videos, one label store per teacher and seed. Every condition (teacher
accuracy x calibration x mode x threshold x reasoning text) trains stage 2 once per seed;
the baseline trains stage 2 on gold labels only.

Stage 1 sees gold labels only, so it is the same in every condition: it is trained once per
seed (in ``OUT/baseline``) and its finished run folders are copied into each condition's
run folder, where ``hidemo train`` loads them from their ``result.json`` instead of
retraining. Everything resumes: a killed study started again continues.

Writes ``OUT/table.md`` and ``OUT/results.json``: per condition the mean ± std over seeds
of test video accuracy, balanced accuracy and window accuracy, the change in video
accuracy against the baseline of the same seed (paired), the pseudo-labelled videos used
and the teacher's agreement with the true labels on them. A later invocation on the same
``OUT`` (same data and training settings, which ``OUT/study.json`` guards) adds its
conditions to those already there, so extra conditions extend one table::

    ... --out runs/pseudo-study --accuracies 0.7 0.9 --modes inductive --thresholds 0 \
        --reasoning-text on
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would fill the log

import numpy as np

from training.config import SyntheticData, TrainConfig
from training.features.store import FeatureStore
from training.pseudo.merge import PseudoLabelConfig
from training.pseudo.simulate import SimulatedTeacher, simulate
from training.pseudo.store import LabelStore
from training.recipe import run_training
from training.trainer import ALL_MODALITIES

log = logging.getLogger("pseudo-study")
STUDY_FILE = "study.json"


@dataclass(frozen=True)
class Condition:
    accuracy: float
    calibration: Literal["calibrated", "overconfident"]
    mode: Literal["inductive", "transductive"]
    threshold: float
    reasoning_text: bool

    @property
    def name(self) -> str:
        return (f"acc{self.accuracy:g}-{self.calibration}-{self.mode}-thr{self.threshold:g}"
                f"{'-reasoning' if self.reasoning_text else ''}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    out: Path = args.out
    base = TrainConfig(
        out=out / "baseline", profile=args.profile, engine_dir=args.engine_dir,
        seeds=args.seeds, stage1_epochs=args.stage1_epochs, stage2_epochs=args.stage2_epochs,
        install=False, threads=args.threads,
        synthetic=SyntheticData(videos=args.videos, unlabelled_fraction=args.unlabelled_fraction))
    _claim(out, _settings(base, args))
    started = time.monotonic()
    log.info("baseline (gold labels only; stage 1 for every condition), seeds %s", args.seeds)
    baseline = run_training(base, say=log.info)
    features = out / "baseline" / "features"
    videos = FeatureStore.open(features).load_all()

    conditions = [Condition(*values) for values in itertools.product(
        args.accuracies, args.calibrations, args.modes, args.thresholds,
        [flag == "on" for flag in args.reasoning_text])]
    results = _earlier_results(out)
    results["baseline"] = {"condition": None,
                           "seeds": {str(s): _scores(baseline, s) for s in args.seeds}}
    for condition in conditions:
        per_seed = {}
        for seed in args.seeds:
            teacher = SimulatedTeacher(condition.accuracy, condition.calibration, seed)
            store = _label_store(out, teacher, videos)
            run_dir = out / "runs" / condition.name / f"seed{seed}"
            _reuse_stage1(out / "baseline", run_dir, seed)
            config = base.model_copy(update={
                "out": run_dir, "data": str(features), "seeds": [seed],
                "pseudo_labels": PseudoLabelConfig(
                    store=store, threshold=condition.threshold, weight=args.weight,
                    reasoning_text=condition.reasoning_text, mode=condition.mode,
                    provider="simulated", model=teacher.model)})
            tick = time.monotonic()
            metrics = run_training(config, say=lambda _: None)
            scores = _scores(metrics, seed)
            per_seed[str(seed)] = scores
            log.info("%s seed %d: video acc %.3f (baseline %.3f), %d pseudo videos, %.0f s",
                     condition.name, seed, scores["video_accuracy"],
                     results["baseline"]["seeds"][str(seed)]["video_accuracy"],
                     scores["pseudo"]["used"], time.monotonic() - tick)
        results[condition.name] = {"condition": asdict(condition), "seeds": per_seed}

    table = _table(results, args)
    (out / "results.json").write_text(json.dumps(
        {"settings": _settings(base, args), "results": _aggregate(results)}, indent=2))
    (out / "table.md").write_text(table + "\n")
    print(table)
    log.info("study done in %.1f min; wrote %s and %s", (time.monotonic() - started) / 60,
             out / "table.md", out / "results.json")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--engine-dir", type=Path, default=Path("artifacts/engines/tiny"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--videos", type=int, default=480)
    parser.add_argument("--unlabelled-fraction", type=float, default=0.8)
    parser.add_argument("--stage1-epochs", type=int, default=16)
    parser.add_argument("--stage2-epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--accuracies", type=float, nargs="+", default=[0.7, 0.8, 0.9])
    parser.add_argument("--calibrations", nargs="+", default=["calibrated"],
                        choices=["calibrated", "overconfident"])
    parser.add_argument("--modes", nargs="+", default=["inductive", "transductive"],
                        choices=["inductive", "transductive"])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 0.75])
    parser.add_argument("--reasoning-text", nargs="+", default=["off"], choices=["off", "on"])
    parser.add_argument("--weight", type=float, default=1.0,
                        help="sample weight of a pseudo-labelled window")
    return parser


def _earlier_results(out: Path) -> dict[str, dict[str, Any]]:
    """Per-seed results of the conditions earlier invocations ran in ``out``."""
    path = out / "results.json"
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text())["results"]
    return {name: {"condition": row["condition"], "seeds": row["seeds"]}
            for name, row in rows.items()}


def _settings(base: TrainConfig, args: argparse.Namespace) -> dict[str, Any]:
    """What must match for a study folder to be continued (the data and the training)."""
    identity = base.identity()
    identity.pop("pseudo_labels", None)
    return {"train": identity, "weight": args.weight}


def _claim(out: Path, settings: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / STUDY_FILE
    settings = json.loads(json.dumps(settings))
    if path.is_file() and json.loads(path.read_text()) != settings:
        raise SystemExit(f"{out} holds a study with other data or training settings; use "
                         "another --out")
    path.write_text(json.dumps(settings, indent=2))


def _label_store(out: Path, teacher: SimulatedTeacher, videos: list) -> Path:
    """The teacher's labels of the pool and the evaluation videos (written once)."""
    path = out / "labels" / f"{teacher.model}.sqlite"
    with LabelStore.open(path) as store:
        counts = simulate(store, videos, teacher)
    if counts.written:
        log.info("teacher %s labelled %d videos", teacher.model, counts.written)
    return path


def _reuse_stage1(baseline: Path, run_dir: Path, seed: int) -> None:
    """Copy the seed's finished stage-1 runs (gold labels only: identical in every
    condition) so that the condition's run loads them instead of retraining."""
    for modality in ALL_MODALITIES:
        source = baseline / f"seed{seed}" / f"stage1-{modality}"
        target = run_dir / f"seed{seed}" / f"stage1-{modality}"
        if not (source / "result.json").is_file():
            raise RuntimeError(f"{source} is not a finished stage-1 run")
        if not (target / "result.json").is_file():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(source, target)


def _scores(metrics: dict[str, Any], seed: int) -> dict[str, Any]:
    test = metrics["stage2"]["all"]["seeds"][str(seed)]["test"]
    pseudo = metrics.get("pseudo_labels")
    return {"video_accuracy": test["video"]["accuracy"],
            "video_balanced_accuracy": test["video"]["balanced_accuracy"],
            "window_accuracy": test["window"]["accuracy"],
            "pseudo": None if pseudo is None else {
                "used": pseudo["used"], "offered": pseudo["offered"],
                "below_threshold": pseudo["below_threshold"],
                "used_per_split": pseudo["used_per_split"],
                "agreement_used": pseudo["agreement_used"]["accuracy"],
                "agreement_offered": pseudo["agreement_offered"]["accuracy"]}}


METRICS = ("video_accuracy", "video_balanced_accuracy", "window_accuracy")


def _order(item: tuple[str, dict[str, Any]]) -> tuple:
    """Baseline first, then by teacher accuracy, calibration, mode, threshold, reasoning."""
    condition = item[1]["condition"]
    if condition is None:
        return ()
    return (condition["accuracy"], condition["calibration"], condition["mode"],
            condition["threshold"], condition["reasoning_text"])


def _aggregate(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    baseline = results["baseline"]["seeds"]
    out = {}
    for name, result in sorted(results.items(), key=_order):
        seeds = result["seeds"]
        row: dict[str, Any] = {"condition": result["condition"], "seeds": seeds}
        for metric in METRICS:
            values = np.array([s[metric] for s in seeds.values()])
            row[metric] = {"mean": float(values.mean()), "std": float(values.std())}
        delta = np.array([s["video_accuracy"] - baseline[k]["video_accuracy"]
                          for k, s in seeds.items()])
        row["video_accuracy_change"] = {"mean": float(delta.mean()), "std": float(delta.std())}
        if result["condition"] is not None:
            used = [s["pseudo"]["used"] for s in seeds.values()]
            agree = [s["pseudo"]["agreement_used"] for s in seeds.values()
                     if s["pseudo"]["agreement_used"] is not None]
            row["pseudo_used"] = float(np.mean(used))
            row["teacher_agreement_used"] = float(np.mean(agree)) if agree else None
        out[name] = row
    return out


def _table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    rows = _aggregate(results)

    def cell(block: dict[str, float], signed: bool = False) -> str:
        return f"{block['mean']:+.3f} ± {block['std']:.3f}" if signed else \
            f"{block['mean']:.3f} ± {block['std']:.3f}"

    lines = [
        f"Stage 2 on the synthetic set ({args.videos} videos, {args.unlabelled_fraction:.0%} "
        f"of training subjects unlabelled), tiny profile, mean ± std over seeds "
        f"{' '.join(map(str, args.seeds))}; pseudo-label weight {args.weight:g}. "
        "Δ is paired with the baseline of the same seed (same stage 1).", "",
        "| condition | teacher acc | calibration | mode | threshold | reasoning text | "
        "pseudo videos used | teacher right on used | video acc | video bal. acc | "
        "window acc | Δ video acc |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        condition = row["condition"]
        if condition is None:
            head = "baseline (gold only) | – | – | – | – | – | 0 | – "
        else:
            agreement = row["teacher_agreement_used"]
            head = (f"{name} | {condition['accuracy']:.0%} | {condition['calibration']} | "
                    f"{condition['mode']} | "
                    f"{'off' if condition['threshold'] == 0 else condition['threshold']} | "
                    f"{'on' if condition['reasoning_text'] else 'off'} | "
                    f"{row['pseudo_used']:.0f} | "
                    f"{'–' if agreement is None else f'{agreement:.3f}'} ")
        lines.append(f"| {head}| {cell(row['video_accuracy'])} | "
                     f"{cell(row['video_balanced_accuracy'])} | {cell(row['window_accuracy'])} "
                     f"| {cell(row['video_accuracy_change'], signed=True)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
