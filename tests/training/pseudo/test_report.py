"""The pseudo-label report: agreement, calibration, spend and reflection on hand-built rows
with known answers, its empty cases, the plot, and invariants on random rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.data.manifest import ManifestRow
from training.pseudo.records import (
    LabelKey,
    LabelOutcome,
    Status,
    StoredLabel,
    Usage,
    Verdict,
)
from training.pseudo.report import (
    BINS,
    build_report,
    confidence_bin,
    report_from_store,
    write_per_video_csv,
    write_reliability_plot,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _row(video: str, label: str | None, confidence: float = 0.9, *,
         status: Status = Status.LABELLED, provisional: str | None = None,
         cost: float | None = 0.01, seconds: float = 2.0, call_seconds: float | None = 1.5,
         attempts: int = 2, file: str | None = None) -> StoredLabel:
    verdict = Verdict(label=label, confidence=confidence, reasoning="r") if label else None
    before = Verdict(label=provisional, confidence=0.5, reasoning="p") if provisional else None
    outcome = LabelOutcome(status=status, verdict=verdict, provisional=before,
                           usage=Usage(100, 10, cost), attempts=attempts, seconds=seconds,
                           call_seconds=call_seconds,
                           error=None if status == Status.LABELLED else "no")
    return StoredLabel(LabelKey(f"sha-{file or video}", "v1", "gemini", "m", "s"), video,
                       outcome, "2025-01-01T00:00:00Z")


def _known_rows() -> list[StoredLabel]:
    return [
        _row("a", "positive", 0.9, provisional="negative"),  # gold 1: right, reflection fixed it
        _row("b", "positive", 0.9, provisional="positive"),  # gold 1: right, unchanged
        _row("c", "negative", 0.7),                          # gold 1: wrong
        _row("d", "negative", 0.7),                          # gold 0: right
        _row("e", "positive", 0.9, provisional="negative"),  # gold 0: wrong, reflection broke it
        _row("f", "positive", 0.55, provisional="negative"),  # no gold
        _row("g", None, status=Status.FAILED),
        _row("h", None, status=Status.REFUSED, cost=None),
    ]


GOLD = {"a": 1, "b": 1, "c": 1, "d": 0, "e": 0, "f": None, "x": 0}


def test_agreement_and_per_class_numbers_are_exact() -> None:
    report = build_report(_known_rows(), GOLD)
    assert (report.counts.rows, report.counts.labelled, report.counts.refused,
            report.counts.failed) == (8, 6, 1, 1)
    assert report.gold_videos == 6  # x has gold but no row
    agreement = report.agreement
    assert agreement is not None and agreement.rows == 5
    assert agreement.accuracy == pytest.approx(3 / 5)
    negative, positive = agreement.per_class
    assert (negative.support, negative.recall, negative.precision) == (2, 0.5, 0.5)
    assert positive.support == 3
    assert positive.recall == pytest.approx(2 / 3) and positive.precision == pytest.approx(2 / 3)
    assert agreement.balanced_accuracy == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert agreement.confusion == ((1, 1), (1, 2))  # [gold][label]


def test_histogram_calibration_and_ece_of_a_constructed_case() -> None:
    report = build_report(_known_rows(), GOLD)
    assert len(report.bins) == BINS
    assert sum(b.count for b in report.bins) == report.counts.labelled
    high, mid, low = report.bins[9], report.bins[7], report.bins[5]
    assert (high.count, high.right, high.wrong, high.no_gold) == (3, 2, 1, 0)
    assert high.accuracy == pytest.approx(2 / 3) and high.mean_confidence == pytest.approx(0.9)
    assert (mid.count, mid.right, mid.wrong, mid.accuracy) == (2, 1, 1, 0.5)
    assert (low.count, low.no_gold, low.accuracy, low.mean_confidence) == (1, 1, None, None)
    # ECE = (3 * |2/3 - 0.9| + 2 * |0.5 - 0.7|) / 5
    assert report.ece == pytest.approx((3 * (0.9 - 2 / 3) + 2 * 0.2) / 5)


def test_spend_counts_every_call_and_divides_by_labelled_videos() -> None:
    spend = build_report(_known_rows(), GOLD).spend
    assert (spend.answers, spend.calls) == (8, 16)
    assert (spend.input_tokens, spend.output_tokens) == (800, 80)
    assert spend.cost_usd == pytest.approx(0.07)  # the refusal has no known cost
    assert spend.cost_per_labelled_usd == pytest.approx(0.07 / 6)
    assert spend.seconds_per_call == pytest.approx(1.5 / 2)  # call time over calls
    assert spend.seconds_per_labelled_video == pytest.approx(2.0)
    free = build_report([_row("a", "positive", cost=None)], {}).spend
    assert free.cost_usd is None and free.cost_per_labelled_usd is None


def test_timings_are_named_for_what_they_divide() -> None:
    """Per labelled video: the labelled answers' wall time; per call: the measured call
    time over the calls that measured it (rows of an older store did not)."""
    rows = [_row("a", "positive", seconds=10.0, call_seconds=4.0, attempts=4),
            _row("b", None, status=Status.FAILED, seconds=30.0, call_seconds=5.0,
                 attempts=5),
            _row("c", "negative", seconds=6.0, call_seconds=None, attempts=2)]
    spend = build_report(rows, {}).spend
    assert spend.seconds_per_labelled_video == pytest.approx(8.0)
    assert spend.seconds_per_call == pytest.approx(9.0 / 9)
    text = build_report(rows, {}).to_text()
    assert "8.00 s per labelled video" in text and "1.00 s per call" in text
    failed_only = build_report([rows[1]], {})
    assert failed_only.spend.seconds_per_labelled_video is None
    assert "per labelled video (" not in failed_only.to_text()
    old = build_report([rows[2]], {})
    assert old.spend.seconds_per_call is None and "s per call" not in old.to_text()


def test_a_file_under_two_ids_is_paid_once_and_listed_twice(tmp_path: Path) -> None:
    rows = [_row("a", "positive"), _row("a-copy", "positive", file="a"),
            _row("b", None, status=Status.REFUSED)]
    report = build_report(rows, {"a": 1, "a-copy": 0})
    assert report.counts.rows == 3 and report.counts.labelled == 2
    assert (report.spend.answers, report.spend.input_tokens, report.spend.calls) == \
        (2, 200, 4)
    assert report.spend.cost_usd == pytest.approx(0.02)
    copy = report.videos[1]
    assert (copy.video_id, copy.same_file_as, copy.input_tokens, copy.cost_usd) == \
        ("a-copy", "a", None, None)
    assert (copy.gold, copy.agrees) == ("negative", False)
    assert sum(v.input_tokens or 0 for v in report.videos) == report.spend.input_tokens
    text = report.to_text(per_video=True)
    assert "(1 more video ids share one: the same file under another id)" in text
    assert "same file as a" in text and "per video (3):" in text
    assert "per video" not in report.to_text()
    path = write_per_video_csv(report, tmp_path / "out" / "videos.csv")
    with path.open() as handle:
        table = list(csv.DictReader(handle))
    assert [line["video_id"] for line in table] == ["a", "a-copy", "b"]
    assert table[1]["same_file_as"] == "a" and table[1]["input_tokens"] == ""
    assert table[2]["error"] == "no" and table[0]["agrees"] == "True"
    assert not list(tmp_path.glob("out/*.partial"))


def test_reflection_changes_are_counted_and_judged() -> None:
    reflection = build_report(_known_rows(), GOLD).reflection
    assert reflection.with_provisional == 4
    assert (reflection.changed, reflection.changed_to_right, reflection.changed_to_wrong,
            reflection.changed_no_gold) == (3, 1, 1, 1)
    # on a, b, e: provisional neg/pos/neg -> 2 of 3 right; final pos/pos/pos -> 2 of 3
    assert reflection.provisional_accuracy == pytest.approx(2 / 3)
    assert reflection.final_accuracy == pytest.approx(2 / 3)


def test_text_and_json_carry_the_numbers() -> None:
    report = build_report(_known_rows(), GOLD, {"provider": "gemini"})
    text = report.to_text()
    assert "labelled 6, refused 1, failed 1" in text
    assert "accuracy 0.600" in text and "balanced accuracy 0.583" in text
    assert "ECE) 0.220" in text
    assert "reflection changed 3 of 4" in text
    assert "nan" not in text.lower()
    data = json.loads(json.dumps(report.model_dump(mode="json")))
    assert data["agreement"]["confusion"] == [[1, 1], [1, 2]]
    assert data["selection"] == {"provider": "gemini"}


def test_empty_cases_say_why_instead_of_printing_nan() -> None:
    nothing = build_report([], {})
    assert nothing.agreement is None and nothing.ece is None
    assert "no stored labels match" in nothing.to_text()

    failures = build_report([_row("g", None, status=Status.FAILED)], {"g": 1})
    assert failures.agreement is None and failures.counts.failed == 1
    assert "no labelled rows" in failures.to_text()

    no_gold = build_report(_known_rows(), {})
    assert no_gold.agreement is None and no_gold.ece is None
    assert sum(b.no_gold for b in no_gold.bins) == 6
    text = no_gold.to_text()
    assert "none of the 6 labelled videos has a gold label" in text
    assert "calibration: needs gold labels" in text
    for report in (nothing, failures, no_gold):
        assert "nan" not in report.to_text().lower()
        json.dumps(report.model_dump(mode="json"))


def test_bad_gold_values_are_refused() -> None:
    with pytest.raises(ValueError, match="gold labels must be 0"):
        build_report([], {"a": 2})


def test_confidence_bins_put_edges_in_the_upper_bin() -> None:
    assert [confidence_bin(c) for c in (0.0, 0.1, 0.3, 0.7, 0.95, 1.0)] == [0, 1, 3, 7, 9, 9]


def test_reliability_plot_is_written_for_full_and_empty_reports(tmp_path: Path) -> None:
    for name, report in (("full", build_report(_known_rows(), GOLD)),
                         ("no_gold", build_report(_known_rows(), {})),
                         ("empty", build_report([], {}))):
        path = write_reliability_plot(report, tmp_path / "plots" / f"{name}.png")
        assert path.read_bytes()[:8] == PNG


class _FakeStore:
    """The LabelStore's ``labels`` query, over a list."""

    def __init__(self, rows: list[StoredLabel]) -> None:
        self.rows = rows
        self.asked: dict[str, str | None] = {}

    def labels(self, provider: str | None = None, model: str | None = None,
               prompt_version: str | None = None,
               status: Status | None = None) -> list[StoredLabel]:
        self.asked = {"provider": provider, "model": model, "prompt_version": prompt_version}
        return [r for r in self.rows if provider in (None, r.key.provider)]


