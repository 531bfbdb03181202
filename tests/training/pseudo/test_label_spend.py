"""Spend adds up, as a property over the real clients and local wire servers: for any
manifest with duplicated files and any sequence of server answers (labels, refusals,
unusable answers, errors), over a run and its rerun, the report's token and cost totals
equal the sum over the distinct stored answers and equal what the server billed."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_servers import Answer, Fail, Garbage, GeminiServer, OpenAIServer, Refuse

from training.data.manifest import ManifestRow
from training.pseudo.label_job import run_labelling
from training.pseudo.labeler import VlmLabeler
from training.pseudo.pricing import Price, price_for
from training.pseudo.prompts import load_prompts
from training.pseudo.providers.gemini import GeminiProvider
from training.pseudo.providers.openai_compat import OpenAICompatProvider
from training.pseudo.records import CropMode, Sampling, Usage
from training.pseudo.report import report_from_store
from training.pseudo.retry import RetryPolicy
from training.pseudo.store import LabelStore

pytestmark = pytest.mark.slow  # many labelling runs over real sockets

FRAME = Sampling(frames=1, size=32, crop=CropMode.FRAME)
OPENAI_PRICE = Price(input_per_m=2.0, output_per_m=8.0)
VERDICT = json.dumps({"label": "positive", "confidence": 0.7, "reasoning": "smiles"})
REFUSAL_USAGE = {"openai": (100, 10), "gemini": (100, 0)}
"""What the wire servers' refusal bodies report."""


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three small distinct demo videos, made once for every example."""
    from stream.media.demo import write_demo_video

    folder = tmp_path_factory.mktemp("spend-videos")
    return [write_demo_video(folder / f"f{index}.avi", seconds=0.3 + 0.1 * index, fps=10,
                             width=32, height=24) for index in range(3)]


tokens = st.integers(0, 5000)
entries = st.one_of(
    st.builds(lambda i, o: Answer(VERDICT, i, o), tokens, tokens),
    st.builds(lambda i, o: Answer("not the verdict", i, o), tokens, tokens),
    st.just(Refuse("SAFETY")),
    st.just(Fail(429, retry_after=0)),
    st.just(Fail(401)),
    st.just(Garbage("<html>")),
)


def billed(entry: object, protocol: str) -> Usage:
    """The usage the server reported for one scripted entry (errors bill nothing)."""
    if isinstance(entry, Answer):
        return Usage(entry.input_tokens, entry.output_tokens)
    if isinstance(entry, Refuse):
        return Usage(*REFUSAL_USAGE[protocol])
    return Usage()


def price(protocol: str) -> Price:
    found = OPENAI_PRICE if protocol == "openai" else price_for("gemini", "gemini-2.5-flash")
    assert found is not None
    return found


def labeler(server: OpenAIServer | GeminiServer, protocol: str) -> VlmLabeler:
    if protocol == "openai":
        provider = OpenAICompatProvider("m", server.base_url, api_key="k-local-test",
                                        price=OPENAI_PRICE)
    else:
        provider = GeminiProvider("gemini-2.5-flash", api_key="g-local-test-key",
                                  base_url=server.base_url)
    return VlmLabeler(provider, load_prompts(), RetryPolicy(max_attempts=2, base_delay_s=0.0),
                      sleep=lambda _s: None)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(protocol=st.sampled_from(["openai", "gemini"]),
       files=st.lists(st.integers(0, 2), min_size=1, max_size=6),
       script=st.lists(entries, min_size=1, max_size=12),
       runs=st.integers(1, 2))
def test_report_totals_are_the_distinct_stored_answers_and_the_bill(
        videos: list[Path], protocol: str, files: list[int], script: list, runs: int) -> None:
    rows = [ManifestRow(f"id{index}", str(videos[file]), split="train")
            for index, file in enumerate(files)]
    server_type = OpenAIServer if protocol == "openai" else GeminiServer
    with tempfile.TemporaryDirectory() as folder, server_type(script) as server, \
            LabelStore.open(Path(folder) / "s.sqlite") as store:
        for _ in range(runs):
            run_labelling(rows, labeler(server, protocol), store, FRAME, select="all",
                          say=lambda _line: None)
        report = report_from_store(store, rows)
        served = [script[min(i, len(script) - 1)] for i in range(len(server.requests))]
        with sqlite3.connect(Path(folder) / "s.sqlite") as db:
            stored = db.execute("SELECT COALESCE(SUM(input_tokens), 0), "
                                "COALESCE(SUM(output_tokens), 0), SUM(cost_usd) FROM labels"
                                ).fetchone()
    bill = sum((billed(entry, protocol) for entry in served), Usage())
    bill_cost = sum(price(protocol).cost(billed(entry, protocol)) for entry in served)
    spend = report.spend
    assert (spend.input_tokens, spend.output_tokens) == stored[:2]
    assert (spend.input_tokens, spend.output_tokens) == (bill.input_tokens,
                                                         bill.output_tokens)
    assert (spend.cost_usd or 0.0) == pytest.approx(stored[2] or 0.0)
    assert (spend.cost_usd or 0.0) == pytest.approx(bill_cost)
    assert spend.answers <= len(set(files))  # one answer per distinct file, at most
    assert sum(v.input_tokens or 0 for v in report.videos) == spend.input_tokens
    assert report.counts.rows <= len(rows)
