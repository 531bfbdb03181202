"""Pipelines on engines served by one real Triton server (``hidemo serve-engines``).

Two ``hidemo run`` processes (as two hosts would) share the server, and Triton batches
their image-embedder requests together; a server killed mid-run is an outage the run
reports and survives; a served model that is not the engine verified here is refused at
start with the fix.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from pipeline_runs import finish, read_jsonl, start_run, wait_for, write_config
from triton_server import engines_with_another_onnx, serving

from engines.serving.server import READY_AGAIN

pytestmark = pytest.mark.slow

SOURCE = {"spec": "demo", "width": 320, "height": 240}


def _triton(served, **changes: object) -> dict[str, object]:
    return {"url": served.url, "token_file": str(served.token_file),
            "engines": ["image_embedder", "text_embedder"], **changes}


def _seqs(path: Path) -> list[int]:
    return [p["seq"] for p in read_jsonl(path)]


@pytest.fixture(scope="module")
def shared_server(tiny_engine_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One server for the tests that do not kill it (a start costs several seconds)."""
    # a request waits up to 0.5 s for a second one: the two pipelines' requests (a few a
    # second each) then meet however busy the machine is, so batching is not left to timing
    with serving(tiny_engine_dir, tmp_path_factory.mktemp("serve"), "--max-queue-delay-us",
                 "500000", "--preferred-batch-sizes", "2",
                 engines=("image_embedder", "text_embedder")) as served:
        yield served


def test_two_pipelines_share_one_server_and_their_requests_are_batched_together(
        tiny_engine_dir: Path, tmp_path: Path, shared_server) -> None:
    served = shared_server
    before = served.statistics("image_embedder")
    runs = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        config = write_config(folder, [SOURCE], backend="triton",
                              triton=_triton(served), placement="fused")
        runs.append((folder, start_run(folder, tiny_engine_dir, config, 20.0)))
    outputs = [finish(run, timeout=240) for _, run in runs]
    stats = served.statistics("image_embedder")
    for (folder, run), output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output
        seqs = _seqs(folder / "out" / "predictions.jsonl")
        assert len(seqs) >= 3, output
        assert seqs == list(range(len(seqs))), "contiguous seq in each pipeline"
        summary = json.loads((folder / "out" / "summary.json").read_text())
        served_figures = next(iter(summary["served"].values()))["image_embedder"]
        assert served_figures["items"] > 0 and served_figures["outages"] == 0
        config = json.loads((folder / "out" / "config.json").read_text())
        assert config["backend"] == "triton"
    requests = int(stats["inference_stats"]["success"]["count"]) - int(
        before["inference_stats"]["success"]["count"])
    executions = int(stats["execution_count"]) - int(before["execution_count"])
    assert requests > 0 and executions < requests, (
        f"Triton joined requests of the two pipelines: {requests} requests in "
        f"{executions} executions, batches {stats.get('batch_stats')}")


def test_a_server_killed_mid_run_is_an_outage_the_run_reports_and_survives(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    with serving(tiny_engine_dir, tmp_path / "serve",
                 engines=("image_embedder", "text_embedder")) as served:
        config = write_config(tmp_path, [SOURCE], backend="triton",
                              triton=_triton(served, timeout_s=2.0), placement="split")
        run = start_run(tmp_path, tiny_engine_dir, config, 45.0)
        predictions = tmp_path / "out" / "predictions.jsonl"
        wait_for(lambda: len(read_jsonl(predictions)) >= 2, 180, "first predictions", run)
        server = served.tritonserver()
        server.send_signal(signal.SIGKILL)  # the worker notices, the supervisor restarts it
        killed_at = len(read_jsonl(predictions))
        served.wait_for_line(READY_AGAIN, 180)
        wait_for(lambda: any("image" in p["modalities"]
                             for p in read_jsonl(predictions)[killed_at + 2:]),
                 120, "predictions with images after the server came back", run)
        output = finish(run, timeout=240)
    assert run.returncode == 0, output
    seqs = _seqs(predictions)
    assert seqs == list(range(len(seqs))), "seq stays contiguous through the outage"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert all(count == 0 for count in summary["restarts"].values()), summary["restarts"]
    features = summary["served"]["features[0]"]["image_embedder"]
    assert features["outages"] >= 1 and features["reconnects"] >= 1
    assert features["state"] == "up"
    failed = summary["stages"]["features[0]"]["counters"]["failed"]
    assert failed.get("EngineUnavailable", 0) >= 1, failed
    kinds = [e["event"] for e in summary["events"]]
    assert "served-away" in kinds and "served-back" in kinds, kinds
    assert any("Triton at" in w and "image_embedder" in w for w in summary["warnings"])
    assert "served-away" in output and "Triton at" in output


def test_a_served_model_that_is_not_the_verified_engine_is_refused_at_start(
        tiny_engine_dir: Path, tmp_path: Path, shared_server) -> None:
    """The server serves the original engines; this pipeline verified another ONNX file
    under the same name: the identities differ, the run does not start."""
    other = engines_with_another_onnx(tiny_engine_dir, tmp_path / "other-engines")
    config = write_config(tmp_path, [SOURCE], backend="triton",
                          triton=_triton(shared_server, engines=["image_embedder"]))
    run = start_run(tmp_path, other, config, 20.0)
    output = finish(run, timeout=180)
    assert run.returncode != 0, output
    assert "is not the engine verified here" in output and "hidemo.onnx_sha256" in output
    assert "hidemo serve-engines --engine-dir" in output

