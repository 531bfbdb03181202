"""A labelling run over a manifest: each selected video hashed, looked up, and labelled
only when the store has no final outcome for its exact call.

The cache key is the content shown (sha256 of the video's bytes, combined with the
transcript's when there is one: :func:`content_hash`) with the prompt version, the
provider, the model and the sampling, so a rerun, a renamed file or a killed run never
pays for a call twice; a rerun after a kill simply carries on (every finished video was
stored in its own transaction). A video that cannot be read is reported and skipped,
never stored (fix it and rerun), and makes the run's exit code 1; so does an outcome that
failed (retries exhausted: the next run tries it again), unless the same file under
another id was answered later in the run (the store lists that answer under both ids).

A teacher that reads stored features instead of frames (``needs_images`` False: a trained
checkpoint) is keyed by the sha256 of the video id, as it reads features by id, with
sampling ``none``; it needs no video file.

Example:
    >>> summary = run_labelling(rows, labeler, store, Sampling(crop=CropMode.FRAME),
    ...                         core_factory=None, say=print)  # doctest: +SKIP
    >>> summary.line()  # doctest: +SKIP
    'labelled 12, refused 0, failed 0, cached 30, skipped 0 (of 42); tokens ...'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from engines.adapters.perception import PerceptionCore
from training.data.manifest import ManifestRow, load_transcript
from training.features.video import VideoError
from training.pseudo.records import (
    CropMode,
    Labeler,
    LabelInput,
    LabelKey,
    LabelOutcome,
    Sampling,
    Status,
    Usage,
    file_sha256,
    text_sha256,
)
from training.pseudo.sampling import check_sampling, sample_frames
from training.pseudo.store import FINAL, LabelStore

STOP_AFTER_FAILURES = 5
NO_SAMPLING = "none"
"""The key's sampling part for a teacher that reads features, not frames."""
Select = Literal["unlabelled", "all"] | Collection[str]
"""Which manifest rows: those without a label, all of them, or these video ids."""


@dataclass
class LabelRunSummary:
    """What a run did, per video outcome, and what it cost."""

    selected: int = 0
    labelled: int = 0
    refused: int = 0
    failed: int = 0
    cached: int = 0
    skipped: list[str] = field(default_factory=list)
    """``video_id: why`` for each row that could not be processed (not stored)."""
    usage: Usage = field(default_factory=Usage)
    """Tokens and cost of this run's calls, refused and failed ones included (cached
    videos cost nothing)."""
    calls: int = 0
    """Teacher calls made (retries included)."""
    call_seconds: float = 0.0
    """Time inside those calls (the waits between retries are not)."""
    labelled_seconds: float = 0.0
    """Wall time of the videos labelled, calls and retry waits included."""
    seconds: float = 0.0
    """Wall time of the whole run (hashing and sampling included)."""
    no_person_frames: int = 0
    stopped: str | None = None
    """Why the run stopped before the last row (failures in a row), or None."""
    answered_later: list[str] = field(default_factory=list)
    """Video ids whose call failed but whose file (the same content, another id) was
    answered later in the run: they share that answer, so they count as done."""
    _failed: dict[LabelKey, list[str]] = field(default_factory=dict, repr=False)

    @property
    def called(self) -> int:
        return self.labelled + self.refused + self.failed

    @property
    def exit_code(self) -> int:
        """0 when every selected video has a final outcome, 1 when any failed (and was not
        answered under a duplicate id later), was skipped, or the run stopped (a rerun
        retries exactly those)."""
        unanswered = self.failed - len(self.answered_later)
        return 1 if unanswered or self.skipped or self.stopped else 0

    def add(self, outcome: LabelOutcome, key: LabelKey | None = None,
            video_id: str = "") -> None:
        if outcome.status is Status.LABELLED:
            self.labelled += 1
            self.labelled_seconds += outcome.seconds
        elif outcome.status is Status.REFUSED:
            self.refused += 1
        else:
            self.failed += 1
            if key is not None:
                self._failed.setdefault(key, []).append(video_id)
        self.usage = self.usage + outcome.usage
        self.calls += outcome.attempts
        self.call_seconds += outcome.seconds if outcome.call_seconds is None \
            else outcome.call_seconds

    def settle(self, store: LabelStore) -> None:
        """After the last row: failed ids whose call has a final outcome now (a duplicate
        of the file was answered after them) are answered."""
        for key, video_ids in self._failed.items():
            stored = store.get(key)
            if stored is not None and stored.outcome.status in FINAL:
                self.answered_later += video_ids

    def line(self) -> str:
        """The one-line summary the command prints; each timing only where it has
        something to divide."""
        cost = "unknown" if self.usage.cost_usd is None else f"${self.usage.cost_usd:.4f}"
        failed = f"failed {self.failed}"
        if self.answered_later:
            failed += f" ({len(self.answered_later)} answered later under a duplicate id)"
        timings = []
        if self.labelled:
            timings.append(f"{self.labelled_seconds / self.labelled:.1f} s per labelled "
                           "video")
        if self.calls:
            timings.append(f"{self.call_seconds / self.calls:.1f} s per call "
                           f"({self.calls} call{'' if self.calls == 1 else 's'})")
        timings.append(f"{self.seconds:.1f} s in all")
        return (f"labelled {self.labelled}, refused {self.refused}, {failed}, "
                f"cached {self.cached}, skipped {len(self.skipped)} (of {self.selected}); "
                f"tokens {self.usage.input_tokens} in / {self.usage.output_tokens} out; "
                f"cost {cost}; " + ", ".join(timings))


