"""How good and how costly a set of pseudo-labels is, before training on them.

A teacher's labels are only worth merging into training when they agree with the gold
labels where those exist and when its confidence means what it says; this report puts
both next to what the labelling cost. It reads stored rows (:class:`StoredLabel`), so it
never calls a teacher: ``build_report`` takes any iterable of rows (a test builds them by
hand), ``report_from_store`` reads them from the label store.

Every row (one video id's outcome) counts once in the counts, agreement and calibration,
so a video labelled by two models counts twice: pick one provider/model/prompt version
(the filters of :func:`report_from_store`) to compare teachers. Spend and timings count
each stored answer once: a file listed under two ids was paid for once, and its answer is
listed under both ids but billed to the first (the per-video list names the id it
shares). Agreement and calibration use the labelled rows whose video has a gold label;
a confidence falls in bin ``floor(10 * confidence)`` (1.0 in the last bin), and the
expected calibration error (ECE) is the count-weighted mean gap between a bin's accuracy
and its mean confidence.

Example:
    >>> report = build_report(rows, {"v1": 1, "v2": None})  # doctest: +SKIP
    >>> print(report.to_text())  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import Field

from engines.record import Record
from training.data.manifest import ManifestRow
from training.pseudo.records import LABEL_NAMES, LabelKey, Status, StoredLabel, Verdict

BINS = 10


class StatusCounts(Record):
    rows: int
    labelled: int
    refused: int
    failed: int


class Spend(Record):
    """What the stored answers cost, each once (a file listed under several ids was paid
    once); refused and failed calls are paid for too."""

    answers: int
    """Distinct stored answers (calls' outcomes) behind the rows."""
    calls: int
    """Teacher calls those answers took, retries included."""
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    """None when no answer has a known cost (a local server, a checkpoint teacher)."""
    cost_per_labelled_usd: float | None
    """The cost divided by the labelled rows (video ids)."""
    seconds_per_call: float | None
    """Mean time inside one call (retry waits excluded), over the answers that measured
    it; None when none did (rows stored by an older hidemo) or without calls."""
    seconds_per_labelled_video: float | None
    """Mean wall time of a labelled answer (its calls and the waits between retries);
    None when nothing is labelled."""


class VideoLine(Record):
    """One video id's row of the per-video list. The spend columns are None on a row that
    shares an answer stored under another id (``same_file_as``), so each column adds up
    to the report's totals."""

    video_id: str
    status: str
    label: str | None
    confidence: float | None
    provisional: str | None
    """The label before reflection (None for a one-call teacher or no answer)."""
    gold: str | None
    agrees: bool | None
    """Label equals gold (None without a label or a gold label)."""
    same_file_as: str | None
    calls: int | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    seconds: float | None
    error: str | None


class ClassAgreement(Record):
    name: str
    support: int
    """Labelled rows whose gold label is this class."""
    predicted: int
    """Labelled rows (with gold) the teacher put in this class."""
    recall: float | None
    """None without support."""
    precision: float | None
    """None when the teacher never chose the class."""


class Agreement(Record):
    """The teacher's labels against the gold labels, on labelled rows that have one."""

    rows: int
    accuracy: float
    balanced_accuracy: float
    """Mean recall over the classes present in the gold labels."""
    per_class: tuple[ClassAgreement, ...]
    confusion: tuple[tuple[int, ...], ...]
    """``confusion[gold][label]`` counts, classes in :data:`LABEL_NAMES` order."""


class ConfidenceBin(Record):
    low: float
    high: float
    count: int
    """Labelled rows whose confidence falls in the bin."""
    right: int
    wrong: int
    """Of those with a gold label, how many agree / disagree with it."""
    no_gold: int
    mean_confidence: float | None
    """Mean confidence of the rows with a gold label (None: none)."""
    accuracy: float | None


class Reflection(Record):
    """How often reflection (the second call) changed the provisional label."""

    with_provisional: int
    """Labelled rows that have a provisional verdict (0 for a one-call teacher)."""
    changed: int
    changed_to_right: int
    changed_to_wrong: int
    changed_no_gold: int
    provisional_accuracy: float | None
    """Accuracy of the provisional labels on rows with both a provisional and a gold label,
    next to :attr:`final_accuracy` on the same rows (None without such rows)."""
    final_accuracy: float | None


class LabelReport(Record):
    counts: StatusCounts
    spend: Spend
    gold_videos: int
    """Videos with a gold label in the mapping given (whether labelled or not)."""
    agreement: Agreement | None
    """None when no labelled row has a gold label."""
    bins: tuple[ConfidenceBin, ...]
    """:data:`BINS` confidence bins over [0, 1] of the labelled rows."""
    ece: float | None
    """Expected calibration error over the rows with gold (None without)."""
    reflection: Reflection
    selection: dict[str, str] = Field(default_factory=dict)
    """The filters the rows were chosen by (provider, model, prompt_version)."""
    videos: tuple[VideoLine, ...] = ()
    """One line per row, in store order."""

    def to_text(self, per_video: bool = False) -> str:
        """A compact console table; ``per_video`` appends the per-video list."""
        lines = _text_lines(self)
        if per_video:
            lines += _video_lines(self.videos)
        return "\n".join(lines)


def build_report(labels: Iterable[StoredLabel], gold: Mapping[str, int | None],
                 selection: Mapping[str, str] | None = None) -> LabelReport:
    """Summarise stored rows; ``gold`` maps video id to its true class (None: unknown)."""
    bad = {video: value for video, value in gold.items() if value not in (None, 0, 1)}
    if bad:
        raise ValueError(f"gold labels must be 0 (negative), 1 (positive) or None; got "
                         f"{dict(list(bad.items())[:5])}")
    rows = list(labels)
    labelled = [Judged(r.video_id, r.outcome.verdict, r.outcome.provisional,
                       gold.get(r.video_id))
                for r in rows
                if r.outcome.status == Status.LABELLED and r.outcome.verdict is not None]
    counts = StatusCounts(
        rows=len(rows), labelled=len(labelled),
        refused=sum(r.outcome.status == Status.REFUSED for r in rows),
        failed=sum(r.outcome.status == Status.FAILED for r in rows))
    scored = [j for j in labelled if j.gold is not None]
    bins = _bins(labelled)
    owners = _owners(rows)
    return LabelReport(
        counts=counts, spend=_spend(list(owners.values()), len(labelled)),
        gold_videos=sum(v is not None for v in gold.values()),
        agreement=_agreement(scored) if scored else None, bins=bins,
        ece=_ece(bins) if scored else None, reflection=_reflection(labelled),
        selection=dict(selection or {}),
        videos=tuple(_video_line(row, owners[row.key], gold.get(row.video_id))
                     for row in rows))


def _owners(rows: Sequence[StoredLabel]) -> dict[LabelKey, StoredLabel]:
    """Each stored answer once: the first row of each key (the store lists an answer's own
    id before the ids that share it)."""
    owners: dict[LabelKey, StoredLabel] = {}
    for row in rows:
        owners.setdefault(row.key, row)
    return owners


def _video_line(row: StoredLabel, owner: StoredLabel, gold: int | None) -> VideoLine:
    outcome = row.outcome
    verdict, provisional = outcome.verdict, outcome.provisional
    shared = owner is not row
    return VideoLine(
        video_id=row.video_id, status=str(outcome.status),
        label=verdict.label if verdict else None,
        confidence=verdict.confidence if verdict else None,
        provisional=provisional.label if provisional else None,
        gold=None if gold is None else LABEL_NAMES[gold],
        agrees=None if verdict is None or gold is None else verdict.class_id == gold,
        same_file_as=owner.video_id if shared else None,
        calls=None if shared else outcome.attempts,
        input_tokens=None if shared else outcome.usage.input_tokens,
        output_tokens=None if shared else outcome.usage.output_tokens,
        cost_usd=None if shared else outcome.usage.cost_usd,
        seconds=None if shared else outcome.seconds, error=outcome.error)


@dataclass(frozen=True)
class Judged:
    """One labelled row, ready to score."""

    video_id: str
    verdict: Verdict
    provisional: Verdict | None
    gold: int | None

    @property
    def label(self) -> int:
        return self.verdict.class_id

    @property
    def right(self) -> bool | None:
        return None if self.gold is None else self.label == self.gold


class LabelSource(Protocol):
    """The part of ``training.pseudo.store.LabelStore`` a report reads."""

    def labels(self, provider: str | None = None, model: str | None = None,
               prompt_version: str | None = None,
               status: Status | str | None = None) -> list[StoredLabel]:
        ...


def report_from_store(store: LabelSource, manifest_rows: Iterable[ManifestRow],
                      provider: str | None = None, model: str | None = None,
                      prompt_version: str | None = None) -> LabelReport:
    """The report of one teacher's rows in a label store, scored against the manifest's
    labels (rows whose video is not in the manifest count, but have no gold)."""
    selection = {k: v for k, v in (("provider", provider), ("model", model),
                                   ("prompt_version", prompt_version)) if v is not None}
    gold = {row.video_id: row.label for row in manifest_rows}
    return build_report(store.labels(provider=provider, model=model,
                                     prompt_version=prompt_version), gold, selection)


def _spend(answers: Sequence[StoredLabel], labelled: int) -> Spend:
    """Totals over distinct stored answers; ``labelled`` counts rows (video ids)."""
    outcomes = [a.outcome for a in answers]
    costs = [o.usage.cost_usd for o in outcomes if o.usage.cost_usd is not None]
    total = float(sum(costs)) if costs else None
    timed = [o for o in outcomes if o.call_seconds is not None]
    timed_calls = sum(o.attempts for o in timed)
    done = [o.seconds for o in outcomes if o.status is Status.LABELLED]
    return Spend(
        answers=len(outcomes), calls=sum(o.attempts for o in outcomes),
        input_tokens=sum(o.usage.input_tokens for o in outcomes),
        output_tokens=sum(o.usage.output_tokens for o in outcomes),
        cost_usd=total,
        cost_per_labelled_usd=total / labelled if total is not None and labelled else None,
        seconds_per_call=(sum(o.call_seconds or 0.0 for o in timed) / timed_calls
                          if timed_calls else None),
        seconds_per_labelled_video=sum(done) / len(done) if done else None)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _agreement(scored: Sequence[Judged]) -> Agreement:
    size = len(LABEL_NAMES)
    confusion = [[0] * size for _ in range(size)]
    for item in scored:
        assert item.gold is not None  # scored rows have gold
        confusion[item.gold][item.label] += 1
    per_class = []
    for cls, name in enumerate(LABEL_NAMES):
        support = sum(confusion[cls])
        predicted = sum(confusion[g][cls] for g in range(size))
        per_class.append(ClassAgreement(name=name, support=support, predicted=predicted,
                                        recall=_ratio(confusion[cls][cls], support),
                                        precision=_ratio(confusion[cls][cls], predicted)))
    recalls = [c.recall for c in per_class if c.recall is not None]
    right = sum(confusion[c][c] for c in range(size))
    return Agreement(rows=len(scored), accuracy=right / len(scored),
                     balanced_accuracy=sum(recalls) / len(recalls),
                     per_class=tuple(per_class),
                     confusion=tuple(tuple(line) for line in confusion))


def confidence_bin(confidence: float) -> int:
    """The bin of ``confidence``: ``floor(10 c)``, with 1.0 in the last bin."""
    return min(BINS - 1, max(0, math.floor(confidence * BINS)))


def _bins(labelled: Sequence[Judged]) -> tuple[ConfidenceBin, ...]:
    members: list[list[Judged]] = [[] for _ in range(BINS)]
    for item in labelled:
        members[confidence_bin(item.verdict.confidence)].append(item)
    out = []
    for index, items in enumerate(members):
        judged = [j for j in items if j.right is not None]
        right = sum(bool(j.right) for j in judged)
        out.append(ConfidenceBin(
            low=index / BINS, high=(index + 1) / BINS, count=len(items), right=right,
            wrong=len(judged) - right, no_gold=len(items) - len(judged),
            mean_confidence=(sum(j.verdict.confidence for j in judged) / len(judged)
                             if judged else None),
            accuracy=right / len(judged) if judged else None))
    return tuple(out)


def _ece(bins: Sequence[ConfidenceBin]) -> float:
    judged = sum(b.right + b.wrong for b in bins)
    gap = sum((b.right + b.wrong) * abs(b.accuracy - b.mean_confidence) for b in bins
              if b.accuracy is not None and b.mean_confidence is not None)
    return gap / judged


def _reflection(labelled: Sequence[Judged]) -> Reflection:
    with_provisional = [j for j in labelled if j.provisional is not None]
    changed = right = wrong = unknown = 0
    provisional_right = final_right = both = 0
    for item in with_provisional:
        assert item.provisional is not None
        before = item.provisional.class_id
        if item.gold is not None:
            both += 1
            provisional_right += before == item.gold
            final_right += item.label == item.gold
        if before == item.label:
            continue
        changed += 1
        if item.gold is None:
            unknown += 1
        elif item.label == item.gold:
            right += 1
        else:
            wrong += 1
    return Reflection(with_provisional=len(with_provisional), changed=changed,
                      changed_to_right=right, changed_to_wrong=wrong, changed_no_gold=unknown,
                      provisional_accuracy=_ratio(provisional_right, both),
                      final_accuracy=_ratio(final_right, both))


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.4f}"


