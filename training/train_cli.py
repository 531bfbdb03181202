"""``hidemo train``: arguments in, :func:`training.recipe.run_training` out.

Every option overrides the same field of the JSON ``--config`` file (or the default), so a
config file can hold an experiment and the command line can vary one thing.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: --help stays light
    from training.config import TrainConfig

log = logging.getLogger("hidemo.train")


def add_train_parser(jobs: argparse._SubParsersAction) -> argparse.ArgumentParser:
    train = jobs.add_parser(
        "train", help="two-stage training of the window classifier, evaluation, install",
        description="Stage 1 trains each modality alone, stage 2 fine-tunes all jointly; "
                    "writes OUT/metrics.json and installs the model for `hidemo engines build`.")
    train.add_argument("--data", default=None,
                       help="'synthetic' (default) or a feature store folder made by "
                            "`hidemo features extract`")
    train.add_argument("--out", type=Path, required=True, help="run folder (resumable)")
    train.add_argument("--config", type=Path, default=None, help="JSON TrainConfig file")
    train.add_argument("--profile", default=None, help="paper, edge (default) or tiny")
    train.add_argument("--engine-dir", type=Path, default=None,
                       help="the profile's engines (default: artifacts/engines/PROFILE)")
    train.add_argument("--weights-dir", type=Path, default=None,
                       help="install the trained model to WEIGHTS_DIR/classifier/PROFILE "
                            "(default: weights)")
    train.add_argument("--seeds", type=int, nargs="+", default=None, help="(default: 0 1 2)")
    train.add_argument("--stage1-epochs", type=int, default=None)
    train.add_argument("--stage2-epochs", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--imbalance", default=None,
                       choices=["weighted-loss", "balanced-sampling", "both", "none"])
    train.add_argument("--keypoint-encoder", default=None, choices=["mlp", "gcn"],
                       help="mlp (the paper's choice) or gcn (the ablation baseline)")
    train.add_argument("--synthetic-videos", type=int, default=None)
    train.add_argument("--shuffle-labels", action="store_true", default=None,
                       help="train on permuted labels (a sanity check: scores near chance)")
    train.add_argument("--no-install", dest="install", action="store_false", default=None,
                       help="do not install the model for `hidemo engines build`")
    train.add_argument("--threads", type=int, default=None, help="torch threads")
    train.add_argument("--device", default=None,
                       help="cpu (default), cuda, cuda:N or auto (CUDA when torch sees one)")
    train.add_argument("--embedding-jitter", type=float, default=None,
                       help="per-window random offset of image/text embeddings in training, "
                            "relative to their norm (default 1.0; 0: off)")
    train.add_argument("--synthetic-unlabelled-fraction", type=float, default=None,
                       help="share of the synthetic training subjects stored unlabelled "
                            "(a pool for pseudo-labels; default 0)")
    pseudo = train.add_argument_group(
        "pseudo-labels", "stage 2 also trains on teacher labels from a label store "
                         "(`hidemo label`); stage 1 stays gold-only")
    pseudo.add_argument("--pseudo-labels", type=Path, default=None, metavar="STORE",
                        help="the SQLite label store")
    pseudo.add_argument("--pseudo-threshold", type=float, default=None,
                        help="minimum teacher confidence (default 0: all labels)")
    pseudo.add_argument("--pseudo-weight", type=float, default=None,
                        help="sample weight of a pseudo-labelled window relative to a gold "
                             "one (default 1)")
    pseudo.add_argument("--pseudo-reasoning-text", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="train pseudo-labelled videos on the teacher's reasoning as their "
                             "text (test time always uses the transcript; default off)")
    pseudo.add_argument("--pseudo-mode", default=None, choices=["inductive", "transductive"],
                        help="inductive (default): only training-split videos; transductive: "
                             "the val and test videos too, with the teacher's labels")
    pseudo.add_argument("--pseudo-provider", default=None, help="only this provider's labels")
    pseudo.add_argument("--pseudo-model", default=None, help="only this model's labels")
    pseudo.add_argument("--pseudo-prompt-version", default=None,
                        help="only labels from this prompt version")
    return train


PSEUDO_OPTIONS = {"threshold": "pseudo_threshold", "weight": "pseudo_weight",
                  "reasoning_text": "pseudo_reasoning_text", "mode": "pseudo_mode",
                  "provider": "pseudo_provider", "model": "pseudo_model",
                  "prompt_version": "pseudo_prompt_version"}
"""PseudoLabelConfig field -> argparse destination."""


def _pseudo_overrides(args: argparse.Namespace) -> dict:
    """``pseudo_labels.*`` overrides; options without --pseudo-labels (and no config file
    naming a store) are refused rather than ignored."""
    given = {field: getattr(args, dest) for field, dest in PSEUDO_OPTIONS.items()
             if getattr(args, dest, None) is not None}
    out = {"pseudo_labels.store": args.pseudo_labels}
    out.update({f"pseudo_labels.{field}": value for field, value in given.items()})
    return out


def train_command(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from training.recipe import run_training

    try:
        config = _load_config(args)
    except ValidationError as error:
        if any(e["loc"] == ("pseudo_labels", "store") and e["type"] == "missing"
               for e in error.errors()):
            raise ValueError("the --pseudo-* options need --pseudo-labels STORE (the label "
                             "store of `hidemo label`), or pseudo_labels.store in --config"
                             ) from None
        raise
    metrics = run_training(config, say=log.info)
    print(format_summary(metrics))
    return 0


def _load_config(args: argparse.Namespace) -> TrainConfig:
    from training.config import TrainConfig

    return TrainConfig.load(args.config, {
        "out": args.out, "data": args.data, "profile": args.profile,
        "engine_dir": args.engine_dir, "weights_dir": args.weights_dir, "seeds": args.seeds,
        "stage1_epochs": args.stage1_epochs, "stage2_epochs": args.stage2_epochs,
        "batch_size": args.batch_size, "imbalance": args.imbalance,
        "keypoint_encoder": args.keypoint_encoder,
        "synthetic.videos": args.synthetic_videos, "shuffle_labels": args.shuffle_labels,
        "install": args.install, "threads": args.threads, "device": args.device,
        "embedding_jitter": args.embedding_jitter,
        "synthetic.unlabelled_fraction": args.synthetic_unlabelled_fraction,
        **_pseudo_overrides(args),
    })


def format_summary(metrics: dict) -> str:
    """The test-set table a user reads after training (the full numbers are in the JSON)."""
    lines = [f"{'run':<20}{'video acc':>14}{'video bal.acc':>15}{'window acc':>14}"
             f"{'video AUC':>14}"]

    def row(name: str, summary: dict) -> str:
        video, window = summary["test"]["video"], summary["test"]["window"]

        def cell(block: dict, key: str) -> str:
            if key not in block:
                return "n/a"
            return f"{block[key]['mean']:.3f}±{block[key]['std']:.3f}"

        return (f"{name:<20}{cell(video, 'accuracy'):>14}{cell(video, 'balanced_accuracy'):>15}"
                f"{cell(window, 'accuracy'):>14}{cell(video, 'roc_auc'):>14}")

    for modality, summary in metrics["stage1"].items():
        lines.append(row(f"stage 1 {modality}", summary))
    lines.append(row("stage 2 all", metrics["stage2"]["all"]))
    if metrics.get("pseudo_labels") is not None:
        from training.pseudo.merge import mode_line

        lines.append(mode_line(metrics["pseudo_labels"]))
    best = metrics.get("best_possible")
    if best:
        ceiling = best["video_accuracy"]
        lines.append("best possible video accuracy (generator): " + ", ".join(
            f"{k} {v:.3f}" for k, v in ceiling.items()))
    return "\n".join(lines)
