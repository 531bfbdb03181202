"""The service parts without a pipeline: the MQTT outbox and configuration, the metrics'
running totals and exposition, health verdicts, and the HTTP endpoints with their token
and Host rules (a real server on a free loopback port, real requests)."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from sample_records import prediction

from stream.config import MqttConfig, load_config
from stream.run.cli import add_run_parser, config_from_args
from stream.run.health import Verdict, liveness, readiness
from stream.run.metrics import ProcessTotals, RunMetrics
from stream.run.mqtt import PASSWORD_ENV, USERNAME_ENV, Outbox, credentials
from stream.run.service import METRICS_TOKEN, Service
from stream.run.supervisor import StopRequest, Supervisor
from stream.run.view import make_view
from stream.transport.endpoints import Endpoints
from stream.transport.status import Counters, Health, StageStatus
from stream.ui.access import resolve_token

TOKEN = "t" * 24

# -- the MQTT outbox and configuration -----------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 20), count=st.integers(0, 60),
       policy=st.sampled_from(["drop-oldest", "drop-newest"]))
def test_the_outbox_is_bounded_keeps_order_and_counts_every_drop(
        size: int, count: int, policy: str) -> None:
    box = Outbox(size, policy)
    for seq in range(count):
        box.put(("t", str(seq).encode()))
    kept = [int(payload) for _, payload in box.items]
    assert len(kept) == min(size, count)
    assert box.dropped == count - len(kept)  # nothing vanishes uncounted
    expected = (list(range(count))[-size:] if policy == "drop-oldest"
                else list(range(min(size, count))))
    assert kept == expected  # in order: the newest kept, or the first


def run_config(**mqtt: Any) -> Any:
    return load_config(None, {"sources": [{"spec": "demo", "id": mqtt.pop("stream", "cam")}],
                              "profile": "tiny", "sinks": {"mqtt": mqtt}})


@pytest.mark.parametrize(("mqtt", "message"), [
    ({"url": "mqtt://user:secret@broker"}, "must not hold a user or password"),
    ({"url": "http://broker"}, "is not mqtt://HOST"),
    ({"url": "mqtt://broker:70000"}, "port"),
    ({"url": "mqtt://broker/path"}, "is not mqtt://HOST"),
    ({"url": "mqtt://broker", "topic": "site/+"}, "without '\\+'"),
    ({"url": "mqtt://broker", "topic": "$SYS"}, "not start with"),
    ({"url": "mqtt://broker", "stream": "a/b"}, "cannot be an MQTT topic level"),
    ({"url": "mqtt://broker", "password": "secret"}, "Extra inputs are not permitted"),
])
def test_a_bad_mqtt_configuration_is_refused_naming_the_key(mqtt: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        run_config(**mqtt)


def test_mqtt_credentials_come_from_the_environment_or_a_file(tmp_path: Path) -> None:
    config = MqttConfig(url="mqtt://broker")
    assert credentials(config, {}) == (None, None)
    assert credentials(config, {USERNAME_ENV: "cam", PASSWORD_ENV: "pw"}) == ("cam", "pw")
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    on_file = MqttConfig(url="mqtt://broker", username="cam", password_file=secret)
    assert credentials(on_file, {PASSWORD_ENV: "env"}) == ("cam", "from-file")
    with pytest.raises(ValueError, match="no user name"):
        credentials(config, {PASSWORD_ENV: "pw"})
    secret.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        credentials(on_file, {})
    missing = MqttConfig(url="mqtt://broker", username="cam", password_file=tmp_path / "no")
    with pytest.raises(ValueError, match="password_file"):
        credentials(missing, {})
    saved = run_config(url="mqtt://broker", username="cam", password_file=str(secret))
    assert "from-file" not in saved.model_dump_json()  # the saved configuration: a path only


# -- running totals across restarts ---------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(runs=st.lists(st.lists(st.integers(0, 50), min_size=1, max_size=6), min_size=1,
                     max_size=5))
def test_a_stage_total_only_grows_and_adds_up_every_process_of_the_label(
        runs: list[list[int]]) -> None:
    """Each inner list is one process's reports (its counter grows); a new pid is a
    restart starting again from zero. The total is what every process counted."""
    totals = ProcessTotals()
    previous, done = 0.0, 0
    for pid, increments in enumerate(runs, start=100):
        count = 0
        for step in increments:
            count += step
            status = StageStatus(stage="detect", replica=0, pid=pid, state=Health.RUNNING,
                                 counters=Counters(received=count,
                                                   rejected={"frames": {"schema": count}}))
            totals.update({"detect[0]": status})
            figures = totals.snapshot()["detect[0]"]
            assert figures.value("received") == done + count
            assert figures.value("rejected/frames/schema") == done + count
            assert figures.value("received") >= previous
            previous = figures.value("received")
        done += count


# -- a supervisor's state, without its pipeline ----------------------------------------------


@pytest.fixture
def supervisor(tmp_path: Path):
    """A supervisor whose stages and capture are one sleeping process (nothing of the
    pipeline starts), marked running and ready, the source's last frame just now."""
    config = load_config(None, {"sources": [{"spec": "demo"}], "profile": "tiny",
                                "placement": "split",
                                "supervisor": {"hang_after_s": 5.0, "drain_s": 0}})
    endpoints = replace(Endpoints.for_config(config.endpoints, tmp_path),
                        predictions=f"ipc://{tmp_path}/predictions")
    run = Supervisor(config, endpoints, tmp_path / "spec.json", tmp_path / "logs",
                     make_view("none"), StopRequest())
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    now = time.monotonic()
    for child in [*run.children, *run.captures]:
        child.process = sleeper
        for label in child.status_labels:
            stage, replica = child.stage, child.index
            run.statuses[label] = StageStatus(stage=stage, replica=replica, pid=sleeper.pid,
                                              state=Health.RUNNING,
                                              counters=Counters(received=10))
            run.heard[label] = now
    run.last_frame["capture[0]"] = now
    run.phase = "running"
    try:
        yield run
    finally:
        sleeper.kill()
        sleeper.wait()
        for child in [*run.children, *run.captures]:
            child.process = None
        run._shutdown()


