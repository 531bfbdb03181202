"""The typed settings of serving: how a client reaches Triton, and how models are batched.

:class:`TritonSettings` is the ``triton:`` section of a run's configuration (the client
side); :class:`BatchingPolicy` is what the model repository and the server give Triton's
dynamic batcher. Both are closed pydantic records: an unknown key is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_SERVED = ("detector", "image_embedder", "text_embedder")
"""Engines a run sends to Triton unless ``triton.engines`` says otherwise: the heavy
encoders. The keypoint graphs (their tracking state lives with each pipeline) and the
window classifier (one small call per window) stay local by default."""


class _Settings(BaseModel):
    # Attribute docstrings are the fields' descriptions (the configuration reference is
    # generated from them).
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class TritonSettings(_Settings):
    """Where served engines live, and how this pipeline talks to that server."""

    url: str = "127.0.0.1:8001"
    """``HOST:PORT`` of the Triton server (gRPC port for ``grpc``, HTTP port for ``http``)."""
    protocol: Literal["grpc", "http"] = "grpc"
    """Triton's inference protocol to use."""
    timeout_s: float = Field(5.0, gt=0, le=600)
    """Seconds one inference may take before it is an engine error (the item is dropped)."""
    shared_memory: Literal["auto", "system", "off"] = "auto"
    """Hand tensors over in system shared memory: ``auto`` when the server is on this host
    (a loopback URL), ``system`` always (the server must share this host), ``off`` never."""
    model_prefix: str = Field("", pattern=r"^[A-Za-z0-9._-]*$")
    """Served model name = prefix + engine name (one server, several engine sets)."""
    engines: tuple[str, ...] = DEFAULT_SERVED
    """Engines this run sends to Triton; the others run locally on ``backend`` ``auto``."""
    token_file: Path | None = None
    """File holding the server's access token (``hidemo serve-engines`` writes one, mode
    0600); needed for shared memory and statistics, and for inference on a non-loopback
    server. The token itself never goes on a command line or in a configuration file."""
    start_wait_s: float = Field(60.0, ge=0, le=3600)
    """How long a stage starting (or restarting) waits for the server to answer and serve
    its models before it refuses to start; a served model that is another engine is
    refused at once."""
    reconnect_max_s: float = Field(5.0, gt=0, le=300)
    """Longest wait between reconnection attempts while the server is away."""

    @model_validator(mode="after")
    def _url_has_port(self) -> TritonSettings:
        host, _, port = self.url.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"triton.url {self.url!r} must be HOST:PORT, e.g. 127.0.0.1:8001")
        return self


class BatchingPolicy(_Settings):
    """What Triton's dynamic batcher and instance groups get, per served model."""

    max_batch_size: int = Field(16, ge=1, le=1024)
    """Largest batch Triton forms (and the client sends) for a batched engine."""
    preferred_batch_sizes: tuple[int, ...] = (4, 8)
    """Batch sizes the dynamic batcher tries to form first."""
    max_queue_delay_us: int = Field(5000, ge=0, le=10_000_000)
    """Microseconds a request may wait for others to join its batch."""
    instances: int = Field(1, ge=1, le=64)
    """Model instances per device (``instance_group.count``)."""
    kind: Literal["KIND_AUTO", "KIND_CPU", "KIND_GPU"] = "KIND_AUTO"
    """Where the instances run (``instance_group.kind``); AUTO: the GPU when there is one."""

    @model_validator(mode="after")
    def _preferred_fit(self) -> BatchingPolicy:
        too_big = [s for s in self.preferred_batch_sizes if not 1 <= s <= self.max_batch_size]
        if too_big:
            raise ValueError(f"preferred_batch_sizes {too_big} must lie in 1..max_batch_size "
                             f"({self.max_batch_size})")
        return self
