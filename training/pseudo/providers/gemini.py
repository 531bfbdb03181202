"""Gemini (Google's hosted VLM) behind :class:`ChatProvider`, through the official
``google-genai`` client.

Why these choices:

* The schema goes in ``response_json_schema`` (``generationConfig.responseJsonSchema``),
  not ``response_schema``: the latter is Gemini's OpenAPI subset, which the client
  validates into its ``Schema`` model and which has no ``additionalProperties``; the
  former takes JSON Schema as is (``additionalProperties``, ``enum``, ``minimum`` are all in
  its supported list), so :data:`~training.pseudo.records.VERDICT_SCHEMA` is sent unchanged.
* The client's own retries are off (``HttpRetryOptions(attempts=1)``): the labeler's
  :mod:`training.pseudo.retry` policy owns retries, so attempts are counted once.
* The API version is pinned to ``v1beta``, where JSON-schema output and thinking are
  documented (this client defaults to ``v1``).
* The key is resolved here (``GEMINI_API_KEY``, then ``GOOGLE_API_KEY``; the client alone
  would prefer ``GOOGLE_API_KEY``) and handed to the client, which sends it in the
  ``x-goog-api-key`` header. It is never logged, shown in ``repr``, or put in an error
  message: every message and raw body built from what the server sent passes through the
  run's :class:`~training.pseudo.redact.Redactor` (by default one that knows this key)
  before it is cut short or raised, and a refusal or unusable answer carries the usage the
  server billed for it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import pydantic
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from training.pseudo.pricing import cost_usd
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

KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")

REFUSAL_FINISH_REASONS = frozenset({
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR",
})
"""A candidate that stopped for one of these was withheld by policy: a refusal, which a
retry would only pay for again."""


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The transport exception bases of both HTTP stacks google-genai may run on."""
    found: list[type[BaseException]] = []
    for module in ("httpx2", "httpx"):
        try:
            found.append(__import__(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


_TRANSPORT_ERRORS = _transport_errors()


class GeminiProvider:
    """A Gemini model on the Gemini Developer API (or a server speaking its protocol at
    ``base_url``, as the tests' wire server does)."""

    name = "gemini"

    def __init__(self, model: str = "gemini-2.5-pro", api_key: str | None = None,
                 base_url: str | None = None, timeout_s: float = 120,
                 redact: Redactor | None = None) -> None:
        key = api_key or next((os.environ[var] for var in KEY_VARIABLES
                               if os.environ.get(var)), None)
        if not key:
            raise ProviderError(
                f"no Gemini API key for model {model}: set GEMINI_API_KEY (or GOOGLE_API_KEY) "
                "to a key from https://aistudio.google.com/apikey")
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a finite number of seconds > 0, got {timeout_s}")
        self.model = model
        self.base_url = base_url
        self.timeout_s = timeout_s
        self._redact = redact if redact is not None else Redactor([key])
        options = types.HttpOptions(
            base_url=base_url,
            api_version="v1beta",
            timeout=max(1, round(timeout_s * 1000)),  # milliseconds
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self._client = genai.Client(vertexai=False, api_key=key, http_options=options)

    def __repr__(self) -> str:
        where = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"GeminiProvider(model={self.model!r}{where}, timeout_s={self.timeout_s})"

    def complete(self, turns: Sequence[Turn], schema: dict | None) -> Reply:
        """One ``generateContent`` request; see :class:`ChatProvider` for what it raises."""
        config = types.GenerateContentConfig(
            response_mime_type="application/json" if schema is not None else None,
            response_json_schema=schema,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        try:
            response = self._client.models.generate_content(
                model=self.model, contents=_contents(turns), config=config)
        except genai_errors.APIError as error:
            raise self._status_error(error) from None
        except _TRANSPORT_ERRORS as error:
            raise RetryableError(self._redact(
                f"Gemini {self.model}: transport error ({type(error).__name__}: {error}); "
                "check the network or base_url")) from None
        except (json.JSONDecodeError, pydantic.ValidationError) as error:
            raise InvalidAnswer(self._redact(
                f"Gemini {self.model} answered HTTP 200 with a body that is not a "
                f"GenerateContentResponse ({type(error).__name__}: {error})")) from None
        return self._reply(response)

    def close(self) -> None:
        self._client.close()

    # -- internals ----------------------------------------------------------------------

    def _status_error(self, error: genai_errors.APIError) -> ProviderError:
        code = int(error.code or 0)
        status = error.status or ""
        detail = self._redact(str(error.message or error.details or ""))[:500]
        message = self._redact(f"Gemini {self.model} answered HTTP {code} {status}: "
                               f"{detail}".rstrip(": "))
        if code == 429:
            headers = getattr(getattr(error, "response", None), "headers", None)
            retry_after = parse_retry_after(headers)
            if retry_after is None:
                retry_after = _retry_delay(error.details)
            return RetryableError(message, retry_after=retry_after)
        if code == 408 or code >= 500:
            return RetryableError(message)
        if code in (401, 403):
            message += " (check GEMINI_API_KEY / GOOGLE_API_KEY)"
        elif code == 404:
            message += f" (is {self.model!r} a Gemini model name?)"
        return ProviderError(message)

    def _reply(self, response: types.GenerateContentResponse) -> Reply:
        # The body as the API sent it, camelCase; not the client's additions (headers, the
        # parsed JSON, function-calling history).
        raw = self._redact(response.model_dump_json(
            exclude_none=True, by_alias=True,
            exclude={"sdk_http_response", "parsed", "automatic_function_calling_history"}))
        usage = self._usage(response)  # billed whatever the answer turns out to be
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason is not None and \
                _enum_name(feedback.block_reason) != "BLOCKED_REASON_UNSPECIFIED":
            reason = _enum_name(feedback.block_reason)
            extra = f": {feedback.block_reason_message}" if feedback.block_reason_message else ""
            raise Refusal(self._redact(f"Gemini {self.model} blocked the prompt "
                                       f"({reason}{extra})"), raw=raw, usage=usage)
        candidates = response.candidates or []
        if not candidates:
            raise InvalidAnswer(f"Gemini {self.model} returned no candidate", raw=raw,
                                usage=usage)
        candidate = candidates[0]
        finish = _enum_name(candidate.finish_reason) if candidate.finish_reason else ""
        if finish in REFUSAL_FINISH_REASONS:
            extra = f": {candidate.finish_message}" if candidate.finish_message else ""
            raise Refusal(self._redact(f"Gemini {self.model} withheld its answer "
                                       f"({finish}{extra})"), raw=raw, usage=usage)
        parts = candidate.content.parts if candidate.content and candidate.content.parts \
            else []
        text = "".join(part.text for part in parts if part.text and not part.thought)
        if not text.strip():
            why = f" (finish reason {finish})" if finish else ""
            raise InvalidAnswer(f"Gemini {self.model} returned no answer text{why}", raw=raw,
                                usage=usage)
        return Reply(text=self._redact(text), raw=raw, usage=usage)

    def _usage(self, response: types.GenerateContentResponse) -> Usage:
        meta = response.usage_metadata
        if meta is None:
            return Usage()
        # Thinking tokens are billed as output, and reported apart from the answer's.
        usage = Usage(input_tokens=int(meta.prompt_token_count or 0),
                      output_tokens=int(meta.candidates_token_count or 0)
                      + int(meta.thoughts_token_count or 0))
        return Usage(usage.input_tokens, usage.output_tokens,
                     cost_usd(self.name, self.model, usage))


def _contents(turns: Sequence[Turn]) -> list[types.Content]:
    """Turns as Gemini contents: images first, then the text; assistant turns are role
    ``model``."""
    if not turns:
        raise ValueError("complete() needs at least one turn")
    contents = []
    for turn in turns:
        parts = [types.Part.from_bytes(data=jpeg, mime_type="image/jpeg")
                 for jpeg in turn.images]
        parts.append(types.Part.from_text(text=turn.text))
        contents.append(types.Content(role="model" if turn.role == "assistant" else "user",
                                      parts=parts))
    return contents


def _enum_name(value: Any) -> str:
    return str(getattr(value, "value", value))


def _retry_delay(details: Any) -> float | None:
    """``google.rpc.RetryInfo.retryDelay`` ("17s") from a Gemini 429's error details: the
    API's usual way to say when to come back (it rarely sends ``Retry-After``)."""
    error = details.get("error", details) if isinstance(details, dict) else None
    items = error.get("details") if isinstance(error, dict) else None
    for item in items if isinstance(items, list) else []:
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(float(delay[:-1]), 0.0)
            except ValueError:
                continue
    return None

