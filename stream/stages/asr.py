"""ASR: one process per source with audio; what is said there, as lines on the text topic.

The process decodes the source's audio itself (:mod:`stream.media.audio`), cuts it into
utterances with the VAD as it goes (:mod:`stream.media.speech`), transcribes each with Whisper
(:mod:`engines.adapters.transcriber`) and publishes one line per Whisper segment on the
text topic, exactly as an outside publisher would (a PUB connected to classify's SUB).

Clocks. A file's lines carry ``media_start``/``media_end``: seconds from the start of the
file, the clock the capture stamps its frames' ``media_time`` with, so classify puts a line
in every window whose span it overlaps, whatever the pipeline's speed. A live input (an
RTSP/HTTP stream, a microphone) is read as it arrives, like the capture reads its frames:
its lines carry the monotonic ``time`` at which the utterance ended (its first sample's
arrival plus its media offset), the clock frames are stamped with.

Order. Words must reach classify before the windows that contain them are classified. A
file is transcribed ahead of its video: the process reports ready (the supervisor starts
the captures only then) once its first ``lead_s`` seconds are out, then stays ``lead_s``
ahead of real time when the source is paced (``realtime``), or runs as fast as it decodes
when it is not. It exits 0 at the end of the file, before the video's end for a paced
file. A live line arrives after the utterance ends (silence, a VAD step, transcription:
a few seconds), so only the windows that end after that carry it.

Forced cuts. Speech without a pause is cut into overlapping pieces
(:mod:`stream.media.speech`); a piece that continues a cut is never in one Whisper call with
the piece before it, the pieces around a cut are transcribed with word times, and a
:class:`~stream.media.stitch.Stitcher` keeps each word once. The words just before a cut
wait for the next piece (kept in the run's private folder with the published time, so a
restart loses none of them).

Failure. A source whose audio cannot be opened or decoded is logged and reported
(``problem`` in its status) and the process exits 0: the video goes on without text. A
live input that drops is reopened with the source's backoff. A missing model exits with
:data:`~stream.exitcodes.EX_CONFIG` (``hidemo run`` checks the model before it starts
anything, so this is rare). After a restart a file's transcript goes on after the last
line published (kept in the run's private folder), so no line is sent twice.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import zmq
from pydantic import BaseModel, ConfigDict

from engines.adapters.transcriber import (
    PACKAGED_NAME,
    SAMPLE_RATE,
    TimedWord,
    Transcriber,
    TranscriberUnavailable,
    WhisperTranscriber,
    packaged_model_path,
)
from engines.adapters.vad import SileroVad
from stream.config import AsrConfig, RunConfig
from stream.exitcodes import EX_CONFIG, FATAL_MARKER
from stream.files import write_document
from stream.media.audio import AudioCorrupt, AudioInput, AudioReader, audio_input
from stream.media.speech import JoinedSpeech, Speech, SpeechSegmenter
from stream.media.stitch import Stitcher, StitchState, Word
from stream.stages.loop import StopFlag
from stream.stages.sinks import JsonlSink, json_line
from stream.strictjson import JsonDict
from stream.transport.endpoints import Endpoints, open_endpoint
from stream.transport.status import FailedItems, StatusReporter
from stream.transport.text_topic import MAX_LINE_CHARS, TextLine

log = logging.getLogger(__name__)

SUBSCRIBE_WAIT_S = 1.0
"""ZeroMQ drops what a fresh PUB sends before the subscriber's subscription reaches it."""
END_LINGER_MS = 2000
PACE_POLL_S = 0.1


def load_transcriber(config: AsrConfig) -> WhisperTranscriber:
    """The configured Whisper model (``model_path``, else the packaged tiny.en)."""
    given = config.model_path
    return WhisperTranscriber.from_path(given or packaged_model_path(), threads=config.threads,
                                        compute_type=config.compute_type,
                                        language=config.language, beam_size=config.beam_size,
                                        name=None if given else PACKAGED_NAME)


