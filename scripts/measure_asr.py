"""Word error rate, real-time factor and CPU of the ASR stage on espeak-ng speech.

Makes a video that speaks known sentences (tests/stream/speech_video.py: espeak-ng and
ffmpeg), then runs the ASR stage (``stream.stages.asr.AsrStage``: PyAV decode -> Silero VAD
utterances -> faster-whisper, lines kept instead of published) on it in this process, as
fast as it goes (``realtime: false``), and reports:

- WER of the whole transcript (case and punctuation ignored), and per sentence;
- load: CPU and wall seconds to import faster-whisper and load the model (once per
  process);
- RTF: CPU seconds of decode + VAD + transcription per second of audio (what a stream
  costs one core on average), and the same in wall time; per second of speech too.

Usage::

    PYTHONPATH=$PWD nice -n 19 .venv/bin/python scripts/measure_asr.py [--repeat 3]
        [--threads 1] [--model-path DIR] [--codec aac] [--batch-s 10] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "stream"))

from speech_video import SENTENCES, make_speech_video, missing_tools, word_errors

from engines.adapters.vad import SileroVad
from stream.config import AsrConfig
from stream.media.audio import AudioInput
from stream.media.speech import SpeechSegmenter
from stream.stages.asr import AsrMemory, AsrStage, LinePublisher, load_transcriber
from stream.stages.loop import StopFlag
from stream.transport.status import StatusReporter


class Recorder(LinePublisher):
    """Keeps the lines instead of publishing them."""

    def __init__(self) -> None:
        super().__init__(None, "file0", live=False)  # type: ignore[arg-type]
        self.lines: list[tuple[float, float, str]] = []

    def send(self, start: float, end: float, text: str) -> None:
        self.lines.append((start, end, text))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="times the sentences are said")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model-path", type=Path, default=None)
    parser.add_argument("--codec", default="aac")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="make the video in DIR and keep it (e.g. to run hidemo run on it)")
    parser.add_argument("--batch-s", type=float, default=10.0,
                        help="asr.batch_s (0: one Whisper call per utterance)")
    args = parser.parse_args()
    if (why := missing_tools()) is not None:
        print(f"measure_asr: {why}", file=sys.stderr)
        return 2
    config = AsrConfig(threads=args.threads, model_path=args.model_path, batch_s=args.batch_s)
    with tempfile.TemporaryDirectory(prefix="asr-measure-") as scratch:
        video = make_speech_video(args.keep or Path(scratch), SENTENCES * args.repeat,
                                  gap_s=1.5, audio_codec=args.codec)
        cpu, wall = time.process_time(), time.perf_counter()
        transcriber = load_transcriber(config)
        segmenter = SpeechSegmenter(SileroVad(min_silence_s=config.min_silence_s),
                                    step_s=config.step_s, min_silence_s=config.min_silence_s,
                                    max_utterance_s=config.max_utterance_s,
                                    overlap_s=config.overlap())
        load = {"cpu_s": round(time.process_time() - cpu, 2),
                "wall_s": round(time.perf_counter() - wall, 2)}
        publisher = Recorder()
        stage = AsrStage(AudioInput(str(video.path), live=False), "file0", transcriber,
                         segmenter, publisher, StatusReporter(None, "asr", 0), StopFlag(),
                         paced=False, lead_s=config.lead_s, memory=AsrMemory(None),
                         batch_s=config.batch_s)
        cpu, wall = time.process_time(), time.perf_counter()
        stage.run()
        cpu_s, wall_s = time.process_time() - cpu, time.perf_counter() - wall
        lines = publisher.lines
    audio_s, speech_s = stage.figures.audio_s, stage.figures.speech_s
    per_sentence = []
    total_errors = total_words = 0
    for spoken in video.spoken:  # the lines whose middle lies in the sentence's span
        heard = " ".join(text for start, end, text in lines
                         if spoken.start - 0.5 <= (start + end) / 2 <= spoken.end + 0.5)
        errors, words = word_errors(spoken.text, heard)
        total_errors, total_words = total_errors + errors, total_words + words
        per_sentence.append({"said": spoken.text, "heard": heard,
                             "wer": round(errors / words, 3)})
    report = {
        "model": transcriber.name, "threads": args.threads, "codec": args.codec,
        "audio_s": round(audio_s, 1), "speech_s": round(speech_s, 1),
        "lines": len(lines), "utterances": stage.figures.utterances,
        "vad_passes": segmenter.passes, "batch_s": config.batch_s,
        "wer": round(_whole_wer(video.spoken, lines), 3), "words": total_words,
        "load": load,
        "cpu_s": round(cpu_s, 2), "wall_s": round(wall_s, 2),
        "rtf_cpu": round(cpu_s / audio_s, 3), "rtf_wall": round(wall_s / audio_s, 3),
        "cpu_per_speech_s": round(cpu_s / speech_s, 3) if speech_s else None,
        # lines given to the sentence their middle lies in: with batch_s > 0 a line may
        # hold several sentences and then counts for none (batch-s 0 to compare sentences)
        "wer_by_sentence_midpoint": round(total_errors / total_words, 3),
        "sentences": per_sentence[:len(SENTENCES)],
        "lines_heard": [[round(a, 2), round(b, 2), text] for a, b, text in lines],
        "wer_by_sentence": [s["wer"] for s in per_sentence],
    }
    print(json.dumps(report, indent=2))
    return 0


def _whole_wer(spoken: list, lines: list[tuple[float, float, str]]) -> float:
    """WER of the whole transcript against the whole script (a line may span sentences)."""
    errors, words = word_errors(" ".join(s.text for s in spoken),
                                " ".join(text for _, _, text in lines))
    return errors / words


if __name__ == "__main__":
    sys.exit(main())
