"""The report page: one HTML file that needs nothing else, and the PNGs it shows.

Every picture is inline (``data:`` URIs), the style is inline, there is no script and no
font, image or link to fetch, so the page opens offline, from a mail attachment as well as
from the run's folder, and makes no network request. What the plots show is also in a
JSON block (``<script type="application/json" id="report-data">``, data only): one series
per (stream, person) with its number of predictions, so a reader or a test can check the
pictures against ``predictions.jsonl``.

Example:
    >>> report = build_report(read_outputs(Path("runs/demo")))  # doctest: +SKIP
    >>> sorted(report.pngs)  # doctest: +SKIP
    ['report-latency.png', 'report-timeline-demo0-1.png']
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from stream.prediction import Prediction
from stream.report.figures import latency_png, timeline_png
from stream.report.outputs import RunOutputs, TranscriptLine

PERSONS_PER_FIGURE = 12
"""Persons per timeline picture: a stream with more gets several pictures."""
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d232a;
background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;
border-bottom:1px solid #d5d9de;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
.banner{padding:10px 14px;border-radius:6px;margin:10px 0;font-weight:600}
.banner.random{background:#c62828;color:#fff;font-size:16px}
.banner.fail{background:#fde7e7;color:#8e1b1b;border:1px solid #e5a0a0}
.banner.warn{background:#fff6dd;color:#6b4e00;border:1px solid #e8cf83}
.banner ul{margin:4px 0 0 18px;padding:0;font-weight:400}
table{border-collapse:collapse;margin:6px 0 12px;background:#fff;font-size:13px}
th,td{border:1px solid #d5d9de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.bad{background:#c62828;color:#fff;font-weight:600}
img{max-width:100%;height:auto;background:#fff;border:1px solid #d5d9de;display:block;
margin:8px 0}
.facts{color:#46505a}.facts b{color:#1d232a}
pre{background:#fff;border:1px solid #d5d9de;padding:10px;overflow:auto;font-size:12px;
max-height:480px}
code{font-size:12px}
"""


@dataclass
class Report:
    """The page, the pictures it shows (file name -> PNG) and the data behind them."""

    html: str
    pngs: dict[str, bytes] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


def clock(seconds: float) -> str:
    """``mm:ss.s`` (``-`` for a negative time)."""
    sign = "-" if seconds < 0 else ""
    minutes, rest = divmod(abs(seconds), 60.0)
    return f"{sign}{int(minutes):02d}:{rest:04.1f}"


def build_report(outputs: RunOutputs) -> Report:
    """The report of ``outputs``: nothing is written here."""
    report = Report(html="")
    persons = outputs.persons()
    series = []
    body: list[str] = []
    body += _heading(outputs)
    for stream in outputs.streams():
        mine = sorted(((p, r) for (s, p), r in persons.items() if s == stream),
                      key=lambda item: (item[1][0].window.end, item[0]))
        lines = outputs.transcripts.get(stream, [])
        body += _stream_section(stream, mine, lines, outputs, report)
        for person, records in mine:
            series.append({"stream": stream, "person": person, "points": len(records),
                           "first_s": records[0].window.end, "last_s": records[-1].window.end,
                           "modalities": sorted({"+".join(sorted(r.modalities)) or "none"
                                                 for r in records})})
    body += _latency_section(outputs, report)
    body += _engines_section(outputs)
    body += _config_section(outputs)
    report.data = {"run": str(outputs.folder), "series": series,
                   "streams": outputs.streams(), "figures": sorted(report.pngs),
                   "predictions": len(outputs.predictions),
                   "transcript_lines": sum(len(v) for v in outputs.transcripts.values()),
                   "random_engines": outputs.random_engines(), "problems": outputs.problems}
    data = json.dumps(report.data, indent=1, allow_nan=False).replace("</", "<\\/")
    title = f"hidemo report: {outputs.folder.name}"
    report.html = "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',  # no favicon request
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>",
        "<body><main>", *body,
        f'<script type="application/json" id="report-data">{data}</script>',
        "</main></body></html>", ""])
    return report


def _heading(outputs: RunOutputs) -> list[str]:
    summary, config = outputs.summary or {}, outputs.config or {}
    out = [f"<h1>hidemo report: {escape(outputs.folder.name)}</h1>"]
    random = outputs.random_engines()
    if random:
        out.append(f'<div class="banner random" id="random-weights">RANDOM WEIGHTS: '
                   f'{escape(", ".join(random))} had random weights. These predictions mean '
                   f'nothing; they only show that the pipeline runs.</div>')
    failures = summary.get("failures") or []
    if failures:
        out.append(_banner("fail", "The run failed", failures))
    warnings = summary.get("warnings") or []
    if warnings:
        out.append(_banner("warn", "Warnings", warnings))
    if outputs.problems:
        out.append(_banner("warn", "Some outputs could not be read", outputs.problems))
    sources = ", ".join(str(s.get("spec")) for s in config.get("sources", [])
                        if isinstance(s, dict))
    facts = [("ended", summary.get("reason")), ("exit code", summary.get("exit_code")),
             ("wall", f"{summary['wall_s']:.1f} s" if "wall_s" in summary else None),
             ("sources", sources or None), ("profile", config.get("profile")),
             ("placement", (summary.get("placement") or {}).get("placement")
              or config.get("placement")),
             ("keypoints", config.get("keypoints")), ("backend", config.get("backend")),
             ("predictions", len(outputs.predictions)),
             ("persons", len(outputs.persons()))]
    out.append('<p class="facts">' + " &middot; ".join(
        f"{escape(k)} <b>{escape(str(v))}</b>" for k, v in facts if v is not None) + "</p>")
    return out


