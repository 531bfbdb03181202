"""Which teacher labels join stage-2 training, and as what (``hidemo train --pseudo-labels``).

The label store holds whatever teachers said about whatever videos; training takes, from
its *labelled* outcomes (refusals and failures are no labels), those that name a video of
the feature store, under optional provider / model / prompt-version / sampling filters.
One video must have one answer: two labelled outcomes for the same video (two teachers,
two prompts) are refused until a filter picks one, rather than silently preferring either.

Rules, in order:

1. **Gold wins.** A training video with a gold label keeps it; the teacher's is ignored
   (counted as ``gold_kept``).
2. **The mode.** ``inductive`` admits only training-split videos (the unlabelled pool):
   nothing the model is evaluated on is ever trained on, labels or not. ``transductive``
   also admits val and test videos, *with the teacher's label*: the model sees the
   evaluation videos' features in training (never their gold labels; evaluation still
   scores against gold). Since the paper does not say which it did, the mode is stated in
   ``metrics.json`` and every summary. In transductive mode the validation videos used to
   pick the best epoch are in training too, so that pick is optimistic.
3. **The threshold.** A verdict joins when its confidence is at least ``threshold``
   (0: all join).

A joining video trains with every window weighted ``weight`` (relative to a gold window's
1). With ``reasoning_text`` its text embedding in training is the teacher's reasoning,
embedded by the profile's text engine (as the paper feeds the reasoning to BERT), instead
of its transcript's. **At test time the text is always the transcript**: the served
classifier has no teacher, and reasoning at evaluation would hand the teacher's label to
the model through the text. Gold videos keep their transcripts in training too.

Example:
    >>> config = PseudoLabelConfig(store=Path("labels.sqlite"), threshold=0.7)
    >>> selection = select(rows, [VideoRef.of(v) for v in videos], config)  # doctest: +SKIP
    >>> selection.summary.used  # doctest: +SKIP
    212
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, computed_field

from engines.record import Record
from training.features.store import VideoFeatures
from training.pseudo.records import LabelKey, Status, StoredLabel

SPLITS = ("train", "val", "test")
EVALUATION_SPLITS = ("val", "test")
TEST_TIME_TEXT = "transcript"
"""What the text modality carries at evaluation, whatever ``reasoning_text`` says."""


class PseudoLabelConfig(BaseModel):
    """How stage 2 uses a label store. Part of the run's identity (resuming with other
    settings is refused)."""

    model_config = ConfigDict(extra="forbid")

    store: Path
    """The SQLite label store (``hidemo label --out``)."""
    threshold: float = Field(0.0, ge=0.0, le=1.0)
    """Minimum teacher confidence for a label to join (0: off)."""
    weight: float = Field(1.0, gt=0.0)
    """Sample weight of a pseudo-labelled window relative to a gold one."""
    reasoning_text: bool = False
    """Train pseudo-labelled videos on the embedded reasoning instead of the transcript."""
    mode: Literal["inductive", "transductive"] = "inductive"
    provider: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    sampling: str | None = None
    """Filters: only outcomes whose key matches every given field."""

    def accepts(self, key: LabelKey) -> bool:
        return all(wanted is None or wanted == actual for wanted, actual in (
            (self.provider, key.provider), (self.model, key.model),
            (self.prompt_version, key.prompt_version), (self.sampling, key.sampling)))

    def filters(self) -> dict[str, str]:
        return {name: value for name in ("provider", "model", "prompt_version", "sampling")
                if (value := getattr(self, name)) is not None}


class AmbiguousLabels(ValueError):
    """Several labelled outcomes for one video under the filters."""


@dataclass(frozen=True)
class VideoRef:
    """What selection needs of a feature-store video."""

    video_id: str
    split: str
    label: int | None
    """The gold label training may use (None: unlabelled)."""
    hidden_label: int | None = None
    """A label training never sees but a simulation knows (the synthetic pool's
    ``meta["hidden_label"]``): only for measuring the teacher."""

    @classmethod
    def of(cls, video: VideoFeatures) -> VideoRef:
        hidden = video.meta.get("hidden_label")
        return cls(video.video_id, video.split, video.label,
                   None if hidden is None else int(hidden))

    @property
    def known_label(self) -> int | None:
        """The true label as far as anyone knows: gold, else the hidden one."""
        return self.label if self.label is not None else self.hidden_label


@dataclass(frozen=True)
class PseudoVideo:
    """A video that joins training with the teacher's label."""

    video_id: str
    split: str
    label: int
    confidence: float
    reasoning: str


