"""Fit one classifier on windows, evaluate it per window and per video, resume after a kill.

A modality is switched off by zeroing its mask, the same way a missing modality reaches
the engine at serving time; stage 1 trains each modality alone this way. Class imbalance
is handled by a class-weighted loss, balanced sampling, or both (``imbalance``); the
trained model then gets the log class prior added to its logits (logit adjustment), so it
keeps the balanced features but its probabilities match the real class frequencies. Windows
may carry sample weights (pseudo-labelled videos counting less than gold ones); class
frequencies are then the weighted ones, for the loss weights, the sampler and the prior
alike, and a set without weights trains exactly as before. After
every epoch the model, optimiser, epoch and history go to ``state.pt`` (written atomically),
so a run that is killed resumes from its last finished epoch.

Example:
    >>> history = fit(model, train, FitSettings(epochs=5, lr=1e-3), ("keypoints",),
    ...               state_path=Path("runs/x/state.pt"))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from engines.adapters.windows import CLASSIFIER_INPUTS
from training.metrics import classification_metrics, video_scores
from training.windows import WindowSet

MODALITY_MASKS = {"image": "image_mask", "keypoints": "keypoints_mask", "text": "text_mask"}
ALL_MODALITIES = tuple(MODALITY_MASKS)


@dataclass(frozen=True)
class FitSettings:
    epochs: int
    lr: float
    weight_decay: float = 1e-2
    batch_size: int = 64
    imbalance: str = "weighted-loss"
    seed: int = 0
    label_smoothing: float = 0.1
    """Noisy labels (iMiGUE's are per video, not per window) must not be fit to zero loss."""
    encoder_lr_scale: float = 1.0
    """Learning rate of the ``*_encoder`` submodules relative to ``lr`` (stage 2 fine-tunes
    pretrained encoders gently while the new fusion head learns at full rate)."""
    embedding_jitter: float = 0.0
    """Per training window, add one random offset (this fraction of the embeddings' RMS
    norm) to all its image embeddings and to its text embedding (see :func:`jitter`)."""
    device: str = "cpu"
    """Where to train: ``cpu``, ``cuda``, ``cuda:N``. The model comes back on the CPU."""


def resolve_device(name: str) -> torch.device:
    """``auto`` is the first CUDA device when torch sees one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"training device {name!r}: this torch build sees no CUDA device "
                         f"(torch {torch.__version__}); use --device cpu")
    return device


JITTERED = {"image": "image_mask", "text": "text_mask"}


def jitter(feeds: dict[str, torch.Tensor], strength: float) -> dict[str, torch.Tensor]:
    """Shift each window's image and text embeddings by one random vector per window.

    Embeddings of one person share a per-person offset (their look, their way of
    speaking); with a few hundred people in a training set a model can learn people, not
    emotions. A random offset that is constant within a window makes that offset useless
    to the model while leaving the changes over time, and the direction of the embedding
    relative to the class, intact. ``strength`` is relative to the embeddings' RMS norm,
    so it means the same for DINOv2 features and unit-norm text vectors.
    """
    if strength <= 0:
        return feeds
    out = dict(feeds)
    for name, mask_name in JITTERED.items():
        data, mask = feeds[name], feeds[mask_name]
        # image (B, T, D) with mask (B, T); text (B, D) with mask (B, 1)
        weight = mask.unsqueeze(-1) if data.dim() == 3 else mask
        present = weight.sum().clamp(min=1.0)  # embeddings present in the batch
        rms = torch.sqrt((data.pow(2).sum(dim=-1, keepdim=True) * weight).sum() / present)
        shape = (data.shape[0],) + (1,) * (data.dim() - 2) + (data.shape[-1],)
        offset = torch.randn(shape, device=data.device, dtype=data.dtype)
        out[name] = data + offset * (strength * rms / data.shape[-1] ** 0.5) * weight
    return out


def window_tensors(windows: WindowSet) -> dict[str, torch.Tensor]:
    """The windows' arrays as tensors sharing their memory (no copy)."""
    feeds = windows.batch.feeds()
    return {name: torch.from_numpy(feeds[name]) for name in CLASSIFIER_INPUTS}


def restrict(feeds: dict[str, torch.Tensor], modalities: Sequence[str]) -> dict[str, torch.Tensor]:
    """``feeds`` with the masks of every modality not in ``modalities`` set to zero."""
    unknown = set(modalities) - set(MODALITY_MASKS)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; known {ALL_MODALITIES}")
    out = dict(feeds)
    for modality, mask in MODALITY_MASKS.items():
        if modality not in modalities:
            out[mask] = torch.zeros_like(feeds[mask])
    return out


def _forward(model: nn.Module, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
    logits, _ = model(*(feeds[name] for name in CLASSIFIER_INPUTS))
    return logits


@torch.no_grad()
def predict(model: nn.Module, windows: WindowSet, modalities: Sequence[str] = ALL_MODALITIES,
            batch_size: int = 256) -> np.ndarray:
    """Positive-class probability per window."""
    model.eval()
    device = next(model.parameters()).device
    feeds = restrict(window_tensors(windows), modalities)
    out = []
    for lo in range(0, len(windows), batch_size):
        chunk = {k: v[lo:lo + batch_size].to(device) for k, v in feeds.items()}
        out.append(torch.softmax(_forward(model, chunk), dim=1)[:, 1].cpu().numpy())
    return np.concatenate(out)


def evaluate_scores(windows: WindowSet, positive_prob: np.ndarray) -> dict[str, Any]:
    """Window- and video-level metrics of per-window positive probabilities."""
    per_video = video_scores(windows.video_index, positive_prob, len(windows.video_ids))
    return {"window": classification_metrics(windows.labels, positive_prob),
            "video": classification_metrics(windows.video_labels, per_video)}


def evaluate(model: nn.Module, windows: WindowSet,
             modalities: Sequence[str] = ALL_MODALITIES) -> dict[str, Any]:
    return evaluate_scores(windows, predict(model, windows, modalities))


def balanced_log_loss(labels: np.ndarray, positive_prob: np.ndarray,
                      weights: torch.Tensor) -> float:
    """Class-weighted cross-entropy of probabilities (the training objective, unsmoothed)."""
    probs = np.clip(np.where(labels == 1, positive_prob, 1.0 - positive_prob), 1e-7, 1.0)
    w = weights.numpy()[labels]
    return float(np.sum(-np.log(probs) * w) / np.sum(w))


def class_counts(labels: np.ndarray, sample_weights: np.ndarray | None = None) -> np.ndarray:
    """Windows per class, or their summed sample weights when windows are weighted."""
    return np.bincount(labels, weights=sample_weights, minlength=2)


def class_weights(labels: np.ndarray, sample_weights: np.ndarray | None = None) -> torch.Tensor:
    """Inverse-frequency weights, normalised so a balanced set gets weight 1 per class."""
    counts = class_counts(labels, sample_weights).astype(np.float64)
    if (counts == 0).any():
        raise ValueError(f"training windows hold one class only (counts {counts.tolist()}); "
                         "a classifier cannot learn from that")
    return torch.tensor(counts.sum() / (2 * counts), dtype=torch.float32)


def _epoch_order(labels: np.ndarray, balanced: bool, generator: torch.Generator,
                 sample_weights: np.ndarray | None = None) -> torch.Tensor:
    """A shuffled epoch; balanced: drawn with each class's (weighted) mass equal, so that
    with the sample weights applied in the loss each class contributes the same."""
    if not balanced:
        return torch.randperm(len(labels), generator=generator)
    counts = class_counts(labels, sample_weights)
    weights = torch.tensor(1.0 / counts[labels], dtype=torch.float64)
    return torch.multinomial(weights, len(labels), replacement=True, generator=generator)


def fit(model: nn.Module, train: WindowSet, settings: FitSettings, modalities: Sequence[str], *,
        val: WindowSet | None = None, state_path: Path | None = None,
        description: str = "train") -> list[dict[str, Any]]:
    """Train ``model`` in place; returns one history row per epoch (loss, val metrics).

    With ``val``, the model ends at the epoch with the lowest validation loss (marked
    ``selected`` in the history); without, at the last epoch.
    """
    device = resolve_device(settings.device)
    model.to(device)
    optimizer = torch.optim.AdamW(_param_groups(model, settings), lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, settings.epochs))
    weighted = settings.imbalance in ("weighted-loss", "both")
    balanced = settings.imbalance in ("balanced-sampling", "both")
    samples = train.weights
    weights = class_weights(train.labels, samples) if weighted or balanced else torch.ones(2)
    loss_fn = nn.CrossEntropyLoss(
        weight=weights.to(device) if weighted else None,
        label_smoothing=settings.label_smoothing,
        reduction="mean" if samples is None else "none")
    generator = torch.Generator().manual_seed(settings.seed)
    history: list[dict[str, Any]] = []
    start = 0
    best: dict[str, Any] = {"loss": float("inf"), "epoch": 0, "model": None}
    if state_path is not None and state_path.is_file():
        # weights_only: a state file is data, never code (a tampered pickle cannot run);
        # _save_state stores only tensors and plain Python values for this reason
        state = torch.load(state_path, weights_only=True, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, start, best = state["history"], state["epoch"], state["best"]
    feeds = {k: v.to(device) for k, v in restrict(window_tensors(train), modalities).items()}
    labels = torch.from_numpy(train.labels).to(device)
    sample_weights = None if samples is None else torch.from_numpy(samples).to(device)
    per_class = weights.to(device) if weighted else torch.ones(2, device=device)
    bar = tqdm(range(start, settings.epochs), desc=description, initial=start,
               total=settings.epochs, unit="epoch", leave=False, dynamic_ncols=True)
    for epoch in bar:
        model.train()
        order = _epoch_order(train.labels, balanced, generator, samples)
        total, seen = 0.0, 0
        for lo in range(0, len(order), settings.batch_size):
            index = order[lo:lo + settings.batch_size].to(device)
            batch = jitter({k: v[index] for k, v in feeds.items()}, settings.embedding_jitter)
            logits = _forward(model, batch)
            loss = loss_fn(logits, labels[index])
            if sample_weights is not None:
                loss = _weighted_mean(loss, sample_weights[index], per_class[labels[index]])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total += loss.detach() * len(index)
            seen += len(index)
        scheduler.step()
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": float(total) / max(seen, 1)}
        if val is not None:
            probs = predict(model, val, modalities)
            row["val"] = evaluate_scores(val, probs)
            row["val_loss"] = balanced_log_loss(val.labels, probs, weights)
            if row["val_loss"] < best["loss"]:
                best = {"loss": row["val_loss"], "epoch": epoch + 1,
                        "model": {k: v.detach().clone() for k, v in model.state_dict().items()}}
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_loss=f"{row['val_loss']:.3f}",
                            val_acc=f"{row['val']['video']['accuracy']:.3f}")
        else:
            bar.set_postfix(loss=f"{row['train_loss']:.3f}")
        history.append(row)
        if state_path is not None:
            _save_state(state_path, {"model": model.state_dict(),
                                     "optimizer": optimizer.state_dict(),
                                     "scheduler": scheduler.state_dict(),
                                     "generator": generator.get_state(),
                                     "torch_rng": torch.get_rng_state(),
                                     "history": history, "epoch": epoch + 1,
                                     "best": best})
    bar.close()
    model.to("cpu")
    if best["model"] is not None:
        # Early stopping after the fact: the epoch with the lowest validation loss, not the
        # last one (with a few hundred videos the last epochs memorise the training set).
        model.load_state_dict(best["model"])
        history[best["epoch"] - 1]["selected"] = True
    strength = PRIOR_STRENGTH[settings.imbalance]
    if strength and hasattr(model, "set_prior"):
        model.set_prior(class_counts(train.labels, samples).tolist(), strength)
    return history


def _weighted_mean(losses: torch.Tensor, sample_weights: torch.Tensor,
                   class_weight: torch.Tensor) -> torch.Tensor:
    """Per-window losses (already times their class weight) times their sample weight,
    divided by the summed weights: the class-weighted mean of ``CrossEntropyLoss`` with
    each window counting ``sample_weight`` times."""
    return (losses * sample_weights).sum() / (sample_weights * class_weight).sum().clamp(
        min=1e-12)


PRIOR_STRENGTH = {"none": 0.0, "weighted-loss": 1.0, "balanced-sampling": 1.0, "both": 2.0}
"""How many times the class prior was divided out in training, so how many times
:meth:`HiddenEmotionClassifier.set_prior` adds it back after training."""


def _param_groups(model: nn.Module, settings: FitSettings) -> list[dict[str, Any]]:
    encoder, rest = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (encoder if name.split(".")[0].endswith("_encoder") else rest).append(parameter)
    return [{"params": rest, "lr": settings.lr},
            {"params": encoder, "lr": settings.lr * settings.encoder_lr_scale}]


def _save_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically, as tensors and plain values only, so that resuming can
    load it with ``torch.load(weights_only=True)`` (NumPy scalars or arrays would be refused)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(_plain(state), tmp)
    os.replace(tmp, path)


def _plain(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays turned into Python numbers and lists;
    tensors and other plain values pass unchanged."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(item) for item in value)
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return value
