"""One interface for every chat VLM: a conversation of turns in, a reply with its raw text
and token counts out. The two-call chain of thought + reflection is written once against
it (:mod:`training.pseudo.labeler`); each provider only speaks its own wire protocol
through its official client.

Errors are sorted into what a retry can fix (:class:`RetryableError`: transport errors,
rate limits with their ``retry_after``, 5xx; :class:`InvalidAnswer`: output that is not the
schema's JSON) and what it cannot (:class:`Refusal`, :class:`ProviderError`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from training.pseudo.records import Usage


@dataclass(frozen=True)
class Turn:
    """One message of a conversation. ``images`` are JPEG bytes, shown before the text."""

    role: Literal["user", "assistant"]
    text: str
    images: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Reply:
    text: str
    """The model's answer text (expected to be the verdict JSON)."""
    raw: str
    """The whole response body as received (JSON text), for the store."""
    usage: Usage


class ProviderError(RuntimeError):
    """A call that cannot succeed as asked (bad key, unknown model, bad request)."""


class RetryableError(ProviderError):
    """A call that may succeed later: transport error, rate limit, server error."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidAnswer(ProviderError):
    """The reply is not the schema's JSON (worth a bounded retry). ``usage`` is what the
    server billed for it (an answer that cannot be used is paid for all the same)."""

    def __init__(self, message: str, raw: str = "", usage: Usage | None = None) -> None:
        super().__init__(message)
        self.raw = raw
        self.usage = usage or Usage()


class Refusal(ProviderError):
    """The model declined to answer (safety block, policy refusal, content filter):
    recorded, not retried. ``usage`` is what the server billed for the refusal (a hosted
    API bills the prompt it read, and any output it wrote before withholding it)."""

    def __init__(self, message: str, raw: str = "", usage: Usage | None = None) -> None:
        super().__init__(message)
        self.raw = raw
        self.usage = usage or Usage()


class ChatProvider(Protocol):
    """A VLM behind a chat API. ``name`` and ``model`` are part of the cache key."""

    name: str
    model: str

    def complete(self, turns: Sequence[Turn], schema: dict | None) -> Reply:
        """One call. Raises :class:`RetryableError`, :class:`Refusal` or
        :class:`ProviderError`; never retries itself (the labeler owns the policy)."""
        ...

    def close(self) -> None:
        ...