def _text_lines(report: LabelReport) -> list[str]:
    counts, spend = report.counts, report.spend
    scope = ", ".join(f"{k} {v}" for k, v in report.selection.items()) or "all rows"
    lines = [f"pseudo-labels ({scope})",
             f"  videos {counts.rows}: labelled {counts.labelled}, refused {counts.refused}, "
             f"failed {counts.failed}"]
    if not counts.rows:
        lines.append("  no stored labels match: nothing to report (run `hidemo label` first, "
                     "or check the provider/model/prompt filters)")
        return lines
    shared = counts.rows - spend.answers
    note = f" ({shared} more video ids share one: the same file under another id)" \
        if shared else ""
    lines.append(f"  spend over {spend.answers} stored answers{note}: {spend.calls} calls; "
                 f"tokens {spend.input_tokens:,} in, {spend.output_tokens:,} out; cost "
                 f"{_money(spend.cost_usd)} ({_money(spend.cost_per_labelled_usd)} per "
                 "labelled video)")
    timings = []
    if spend.seconds_per_labelled_video is not None:
        timings.append(f"{spend.seconds_per_labelled_video:.2f} s per labelled video (its "
                       "calls and retry waits)")
    if spend.seconds_per_call is not None:
        timings.append(f"{spend.seconds_per_call:.2f} s per call")
    if timings:
        lines.append("  time: " + ", ".join(timings))
    if not counts.labelled:
        lines.append("  no labelled rows: agreement, confidence and calibration need at least "
                     "one label")
        return lines
    lines += _agreement_lines(report)
    lines += _bin_lines(report)
    lines += _reflection_lines(report.reflection)
    return lines