def test_report_from_store_filters_and_takes_gold_from_the_manifest() -> None:
    store = _FakeStore(_known_rows())
    manifest = [ManifestRow(video, label=label, split="test") for video, label in GOLD.items()]
    report = report_from_store(store, manifest, provider="gemini", model="m")
    assert store.asked == {"provider": "gemini", "model": "m", "prompt_version": None}
    assert report.selection == {"provider": "gemini", "model": "m"}
    assert report.agreement is not None and report.agreement.accuracy == pytest.approx(0.6)
    assert "provider gemini, model m" in report.to_text()


def test_report_from_a_real_label_store(tmp_path: Path) -> None:
    from training.pseudo.store import LabelStore

    manifest = [ManifestRow(video, label=label, split="test") for video, label in GOLD.items()]
    with LabelStore.open(tmp_path / "labels.sqlite") as store:
        for row in _known_rows():
            store.put(row.key, row.video_id, row.outcome)
        report = report_from_store(store, manifest, provider="gemini")
        other = report_from_store(store, manifest, provider="openai")
    assert report.model_dump(mode="json") == build_report(_known_rows(), GOLD,
                                            {"provider": "gemini"}).model_dump(mode="json")
    assert other.counts.rows == 0


_rows = st.lists(st.tuples(
    st.sampled_from(list(Status)),
    st.sampled_from(["negative", "positive"]),
    st.floats(0.0, 1.0),
    st.sampled_from([None, 0, 1]),
    st.sampled_from([None, "negative", "positive"]),
    st.one_of(st.none(), st.floats(0.0, 1.0)),
), max_size=40)


