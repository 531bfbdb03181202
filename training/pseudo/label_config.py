"""``hidemo label``'s settings as one typed record: a JSON ``--config`` file, then the
command line on top (an option given overrides the file's field of the same name, with
``-`` read as ``_``).

A config file can hold a labelling setup (the server, its timeouts, the sampling) and the
command line vary one thing. It never holds a key: keys come from the environment only
(``--api-key-env`` names the variable), so a field whose name says key or token is refused.

Example config (every field optional)::

    {"provider": "openai", "model": "qwen2.5-vl", "base_url": "http://localhost:11434/v1",
     "timeout_s": 30, "max_retry_after_s": 20, "max_attempts": 3, "crop": "frame"}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from training.pseudo.label_defaults import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_RETRY_AFTER_S,
    DEFAULT_TIMEOUT_S,
    MAX_WAIT_S,
)


class LabelConfig(BaseModel):
    """Everything ``hidemo label`` needs (see ``hidemo label --help`` for each field)."""

    model_config = ConfigDict(extra="forbid")

    manifest: Path | None = None
    provider: Literal["gemini", "openai", "teacher"] | None = None
    out: Path | None = None
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    structured: Literal["auto", "json_schema", "json_object", "none"] = "auto"
    prompts: str = "v1"
    frames: int = 8
    size: int = 448
    jpeg_quality: int = 85
    crop: Literal["person", "frame"] = "person"
    select: Literal["unlabelled", "all"] = "unlabelled"
    ids: list[str] | None = None
    """Only these video ids (overrides ``select``)."""
    max_attempts: int = Field(DEFAULT_MAX_ATTEMPTS, ge=1, le=100)
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, le=MAX_WAIT_S, allow_inf_nan=False)
    """Seconds the client waits for one answer; past it the attempt fails and is retried
    like a 503 (so a hung server costs about ``max_attempts`` x this per step, plus the
    waits between retries)."""
    max_retry_after_s: float = Field(DEFAULT_MAX_RETRY_AFTER_S, ge=0, le=MAX_WAIT_S,
                                     allow_inf_nan=False)
    """The longest ``Retry-After`` honoured; a server asking for more waits this long."""
    force: bool = False
    profile: str = "edge"
    engine_dir: Path | None = None
    detector: Literal["auto", "yolo", "mediapipe"] = "auto"
    teacher: Path | None = None
    features: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            keys = [name for name in data if name != "api_key_env"
                    and any(word in str(name).lower() for word in ("key", "token", "secret"))]
            if keys:
                raise ValueError(f"{keys[0]}: a config never holds a key; put the key in an "
                                 "environment variable and name it with api_key_env")
        return data

    @classmethod
    def load(cls, path: Path | None, overrides: dict[str, Any]) -> LabelConfig:
        """The JSON file at ``path`` (if any), then the non-None ``overrides`` on top.
        Raises ValueError naming the file or the option and what is wrong with it."""
        data: dict[str, Any] = {}
        if path is not None:
            try:
                data = json.loads(Path(path).read_text())
            except FileNotFoundError:
                raise FileNotFoundError(f"--config {path}: no such file") from None
            except json.JSONDecodeError as error:
                raise ValueError(f"--config {path}: not valid JSON ({error})") from None
            if not isinstance(data, dict):
                raise ValueError(f"--config {path}: a JSON object of settings is needed, "
                                 f"not {type(data).__name__}")
        given = {name: value for name, value in overrides.items() if value is not None}
        data = {**data, **given}
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise ValueError(_explain(error, path, set(given))) from None


def _explain(error: ValidationError, path: Path | None, from_options: set[str]) -> str:
    """One line per problem, each naming the option or the config field to fix."""
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        if field in from_options:
            where = f"--{field.replace('_', '-')}"
        elif field:
            where = f"{field} in --config {path}"
        else:
            where = f"--config {path}" if path is not None else "settings"
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return "; ".join(problems)