def test_ready_only_while_every_stage_runs_and_every_source_delivers(
        supervisor: Supervisor) -> None:
    now = time.monotonic()
    assert readiness(supervisor, now) == Verdict(True)
    stale = readiness(supervisor, now + 6.0)  # past hang_after_s: stages and source silent
    assert not stale.ok
    assert any("source demo0 (demo) delivered no frame for 6.0 s" in r for r in stale.reasons)
    assert any(r.startswith("detect[0] silent") for r in stale.reasons)
    supervisor.captures[0].finished = True  # a file that ended is not waited for
    supervisor.heard = dict.fromkeys(supervisor.heard, now + 6.0)
    assert readiness(supervisor, now + 6.0).ok
    supervisor.children[0].process = None  # classify died, its restart pending
    assert readiness(supervisor, now).reasons == ["classify[0] is not running (restarting "
                                                  "or given up)"]
    supervisor.phase = "stopping"
    assert readiness(supervisor, now).body("ready") == {"ready": False,
                                                        "reasons": ["the run is stopping"]}


def test_alive_while_the_supervisor_loop_turns(supervisor: Supervisor) -> None:
    supervisor.turned = time.monotonic()
    assert liveness(supervisor).ok
    stuck = liveness(supervisor, supervisor.turned + 30.0)
    assert not stuck.ok and "has not turned for 30.0 s" in stuck.reasons[0]


