"""Triton backend: an :class:`Engine` whose ``run`` is an inference on a Triton server.

Used by every stage exactly as the local backends are. What it adds is what a remote engine
needs to be as trustworthy as a local one:

- **Identity before the first frame.** The served model's configuration must carry the
  local manifest's identity (:mod:`engines.serving.identity`) and the same inputs and
  outputs; otherwise the engine is refused (:class:`EngineRefused`) with the command that
  serves the right one. The check runs again after every reconnection: a server that came
  back with other engines is refused again.
- **An outage is an engine error, never a crash.** A call that fails raises
  :class:`EngineUnavailable` (the stage drops and counts the item). When the server does
  not answer, calls fail fast until the next reconnection attempt, spaced by a backoff
  that doubles up to ``reconnect_max_s``; the outage is counted in
  :mod:`engines.serving.health`, which the stage's status report carries.
- **System shared memory** when the server shares this host: fixed-size inputs and outputs
  travel through ``/dev/shm`` regions registered with the server, not over the socket.
  Regions are registered again after the server restarts, and removed on close.

Example:
    >>> engine = TritonEngine.open(engine_dir, manifest, settings)  # doctest: +SKIP
    >>> engine.run({"pixels": batch})["cls"].shape  # doctest: +SKIP
    (4, 384)
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.engine import Engine
from engines.manifest import EngineManifest, EngineRefused
from engines.serving import health as served
from engines.serving.identity import (
    batched,
    config_dtype,
    identity_mismatches,
    identity_parameters,
    model_name,
    triton_dims,
    wire_dtype,
)
from engines.serving.settings import TritonSettings

log = logging.getLogger(__name__)

TOKEN_HEADER = {"grpc": "triton-grpc-protocol-triton-access-token",
                "http": "triton-access-token"}
"""Where Triton's restricted APIs expect the access token, per protocol."""
SHM_PREFIX = "hidemo-shm-"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
FIRST_BACKOFF_S = 0.25
MISSING_MODEL_GRACE_S = 10.0
"""How long a ready server that lacks the model is asked again (a server without strict
readiness says ready while its models still load) before the engine is refused; a server
that is not ready is waited for up to ``triton.start_wait_s``."""


class ModelNotReady(EngineRefused):
    """The server answers but does not serve this model (yet: it may be loading).
    ``server_ready``: the server itself says ready, so the model is most likely not in its
    repository at all."""

    def __init__(self, message: str, fix: str, *, server_ready: bool = False) -> None:
        super().__init__(message, fix)
        self.server_ready = server_ready


class EngineUnavailable(RuntimeError):
    """The served engine could not answer this call (server away, timeout, refused call).
    The stage drops the item and counts it; the engine itself stays usable."""


def serve_command(engine_dir: Path | str) -> str:
    """The command that serves the engines this pipeline verifies."""
    return f"hidemo serve-engines --engine-dir {engine_dir}"


def read_token(path: Path | None) -> str | None:
    """The access token from ``path`` (its first line), None when no file is configured."""
    if path is None:
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as error:
        raise EngineRefused(f"triton.token_file {path} cannot be read ({error.strerror})",
                            "point triton.token_file at the token file hidemo serve-engines "
                            "printed (mode 0600), or set it to null") from None
    if not token:
        raise EngineRefused(f"triton.token_file {path} is empty",
                            "point triton.token_file at the file hidemo serve-engines wrote")
    return token


@dataclass
class _Region:
    """One system shared-memory region, for one tensor of one model."""

    name: str
    key: str
    handle: Any
    byte_size: int


