"""A labelling run: selection, the cache that never pays twice, skipped rows, failures
that a rerun retries, the failure stop, and the images a teacher is shown."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
from wire_servers import Answer, Fail, OpenAIServer, Raw

from engines.adapters.perception import Percept, PerceptionFrame
from training.data.manifest import ManifestRow
from training.features.video import VideoError
from training.pseudo.label_job import run_labelling, select_rows
from training.pseudo.labeler import VlmLabeler
from training.pseudo.prompts import load_prompts
from training.pseudo.providers.openai_compat import OpenAICompatProvider
from training.pseudo.records import (
    CropMode,
    LabelInput,
    LabelOutcome,
    Sampling,
    Status,
    Usage,
    Verdict,
    text_sha256,
)
from training.pseudo.retry import RetryPolicy
from training.pseudo.sampling import sample_frames, target_indices
from training.pseudo.store import LabelStore

ANSWER = json.dumps({"label": "negative", "confidence": 0.65, "reasoning": "rubs hands"})
FRAME = Sampling(frames=3, size=64, crop=CropMode.FRAME)


def make_videos(folder: Path, count: int) -> list[ManifestRow]:
    """``count`` small, distinct demo videos (different lengths: different bytes)."""
    from stream.media.demo import write_demo_video

    rows = []
    for index in range(count):
        path = write_demo_video(folder / f"v{index}.avi", seconds=0.3 + 0.1 * index, fps=10,
                                width=64, height=48)
        rows.append(ManifestRow(f"v{index}", str(path), split="train"))
    return rows


def vlm(server: OpenAIServer, attempts: int = 2) -> VlmLabeler:
    provider = OpenAICompatProvider("local-vlm", server.base_url, api_key="k-local-test")
    return VlmLabeler(provider, load_prompts(), RetryPolicy(max_attempts=attempts,
                                                            base_delay_s=0.0))


class Recording:
    """A labeler that reads no images and answers by script (the checkpoint teacher's
    shape), recording what it was given."""

    provider = "recording"
    model = "r1"
    prompt_version = "none"
    needs_images = False

    def __init__(self, statuses: Sequence[Status] = (Status.LABELLED,)) -> None:
        self.statuses = list(statuses)
        self.items: list[LabelInput] = []

    def label(self, item: LabelInput) -> LabelOutcome:
        self.items.append(item)
        status = self.statuses[min(len(self.items), len(self.statuses)) - 1]
        if status is Status.LABELLED:
            return LabelOutcome(status, Verdict(label="positive", confidence=0.9,
                                                reasoning="r"), attempts=1,
                                usage=Usage(5, 5, 0.5))
        return LabelOutcome(status, attempts=1, error=f"scripted {status}")

    def close(self) -> None:
        pass


ROWS = [ManifestRow("a", label=1), ManifestRow("b"), ManifestRow("c", label=0),
        ManifestRow("d")]


def test_select_rows() -> None:
    assert [r.video_id for r in select_rows(ROWS, "unlabelled")] == ["b", "d"]
    assert [r.video_id for r in select_rows(ROWS, "all")] == ["a", "b", "c", "d"]
    assert [r.video_id for r in select_rows(ROWS, ["d", "a", "d"])] == ["a", "d"]
    with pytest.raises(ValueError, match=r"\['x', 'y'\] are not in the manifest"):
        select_rows(ROWS, ["a", "x", "y"])
    with pytest.raises(ValueError, match="use 'unlabelled', 'all'"):
        select_rows(ROWS, "everything")


def test_a_feature_teacher_needs_no_video_and_is_keyed_by_id(tmp_path: Path) -> None:
    teacher = Recording()
    lines: list[str] = []
    with LabelStore.open(tmp_path / "s.sqlite") as store:
        summary = run_labelling(ROWS, teacher, store, FRAME, select="all", say=lines.append)
        again = run_labelling(ROWS, teacher, store, Sampling(frames=9), select="all",
                              say=lines.append)
        stored = store.labels()
    assert (summary.labelled, summary.cached, summary.exit_code) == (4, 0, 0)
    assert again.cached == 4 and len(teacher.items) == 4  # sampling is no part of its key
    assert {s.key.content_hash for s in stored} == {text_sha256(r.video_id) for r in ROWS}
    assert {s.key.sampling for s in stored} == {"none"}
    assert summary.usage == Usage(20, 20, 2.0)
    assert lines[0].startswith("[1/4] a: positive (0.90)")
    assert "labelled 4, refused 0, failed 0, cached 0, skipped 0 (of 4)" in summary.line()
    assert "cost $2.0000" in summary.line()


def test_failures_are_retried_by_the_next_run_and_stop_a_run_in_a_row(tmp_path: Path) -> None:
    teacher = Recording([Status.FAILED, Status.REFUSED, Status.FAILED, Status.LABELLED])
    with LabelStore.open(tmp_path / "s.sqlite") as store:
        first = run_labelling(ROWS, teacher, store, FRAME, select="all", say=print)
        assert (first.labelled, first.refused, first.failed) == (1, 1, 2)
        assert first.exit_code == 1
        second = run_labelling(ROWS, teacher, store, FRAME, select="all", say=print)
        assert (second.labelled, second.cached) == (2, 2)  # the two failures, again
        assert second.exit_code == 0
        stopper = Recording([Status.FAILED])
        lines: list[str] = []
        stopped = run_labelling([ManifestRow(f"x{i}") for i in range(9)], stopper, store,
                                FRAME, select="all", say=lines.append,
                                stop_after_failures=3)
    assert len(stopper.items) == 3 and stopped.exit_code == 1
    assert "stopped after 3 failures in a row" in lines[-1]
    assert "scripted failed" in stopped.stopped


def test_a_transcript_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("  I lost my focus.\n")
    teacher = Recording()
    rows = [ManifestRow("a", transcript=str(tmp_path / "t.txt")),
            ManifestRow("b", transcript="inline words"),
            ManifestRow("c", transcript=str(tmp_path / "missing.txt"))]
    with LabelStore.open(tmp_path / "s.sqlite") as store:
        summary = run_labelling(rows, teacher, store, FRAME, say=print)
    assert [item.transcript for item in teacher.items] == ["I lost my focus.", "inline words"]
    assert summary.skipped == [f"c: transcript file {tmp_path / 'missing.txt'} (video c) "
                               "not found"]


@pytest.mark.slow
def test_the_cache_never_pays_twice(tmp_path: Path) -> None:
    rows = make_videos(tmp_path, 3)
    twin = tmp_path / "twin.avi"
    twin.write_bytes(Path(rows[0].path).read_bytes())
    rows.append(ManifestRow("twin", str(twin)))
    opened: list[int] = []

    def core_factory():
        opened.append(1)
        raise AssertionError("crop: frame needs no perception core")

    with OpenAIServer([Answer(ANSWER)]) as server, \
            LabelStore.open(tmp_path / "s.sqlite") as store:
        first = run_labelling(rows, vlm(server), store, FRAME, core_factory, say=print)
        assert len(server.requests) == 6  # 3 videos x 2 calls: the twin is the same video
        assert (first.labelled, first.cached, first.exit_code) == (3, 1, 0)
        second = run_labelling(rows, vlm(server), store, FRAME, core_factory, say=print)
        assert len(server.requests) == 6
        assert (second.labelled, second.cached) == (0, 4)
        third = run_labelling(rows, vlm(server), store, Sampling(frames=2, size=64,
                                                                  crop=CropMode.FRAME),
                              core_factory, say=print)
        assert third.labelled == 3 and len(server.requests) == 12  # other sampling: new key
        forced = run_labelling(rows[:1], vlm(server), store, FRAME, core_factory,
                               select="all", say=print, force=True)
        assert forced.labelled == 1 and len(server.requests) == 14
        images = server.requests[0].images()
    assert not opened
    assert len(images) == 3
    assert all(max(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[:2])
               == 64 for jpeg in images)


@pytest.mark.slow
def test_bad_rows_are_skipped_not_stored(tmp_path: Path) -> None:
    rows = make_videos(tmp_path, 1)
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(b"RIFF not really a video" * 50)
    rows += [ManifestRow("gone", str(tmp_path / "gone.avi")), ManifestRow("nopath"),
             ManifestRow("corrupt", str(corrupt))]
    lines: list[str] = []
    with OpenAIServer([Fail(500)]) as server, \
            LabelStore.open(tmp_path / "s.sqlite") as store:
        summary = run_labelling(rows, vlm(server), store, FRAME, say=lines.append)
        assert len(server.requests) == 2  # video 0: two attempts at call 1; nothing else
        stored = store.labels()
    assert [s.video_id for s in stored] == ["v0"]
    assert stored[0].outcome.status is Status.FAILED
    assert (summary.failed, len(summary.skipped), summary.exit_code) == (1, 3, 1)
    assert any(f"{tmp_path / 'gone.avi'} not found" in line for line in lines)
    assert any("no video path" in line for line in lines)
    assert any(f"{corrupt}" in line and "skipped" in line for line in lines)


class FakeCore:
    """A perception core that finds a person (the left half) in every other frame."""

    name = "fake"
    random_weights = False
    device = "cpu"

    def __init__(self) -> None:
        self.calls = 0
        self.released: list[str] = []

    def perceive(self, frames: Sequence[PerceptionFrame]) -> list[list[Percept]]:
        self.calls += 1
        out = []
        for frame in frames:
            if self.calls % 2:
                width = frame.image.shape[1] // 2
                out.append([Percept(1, 0.9, np.array([0, 0, width, 48], np.float32),
                                    frame.image[:, :width], (0, 0))])
            else:
                out.append([])
        return out

    def release(self, stream: str) -> None:
        self.released.append(stream)

    def close(self) -> None:
        pass


@pytest.mark.slow
def test_person_crops_and_the_no_person_fallback(tmp_path: Path) -> None:
    row = make_videos(tmp_path, 1)[0]
    core = FakeCore()
    sampled = sample_frames(row.path, Sampling(frames=3, size=40, crop=CropMode.PERSON), core)
    shapes = [cv2.imdecode(np.frombuffer(i.jpeg, np.uint8), cv2.IMREAD_COLOR).shape[:2]
              for i in sampled.images]
    assert shapes == [(40, 27), (30, 40), (40, 27)]  # crop 48x32, frame 48x64, crop
    assert sampled.no_person == 1 and core.released == ["pseudo-label"]
    assert [round(i.time_s, 2) for i in sampled.images] == [0.0, 0.1, 0.2]
    with pytest.raises(ValueError, match="needs a perception core"):
        sample_frames(row.path, Sampling(crop=CropMode.PERSON))
    with pytest.raises(VideoError, match=r"gone\.avi not found"):
        sample_frames(tmp_path / "gone.avi", FRAME)


def test_target_indices_spread_evenly() -> None:
    assert target_indices(100, 4) == [12, 37, 62, 87]
    assert target_indices(10, 8) == [0, 1, 3, 4, 5, 6, 8, 9]
    assert target_indices(2, 8) == [0, 1]
    assert target_indices(1, 3) == [0]


def test_a_duplicate_file_is_labelled_once_and_listed_under_both_ids(tmp_path: Path) -> None:
    """The same bytes under a second id cost no call, and training finds the label under
    either id (the store lists it once per id)."""
    import shutil

    first = make_videos(tmp_path, 1)[0]
    copy = shutil.copy(first.path, tmp_path / "copy.avi")
    rows = [first, ManifestRow("copy", str(copy), split="train")]
    with OpenAIServer([Answer(ANSWER)]) as server, \
            LabelStore.open(tmp_path / "s.sqlite") as store:
        summary = run_labelling(rows, vlm(server), store, FRAME, say=lambda _: None)
        assert len(server.requests) == 2  # chain of thought + reflection, once
        assert (summary.labelled, summary.cached) == (1, 1)
        listed = store.labels(status=Status.LABELLED)
        assert sorted(s.video_id for s in listed) == ["copy", "v0"]
        assert len({s.key for s in listed}) == 1
        run_labelling(rows, vlm(server), store, FRAME, say=lambda _: None)
        assert len(server.requests) == 2 and len(store.labels()) == 2  # no new alias rows


def test_a_failed_id_whose_duplicate_is_answered_later_shares_the_answer(
        tmp_path: Path) -> None:
    """v0's call fails (401: not retried); the same file under "copy" is answered later in
    the run. Both ids list the answer at once (not only after a rerun) and the run is done;
    the failed call's tokens stay counted."""
    import shutil

    first = make_videos(tmp_path, 1)[0]
    copy = shutil.copy(first.path, tmp_path / "copy.avi")
    rows = [first, ManifestRow("copy", str(copy), split="train")]
    billed_401 = Raw(401, json.dumps({"error": {"message": "bad key", "type": "x"}}))
    with OpenAIServer([billed_401, Answer(ANSWER, 100, 50)]) as server, \
            LabelStore.open(tmp_path / "s.sqlite") as store:
        summary = run_labelling(rows, vlm(server), store, FRAME, say=lambda _: None)
        assert len(server.requests) == 1 + 2
        listed = store.labels()
        assert sorted((s.video_id, s.outcome.status) for s in listed) == \
            [("copy", Status.LABELLED), ("v0", Status.LABELLED)]
        assert len({s.key for s in listed}) == 1
        assert (summary.failed, summary.labelled, summary.answered_later) == (1, 1, ["v0"])
        assert summary.exit_code == 0
        assert "failed 1 (1 answered later under a duplicate id)" in summary.line()
        again = run_labelling(rows, vlm(server), store, FRAME, say=lambda _: None)
        assert (again.cached, again.exit_code, len(server.requests)) == (2, 0, 3)
        assert len(store.labels()) == 2