def _agreement_lines(report: LabelReport) -> list[str]:
    agreement = report.agreement
    if agreement is None:
        return [f"  agreement: none of the {report.counts.labelled} labelled videos has a "
                f"gold label ({report.gold_videos} gold labels given): fill the manifest's "
                "label column for some of them to measure it"]
    lines = [f"  agreement with gold on {agreement.rows} labelled videos "
             f"({report.gold_videos} gold labels given): accuracy {agreement.accuracy:.3f}, "
             f"balanced accuracy {agreement.balanced_accuracy:.3f}",
             f"    {'gold class':<10} {'support':>7} {'recall':>7} {'precision':>9}   "
             f"labelled as: " + " ".join(f"{n:>8}" for n in LABEL_NAMES)]
    for cls in agreement.per_class:
        line = agreement.confusion[LABEL_NAMES.index(cls.name)]
        lines.append(f"    {cls.name:<10} {cls.support:>7} {_num(cls.recall):>7} "
                     f"{_num(cls.precision):>9}   {'':12} "
                     + " ".join(f"{n:>8}" for n in line))
    return lines


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _bin_lines(report: LabelReport) -> list[str]:
    lines = ["  confidence of the labels (right / wrong against gold where there is one):",
             f"    {'confidence':<10} {'labels':>6} {'right':>6} {'wrong':>6} "
             f"{'no gold':>7} {'mean conf':>9} {'accuracy':>8}"]
    for b in report.bins:
        if not b.count:
            continue
        lines.append(f"    {b.low:.1f}-{b.high:.1f}    {b.count:>6} {b.right:>6} "
                     f"{b.wrong:>6} {b.no_gold:>7} {_num(b.mean_confidence):>9} "
                     f"{_num(b.accuracy):>8}")
    if report.ece is None:
        lines.append("  calibration: needs gold labels")
    else:
        lines.append(f"  expected calibration error (ECE) {report.ece:.3f}")
    return lines