class Agreement(Record):
    """How often the teacher's label equals the known true label."""

    videos: int
    """Videos whose true label is known (gold, or hidden gold in a simulation)."""
    agree: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def accuracy(self) -> float | None:
        return self.agree / self.videos if self.videos else None


class SelectionSummary(Record):
    """What happened to every outcome in the store (the ``metrics.json`` counts)."""

    stored: int
    """Outcomes under the filters, any status."""
    not_labelled: int
    """Refused or failed: no label."""
    unknown_video: int
    """Labelled, but for a video not in the feature store."""
    offered: int
    """Labelled outcomes for feature-store videos (one per video)."""
    gold_kept: int
    """Training videos with a gold label: the teacher's label is ignored."""
    evaluation_excluded: int
    """Val/test videos left out because the mode is inductive."""
    below_threshold: int
    used: int
    offered_per_split: dict[str, int]
    used_per_split: dict[str, int]
    agreement_offered: Agreement
    agreement_used: Agreement
    used_label_counts: tuple[int, int]
    """Used videos per teacher label (negative, positive)."""


@dataclass(frozen=True)
class Selection:
    videos: tuple[PseudoVideo, ...]
    summary: SelectionSummary


def select(rows: Iterable[StoredLabel], videos: Sequence[VideoRef],
           config: PseudoLabelConfig) -> Selection:
    """Apply the rules of this module to the store's ``rows`` (pure: no I/O)."""
    by_id = {video.video_id: video for video in videos}
    stored = not_labelled = unknown = 0
    answers: dict[str, list[StoredLabel]] = {}
    for row in rows:
        if not config.accepts(row.key):
            continue
        stored += 1
        if row.outcome.status != Status.LABELLED or row.outcome.verdict is None:
            not_labelled += 1
        elif row.video_id not in by_id:
            unknown += 1
        else:
            answers.setdefault(row.video_id, []).append(row)
    _refuse_ambiguous(answers, config)

    count = {"gold": 0, "evaluation": 0, "threshold": 0}
    offered_split = dict.fromkeys(SPLITS, 0)
    used: list[PseudoVideo] = []
    offered_truth: list[tuple[int, int | None]] = []
    used_truth: list[tuple[int, int | None]] = []
    for video_id in sorted(answers):
        video, verdict = by_id[video_id], answers[video_id][0].outcome.verdict
        assert verdict is not None  # labelled outcomes carry one (checked above)
        offered_split[video.split] = offered_split.get(video.split, 0) + 1
        offered_truth.append((verdict.class_id, video.known_label))
        if video.split == "train" and video.label is not None:
            count["gold"] += 1
            continue
        if video.split != "train" and (config.mode == "inductive"
                                       or video.split not in EVALUATION_SPLITS):
            count["evaluation"] += 1
            continue
        if verdict.confidence < config.threshold:
            count["threshold"] += 1
            continue
        used.append(PseudoVideo(video_id, video.split, verdict.class_id, verdict.confidence,
                                verdict.reasoning))
        used_truth.append((verdict.class_id, video.known_label))
    used_split = dict.fromkeys(SPLITS, 0)
    for item in used:
        used_split[item.split] += 1
    summary = SelectionSummary(
        stored=stored, not_labelled=not_labelled, unknown_video=unknown,
        offered=len(answers), gold_kept=count["gold"],
        evaluation_excluded=count["evaluation"], below_threshold=count["threshold"],
        used=len(used), offered_per_split=offered_split, used_per_split=used_split,
        agreement_offered=_agreement(offered_truth), agreement_used=_agreement(used_truth),
        used_label_counts=(sum(v.label == 0 for v in used), sum(v.label == 1 for v in used)))
    return Selection(tuple(used), summary)


