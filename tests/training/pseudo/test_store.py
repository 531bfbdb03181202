"""The label store: round trip, the final-outcome rule, schema refusal, and (as a property)
that any sequence of puts behaves like a dict keyed by LabelKey under that rule."""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.pseudo.records import LabelKey, LabelOutcome, Status, Usage, Verdict
from training.pseudo.redact import Redactor
from training.pseudo.store import SCHEMA_VERSION, LabelStore, StoreError


def key(n: int = 0, provider: str = "gemini", prompt: str = "v1-abcdef12") -> LabelKey:
    return LabelKey(f"{n:064x}", prompt, provider, "gemini-2.5-pro", "frames=8,size=448")


def labelled(label: str = "positive", confidence: float = 0.8) -> LabelOutcome:
    first = Verdict(label="negative", confidence=0.6, reasoning="tight lips at 3.1 s")
    return LabelOutcome(
        Status.LABELLED, verdict=Verdict(label=label, confidence=confidence,
                                         reasoning="smiles; \"quotes\" and ünïcode"),
        provisional=first, responses=('{"raw": 1}', '{"raw": 2}'),
        usage=Usage(1200, 340, 0.0123), attempts=3, seconds=4.5)


def failed(error: str = "chain of thought: gave up after 5 attempts") -> LabelOutcome:
    return LabelOutcome(Status.FAILED, responses=("<html>",), usage=Usage(10, 0, None),
                        attempts=5, error=error, seconds=1.0)


def refused() -> LabelOutcome:
    return LabelOutcome(Status.REFUSED, responses=('{"blocked": true}',), attempts=1,
                        error="chain of thought: refused: SAFETY")


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "labels.sqlite"
    with LabelStore.open(path) as store:
        assert store.get(key()) is None
        assert store.put(key(), "vid_1", labelled())
    with LabelStore.open(path) as store:
        stored = store.get(key())
    assert stored is not None
    assert stored.key == key() and stored.video_id == "vid_1"
    assert stored.outcome == labelled()
    assert stored.created.endswith("+00:00")


def test_failed_and_refused_round_trip(tmp_path: Path) -> None:
    with LabelStore.open(tmp_path / "s.sqlite") as store:
        store.put(key(1), "a", failed())
        store.put(key(2), "b", refused())
        assert store.get(key(1)).outcome == failed()
        assert store.get(key(2)).outcome == refused()


def test_a_failure_is_replaced_and_a_final_outcome_kept(tmp_path: Path) -> None:
    with LabelStore.open(tmp_path / "s.sqlite") as store:
        assert store.put(key(), "v", failed("first"))
        assert store.put(key(), "v", failed("second"))
        assert store.get(key()).outcome.error == "second"
        assert store.put(key(), "v", labelled("negative"))
        assert not store.put(key(), "v", labelled("positive"))
        assert not store.put(key(), "v", failed())
        assert store.get(key()).outcome.verdict.label == "negative"
        assert store.put(key(), "v", labelled("positive"), force=True)
        assert store.get(key()).outcome.verdict.label == "positive"
        store.put(key(9), "w", refused())
        assert not store.put(key(9), "w", labelled())
        assert store.get(key(9)).outcome.status is Status.REFUSED


def test_an_inconsistent_outcome_is_refused(tmp_path: Path) -> None:
    with LabelStore.open(tmp_path / "s.sqlite") as store:
        with pytest.raises(ValueError, match="must carry a verdict"):
            store.put(key(), "v", LabelOutcome(Status.LABELLED))
        with pytest.raises(ValueError, match="must not carry"):
            store.put(key(), "v", LabelOutcome(Status.FAILED, verdict=labelled().verdict))


def test_labels_filter(tmp_path: Path) -> None:
    with LabelStore.open(tmp_path / "s.sqlite") as store:
        store.put(key(1), "a", labelled())
        store.put(key(2, provider="openai"), "b", labelled())
        store.put(key(3, prompt="v2-00000000"), "c", failed())
        assert [s.video_id for s in store.labels()] == ["a", "b", "c"]
        assert [s.video_id for s in store.labels(provider="openai")] == ["b"]
        assert [s.video_id for s in store.labels(prompt_version="v2-00000000")] == ["c"]
        assert [s.video_id for s in store.labels(status="labelled")] == ["a", "b"]
        assert [s.video_id for s in store.labels(status=Status.FAILED)] == ["c"]
        assert store.labels(model="other") == []