class AsrMemory:
    """The media time up to which a file's lines were published, and the words waiting
    at a forced cut for the piece that continues it (:class:`~stream.media.stitch.Stitcher`),
    in the run's private folder: a restarted ASR skips what the dead one already sent and
    joins the next piece to the words it held."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.until = 0.0
        self.stitch = StitchState()
        if path is not None and path.is_file():
            try:
                saved = json.loads(path.read_text())
                self.until = float(saved["published_until"])
                self.stitch = StitchState.model_validate(saved.get("stitch", {}))
            except (OSError, ValueError, KeyError, TypeError) as error:
                log.warning("asr state %s unreadable (%s); starting afresh", path, error)

    def save(self, until: float, stitch: StitchState | None = None) -> None:
        self.until = until
        self.stitch = stitch or StitchState()
        if self.path is None:
            return
        body = {"published_until": until, "stitch": self.stitch.model_dump()}
        try:
            write_document(self.path, json.dumps(body), durable=False)
        except OSError as error:  # a full disk: the old time stays whole
            log.warning("asr state %s not saved: %s", self.path, error)


@dataclass
class AsrFigures:
    """What the stage did, for its status: lines sent, audio decoded, speech transcribed,
    and the CPU seconds the transcription and the whole process took."""

    lines: int = 0
    utterances: int = 0
    audio_s: float = 0.0
    speech_s: float = 0.0
    transcribe_cpu_s: float = 0.0
    skipped: int = 0

    def report(self) -> JsonDict:
        cpu = time.process_time()
        return {"lines": self.lines, "utterances": self.utterances,
                "audio_s": round(self.audio_s, 2), "speech_s": round(self.speech_s, 2),
                "transcribe_cpu_s": round(self.transcribe_cpu_s, 3),
                "process_cpu_s": round(cpu, 3),
                "rtf_cpu": round(cpu / self.audio_s, 4) if self.audio_s else 0.0,
                "skipped_after_restart": self.skipped}


class TranscriptEntry(BaseModel):
    """One line of ``transcript-STREAM.jsonl``: the words and their span on the source's
    media clock; ``time`` is when a live input's words were spoken (monotonic seconds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: str
    text: str
    media_start: float
    media_end: float
    time: float | None = None
    origin: Literal["asr"] = "asr"


class LinePublisher:
    """Sends a stream's lines on the text topic: media-timed for a file, monotonic for a
    live input (``anchor`` + media offset); with a ``transcript`` sink, each line also goes
    to the run's ``transcript-STREAM.jsonl`` (stream, media start/end, text)."""

    def __init__(self, socket: zmq.Socket, stream: str, *, live: bool,
                 transcript: JsonlSink | None = None) -> None:
        self.socket = socket
        self.stream = stream
        self.live = live
        self.transcript = transcript
        self.anchor: float | None = None

    def send(self, start: float, end: float, text: str) -> None:
        text = text[:MAX_LINE_CHARS]  # the longest line the topic takes
        if self.live:
            line = TextLine(text=text, time=(self.anchor or 0.0) + end, origin="asr")
        else:
            line = TextLine(text=text, media_start=round(start, 3), media_end=round(end, 3),
                            origin="asr")
        self.socket.send_multipart([self.stream.encode(), line.body()])
        if self.transcript is not None:
            record = TranscriptEntry(stream=self.stream, text=text, time=line.time,
                                     media_start=round(start, 3), media_end=round(end, 3))
            try:
                self.transcript.emit(record, json_line(record))
            except OSError as error:  # a full disk: the lines still go out on the topic;
                # the file keeps its whole lines, the rest is counted (transcript_unwritten)
                log.warning("asr %s: transcript not written: %s", self.stream, error)

    def close(self) -> None:
        if self.transcript is not None:
            self.transcript.close()