def _refuse_ambiguous(answers: dict[str, list[StoredLabel]], config: PseudoLabelConfig) -> None:
    ambiguous = {video_id: rows for video_id, rows in answers.items() if len(rows) > 1}
    if not ambiguous:
        return
    keys = sorted({(r.key.provider, r.key.model, r.key.prompt_version, r.key.sampling)
                   for rows in ambiguous.values() for r in rows})
    example = next(iter(sorted(ambiguous)))
    shown = ", ".join(f"provider={p} model={m} prompt_version={v} sampling={s}"
                      for p, m, v, s in keys[:6])
    raise AmbiguousLabels(
        f"label store {config.store}: {len(ambiguous)} videos (e.g. {example}) have several "
        f"labelled outcomes under the filters {config.filters() or '(none)'}; their keys: "
        f"{shown}. Pick one with --pseudo-provider / --pseudo-model / "
        "--pseudo-prompt-version (or pseudo_labels.sampling in the config)")


def _agreement(pairs: Sequence[tuple[int, int | None]]) -> Agreement:
    known = [(said, truth) for said, truth in pairs if truth is not None]
    return Agreement(videos=len(known), agree=sum(said == truth for said, truth in known))


def read_store(config: PseudoLabelConfig) -> list[StoredLabel]:
    """Every outcome of ``config.store`` under its provider / model / prompt filters.

    The one place training touches the label store; a missing file is an error (opening
    it would create an empty store and train as if no teacher had spoken).
    """
    from training.pseudo.store import LabelStore

    if not Path(config.store).is_file():
        raise FileNotFoundError(f"label store {config.store} does not exist; make one with "
                                "`hidemo label` (or pass the right --pseudo-labels path)")
    with LabelStore.open(config.store) as store:
        return store.labels(provider=config.provider, model=config.model,
                            prompt_version=config.prompt_version)


TextEmbedFn = Callable[[Sequence[str]], np.ndarray]


def pseudo_videos(videos: Sequence[VideoFeatures], selection: Selection,
                  embed_texts: TextEmbedFn | None = None) -> list[VideoFeatures]:
    """Copies of the selected videos carrying the teacher's label (the originals, which
    evaluation uses, are untouched); with ``embed_texts``, the reasoning as their text."""
    by_id = {video.video_id: video for video in videos}
    chosen = [by_id[item.video_id] for item in selection.videos]
    texts: list[np.ndarray | None] = [video.text for video in chosen]
    if embed_texts is not None and chosen:
        vectors = np.asarray(embed_texts([item.reasoning for item in selection.videos]),
                             np.float32)
        if len(vectors) != len(chosen):
            raise ValueError(f"embed_texts returned {len(vectors)} vectors for "
                             f"{len(chosen)} texts")
        texts = list(vectors)
    out = []
    for item, video, text in zip(selection.videos, chosen, texts, strict=True):
        out.append(dataclasses.replace(
            video, label=item.label, text=text,
            transcript=item.reasoning if embed_texts is not None else video.transcript,
            meta={**video.meta, "pseudo_label": {"label": item.label,
                                                 "confidence": item.confidence}}))
    return out


def describe(config: PseudoLabelConfig, summary: SelectionSummary,
             windows_added: int) -> dict[str, Any]:
    """The ``metrics.json`` section: the settings, the counts and the teacher's agreement."""
    return {"store": str(config.store), "mode": config.mode, "threshold": config.threshold,
            "weight": config.weight, "reasoning_text": config.reasoning_text,
            "test_time_text": TEST_TIME_TEXT, "filters": config.filters(),
            "windows_added": windows_added, **summary.model_dump(mode="json")}


def mode_line(section: dict[str, Any] | None) -> str:
    """One line for summaries: which pseudo-labels stage 2 trained on, if any."""
    if not section:
        return "pseudo-labels: none (gold labels only)"
    agreement = section["agreement_used"]["accuracy"]
    return (f"pseudo-labels: {section['mode']} (evaluation videos "
            f"{'in' if section['mode'] == 'transductive' else 'never in'} training), "
            f"threshold {section['threshold']:g}, weight {section['weight']:g}, reasoning "
            f"text {'on' if section['reasoning_text'] else 'off'}; {section['used']} of "
            f"{section['offered']} offered videos used"
            + (f", teacher agreement {agreement:.3f}" if agreement is not None else ""))
