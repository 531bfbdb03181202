"""The VLM teacher: chain of thought, then reflection, on any chat provider.

Call 1 asks the model to reason over the frames and the transcript and answer the verdict
JSON; call 2 shows it that answer and asks it to look for counter-evidence, check itself
against the majority-class bias, and give a revised final verdict (the paper's CoT +
Reflection). Each call runs under the one :class:`RetryPolicy`, and the answer is parsed
inside the retried call, so output that is not the schema's JSON is retried like a 503
instead of ending the video.

Whatever the model or the network does, :meth:`VlmLabeler.label` returns an outcome: a
refusal at either call is recorded as refused (with the raw answer), and retries exhausted
or a provider error as failed, with an error that says what happened. Strings passed as
``redact`` (API keys) are blanked from every error and raw response kept, so a server or
client that echoes a key cannot put it into the store.

Example:
    >>> labeler = VlmLabeler(provider, load_prompts("v1"), RetryPolicy())  # doctest: +SKIP
    >>> labeler.label(item).verdict.label  # doctest: +SKIP
    'negative'
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from training.pseudo.pricing import cost_usd
from training.pseudo.prompts import PromptSet
from training.pseudo.providers.base import (
    ChatProvider,
    InvalidAnswer,
    ProviderError,
    Refusal,
    Reply,
    Turn,
)
from training.pseudo.records import (
    VERDICT_SCHEMA,
    LabelInput,
    LabelOutcome,
    Status,
    Usage,
    Verdict,
)
from training.pseudo.retry import RetriesExhausted, RetryPolicy, call_with_retries

log = logging.getLogger(__name__)

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 8
"""Shorter strings are not redacted: blanking "abc" everywhere would garble the text, and
no real key is that short."""
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)


def parse_verdict(text: str, raw: str = "") -> Verdict:
    """The verdict in a reply's text (a Markdown code fence around it is tolerated);
    :class:`InvalidAnswer` (retryable) for anything that is not the schema's JSON."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        return Verdict.model_validate_json(body)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}"
                             for e in error.errors()[:3])
        raise InvalidAnswer(f"the answer is not the verdict JSON ({problems}): "
                            f"{body[:120]!r}", raw=raw or text) from None


@dataclass
class _Call:
    """One step (chain of thought or reflection) as the retry loop runs it: every attempt
    and every paid reply is counted, including invalid answers that are retried."""

    provider: ChatProvider
    turns: list[Turn]
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    last_raw: str = ""

    def __call__(self) -> tuple[Reply, Verdict]:
        self.attempts += 1
        try:
            reply = self.provider.complete(self.turns, VERDICT_SCHEMA)
        except (InvalidAnswer, Refusal) as error:
            self.last_raw = error.raw or self.last_raw
            raise
        self.usage = self.usage + _priced(self.provider, reply.usage)
        self.last_raw = reply.raw
        return reply, parse_verdict(reply.text, reply.raw)

    def kept(self) -> tuple[str, ...]:
        """The last raw answer of a step that did not succeed (for the store), if any."""
        return (self.last_raw,) if self.last_raw else ()


def _priced(provider: ChatProvider, usage: Usage) -> Usage:
    """``usage`` with its cost from the price table (per call: some prices depend on the
    prompt's length), unless the provider already put one."""
    if usage.cost_usd is not None:
        return usage
    return Usage(usage.input_tokens, usage.output_tokens,
                 cost_usd(provider.name, provider.model, usage))


class VlmLabeler:
    """A :class:`training.pseudo.records.Labeler` on a chat provider (see the module
    docstring). ``sleep`` is the retry loop's wait (tests pass one that does not wait)."""

    needs_images = True

    def __init__(self, provider: ChatProvider, prompts: PromptSet, policy: RetryPolicy,
                 *, redact: Sequence[str] = (),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.chat = provider
        self.prompts = prompts
        self.policy = policy
        self.provider = provider.name
        self.model = provider.model
        self.prompt_version = prompts.version
        self.sleep = sleep
        self._secrets = tuple(sorted({s for s in redact if len(s) >= MIN_SECRET_LENGTH},
                                     key=len, reverse=True))

    def label(self, item: LabelInput) -> LabelOutcome:
        """Both calls for one video; never raises for what the provider or model does."""
        start = time.monotonic()
        first = _Call(self.chat, self.prompts.chain_of_thought(item))
        outcome = self._step("chain of thought", first)
        if isinstance(outcome, LabelOutcome):
            return self._finish(outcome, start)
        first_reply, provisional = outcome
        second = _Call(self.chat, self.prompts.reflection(item, first_reply.text))
        result = self._step("reflection", second, before=first)
        if isinstance(result, LabelOutcome):
            return self._finish(result, start, provisional=provisional)
        second_reply, final = result
        return self._finish(LabelOutcome(
            Status.LABELLED, verdict=final, provisional=provisional,
            responses=(first_reply.raw, second_reply.raw), usage=first.usage + second.usage,
            attempts=first.attempts + second.attempts), start)

    def _step(self, name: str, call: _Call,
              before: _Call | None = None) -> tuple[Reply, Verdict] | LabelOutcome:
        """Run one call under the policy: its reply and verdict, or the outcome that ends
        the video (refused or failed), counting what ``before`` (call 1) already cost."""
        earlier_raw = (before.last_raw,) if before is not None else ()
        usage = before.usage if before is not None else Usage()
        attempts = before.attempts if before is not None else 0
        try:
            (reply, verdict), _ = call_with_retries(call, self.policy, sleep=self.sleep)
        except Refusal as refusal:
            return LabelOutcome(Status.REFUSED, responses=(*earlier_raw, *call.kept()),
                                usage=usage + call.usage, attempts=attempts + call.attempts,
                                error=f"{name}: refused: {refusal}")
        except RetriesExhausted as exhausted:
            return LabelOutcome(Status.FAILED, responses=(*earlier_raw, *call.kept()),
                                usage=usage + call.usage, attempts=attempts + call.attempts,
                                error=f"{name}: {exhausted}")
        except ProviderError as error:
            return LabelOutcome(Status.FAILED, responses=(*earlier_raw, *call.kept()),
                                usage=usage + call.usage, attempts=attempts + call.attempts,
                                error=f"{name}: {type(error).__name__}: {error}")
        except Exception as error:  # noqa: BLE001 - one odd response must not end a run
            # of hundreds of videos: the video is recorded as failed (a rerun retries it)
            log.debug("%s: unexpected error from provider %s:\n%s", name, self.provider,
                      self._redact("".join(traceback.format_exception(error))))
            return LabelOutcome(Status.FAILED, responses=(*earlier_raw, *call.kept()),
                                usage=usage + call.usage, attempts=attempts + call.attempts,
                                error=f"{name}: unexpected {type(error).__name__}: {error}")
        return reply, verdict

    def _finish(self, outcome: LabelOutcome, start: float,
                provisional: Verdict | None = None) -> LabelOutcome:
        return LabelOutcome(
            outcome.status, verdict=outcome.verdict,
            provisional=outcome.provisional or provisional,
            responses=tuple(self._redact(text) for text in outcome.responses),
            usage=outcome.usage, attempts=outcome.attempts,
            error=None if outcome.error is None else self._redact(outcome.error),
            seconds=time.monotonic() - start)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def close(self) -> None:
        self.chat.close()