class AsrStage:
    """One source's transcription loop (see the module); :meth:`run` returns the exit code."""

    def __init__(self, input: AudioInput, stream: str, transcriber: Transcriber,
                 segmenter: SpeechSegmenter, publisher: LinePublisher,
                 reporter: StatusReporter, stop: StopFlag, *, paced: bool, lead_s: float,
                 memory: AsrMemory, batch_s: float = 10.0,
                 backoff_s: tuple[float, float] = (0.5, 8.0)) -> None:
        self.input = input
        self.stream = stream
        self.transcriber = transcriber
        self.segmenter = segmenter
        self.publisher = publisher
        self.reporter = reporter
        self.stop = stop
        self.paced = paced
        self.lead_s = lead_s
        self.memory = memory
        self.batch_s = 0.0 if input.live else batch_s  # live: every utterance at once
        self.backoff_s = backoff_s
        self._batch: list[Speech] = []
        self.stitcher = Stitcher(half_s=segmenter.half / SAMPLE_RATE)
        if not input.live:
            self.stitcher.restore(memory.stitch)
        self._line = max((word.line for word in self.stitcher.tail), default=0)
        """The last Whisper segment's number: a line is the words of one segment."""
        self.figures = AsrFigures()
        self.failed = FailedItems(reporter.counters, "asr")
        self.problem: str | None = None
        self.origin: float | None = None
        self.ready = False

    def extra(self) -> JsonDict:
        transcript = self.publisher.transcript
        return {"stream": self.stream, "audio": self.input.describe()[:256],
                "model": self.transcriber.name, "problem": self.problem,
                "transcript_unwritten": 0 if transcript is None else transcript.failed,
                "forced_cuts": self.segmenter.forced_cuts, **self.figures.report()}

    def run(self) -> int:
        if self.input.live:
            self._ready()
        backoff = self.backoff_s[0]
        while not self.stop:
            reader = AudioReader(self.input)
            try:
                self._read(reader)
                self.problem = None if reader.figures.blocks else "no audio decoded"
            except AudioCorrupt as error:
                self.problem = f"audio of {self.input.describe()}: {error}"
                log.warning("asr %s: %s; the video goes on without its text", self.stream,
                            self.problem)
            self._take(self.segmenter.flush(), final=True)
            if not self.input.live:
                break
            self.reporter.maybe_send(self.extra())  # a live input dropped: reopen it
            deadline = time.monotonic() + backoff
            while not self.stop and time.monotonic() < deadline:
                time.sleep(PACE_POLL_S)
                self.reporter.maybe_send(self.extra())
            backoff = min(self.backoff_s[1], backoff * 2)
        self._ready()  # a file shorter than lead_s: all of it is out now
        self.reporter.stopping(self.extra())
        return 0

    def _read(self, reader: AudioReader) -> None:
        self.publisher.anchor = None
        for block in reader.blocks():
            if self.stop:
                return
            if self.input.live and self.publisher.anchor is None:
                self.publisher.anchor = time.monotonic() - block.end
            self._pace(block.start)
            self.figures.audio_s += len(block.samples) / SAMPLE_RATE
            self.reporter.saw_input(time.monotonic())
            self.reporter.counters.received += 1
            self._take(self.segmenter.feed(block), now=block.end)
            self.reporter.maybe_send(self.extra())

    def _pace(self, media: float) -> None:
        """A file: report ready once ``lead_s`` is out, then keep ``lead_s`` ahead of real
        time if paced (what the capture reads meanwhile)."""
        if self.input.live:
            return
        if not self.ready:
            if media >= self.lead_s:
                self._ready()
            return
        if not self.paced or self.origin is None:
            return
        while not self.stop and media > time.monotonic() - self.origin + self.lead_s:
            time.sleep(PACE_POLL_S)
            self.reporter.saw_input(time.monotonic())  # waiting on purpose, not stalled
            self.reporter.maybe_send(self.extra())

    def _ready(self) -> None:
        if not self.ready:
            self.ready = True
            self.origin = time.monotonic()
            self.reporter.ready()

    def _take(self, speech: list[Speech], *, now: float = 0.0, final: bool = False) -> None:
        """Queue ended utterances; transcribe the queue once it spans ``batch_s`` of media
        time up to ``now`` (the newest audio), at the end, or at once for a live input."""
        for one in speech:
            if not self.input.live and one.end <= self.memory.until:
                self.figures.skipped += 1  # published before a restart
                continue
            if one.seam_before is not None and self._batch:
                # never in one Whisper call with the piece it overlaps (the same audio twice)
                batch, self._batch = self._batch, []
                self._transcribe(batch)
            self._batch.append(one)
        if self._batch and (final or now - self._batch[0].start >= self.batch_s):
            batch, self._batch = self._batch, []
            self._transcribe(batch)
        if final:  # nothing continues the last forced cut: its waiting words count
            self._publish(self.stitcher.finish())

    def _transcribe(self, batch: list[Speech]) -> None:
        joined = JoinedSpeech(batch)
        seams = any(one.seam_before is not None or one.seam_after is not None
                    for one in batch)
        started, began = time.process_time(), time.monotonic()
        try:  # word times only where a forced cut's pieces are joined by them
            utterances = self.transcriber.transcribe(joined.samples, words=seams)
        except (RuntimeError, ValueError) as error:
            self.failed.add(error)
            return
        finally:
            self.figures.transcribe_cpu_s += time.process_time() - started
            self.reporter.counters.busy_s += time.monotonic() - began  # ms per utterance
        self.figures.utterances += len(batch)
        self.figures.speech_s += sum(one.end - one.start for one in batch)
        self.reporter.counters.processed += len(batch)
        pieces: list[list[Word]] = [[] for _ in batch]
        for utterance in utterances:
            self._line += 1
            timed = utterance.words or (TimedWord(utterance.start, utterance.end,
                                                  utterance.text),)
            for number, word in enumerate(timed):
                start = joined.media_time(word.start)
                end = max(start, joined.media_time(word.end, end=True))
                index = joined.piece_at((word.start + word.end) / 2)
                pieces[index].append(Word(start, end, word.text, self._line, number == 0))
        out: list[Word] = []
        for piece, words in zip(batch, pieces, strict=True):
            out += self.stitcher.take(words, seam_before=piece.seam_before,
                                      seam_after=piece.seam_after)
        self._publish(out)
        if not self.input.live:
            self.memory.save(batch[-1].end, self.stitcher.state())

    def _publish(self, words: list[Word]) -> None:
        """One line per run of words from one Whisper segment."""
        runs: list[list[Word]] = []
        for word in words:
            if runs and runs[-1][-1].line == word.line:
                runs[-1].append(word)
            else:
                runs.append([word])
        for run in runs:
            text = "".join(word.text for word in run).strip()
            if not text:
                continue
            start = run[0].start
            self.publisher.send(start, max(start, max(word.end for word in run)), text)
            self.figures.lines += 1
            self.reporter.counters.sent += 1