def _banner(kind: str, title: str, items: Iterable[object]) -> str:
    rows = "".join(f"<li>{escape(str(item))}</li>" for item in items)
    return f'<div class="banner {kind}">{escape(title)}<ul>{rows}</ul></div>'


def _stream_section(stream: str, persons: Sequence[tuple[int, list[Prediction]]],
                    lines: Sequence[TranscriptLine], outputs: RunOutputs,
                    report: Report) -> list[str]:
    out = [f'<h2 id="stream-{_slug(stream)}">Stream {escape(stream)}</h2>']
    times = [r.window.end for _, records in persons for r in records]
    times += [t for line in lines for t in (line.media_start, line.media_end)]
    span = (min([0.0, *times]), max([1.0, *times]))
    chunks = [persons[i:i + PERSONS_PER_FIGURE]
              for i in range(0, len(persons), PERSONS_PER_FIGURE)] or [[]]
    for number, chunk in enumerate(chunks, 1):
        # the transcript goes under every picture: each one reads alone
        title = f"{stream}: p(positive) per person"
        if len(chunks) > 1:
            title += f" ({number} of {len(chunks)})"
        name = f"report-timeline-{_slug(stream)}-{number}.png"
        report.pngs[name] = timeline_png(stream, chunk, lines, span, title)
        ids = " ".join(str(p) for p, _ in chunk)
        out.append(f'<img class="timeline" alt="{escape(title)}" data-stream="{escape(stream)}" '
                   f'data-persons="{ids}" src="{_data_uri(report.pngs[name])}">')
    if persons:
        out.append("<h3>Persons</h3><table class=\"persons\"><tr><th>person</th>"
                   "<th>predictions</th><th>from</th><th>to</th><th>positive</th>"
                   "<th>mean p(positive)</th><th>windows' modalities</th></tr>")
        for person, records in persons:
            positive = sum(r.label == "positive" for r in records)
            mean = sum(r.probs.get("positive", 0.0) for r in records) / len(records)
            modalities = Counter("+".join(sorted(r.modalities)) or "none" for r in records)
            out.append(
                f'<tr data-stream="{escape(stream)}" data-person="{person}"><td>#{person}</td>'
                f'<td class="num">{len(records)}</td><td>{clock(records[0].window.end)}</td>'
                f"<td>{clock(records[-1].window.end)}</td>"
                f'<td class="num">{positive / len(records):.0%}</td>'
                f'<td class="num">{mean:.3f}</td><td>'
                + escape(", ".join(f"{k} {v}" for k, v in modalities.most_common()))
                + "</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>No prediction for this stream.</p>")
    if lines:
        out.append("<h3>Transcript</h3><table class=\"transcript\"><tr><th>from</th>"
                   "<th>to</th><th>said</th></tr>")
        out += [f"<tr><td>{clock(line.media_start)}</td><td>{clock(line.media_end)}</td>"
                f"<td>{escape(line.text)}</td></tr>" for line in lines]
        out.append("</table>")
    elif outputs.summary is not None:
        out.append("<p>No transcript kept for this stream (the ASR keeps one in "
                   "<code>transcript-STREAM.jsonl</code> for a source with audio).</p>")
    return out


