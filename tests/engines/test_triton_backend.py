"""The triton backend against a real Triton server (``hidemo serve-engines``, PyTriton's
Triton 2.51 on loopback), and the rules it keeps without one.

The server tests share one server per module; the tests that kill or restart a server start
their own (tests/stream/test_triton_runs.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from triton_server import ServedEngines, free_ports, serving

from engines.backends.triton import (
    EngineUnavailable,
    TritonEngine,
    _classify_failure,
    _remove_orphan_regions,
)
from engines.manifest import EngineRefused, read_manifest
from engines.runtime import load_engine, local_backend, open_engine
from engines.serving.health import served_status
from engines.serving.identity import identity_mismatches, identity_parameters
from engines.serving.server import READY_AGAIN, ServeError, ensure_token, split_host_port
from engines.serving.settings import BatchingPolicy, TritonSettings

# -- without a server ---------------------------------------------------------------------


@given(host=st.sampled_from(["127.0.0.1", "localhost", "triton.example", "10.0.0.7"]),
       port=st.integers(min_value=-5, max_value=70_000))
def test_a_triton_url_is_host_and_port_or_refused(host: str, port: int) -> None:
    url = f"{host}:{port}"
    if 0 < port < 65536:
        assert TritonSettings(url=url).url == url
    else:
        with pytest.raises(ValidationError, match="HOST:PORT"):
            TritonSettings(url=url)


def test_a_url_without_a_port_and_bad_batching_are_refused() -> None:
    with pytest.raises(ValidationError, match="HOST:PORT"):
        TritonSettings(url="triton.example")
    with pytest.raises(ValidationError, match="preferred_batch_sizes"):
        BatchingPolicy(max_batch_size=4, preferred_batch_sizes=(8,))
    with pytest.raises(ValidationError):
        TritonSettings(model_prefix="no spaces")


def test_only_the_listed_engines_are_served_and_the_rest_run_locally() -> None:
    settings = TritonSettings(engines=("image_embedder",))
    assert local_backend(settings, "image_embedder") is settings
    assert local_backend(settings, "classifier") == "auto"
    assert local_backend("onnxruntime", "image_embedder") == "onnxruntime"


@pytest.mark.parametrize(("error", "kind", "away"), [
    (ConnectionRefusedError(111, "Connection refused"), "unavailable", True),
    (TimeoutError("timed out"), "timeout", True),
    (RuntimeError("[StatusCode.DEADLINE_EXCEEDED] Deadline Exceeded"), "timeout", True),
    (RuntimeError("[StatusCode.UNAVAILABLE] failed to connect to all addresses"),
     "unavailable", True),
    (RuntimeError("[StatusCode.INVALID_ARGUMENT] unexpected shape"), "error", False),
])
def test_failures_are_sorted_into_outages_and_errors(error: BaseException, kind: str,
                                                     away: bool) -> None:
    assert _classify_failure(error) == (kind, away)


def test_identity_mismatches_name_every_differing_key(tiny_engine_dir: Path) -> None:
    manifest = read_manifest(tiny_engine_dir, "image_embedder")
    expected = identity_parameters(manifest)
    assert identity_mismatches(expected, expected) == []
    other = manifest.model_copy(update={"onnx_sha256": "0" * 64})
    problems = identity_mismatches(expected, identity_parameters(other))
    assert len(problems) == 1 and "hidemo.onnx_sha256" in problems[0]


def test_the_token_file_is_made_private_and_a_shared_one_is_refused(tmp_path: Path) -> None:
    token = ensure_token(tmp_path / "token")
    assert len(token) >= 32 and (tmp_path / "token").stat().st_mode & 0o777 == 0o600
    assert ensure_token(tmp_path / "token") == token, "made once, then reused"
    (tmp_path / "token").chmod(0o644)
    with pytest.raises(ServeError, match="chmod 600"):
        ensure_token(tmp_path / "token")


def test_bad_addresses_are_refused_with_the_form_expected() -> None:
    for text in ("8001", "host:", "host:99999", ":8001"):
        with pytest.raises(ServeError, match="HOST:PORT"):
            split_host_port(text, "--bind")
    assert split_host_port("[::1]:8001", "--bind") == ("::1", 8001)


def test_orphan_regions_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    orphan = tmp_path / f"hidemo-shm-{dead.stdout.strip()}-image_embedder-pixels"
    mine = tmp_path / f"hidemo-shm-{os.getpid()}-image_embedder-pixels"
    orphan.write_bytes(b"x")
    mine.write_bytes(b"x")
    _remove_orphan_regions(tmp_path)
    assert not orphan.exists() and mine.exists()


def test_a_server_that_is_not_there_is_refused_with_the_command_that_starts_one(
        tiny_engine_dir: Path) -> None:
    (port,) = free_ports(1)
    settings = TritonSettings(url=f"127.0.0.1:{port}", timeout_s=2, start_wait_s=1)
    with pytest.raises(EngineRefused) as refused:
        open_engine(tiny_engine_dir, "image_embedder", settings)
    assert "does not answer (waited 1 s)" in str(refused.value)
    assert "hidemo serve-engines --engine-dir" in refused.value.fix


def test_serve_engines_refuses_an_open_metrics_port_and_a_busy_port(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "hidemo", "serve-engines", "--engine-dir",
               str(tiny_engine_dir), "--state-dir", str(tmp_path)]
    public = subprocess.run([*command, "--metrics-bind", "0.0.0.0:9999"],
                            capture_output=True, text=True, timeout=120)
    assert public.returncode == 2 and "--metrics-public" in public.stderr
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        busy = subprocess.run([*command, "--bind", f"127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=120)
    assert busy.returncode == 2 and f"127.0.0.1:{port}" in busy.stderr


# -- with a real server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny_engine_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    with serving(tiny_engine_dir, tmp_path_factory.mktemp("serve")) as served:
        yield served


def _settings(server: ServedEngines, **changes: object) -> TritonSettings:
    return TritonSettings(url=server.url, token_file=server.token_file, **changes)


@pytest.mark.slow
@pytest.mark.parametrize(("protocol", "shared_memory"), [("grpc", "auto"), ("grpc", "off"),
                                                         ("http", "auto")])
def test_a_served_engine_gives_what_the_local_engine_gives(
        server: ServedEngines, tiny_engine_dir: Path, protocol: str,
        shared_memory: str) -> None:
    url = server.url if protocol == "grpc" else server.http_url
    settings = _settings(server, protocol=protocol, shared_memory=shared_memory)
    settings = settings.model_copy(update={"url": url})
    rng = np.random.default_rng(7)
    with load_engine(tiny_engine_dir, "image_embedder", settings) as served, \
            load_engine(tiny_engine_dir, "image_embedder", "onnxruntime") as local:
        assert isinstance(served, TritonEngine)
        assert served.backend.endswith(":shm") == (shared_memory == "auto")
        size = served.signature.inputs[0].shape[2]
        for batch in (1, 5, 21):  # 21 > max_batch_size 16: sent in two requests
            pixels = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
            remote = served.run({"pixels": pixels})
            near = local.run({"pixels": pixels})
            for name, value in near.items():
                np.testing.assert_allclose(remote[name], value, atol=1e-4, rtol=1e-4)
        figures = served_status()["image_embedder"]
        assert figures["items"] == 27 and figures["state"] == "up" and not figures["errors"]
    assert "image_embedder" not in served_status(), "closed engines leave the status"
    leftovers = list(Path("/dev/shm").glob(f"hidemo-shm-{os.getpid()}-*"))
    assert leftovers == [], "closing removes this process' regions"


@pytest.mark.slow
def test_a_sequence_engine_is_served_with_its_dynamic_axis(
        server: ServedEngines, tiny_engine_dir: Path) -> None:
    with load_engine(tiny_engine_dir, "text_embedder", _settings(server)) as served, \
            load_engine(tiny_engine_dir, "text_embedder", "onnxruntime") as local:
        for length in (3, 17):
            ids = np.arange(2 * length, dtype=np.int64).reshape(2, length) % 100 + 1
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            np.testing.assert_allclose(served.run(feeds)["embedding"],
                                       local.run(feeds)["embedding"], atol=1e-4)


@pytest.mark.slow
def test_a_served_model_that_is_another_engine_is_refused_with_the_fix(
        server: ServedEngines, tiny_engine_dir: Path) -> None:
    manifest = read_manifest(tiny_engine_dir, "image_embedder")
    other = manifest.model_copy(update={"onnx_sha256": "0" * 64})
    with pytest.raises(EngineRefused) as refused:
        TritonEngine.open(tiny_engine_dir, other, _settings(server))
    message = str(refused.value)
    assert "is not the engine verified here" in message and "hidemo.onnx_sha256" in message
    assert "hidemo serve-engines" in refused.value.fix
    with pytest.raises(EngineRefused, match=r"no ready model 'nope\.image_embedder'"):
        TritonEngine.open(tiny_engine_dir, manifest, _settings(server, model_prefix="nope."))


@pytest.mark.slow
def test_the_admin_apis_need_the_token(server: ServedEngines,
                                       tiny_engine_dir: Path) -> None:
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    client = http.InferenceServerClient(server.http_url)
    try:
        with pytest.raises(InferenceServerException, match="restricted"):
            client.get_inference_statistics("image_embedder")
        assert client.is_model_ready("image_embedder"), "inference stays open on loopback"
    finally:
        client.close()
    no_token = TritonSettings(url=server.url, shared_memory="system")
    with pytest.raises(EngineRefused, match="would not take a region"):
        open_engine(tiny_engine_dir, "image_embedder", no_token)
    with open_engine(tiny_engine_dir, "image_embedder",
                     TritonSettings(url=server.url))[0] as engine:
        assert not engine.backend.endswith(":shm"), "auto falls back to the socket"


@pytest.mark.slow
def test_off_loopback_inference_needs_the_token(tiny_engine_dir: Path,
                                                tmp_path: Path) -> None:
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    with serving(tiny_engine_dir, tmp_path, engines=("classifier",),
                 bind_host="0.0.0.0") as served:
        client = http.InferenceServerClient(served.http_url)
        try:
            assert client.is_server_live(), "health answers probes without the token"
            with pytest.raises(InferenceServerException, match="restricted"):
                client.get_model_config("classifier")
            inputs = []
            for spec in read_manifest(tiny_engine_dir, "classifier").signature.inputs:
                shape = [1 if isinstance(d, str) else d for d in spec.shape]
                tensor = http.InferInput(spec.name, shape, "FP32")
                tensor.set_data_from_numpy(np.zeros(shape, np.float32))
                inputs.append(tensor)
            with pytest.raises(InferenceServerException, match="restricted"):
                client.infer("classifier", inputs)
            headers = {"triton-access-token": served.token}
            assert client.infer("classifier", inputs, headers=headers).as_numpy("probs") \
                is not None
        finally:
            client.close()
        settings = TritonSettings(url=served.url, engines=("classifier",))
        with pytest.raises(EngineRefused, match="access token") as refused:
            open_engine(tiny_engine_dir, "classifier", settings)  # at once: no wait helps
        assert "triton.token_file" in refused.value.fix
        with open_engine(tiny_engine_dir, "classifier", settings.model_copy(
                update={"token_file": served.token_file}))[0] as engine:
            assert isinstance(engine, TritonEngine)


@pytest.mark.slow
def test_a_dead_worker_is_cleaned_up_the_server_comes_back_and_stops_on_sigterm(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    """SIGKILL the worker: its stubs and tritonserver (same group), its /dev/shm segments
    and its scratch folder must go, and the same clients work again afterwards."""
    with serving(tiny_engine_dir, tmp_path, engines=("image_embedder",)) as served:
        worker = served.worker()
        group = os.getpgid(worker.pid)
        segments = {p for p in Path("/dev/shm").iterdir() if p.name.startswith(
            f"pytrtion{worker.pid}-")}
        assert segments, "the Python backend maps its segments under the worker's pid"
        plan = next(arg for arg in worker.cmdline() if arg.endswith("plan.json"))
        scratch = [Path(plan).parent]  # the plan lies in its scratch folder
        folders = {Path(arg).parents[1] for stub in worker.children(recursive=True)
                   for arg in stub.cmdline() if "/folder" in arg and arg.endswith("model.py")}
        assert folders, "each Python backend stub runs a model folder of its own"
        engine, _ = open_engine(tiny_engine_dir, "image_embedder", _settings(served))
        size = engine.signature.inputs[0].shape[2]
        pixels = np.zeros((2, 3, size, size), np.float32)
        engine.run({"pixels": pixels})
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(EngineUnavailable):
            for _ in range(50):  # until the server notices: then every call fails fast
                engine.run({"pixels": pixels})
        served.wait_for_line(READY_AGAIN, 300)
        assert not [p.pid for p in psutil_group(group)], "no process of the dead group"
        assert not [p for p in segments if p.exists()], "its shm segments are removed"
        assert not [p for p in scratch if p.exists()], "its scratch folder is removed"
        assert not [p for p in folders if p.exists()], "its stubs' model folders are removed"
        for _ in range(200):
            try:
                engine.run({"pixels": pixels})
                break
            except EngineUnavailable:
                time.sleep(0.1)
        figures = served_status()["image_embedder"]
        assert figures["state"] == "up" and figures["outages"] == 1
        assert figures["reconnects"] == 1
        engine.close()
        group = os.getpgid(served.worker().pid)
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(60)
        output = served.stop()
    assert served.process.returncode == 0 and "serve-engines: stopped" in output, output
    assert not [p.pid for p in psutil_group(group)], "SIGTERM leaves no server process"


@pytest.mark.slow
def test_a_hung_server_is_restarted_and_the_same_client_works_again(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    """SIGSTOP tritonserver: it is alive but answers nothing. The supervisor must see the
    failed health checks, replace the whole group and serve again."""
    with serving(tiny_engine_dir, tmp_path, engines=("classifier",)) as served:
        hung = served.tritonserver()
        engine, _ = open_engine(tiny_engine_dir, "classifier", _settings(served, timeout_s=2))
        feeds = {spec.name: np.zeros([1 if isinstance(d, str) else d for d in spec.shape],
                                     np.float32) for spec in engine.signature.inputs}
        engine.run(feeds)
        hung.send_signal(signal.SIGSTOP)
        try:
            served.wait_for_line("health checks; restarting", 120)
            served.wait_for_line(READY_AGAIN, 300)
            assert not hung.is_running() or hung.status() == "zombie", "the hung one is gone"
        finally:
            with contextlib.suppress(Exception):
                hung.send_signal(signal.SIGCONT)
        for _ in range(200):
            try:
                engine.run(feeds)
                break
            except EngineUnavailable:
                time.sleep(0.1)
        else:
            raise AssertionError("the client never got an answer from the restarted server")
        engine.close()


def psutil_group(group: int) -> list:
    """Live (not zombie) processes of process group ``group``."""
    import psutil

    out = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group and \
                    process.status() != psutil.STATUS_ZOMBIE:
                out.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return out