def test_the_summary_times_only_what_it_has(tmp_path: Path) -> None:
    """Nothing labelled: no "per labelled video"; s per call is over calls, not videos."""
    teacher = Recording([Status.FAILED, Status.REFUSED])
    with LabelStore.open(tmp_path / "s.sqlite") as store:
        summary = run_labelling(ROWS[:2], teacher, store, FRAME, select="all",
                                say=lambda _: None)
    assert (summary.labelled, summary.calls) == (0, 2)
    line = summary.line()
    assert "per labelled video" not in line and "s per call (2 calls)" in line
    with LabelStore.open(tmp_path / "t.sqlite") as store:
        nothing = run_labelling([], teacher, store, FRAME, select="all", say=lambda _: None)
    assert "per call" not in nothing.line() and "s in all" in nothing.line()


def test_the_same_video_with_another_transcript_is_another_call(tmp_path: Path) -> None:
    """The transcript is part of what the teacher is shown, so it is part of the key."""
    video = make_videos(tmp_path, 1)[0]
    rows = [ManifestRow("a", video.path, split="train", transcript="we won easily"),
            ManifestRow("b", video.path, split="train", transcript="a painful loss"),
            ManifestRow("c", video.path, split="train", transcript="we won easily")]
    with OpenAIServer([Answer(ANSWER)]) as server, \
            LabelStore.open(tmp_path / "s.sqlite") as store:
        summary = run_labelling(rows, vlm(server), store, FRAME, say=lambda _: None)
        assert (summary.labelled, summary.cached) == (2, 1)
        assert len(server.requests) == 4
        sent = [" ".join(request.texts()) for request in server.requests[::2]]
        assert "we won easily" in sent[0] and "a painful loss" in sent[1]
        assert sorted(s.video_id for s in store.labels()) == ["a", "b", "c"]