def select_rows(rows: Sequence[ManifestRow], select: Select) -> list[ManifestRow]:
    """The rows ``select`` names; ValueError naming ids that are not in the manifest."""
    if select == "unlabelled":
        return [row for row in rows if row.label is None]
    if select == "all":
        return list(rows)
    if isinstance(select, str):
        raise ValueError(f"select is {select!r}; use 'unlabelled', 'all' or a list of ids")
    wanted = list(dict.fromkeys(select))
    known = {row.video_id for row in rows}
    unknown = [video_id for video_id in wanted if video_id not in known]
    if unknown:
        raise ValueError(f"video id(s) {unknown} are not in the manifest")
    chosen = set(wanted)
    return [row for row in rows if row.video_id in chosen]


def content_hash(video_sha256: str, transcript: str) -> str:
    """What the teacher is shown besides the prompt: the video's bytes, and the transcript
    when there is one (the same video with other words is another question). A video
    without a transcript keys by its own sha256."""
    if not transcript:
        return video_sha256
    return text_sha256(f"{video_sha256}\ntranscript sha256 {text_sha256(transcript)}")


def label_key(content_hash: str, labeler: Labeler, sampling: Sampling) -> LabelKey:
    """The call's identity; a teacher that reads no images has sampling ``none``."""
    return LabelKey(content_hash, labeler.prompt_version, labeler.provider, labeler.model,
                    sampling.key() if labeler.needs_images else NO_SAMPLING)


class _LazyCore:
    """Opens the perception core for the first video that needs one (a fully cached run
    loads no model), and closes it at the end."""

    def __init__(self, factory: Callable[[], PerceptionCore] | None) -> None:
        self.factory = factory
        self.core: PerceptionCore | None = None

    def get(self) -> PerceptionCore:
        if self.core is None:
            if self.factory is None:
                raise ValueError("crop: person needs a perception core factory")
            self.core = self.factory()
        return self.core

    def close(self) -> None:
        if self.core is not None:
            self.core.close()
            self.core = None