def scrape(metrics: RunMetrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of the exposition, by name and sorted labels (the text a server sends,
    parsed back)."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    text = generate_latest(metrics.registry).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_the_exposition_carries_streams_stages_and_totals_across_restarts(
        supervisor: Supervisor) -> None:
    engines = [{"engine": "classifier", "model": "m", "precision": "fp32", "onnx_sha256": "a",
                "source_sha256": "b", "random_weights": "true"}]
    metrics = RunMetrics(supervisor, engines)
    classify = supervisor.statuses["classify[0]"]
    supervisor.statuses["classify[0]"] = replace(classify, extra={"streams": {"demo0": {
        "frames": 40, "dropped": 3, "lost": 1, "predictions": 5}}})
    metrics.update(supervisor.statuses, {})
    detect = supervisor.statuses["detect[0]"]
    supervisor.statuses["detect[0]"] = replace(detect, pid=detect.pid + 1,
                                               counters=Counters(received=4, dropped_in=2))
    supervisor.children[-1].restarts = 1
    metrics.update(supervisor.statuses, {})  # detect restarted: a new pid from zero
    for seq in range(3):
        metrics.prediction(prediction(seq, stream="demo0"))
    supervisor.status_rejections.add("schema", "junk")
    samples = scrape(metrics)
    stream = (("stream", "demo0"),)
    assert samples["hidemo_frames_total"][stream] == 40
    assert samples["hidemo_frames_dropped_total"][stream] == 3
    assert samples["hidemo_frames_lost_total"][stream] == 1
    assert samples["hidemo_predictions_total"][stream] == 5
    assert samples["hidemo_e2e_latency_seconds_count"][stream] == 3
    assert samples["hidemo_e2e_latency_seconds_bucket"][(("le", "0.5"), *stream)] == 3
    assert samples["hidemo_e2e_latency_seconds_bucket"][(("le", "0.25"), *stream)] == 0
    detect_labels = (("replica", "0"), ("stage", "detect"))
    assert samples["hidemo_stage_received_total"][detect_labels] == 10 + 4
    assert samples["hidemo_stage_dropped_total"][(("cause", "inbox"), *detect_labels)] == 2
    assert samples["hidemo_stage_restarts_total"][detect_labels] == 1
    assert samples["hidemo_stage_up"][detect_labels] == 0  # its report's pid is not the process
    assert samples["hidemo_stage_up"][(("replica", "0"), ("stage", "classify"))] == 1
    assert samples["hidemo_rejected_messages_total"][(
        ("endpoint", "status"), ("reason", "schema"), ("replica", "0"),
        ("stage", "supervisor"))] == 1
    assert samples["hidemo_engine_info"][(
        ("engine", "classifier"), ("model", "m"), ("onnx_sha256", "a"),
        ("precision", "fp32"), ("random_weights", "true"), ("source_sha256", "b"))] == 1
    assert samples["hidemo_random_weights"][()] == 1
    assert samples["hidemo_run_info"][(("backend", "auto"), ("detector", "auto"),
                                       ("keypoints", "auto"), ("placement", "split"),
                                       ("profile", "tiny"))] == 1
    assert "hidemo_supervisor_process_cpu_seconds_total" in samples


def test_engines_served_by_triton_are_in_the_exposition_once_per_process(
        supervisor: Supervisor) -> None:
    figures = {"url": "127.0.0.1:8001", "state": "away", "calls": 7, "items": 9,
               "errors": {"unavailable": 3, "timeout": 1}, "outages": 2, "reconnects": 1,
               "away_s": 4.5, "last_error": "gone"}
    for label in ("detect[0]", "features[0]"):  # as a fused worker reports: one pid, two names
        status = supervisor.statuses[label]
        supervisor.statuses[label] = replace(status, extra={"served": {
            "image_embedder": figures}})
    samples = scrape(RunMetrics(supervisor, []))
    up = samples["hidemo_served_engine_up"]
    assert len(up) == 1 and next(iter(up.values())) == 0, "away, and counted once"
    key = (("model", "image_embedder"), ("replica", "0"), ("stage", "detect"),
           ("url", "127.0.0.1:8001"))
    assert samples["hidemo_served_engine_calls_total"][key] == 7
    assert samples["hidemo_served_engine_outages_total"][key] == 2
    assert samples["hidemo_served_engine_away_seconds_total"][key] == 4.5
    assert samples["hidemo_served_engine_failed_calls_total"][(("kind", "unavailable"),
                                                               *key)] == 3


# -- the HTTP endpoints ------------------------------------------------------------------------