def _reflection_lines(reflection: Reflection) -> list[str]:
    if not reflection.with_provisional:
        return ["  reflection: no provisional labels (a one-call teacher)"]
    line = (f"  reflection changed {reflection.changed} of {reflection.with_provisional} "
            f"provisional labels: {reflection.changed_to_right} to right, "
            f"{reflection.changed_to_wrong} to wrong, {reflection.changed_no_gold} without gold")
    if reflection.provisional_accuracy is not None and reflection.final_accuracy is not None:
        line += (f"; accuracy {reflection.provisional_accuracy:.3f} before, "
                 f"{reflection.final_accuracy:.3f} after")
    return [line]


VIDEO_HEADER = ("video", "status", "label", "conf", "before", "gold", "calls", "tokens in",
                "tokens out", "cost", "s", "note")


def _video_lines(videos: Sequence[VideoLine]) -> list[str]:
    """The per-video list as aligned text; the note is the error (cut to 60 characters) or
    the id whose answer a duplicate file shares."""
    def cell(value: object, digits: int = 2) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value)

    table = [VIDEO_HEADER]
    for v in videos:
        note = f"same file as {v.same_file_as}" if v.same_file_as else (v.error or "")
        if len(note) > 60:
            note = note[:57] + "..."
        table.append((v.video_id, v.status, cell(v.label), cell(v.confidence),
                      cell(v.provisional), cell(v.gold), cell(v.calls), cell(v.input_tokens),
                      cell(v.output_tokens), cell(v.cost_usd, 4), cell(v.seconds, 1), note))
    widths = [max(len(line[i]) for line in table) for i in range(len(VIDEO_HEADER) - 1)]
    lines = [f"  per video ({len(videos)}):"]
    for line in table:
        lines.append("    " + " ".join(text.ljust(width) if i < 2 else text.rjust(width)
                                       for i, (text, width) in enumerate(zip(line, widths,
                                                                             strict=False)))
                     + "  " + line[-1])
    return [line.rstrip() for line in lines]