def run_labelling(rows: Sequence[ManifestRow], labeler: Labeler, store: LabelStore,
                  sampling: Sampling,
                  core_factory: Callable[[], PerceptionCore] | None = None,
                  select: Select = "unlabelled",
                  say: Callable[[str], object] = print,
                  force: bool = False,
                  stop_after_failures: int | None = STOP_AFTER_FAILURES) -> LabelRunSummary:
    """Label the selected rows into ``store`` (see the module docstring); ``say`` gets one
    line per video. ``force`` labels (and pays) again even where a final outcome is
    stored. After ``stop_after_failures`` failed outcomes in a row the run stops (a dead
    server or a bad key would otherwise cost every video its full retry budget). Raises
    ValueError only for bad settings (before any call)."""
    start = time.monotonic()
    check_sampling(sampling)
    chosen = select_rows(rows, select)
    summary = LabelRunSummary(selected=len(chosen))
    core = _LazyCore(core_factory)
    failures = called_before = failed_before = 0
    try:
        for number, row in enumerate(chosen, 1):
            prefix = f"[{number}/{len(chosen)}] {row.video_id}:"
            try:
                note = _label_row(row, labeler, store, sampling, core, summary, force)
            except _Skip as skip:
                summary.skipped.append(f"{row.video_id}: {skip}")
                say(f"{prefix} skipped: {skip}")
            else:
                say(f"{prefix} {note}")
            if summary.called > called_before:  # a skip or a cached row leaves the count
                failures = failures + 1 if summary.failed > failed_before else 0
            called_before, failed_before = summary.called, summary.failed
            if stop_after_failures is not None and failures >= stop_after_failures:
                summary.stopped = (f"stopped after {failures} failures in a row (the last: "
                                   f"{note}); fix the cause and rerun: finished videos are "
                                   "kept")
                say(summary.stopped)
                break
    finally:
        core.close()
    summary.settle(store)
    summary.seconds = time.monotonic() - start
    return summary


class _Skip(Exception):
    """A row that cannot be processed: reported and skipped, not stored."""


def _label_row(row: ManifestRow, labeler: Labeler, store: LabelStore, sampling: Sampling,
               core: _LazyCore, summary: LabelRunSummary, force: bool) -> str:
    """Process one row into ``summary``; a note on what happened, or :class:`_Skip`."""
    path = Path(row.path)
    try:
        transcript = load_transcript(row) or ""
    except OSError as error:
        raise _Skip(str(error)) from None
    if not labeler.needs_images:  # reads stored features by video id, never the file
        key = label_key(text_sha256(row.video_id), labeler, sampling)
    elif not row.path:
        raise _Skip("no video path in the manifest")
    elif not path.is_file():
        raise _Skip(f"video {path} not found: fix the manifest's path")
    else:
        try:
            key = label_key(content_hash(file_sha256(path), transcript), labeler, sampling)
        except OSError as error:
            raise _Skip(f"video {path} cannot be read ({error})") from None
    stored = store.get(key)
    if stored is not None and stored.outcome.status in FINAL and not force:
        summary.cached += 1
        if stored.video_id != row.video_id:  # the same content under another name
            store.add_alias(key, row.video_id)
            return f"cached as {stored.video_id} ({_describe(stored.outcome)})"
        return f"cached ({_describe(stored.outcome)})"
    images = ()
    if labeler.needs_images:
        try:
            sampled = sample_frames(path, sampling, core.get()
                                    if sampling.crop is CropMode.PERSON else None)
        except VideoError as error:
            raise _Skip(str(error)) from None
        images = sampled.images
        summary.no_person_frames += sampled.no_person
    item = LabelInput(row.video_id, key.content_hash, images, transcript, sampling)
    outcome = labeler.label(item)
    store.put(key, row.video_id, outcome, force=force)
    summary.add(outcome, key, row.video_id)
    return _describe(outcome)


def _describe(outcome: LabelOutcome) -> str:
    if outcome.status is Status.LABELLED and outcome.verdict is not None:
        return (f"{outcome.verdict.label} ({outcome.verdict.confidence:.2f}), "
                f"{outcome.attempts} call(s), {outcome.seconds:.1f} s")
    return f"{outcome.status}: {outcome.error}"
