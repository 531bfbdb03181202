"""Any OpenAI-compatible chat server behind :class:`ChatProvider` (OpenAI itself, or a
local VLM on Ollama, vLLM, LM Studio), through the official ``openai`` client.

Why these choices:

* ``structured="auto"`` asks for the schema (``response_format`` ``json_schema``, strict)
  and, when the server answers 400 naming ``response_format`` / ``json_schema`` (servers
  that lack structured output), drops ``response_format`` for the rest of this provider's
  life, logging that once: the answer is then validated afterwards like any text.
* The client's own retries are off (``max_retries=0``): the labeler's
  :mod:`training.pseudo.retry` policy owns retries, so attempts are counted once.
* Every message and raw body built from what the server sent passes through the run's
  :class:`~training.pseudo.redact.Redactor` (by default one that knows this provider's
  key) before it is cut short or raised; a refusal, a content-filter answer or an unusable
  answer carries the usage the server billed for it.
* A single surrounding Markdown code fence (```` ```json ... ``` ````) is stripped from the
  answer: local models asked for JSON without enforced structured output often wrap it
  so, and the JSON inside is the answer; anything else in the text is left for the
  verdict validation to reject.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import re
import threading
from collections.abc import Sequence
from typing import Any, Literal

import openai

from training.pseudo.pricing import Price, cost_usd
from training.pseudo.providers.base import (
    InvalidAnswer,
    ProviderError,
    Refusal,
    Reply,
    RetryableError,
    Turn,
)
from training.pseudo.records import Usage
from training.pseudo.redact import Redactor
from training.pseudo.retry import parse_retry_after

log = logging.getLogger(__name__)

Structured = Literal["auto", "json_schema", "json_object", "none"]
STRUCTURED_MODES: tuple[str, ...] = ("auto", "json_schema", "json_object", "none")

PLACEHOLDER_KEY = "not-needed"
"""Sent when no key is given or set: local servers accept any key, but the client needs
one."""

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_+-]*[ \t]*\r?\n(?P<body>.*?)\r?\n?[ \t]*```\s*$",
                    re.DOTALL)
_UNSUPPORTED_FORMAT = re.compile(r"response_format|json_schema", re.IGNORECASE)


def strip_code_fence(text: str) -> str:
    """The inside of ONE code fence that wraps the whole text; the text unchanged
    otherwise.

    >>> strip_code_fence('```json\\n{"a": 1}\\n```')
    '{"a": 1}'
    >>> strip_code_fence('{"a": 1}')
    '{"a": 1}'
    """
    match = _FENCE.match(text)
    return match.group("body").strip() if match else text


class OpenAICompatProvider:
    """A model behind ``{base_url}/chat/completions``.

    ``api_key`` defaults to ``OPENAI_API_KEY``, and to the placeholder ``"not-needed"``
    when that is not set either: local servers (Ollama, vLLM, LM Studio) accept any key,
    and a hosted server that does not will answer 401, reported as a ProviderError that
    says to set ``OPENAI_API_KEY``. ``price`` (USD per 1M tokens) makes ``Usage.cost_usd``
    known; without it the cost of this provider's calls is None.
    """

    name = "openai"

    def __init__(self, model: str, base_url: str, api_key: str | None = None,
                 structured: Structured = "auto", timeout_s: float = 120,
                 price: Price | None = None, redact: Redactor | None = None) -> None:
        if structured not in STRUCTURED_MODES:
            raise ValueError(f"structured must be one of {', '.join(STRUCTURED_MODES)}; "
                             f"got {structured!r}")
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL such as "
                             f"http://localhost:11434/v1 (Ollama); got {base_url!r}")
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a finite number of seconds > 0, got {timeout_s}")
        key = api_key or os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_KEY
        self.model = model
        self.base_url = base_url
        self.structured: Structured = structured
        self.timeout_s = timeout_s
        self.price = price
        self._redact = redact if redact is not None else \
            Redactor([key] if key != PLACEHOLDER_KEY else [])
        self._schema_unsupported = False
        self._lock = threading.Lock()
        self._client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0,
                                     timeout=timeout_s)

    def __repr__(self) -> str:
        return (f"OpenAICompatProvider(model={self.model!r}, base_url={self.base_url!r}, "
                f"structured={self.structured!r}, timeout_s={self.timeout_s})")

    def complete(self, turns: Sequence[Turn], schema: dict | None) -> Reply:
        """One chat completion (two requests once, when ``auto`` learns the server lacks
        structured output); see :class:`ChatProvider` for what it raises."""
        messages = _messages(turns)
        response_format = self._response_format(schema)
        try:
            return self._request(messages, response_format)
        except _FormatRejected as rejected:
            with self._lock:
                first = not self._schema_unsupported
                self._schema_unsupported = True
            if first:
                log.warning("%s at %s rejected response_format json_schema (%s); "
                            "continuing without it, answers are validated afterwards",
                            self.model, self.base_url, rejected.detail)
            return self._request(messages, None)  # no response_format: cannot be rejected

    def close(self) -> None:
        self._client.close()

    # -- internals ----------------------------------------------------------------------

    def _response_format(self, schema: dict | None) -> dict | None:
        if self.structured == "json_object":
            return {"type": "json_object"}
        if schema is None or self.structured == "none":
            return None
        if self.structured == "auto" and self._schema_unsupported:
            return None
        return {"type": "json_schema",
                "json_schema": {"name": "verdict", "schema": schema, "strict": True}}

    def _request(self, messages: list[dict], response_format: dict | None) -> Reply:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages}
        if response_format is not None:
            kwargs["response_format"] = response_format
        raw = ""
        try:
            raw_response = self._client.chat.completions.with_raw_response.create(**kwargs)
            raw = self._redact(raw_response.text)
            completion = raw_response.parse()
        except openai.APIStatusError as error:
            raise self._status_error(error, response_format) from None
        except openai.APIConnectionError as error:  # APITimeoutError included
            raise RetryableError(self._redact(
                f"{self.model} at {self.base_url}: {type(error).__name__}: {error} "
                "(is the server running and base_url right?)")) from None
        except (ValueError, openai.APIResponseValidationError) as error:
            raise InvalidAnswer(self._redact(
                f"{self.model} at {self.base_url} answered HTTP 200 with a body that is not "
                f"a chat completion ({type(error).__name__}: {error})"), raw=raw) from None
        return self._reply(completion, raw)

    def _status_error(self, error: openai.APIStatusError,
                      response_format: dict | None) -> ProviderError:
        status = error.status_code
        detail = self._redact(_error_text(error))[:500]
        message = self._redact(f"{self.model} at {self.base_url} answered HTTP {status}: "
                               f"{detail}")
        if status in (400, 422) and response_format is not None \
                and response_format.get("type") == "json_schema" \
                and self.structured == "auto" \
                and (error.param in ("response_format", "json_schema")
                     or _UNSUPPORTED_FORMAT.search(detail)):
            return _FormatRejected(message, detail)
        if isinstance(error, openai.RateLimitError) or status == 429:
            return RetryableError(message, retry_after=parse_retry_after(
                dict(error.response.headers)))
        if isinstance(error, openai.InternalServerError) or status >= 500 or status == 408:
            return RetryableError(message)
        if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
            message += " (set OPENAI_API_KEY, or pass api_key)"
        elif isinstance(error, openai.NotFoundError):
            message += f" (is {self.model!r} served there? and base_url ending in /v1?)"
        return ProviderError(message)

    def _reply(self, completion: Any, raw: str) -> Reply:
        usage = self._usage(completion)  # billed whatever the answer turns out to be
        choices = getattr(completion, "choices", None)
        if not choices:
            raise InvalidAnswer(f"{self.model} returned no choice", raw=raw, usage=usage)
        choice = choices[0]
        message = getattr(choice, "message", None)
        refusal = getattr(message, "refusal", None)
        if refusal:
            raise Refusal(self._redact(f"{self.model} refused: {refusal}"), raw=raw,
                          usage=usage)
        finish = getattr(choice, "finish_reason", None)
        if finish == "content_filter":
            raise Refusal(f"{self.model}: answer withheld by the content filter", raw=raw,
                          usage=usage)
        content = getattr(message, "content", None)
        if not isinstance(content, str) or not content.strip():
            why = self._redact(f" (finish reason {finish})") if finish else ""
            raise InvalidAnswer(f"{self.model} returned no answer text{why}", raw=raw,
                                usage=usage)
        return Reply(text=self._redact(strip_code_fence(content)), raw=raw, usage=usage)

    def _usage(self, completion: Any) -> Usage:
        """The ``usage`` block's token counts, priced when a price is known."""
        usage = getattr(completion, "usage", None)
        counted = Usage(input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0))
        return Usage(counted.input_tokens, counted.output_tokens,
                     cost_usd(self.name, self.model, counted, self.price))


class _FormatRejected(ProviderError):
    """The server rejected ``response_format``: ``auto`` retries the call without it."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


def _messages(turns: Sequence[Turn]) -> list[dict]:
    """Turns as chat messages: a user turn's images (data URIs) before its text; an
    assistant turn as plain text (what every compatible server accepts)."""
    if not turns:
        raise ValueError("complete() needs at least one turn")
    messages: list[dict] = []
    for turn in turns:
        if turn.role == "assistant":
            messages.append({"role": "assistant", "content": turn.text})
            continue
        parts: list[dict] = [
            {"type": "image_url",
             "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()}}
            for jpeg in turn.images]
        parts.append({"type": "text", "text": turn.text})
        messages.append({"role": "user", "content": parts})
    return messages


def _error_text(error: openai.APIStatusError) -> str:
    """The server's own error message (OpenAI's ``{"error": {"message"}}`` envelope, or
    whatever body a compatible server sent)."""
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        return json.dumps(body)[:500]
    if isinstance(body, str) and body:
        return body
    return str(error.message)