def write_per_video_csv(report: LabelReport, path: Path) -> Path:
    """Write the per-video list as CSV: one row per video id, every :class:`VideoLine`
    field as a column (empty for None), errors whole. Written to a temporary file and
    renamed, so the file is whole or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(VideoLine.model_fields)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for video in report.videos:
            writer.writerow(["" if getattr(video, name) is None else getattr(video, name)
                             for name in names])
    partial.replace(path)
    return path


def write_reliability_plot(report: LabelReport, path: Path) -> Path:
    """Write a PNG: the reliability diagram (accuracy per confidence bin against the
    diagonal of perfect calibration) over the confidence histogram (right / wrong / no
    gold, stacked). Panels without data say why instead of drawing empty axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.6, 6.0), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.4]})
    width = 1.0 / BINS
    centers = [(b.low + b.high) / 2 for b in report.bins]
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    if report.ece is not None:
        judged = [(c, b) for c, b in zip(centers, report.bins, strict=True)
                  if b.accuracy is not None]
        top.bar([c for c, _ in judged], [b.accuracy for _, b in judged], width=width * 0.9,
                edgecolor="black", alpha=0.7, label="accuracy")
        top.plot([b.mean_confidence for _, b in judged], [b.accuracy for _, b in judged],
                 marker="o", linestyle="", color="black", label="bin mean confidence")
        top.set_title(f"reliability (ECE {report.ece:.3f}, {report.agreement.rows} with gold)"
                      if report.agreement else "reliability")
    else:
        reason = "no labelled rows" if not report.counts.labelled else "no gold labels"
        top.text(0.5, 0.5, f"{reason}: nothing to calibrate", ha="center", va="center")
        top.set_title("reliability")
    top.set_ylabel("accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(fontsize=7, loc="upper left")
    if report.counts.labelled:
        layers = (("right", [b.right for b in report.bins]),
                  ("wrong", [b.wrong for b in report.bins]),
                  ("no gold", [b.no_gold for b in report.bins]))
        base = [0] * len(report.bins)
        for name, heights in layers:
            if any(heights):
                bottom.bar(centers, heights, width=width * 0.9, bottom=base, label=name)
                base = [a + b for a, b in zip(base, heights, strict=True)]
        bottom.legend(fontsize=7, loc="upper left")
    else:
        bottom.text(0.5, 0.5, "no labelled rows", ha="center", va="center",
                    transform=bottom.transAxes)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("labels")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