@settings(max_examples=60, deadline=None)
@given(_rows)
def test_any_rows_give_consistent_counts_and_bounded_scores(rows) -> None:
    labels, gold = [], {}
    for index, (status, label, confidence, truth, provisional, cost) in enumerate(rows):
        video = f"v{index}"
        labelled = status == Status.LABELLED
        labels.append(_row(video, label if labelled else None, confidence, status=status,
                           provisional=provisional if labelled else None, cost=cost))
        gold[video] = truth
    report = build_report(labels, gold)
    counts = report.counts
    assert counts.labelled + counts.refused + counts.failed == counts.rows == len(rows)
    assert sum(b.count for b in report.bins) == counts.labelled
    for b in report.bins:
        assert b.right + b.wrong + b.no_gold == b.count
        assert b.accuracy is None or 0.0 <= b.accuracy <= 1.0
    judged = sum(b.right + b.wrong for b in report.bins)
    if report.agreement is None:
        assert judged == 0 and report.ece is None
    else:
        agreement = report.agreement
        assert agreement.rows == judged == sum(map(sum, agreement.confusion))
        assert 0.0 <= agreement.accuracy <= 1.0 and 0.0 <= agreement.balanced_accuracy <= 1.0
        assert agreement.accuracy * judged == pytest.approx(sum(b.right for b in report.bins))
        assert report.ece is not None and 0.0 <= report.ece <= 1.0 + 1e-12
    assert report.reflection.changed <= report.reflection.with_provisional <= counts.labelled
    assert report.spend.cost_usd is None or report.spend.cost_usd >= 0.0
    assert "nan" not in report.to_text().lower()