def test_a_newer_schema_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    LabelStore.open(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'",
                   (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match=f"{path}.*schema version {SCHEMA_VERSION + 1}"):
        LabelStore.open(path)


def test_other_files_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not a label store"):
        LabelStore.open(other)
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a database at all" * 100)
    with pytest.raises(StoreError, match=f"{text} is not a label store"):
        LabelStore.open(text)
    with pytest.raises(StoreError, match="is a folder"):
        LabelStore.open(tmp_path)


def test_two_connections_see_each_others_puts(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with LabelStore.open(path) as one, LabelStore.open(path) as two:
        one.put(key(), "v", labelled())
        assert two.get(key()) is not None
        assert not two.put(key(), "v", failed())


OUTCOMES = {"labelled": labelled(), "refused": refused(), "failed": failed()}
operations = st.lists(st.tuples(st.integers(0, 3), st.sampled_from(sorted(OUTCOMES)),
                                st.booleans(), st.integers(0, 2)), max_size=25)


@settings(max_examples=60, deadline=None)
@given(operations)
def test_any_sequence_of_puts_behaves_like_a_dict(
        ops: list[tuple[int, str, bool, int]]) -> None:
    """Keyed by LabelKey under the final-outcome rule; a replacement carries what the row
    it replaces was billed (the rows add up to every outcome written) and keeps the
    replaced id listed as an alias."""
    model: dict[LabelKey, tuple[str, LabelOutcome]] = {}
    aliases: dict[LabelKey, set[str]] = {}
    billed = 0
    with tempfile.TemporaryDirectory() as folder, \
            LabelStore.open(Path(folder) / "s.sqlite") as store:
        for n, status, force, name in ops:
            current = model.get(key(n))
            final = current is not None and current[1].status is not Status.FAILED
            video = f"v{n}-{name}"
            outcome = OUTCOMES[status]
            wrote = store.put(key(n), video, outcome, force=force)
            assert wrote == (force or not final)
            if wrote:
                billed += outcome.usage.input_tokens
                usage = outcome.usage if current is None else outcome.usage + current[1].usage
                model[key(n)] = (video, replace(outcome, usage=usage))
                names = aliases.setdefault(key(n), set())
                if current is not None and current[0] != video:
                    names.add(current[0])
                names.discard(video)
            for probe in range(4):
                stored = store.get(key(probe))
                expected = model.get(key(probe))
                assert (stored is None) == (expected is None)
                if stored is not None and expected is not None:
                    assert (stored.video_id, stored.outcome) == expected
        listed = store.labels()
        assert sorted(s.video_id for s in listed) == sorted(
            [video for video, _ in model.values()]
            + [alias for names in aliases.values() for alias in names])
        distinct = {s.key: s.outcome.usage.input_tokens for s in listed}
        assert sum(distinct.values()) == billed


def test_a_failure_replaced_under_a_duplicate_id_keeps_both_ids(tmp_path: Path) -> None:
    """The first id's try failed, the same file's second id succeeded: both ids list the
    answer, once each, and the failed try's tokens stay counted."""
    with LabelStore.open(tmp_path / "s.sqlite") as store:
        store.put(key(), "first", failed())
        assert store.put(key(), "copy", labelled())
        listed = store.labels()
        assert sorted(s.video_id for s in listed) == ["copy", "first"]
        assert {s.outcome.status for s in listed} == {Status.LABELLED}
        assert store.get(key()).outcome.usage == Usage(1210, 340, 0.0123)
        assert store.put(key(), "first", labelled("negative"), force=True)
        assert sorted(s.video_id for s in store.labels()) == ["copy", "first"]
        assert store.get(key()).video_id == "first"


def test_every_text_column_is_redacted_on_the_way_in(tmp_path: Path) -> None:
    secret = "sk-live-abcdef0123456789"
    echoed = LabelOutcome(
        Status.LABELLED,
        verdict=Verdict(label="positive", confidence=0.8, reasoning=f"key {secret}"),
        provisional=Verdict(label="negative", confidence=0.5, reasoning=secret),
        responses=(f'{{"echo": "{secret}"}}',), error=f"earlier: {secret!r}")
    path = tmp_path / "s.sqlite"
    with LabelStore.open(path, redact=Redactor([secret])) as store:
        store.put(key(), "v", echoed)
        stored = store.get(key()).outcome
    assert stored.verdict.reasoning == "key [redacted]"
    assert stored.provisional.reasoning == "[redacted]"
    assert secret not in stored.responses[0] and secret not in stored.error
    for file in tmp_path.iterdir():
        assert secret.encode() not in file.read_bytes()


def test_a_store_made_before_aliases_gains_the_table_and_keeps_its_rows(
        tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with LabelStore.open(path) as store:
        store.put(key(), "v", labelled())
    with sqlite3.connect(path) as db:  # what the first version of the store wrote
        db.execute("DROP TABLE aliases")
    with LabelStore.open(path) as store:
        assert [s.video_id for s in store.labels()] == ["v"]
        store.add_alias(key(), "w")
        assert sorted(s.video_id for s in store.labels()) == ["v", "w"]


def test_a_store_made_before_call_seconds_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with LabelStore.open(path) as store:
        store.put(key(), "v", labelled())
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE labels DROP COLUMN call_seconds")
    with LabelStore.open(path) as store:
        assert store.get(key()).outcome.call_seconds is None
        store.put(key(1), "w", replace(labelled(), call_seconds=1.5))
        assert store.get(key(1)).outcome.call_seconds == 1.5
