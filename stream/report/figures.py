"""The report's pictures, drawn with matplotlib (no display: :class:`Figure` on Agg) as PNG.

:func:`timeline_png`: for one stream, one row per person (p(positive) of each window at the
window's end, on the source's own clock; the marker's shape says which modalities the
window had, the dotted line is 0.5) and, under them on the same axis, the transcript: each
line a bar over the span it was said. :func:`latency_png`: each stage's latency over every
frame that reached the classifier (box: quartiles; whiskers: 5th to 95th percentile).

Example:
    >>> png = latency_png({"detect": [12.0, 15.0], "total": [40.0, 52.0]})
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from stream.prediction import Prediction
from stream.report.outputs import TranscriptLine

MODALITY_MARKERS: dict[frozenset[str], tuple[str, str]] = {
    frozenset({"image", "keypoints", "text"}): ("*", "image + keypoints + text"),
    frozenset({"image", "keypoints"}): ("o", "image + keypoints"),
    frozenset({"keypoints", "text"}): ("D", "keypoints + text"),
    frozenset({"image", "text"}): ("s", "image + text"),
    frozenset({"keypoints"}): ("v", "keypoints"),
    frozenset({"image"}): ("^", "image"),
    frozenset({"text"}): ("X", "text"),
    frozenset(): (".", "none"),
}
"""Marker and legend text of each set of modalities a window can have."""
COLOURS = ("#4caf50", "#2196f3", "#f44336", "#ffc107", "#9c27b0", "#009688", "#ff5722",
           "#00bcd4", "#607d8b", "#e91e63")
"""One colour per person (by track id, modulo its length), as the recorded video's."""
DPI = 100
WIDTH_IN = 11.0
ROW_IN = 0.85
TRANSCRIPT_LANES = 3
LINE_CHARS = 70


def colour(person: int) -> str:
    return COLOURS[person % len(COLOURS)]


def png(figure: Figure) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def timeline_png(stream: str, persons: Sequence[tuple[int, Sequence[Prediction]]],
                 lines: Sequence[TranscriptLine], span: tuple[float, float],
                 title: str | None = None) -> bytes:
    """One stream's persons (each with its predictions in window order) and transcript
    over ``span`` (seconds on the source's clock)."""
    rows = len(persons) + (1 if lines else 0)
    heights = [1.0] * len(persons) + ([1.2] if lines else [])
    figure = Figure(figsize=(WIDTH_IN, ROW_IN * sum(heights) + 1.3), layout="constrained")
    axes = figure.subplots(max(1, rows), 1, sharex=True, squeeze=False,
                           height_ratios=heights or [1.0])[:, 0]
    seen: set[frozenset[str]] = set()
    for ax, (person, records) in zip(axes, persons, strict=False):
        times = [r.window.end for r in records]
        values = [r.probs.get("positive", 0.0) for r in records]
        ax.plot(times, values, color=colour(person), linewidth=1.2, zorder=2)
        groups: dict[frozenset[str], tuple[list[float], list[float]]] = {}
        for record, t, v in zip(records, times, values, strict=True):
            key = frozenset(record.modalities)
            groups.setdefault(key, ([], []))
            groups[key][0].append(t)
            groups[key][1].append(v)
        for key, (xs, ys) in groups.items():
            marker = MODALITY_MARKERS.get(key, ("o", ""))[0]
            ax.scatter(xs, ys, marker=marker, s=28, color=colour(person), edgecolors="#222",
                       linewidths=0.5, zorder=3)
            seen.add(key)
        ax.axhline(0.5, color="#999", linestyle=":", linewidth=0.8, zorder=1)
        ax.set_ylim(-0.05, 1.05)
        ax.set_yticks([0.0, 0.5, 1.0])
        ax.tick_params(labelsize=7)
        ax.set_ylabel(f"#{person}", rotation=0, ha="right", va="center", fontsize=9)
        ax.grid(axis="x", color="#eee")
    if lines:
        _transcript(axes[-1], lines)
    if not persons and not lines:
        axes[0].text(0.5, 0.5, "no predictions", ha="center", va="center",
                     transform=axes[0].transAxes)
    start, end = span
    end = max(end, start + 1.0)
    pad = 0.02 * (end - start)  # the first and last points whole, not cut by the frame
    axes[-1].set_xlim(start - pad, end + pad)
    axes[-1].set_xlabel("seconds into the source (each point: the end of its window)",
                        fontsize=8)
    handles = [Line2D([], [], marker=MODALITY_MARKERS[key][0], linestyle="", color="#555",
                      label=MODALITY_MARKERS[key][1])
               for key in MODALITY_MARKERS if key in seen]
    if handles:
        figure.legend(handles=handles, loc="outside upper right", ncol=len(handles),
                      fontsize=7, frameon=False, title="window's modalities",
                      title_fontsize=7)
    figure.suptitle(title or f"{stream}: p(positive) per person", fontsize=10, x=0.01,
                    ha="left")
    return png(figure)


def _transcript(ax: Axes, lines: Sequence[TranscriptLine]) -> None:
    """Each line as a bar over its span, in one of :data:`TRANSCRIPT_LANES` lanes so that
    neighbours do not cover each other."""
    for index, line in enumerate(lines):
        lane = TRANSCRIPT_LANES - 1 - index % TRANSCRIPT_LANES
        width = max(0.2, line.media_end - line.media_start)
        ax.barh(lane, width, left=line.media_start, height=0.8, color="#dbe9f6",
                edgecolor="#7aa6d6", linewidth=0.6)
        text = line.text if len(line.text) <= LINE_CHARS else line.text[:LINE_CHARS - 1] + "…"
        ax.text(line.media_start + 0.05, lane, text, fontsize=7, va="center",
                clip_on=True)
    ax.set_ylim(-0.6, TRANSCRIPT_LANES - 0.4)
    ax.set_yticks([])
    ax.set_ylabel("said", rotation=0, ha="right", va="center", fontsize=9)
    ax.tick_params(labelsize=7)


STAGE_ORDER = ("capture", "detect", "features", "classify", "queues", "total")


def latency_png(latencies: Mapping[str, Sequence[float]]) -> bytes:
    """A box per stage (:data:`STAGE_ORDER` first) of its milliseconds per frame."""
    names = [n for n in STAGE_ORDER if latencies.get(n)] + sorted(
        n for n in latencies if n not in STAGE_ORDER and latencies[n])
    figure = Figure(figsize=(WIDTH_IN, 3.2), layout="constrained")
    ax = figure.subplots()
    if names:
        ax.boxplot([list(latencies[n]) for n in names], tick_labels=names, whis=(5, 95),
                   showfliers=False, vert=False)
        ax.invert_yaxis()
    else:
        ax.text(0.5, 0.5, "no frame reached the classifier", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("milliseconds per frame (box: quartiles; whiskers: 5th to 95th percentile)",
                  fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(axis="x", color="#eee")
    figure.suptitle("latency per stage, every frame that reached the classifier", fontsize=10,
                    x=0.01, ha="left")
    return png(figure)