class TritonEngine(Engine):
    """One engine served by Triton. Open it with :meth:`open` (which checks identity)."""

    def __init__(self, manifest: EngineManifest, settings: TritonSettings, engine_dir: Path,
                 client: Any, token: str | None) -> None:
        super().__init__(manifest.name, manifest.signature,
                         random_weights=manifest.random_weights)
        self.manifest = manifest
        self.settings = settings
        self.engine_dir = engine_dir
        self.model = model_name(manifest.name, settings.model_prefix)
        self._client = client
        self._headers = {TOKEN_HEADER[settings.protocol]: token} if token else None
        self._module = _client_module(settings.protocol)
        self._batched = batched(manifest.signature)
        self._max_batch = 0
        self._regions: dict[str, _Region] = {}
        self._use_shm = _wants_shared_memory(settings)
        self._backoff = FIRST_BACKOFF_S
        self._retry_at = 0.0
        self.health = served.ServedHealth(model=self.model, url=settings.url)

    @classmethod
    def open(cls, engine_dir: Path, manifest: EngineManifest,
             settings: TritonSettings) -> TritonEngine:
        """Connect, check the served model's identity and signature, set up shared memory.

        Raises :class:`EngineRefused` when the server cannot be reached (naming the URL and
        the command that serves the engines), or serves another model under this name.
        """
        token = read_token(settings.token_file)
        client = _make_client(settings)
        engine = cls(manifest, settings, Path(engine_dir), client, token)
        try:
            engine._wait_until_served(settings.start_wait_s)
        except EngineUnavailable as error:
            engine._close_client()
            raise EngineRefused(
                f"engine {manifest.name!r}: Triton at {settings.url} ({settings.protocol}) "
                f"does not answer (waited {settings.start_wait_s:g} s): {error}",
                f"start it: {serve_command(engine_dir)} (or set triton.url to the server)",
            ) from None
        except EngineRefused:
            engine._close_client()
            raise
        if engine._use_shm:
            engine._setup_shared_memory(required=settings.shared_memory == "system")
        served.register(engine.health)
        return engine

    @property
    def backend(self) -> str:
        return f"triton:{self.settings.protocol}" + (":shm" if self._regions else "")

    @property
    def device(self) -> str:
        return f"triton:{self.settings.url}"

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        now = time.monotonic()
        if self.health.away_since is not None:
            if now < self._retry_at:
                raise EngineUnavailable(
                    f"{self.model}: Triton at {self.settings.url} is away (next attempt in "
                    f"{self._retry_at - now:.1f} s; last error: {self.health.last_error})")
            self._reconnect()
        size = next(iter(feeds.values())).shape[0] if feeds else 0
        step = self._max_batch if self._batched and self._max_batch > 0 else max(size, 1)
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, max(size, 1), step):
            chunk = {k: v[start:start + step] for k, v in feeds.items()} if self._batched \
                else feeds
            parts.append(self._call(chunk))
        self.health.calls += len(parts)
        self.health.items += size
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _call(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One inference; failures become :class:`EngineUnavailable`, an unanswered server
        starts (or continues) an outage."""
        try:
            return self._infer(feeds)
        except Exception as error:  # noqa: BLE001 - any client failure is an engine error
            kind, away = _classify_failure(error)
            message = _one_line(error)
            self.health.failed(kind, message)
            if away:
                self._away()
            raise EngineUnavailable(f"{self.model} on Triton {self.settings.url}: {kind}: "
                                    f"{message}") from None

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        module = self._module
        inputs = []
        for spec in self.signature.inputs:
            array = np.ascontiguousarray(feeds[spec.name])
            tensor = module.InferInput(spec.name, list(array.shape), wire_dtype(spec.dtype))
            region = self._regions.get(spec.name)
            if region is not None and array.nbytes <= region.byte_size:
                _shm().set_shared_memory_region(region.handle, [array])
                tensor.set_shared_memory(region.name, array.nbytes)
            else:
                tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        size = next(iter(feeds.values())).shape[0] if feeds else 1
        outputs, shaped = [], {}
        for spec in self.signature.outputs:
            wanted = module.InferRequestedOutput(spec.name)
            region = self._regions.get(spec.name)
            if region is not None:
                shape = spec.concrete(batch=size)
                nbytes = int(np.prod(shape)) * np.dtype(spec.dtype).itemsize
                if nbytes <= region.byte_size:
                    wanted.set_shared_memory(region.name, nbytes)
                    shaped[spec.name] = shape
            outputs.append(wanted)
        result = self._client.infer(self.model, inputs, outputs=outputs, headers=self._headers,
                                    **_timeout_kwargs(self.settings))
        out: dict[str, np.ndarray] = {}
        for spec in self.signature.outputs:
            if spec.name in shaped:
                region = self._regions[spec.name]
                view = _shm().get_contents_as_numpy(region.handle, np.dtype(spec.dtype),
                                                    shaped[spec.name])
                out[spec.name] = np.array(view, copy=True)
            else:
                out[spec.name] = result.as_numpy(spec.name)
        if self.health.away_since is not None:
            log.warning("%s: Triton at %s answers again", self.model, self.settings.url)
        self.health.came_back()
        self._backoff = FIRST_BACKOFF_S
        return out

    def _away(self) -> None:
        self.health.went_away()
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.settings.reconnect_max_s)

    def _reconnect(self) -> None:
        """The server answers again: check it still serves this engine, then register the
        shared-memory regions again (a restarted server has forgotten them)."""
        try:
            self._check_served()
        except EngineUnavailable as error:
            self.health.failed("unavailable", _one_line(error))
            self._away()
            raise
        except ModelNotReady as error:  # it came back and is still loading its models
            self.health.failed("unavailable", _one_line(error))
            self._away()
            raise EngineUnavailable(_one_line(error)) from None
        except EngineRefused as error:  # it came back serving something else
            self.health.failed("refused", _one_line(error))
            self._away()
            raise EngineUnavailable(str(error).splitlines()[0]) from None
        if self._regions:
            try:
                self._register_regions()
            except Exception as error:  # noqa: BLE001 - fall back to the socket
                log.warning("%s: shared memory could not be registered again (%s); tensors "
                            "go over the socket", self.model, _one_line(error))
                self._destroy_regions(unregister=False)

    def _wait_until_served(self, wait_s: float) -> None:
        """:meth:`_check_served`, retried with backoff for up to ``wait_s`` while the server
        does not answer or is still loading the model (a pipeline may start, or a stage
        restart, while the server restarts). A model that is another engine: at once."""
        deadline = time.monotonic() + wait_s
        backoff = FIRST_BACKOFF_S
        said = False
        while True:
            try:
                self._check_served()
                return
            except (EngineUnavailable, ModelNotReady) as error:
                if isinstance(error, ModelNotReady) and error.server_ready:
                    deadline = min(deadline, time.monotonic() + MISSING_MODEL_GRACE_S)
                if time.monotonic() + backoff > deadline:
                    if isinstance(error, ModelNotReady):
                        raise
                    raise EngineUnavailable(str(error)) from None
                if not said:
                    log.warning("%s: waiting up to %.0f s for Triton at %s (%s)", self.name,
                                wait_s, self.settings.url, _one_line(error))
                    said = True
                time.sleep(backoff)
                backoff = min(backoff * 2, self.settings.reconnect_max_s)

    def _check_served(self) -> None:
        """The served model is this engine: identity parameters, inputs, outputs, batch."""
        try:
            if not self._client.is_model_ready(self.model, headers=self._headers):
                raise ModelNotReady(
                    f"engine {self.name!r}: Triton at {self.settings.url} has no ready model "
                    f"{self.model!r}", f"serve it: {serve_command(self.engine_dir)}",
                    server_ready=self._server_ready())
            config = self._client.get_model_config(self.model, headers=self._headers,
                                                   **_json_kwargs(self.settings))
        except EngineRefused:
            raise
        except Exception as error:  # noqa: BLE001 - unreachable, refused, timed out
            if _is_restricted(error):  # waiting will not bring the token
                raise EngineRefused(
                    f"engine {self.name!r}: Triton at {self.settings.url} answers only with "
                    f"its access token ({_one_line(error)})",
                    "set triton.token_file to the token file of that hidemo serve-engines "
                    "(its --state-dir/token)") from None
            raise EngineUnavailable(_one_line(error)) from None
        config = config.get("config", config)
        problems = self._config_problems(config)
        if problems:
            raise EngineRefused(
                f"engine {self.name!r}: the model {self.model!r} served at {self.settings.url} "
                "is not the engine verified here:\n    " + "\n    ".join(problems),
                f"serve the engines of {self.engine_dir}: {serve_command(self.engine_dir)} "
                f"(or export them for an official Triton: hidemo engines export-triton "
                f"--engine-dir {self.engine_dir} --repo REPO), or point triton.url at a "
                "server that serves them")
        self._max_batch = int(config.get("max_batch_size", 0))

    def _server_ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready(headers=self._headers))
        except Exception:  # noqa: BLE001 - not answering is not ready
            return False

    def _config_problems(self, config: dict[str, Any]) -> list[str]:
        parameters = {key: value.get("string_value", "") if isinstance(value, dict) else ""
                      for key, value in (config.get("parameters") or {}).items()}
        problems = identity_mismatches(identity_parameters(self.manifest), parameters)
        max_batch = int(config.get("max_batch_size", 0))
        if self._batched != (max_batch > 0):
            problems.append(f"max_batch_size {max_batch}: the engine is "
                            f"{'batched' if self._batched else 'not batched'}")
        for kind, specs in (("input", self.signature.inputs),
                            ("output", self.signature.outputs)):
            served_specs = {t.get("name"): t for t in config.get(kind) or []}
            for spec in specs:
                got = served_specs.pop(spec.name, None)
                if got is None:
                    problems.append(f"{kind} {spec.name!r} is not served")
                    continue
                dims = [int(d) for d in got.get("dims", [])]
                want = triton_dims(spec.shape, batched=self._batched)
                if got.get("data_type") != config_dtype(spec.dtype) or dims != want:
                    problems.append(f"{kind} {spec.name!r}: served {got.get('data_type')} "
                                    f"{dims}, engine {config_dtype(spec.dtype)} {want}")
            problems.extend(f"{kind} {name!r} is served but not in the engine"
                            for name in served_specs)
        return problems

    def _setup_shared_memory(self, *, required: bool) -> None:
        """Regions for every tensor of fixed size per item, sized for the largest batch."""
        _remove_orphan_regions()
        biggest = self._max_batch if self._batched and self._max_batch > 0 else 1
        try:
            for spec in (*self.signature.inputs, *self.signature.outputs):
                rest = spec.shape[1:] if self._batched else spec.shape
                if any(isinstance(d, str) for d in rest):
                    continue  # a sequence axis: no fixed size, it goes over the socket
                nbytes = biggest * int(np.prod(rest, dtype=np.int64)) \
                    * np.dtype(spec.dtype).itemsize
                name = f"{SHM_PREFIX}{os.getpid()}-{self.model}-{spec.name}"
                key = f"/{name}"
                handle = _shm().create_shared_memory_region(name, key, max(nbytes, 1))
                self._regions[spec.name] = _Region(name, key, handle, max(nbytes, 1))
            self._register_regions()
        except Exception as error:  # noqa: BLE001 - shared memory is an optimisation
            self._destroy_regions(unregister=False)
            if required:
                raise EngineRefused(
                    f"engine {self.name!r}: triton.shared_memory is 'system' but the server "
                    f"at {self.settings.url} would not take a region ({_one_line(error)})",
                    "run hidemo on the server's host and give it the server's token "
                    "(triton.token_file), or set triton.shared_memory to auto or off",
                ) from None
            log.info("%s: shared memory with Triton not used (%s); tensors go over the "
                     "socket", self.model, _one_line(error))

    def _register_regions(self) -> None:
        for region in self._regions.values():
            with contextlib.suppress(Exception):  # a leftover registration of this name
                self._client.unregister_system_shared_memory(region.name,
                                                             headers=self._headers)
            self._client.register_system_shared_memory(region.name, region.key,
                                                       region.byte_size,
                                                       headers=self._headers)

    def _destroy_regions(self, *, unregister: bool) -> None:
        for region in self._regions.values():
            if unregister:
                with contextlib.suppress(Exception):
                    self._client.unregister_system_shared_memory(region.name,
                                                                 headers=self._headers)
            with contextlib.suppress(Exception):
                _shm().destroy_shared_memory_region(region.handle)
        self._regions.clear()

    def close(self) -> None:
        served.unregister(self.health)
        self._destroy_regions(unregister=True)
        self._close_client()

    def _close_client(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


def _client_module(protocol: str) -> Any:
    if protocol == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module
    return module


def _shm() -> Any:
    with _quiet_pkg_resources():
        import tritonclient.utils.shared_memory as shm
    return shm


@contextlib.contextmanager
def _quiet_pkg_resources() -> Iterator[None]:
    """tritonclient's shared-memory helper imports pkg_resources, which warns on import."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        yield


def _make_client(settings: TritonSettings) -> Any:
    module = _client_module(settings.protocol)
    if settings.protocol == "grpc":
        return module.InferenceServerClient(settings.url)
    return module.InferenceServerClient(settings.url, connection_timeout=settings.timeout_s,
                                        network_timeout=settings.timeout_s)


def _timeout_kwargs(settings: TritonSettings) -> dict[str, float]:
    # the HTTP client's timeouts are set on the client (network_timeout)
    return {"client_timeout": settings.timeout_s} if settings.protocol == "grpc" else {}


def _json_kwargs(settings: TritonSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"as_json": True} if settings.protocol == "grpc" else {}
    if settings.protocol == "grpc":
        kwargs["client_timeout"] = settings.timeout_s
    return kwargs


def _wants_shared_memory(settings: TritonSettings) -> bool:
    if settings.shared_memory == "off":
        return False
    if settings.shared_memory == "system":
        return True
    host = settings.url.rpartition(":")[0]
    return host in LOOPBACK_HOSTS


def _is_restricted(error: BaseException) -> bool:
    """Triton refused the call for want of the access token (its restricted APIs)."""
    return "restricted" in str(error).lower() and "access-token" in str(error).lower()


def _classify_failure(error: BaseException) -> tuple[str, bool]:
    """What kind of failure (for the counters), and whether the server is away."""
    status = ""
    status_of = getattr(error, "status", None)
    if callable(status_of):
        with contextlib.suppress(Exception):
            status = str(status_of() or "")
    text = f"{status} {error}".upper()
    if "DEADLINE" in text or "TIMEOUT" in text or "TIMED OUT" in text \
            or isinstance(error, TimeoutError):
        return "timeout", True
    if "UNAVAILABLE" in text or "NOT_FOUND" in text or "CONNECT" in text \
            or isinstance(error, ConnectionError | OSError):
        return "unavailable", True
    return "error", False


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


def _remove_orphan_regions(root: Path = Path("/dev/shm")) -> None:
    """Regions a killed hidemo process left (their pid is gone): nothing else frees them."""
    if not root.is_dir():
        return
    for path in root.glob(f"{SHM_PREFIX}*"):
        pid = path.name[len(SHM_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            with contextlib.suppress(OSError):
                path.unlink()