def get(url: str, **headers: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_endpoints_answer_with_verdicts_tokens_and_host_checks(
        supervisor: Supervisor) -> None:
    metrics = RunMetrics(supervisor)
    ready = {"ok": True}
    service = Service.bind(f"127.0.0.1:{free_port()}", token=None)
    service.serve(metrics.registry, lambda: Verdict(True),
                  lambda: Verdict(True) if ready["ok"] else Verdict(False, ["camera gone"]))
    base = f"http://{service.address}"
    try:
        status, body = get(f"{base}/metrics")
        assert status == 200 and "hidemo_frames_total" in body
        assert get(f"{base}/healthz") == (200, '{"alive": true}')
        assert get(f"{base}/readyz") == (200, '{"ready": true}')
        ready["ok"] = False
        status, body = get(f"{base}/readyz")
        assert status == 503 and json.loads(body) == {"ready": False,
                                                      "reasons": ["camera gone"]}
        assert get(f"{base}/nothing")[0] == 404
        # loopback: a page elsewhere that points a DNS name at 127.0.0.1 is refused
        assert get(f"{base}/metrics", Host="evil.example:80")[0] == 400
        with pytest.raises(ValueError, match=r"--metrics-bind .*choose another port"):
            Service.bind(service.address, token=None)  # the port is taken
    finally:
        service.close()
    guarded = Service.bind(f"127.0.0.1:{free_port()}", token=TOKEN)
    guarded.serve(metrics.registry, lambda: Verdict(True), lambda: Verdict(True))
    base = f"http://{guarded.address}"
    try:
        for path in ("/metrics", "/healthz", "/readyz"):
            assert get(f"{base}{path}")[0] == 401
            assert get(f"{base}{path}", Authorization=f"Bearer {TOKEN[:-1]}x")[0] == 401
            assert get(f"{base}{path}", Authorization=f"Bearer {TOKEN}")[0] == 200
    finally:
        guarded.close()


def test_a_network_bind_of_the_metrics_needs_a_token_before_anything_starts(
        tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"HIDEMO_METRICS_TOKEN.*--metrics-token-file"):
        resolve_token("0.0.0.0:9109", None, {}, rule=METRICS_TOKEN)
    assert resolve_token("0.0.0.0:9109", None, {METRICS_TOKEN.env: TOKEN},
                         rule=METRICS_TOKEN) == TOKEN
    parser = add_run_parser(argparse.ArgumentParser().add_subparsers())
    args = parser.parse_args(["--source", "demo", "--metrics-bind", "0.0.0.0:9109"])
    with pytest.raises(ValueError, match=r"--metrics-bind 0\.0\.0\.0:9109 faces the network"):
        config_from_args(args)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    args = parser.parse_args(["--source", "demo", "--metrics-bind", "9109",
                              "--metrics-token-file", str(token_file)])
    config = config_from_args(args)
    assert config.metrics.bind == "127.0.0.1:9109"  # a port alone stays on loopback
    assert TOKEN not in config.model_dump_json()


def test_the_pipeline_bench_runs_with_the_metrics_endpoints_on(tmp_path: Path) -> None:
    """``hidemo bench pipeline --metrics-bind`` (or ``--set metrics.bind=``) reaches the run
    configuration of every scenario, so the bench measures a run that serves them."""
    from hidemo.cli import build_parser
    from stream.bench.cli import _setup, plan_from_args
    from stream.bench.pipeline import Scenario, scenario_config

    scenario = Scenario(streams=1, mode="paced", duration_s=1.0)
    for options in (["--metrics-bind", "127.0.0.1:9109"], ["--set", "metrics.bind=9109"]):
        args = build_parser().parse_args(["bench", "pipeline", "--quick", *options])
        config = scenario_config(_setup(plan_from_args(args), args), scenario, tmp_path)
        assert config.metrics.bind == "127.0.0.1:9109"
    args = build_parser().parse_args(["bench", "pipeline", "--quick"])
    assert scenario_config(_setup(plan_from_args(args), args), scenario,
                           tmp_path).metrics.bind is None