def _latency_section(outputs: RunOutputs, report: Report) -> list[str]:
    out = ["<h2 id=\"latency\">Latency and drops</h2>"]
    summary = outputs.summary or {}
    streams = summary.get("streams") or {}
    if streams:
        out.append("<table class=\"streams\"><tr><th>stream</th><th>frames</th>"
                   "<th>dropped</th><th>lost</th><th>predictions</th><th>latency p50</th>"
                   "<th>p95</th><th>max</th><th>analysed per s</th></tr>")
        for stream, info in streams.items():
            latency = info.get("latency_ms") or {}
            rates = ", ".join(f"{k} {v:g}" for k, v in (info.get("rates") or {}).items())
            out.append(
                f"<tr><td>{escape(stream)}</td>"
                + "".join(f'<td class="num">{escape(str(info.get(k, "")))}</td>'
                          for k in ("frames", "dropped", "lost", "predictions"))
                + "".join(f'<td class="num">{_ms(latency.get(k))}</td>'
                          for k in ("p50", "p95", "max"))
                + f"<td>{escape(rates)}</td></tr>")
        out.append("</table>")
    latencies: dict[str, list[float]] = {}
    for frame in outputs.frames:
        for stage, ms in frame.latency_ms.items():
            latencies.setdefault(stage, []).append(ms)
    report.pngs["report-latency.png"] = latency_png(latencies)
    out.append(f'<img class="latency" alt="latency per stage" '
               f'src="{_data_uri(report.pngs["report-latency.png"])}">')
    stages = summary.get("stages") or {}
    if stages:
        restarts = summary.get("restarts") or {}
        resources = (summary.get("resources") or {}).get("stages") or {}
        out.append("<table class=\"stages\"><tr><th>stage</th><th>received</th>"
                   "<th>processed</th><th>sent</th><th>dropped in</th><th>dropped out</th>"
                   "<th>malformed</th><th>busy s</th><th>restarts</th><th>CPU %</th>"
                   "<th>peak RSS MB</th></tr>")
        for label, status in stages.items():
            counters = status.get("counters") or {} if isinstance(status, dict) else {}
            used = resources.get(label) or {}
            cells = [counters.get(k) for k in ("received", "processed", "sent", "dropped_in",
                                               "dropped_out", "malformed")]
            busy = counters.get("busy_s")
            cells += [None if busy is None else round(float(busy), 2), restarts.get(label),
                      used.get("cpu_percent"), used.get("peak_rss_mb")]
            out.append(f"<tr><td>{escape(label)}</td>" + "".join(
                f'<td class="num">{"" if c is None else escape(str(c))}</td>' for c in cells)
                + "</tr>")
        out.append("</table>")
    wasted = summary.get("processed_then_dropped")
    if wasted:
        out.append("<p>Frames processed, then dropped by a later hop: " + escape(", ".join(
            f"{k} {v}" for k, v in wasted.items())) + ".</p>")
    record = summary.get("record")
    if isinstance(record, dict):
        rows = "".join(
            f"<tr><td>{escape(stream)}</td><td>{escape(', '.join(info.get('files', [])))}</td>"
            f'<td class="num">{info.get("frames", 0)}</td>'
            f'<td class="num">{info.get("dropped", 0)}</td></tr>'
            for stream, info in (record.get("streams") or {}).items())
        out.append("<h3>Recorded video</h3><table class=\"record\"><tr><th>stream</th>"
                   "<th>file</th><th>frames written</th><th>dropped on the way</th></tr>"
                   + rows + "</table>")
    if not summary:
        out.append("<p>No summary.json: the run's counters are unknown.</p>")
    return out


def _engines_section(outputs: RunOutputs) -> list[str]:
    out = ["<h2 id=\"engines\">Engines</h2>"]
    engines = (outputs.summary or {}).get("engines")
    if engines:
        out.append("<table class=\"engines\"><tr><th>engine</th><th>model</th>"
                   "<th>precision</th><th>ONNX sha256</th><th>checkpoint sha256</th>"
                   "<th>random weights</th></tr>")
        for engine in engines:
            random = str(engine.get("random_weights", "")).lower() == "true"
            out.append(
                "<tr>" + "".join(f"<td>{escape(str(engine.get(k, '')))}</td>"
                                 for k in ("engine", "model", "precision"))
                + "".join(f"<td><code>{escape(str(engine.get(k, ''))[:16])}</code></td>"
                          for k in ("onnx_sha256", "source_sha256"))
                + ('<td class="bad">yes</td>' if random else "<td>no</td>") + "</tr>")
        out.append("</table>")
    else:
        out.append("<p>The summary names no engines (a run made before it kept them, or "
                   "one that did not finish).</p>")
    detectors = sorted({r.detector for r in outputs.predictions if r.detector})
    keypoints = sorted({r.keypoints for r in outputs.predictions if r.keypoints})
    if detectors or keypoints:
        out.append(f"<p>Persons found by <b>{escape(', '.join(detectors) or '?')}</b>; "
                   f"keypoints from <b>{escape(', '.join(keypoints) or '?')}</b>.</p>")
    return out


def _config_section(outputs: RunOutputs) -> list[str]:
    out = ["<h2 id=\"configuration\">Configuration</h2>"]
    if outputs.config is None:
        return [*out, "<p>No config.json.</p>"]
    reasons = outputs.config.get("reasons") or {}
    if any(reasons.values()):
        out.append("<table class=\"reasons\"><tr><th>choice</th><th>why</th></tr>" + "".join(
            f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>"
            for k, v in reasons.items() if v) + "</table>")
    text = json.dumps(outputs.config, indent=2)
    out.append(f"<details><summary>config.json (the resolved configuration)</summary>"
               f"<pre>{escape(text)}</pre></details>")
    return out


def _ms(value: object) -> str:
    return "" if not isinstance(value, int | float) else f"{value:.0f} ms"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