def run_asr(config: RunConfig, index: int, endpoints: Endpoints, stop: StopFlag,
            context: zmq.Context, state_dir: Path | None = None,
            out: Path | None = None) -> int:
    """Transcribe source ``index`` until its audio ends or ``stop``; the exit code. With
    ``out``, the lines are also kept in ``out/transcript-STREAM.jsonl``."""
    source = config.sources[index]
    stream = config.stream_ids()[index]
    asr = config.asr
    input = audio_input(source)
    if input is None:  # hidemo run only starts an ASR for a source with audio
        log.error("%s source %s has no audio to transcribe", FATAL_MARKER, source.spec)
        return EX_CONFIG
    status = open_endpoint(context, endpoints, "status", "connect", config.endpoints)
    reporter = StatusReporter(status, "asr", index,
                              interval_s=config.supervisor.status_interval_s,
                              stall_after_s=config.supervisor.stall_after_s)
    text = open_endpoint(context, endpoints, "text", "connect", config.endpoints)
    connected = time.monotonic()
    try:
        transcriber = load_transcriber(asr)
    except TranscriberUnavailable as error:
        log.error("%s %s", FATAL_MARKER, error)
        return EX_CONFIG
    segmenter = SpeechSegmenter(SileroVad(min_silence_s=asr.min_silence_s),
                                step_s=asr.step_s, min_silence_s=asr.min_silence_s,
                                max_utterance_s=asr.max_utterance_s, overlap_s=asr.overlap())
    memory = AsrMemory(None if state_dir is None else state_dir / f"asr-{index}.json")
    transcript = None if out is None else JsonlSink(out / f"transcript-{stream}.jsonl",
                                                     name="transcript")
    publisher = LinePublisher(text, stream, live=input.live, transcript=transcript)
    stage = AsrStage(input, stream, transcriber, segmenter, publisher, reporter, stop,
                     paced=source.realtime, lead_s=asr.lead_s, memory=memory,
                     batch_s=asr.batch_s,
                     backoff_s=(source.reconnect_min_s, source.reconnect_max_s))
    time.sleep(max(0.0, connected + SUBSCRIBE_WAIT_S - time.monotonic()))
    log.info("asr %s: %s with %s (%d thread(s)), %s", stream, input.describe(),
             transcriber.name, asr.threads,
             "live" if input.live else f"{asr.lead_s:g} s ahead of the video")
    try:
        code = stage.run()
    finally:
        publisher.close()
    text.close(linger=END_LINGER_MS)  # the last lines must get out before the process goes
    log.info("asr %s: %d line(s) from %.1f s of audio (%.1f s of speech), CPU %.1f s",
             stream, stage.figures.lines, stage.figures.audio_s, stage.figures.speech_s,
             time.process_time())
    return code
