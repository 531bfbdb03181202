"""The VLM teacher: chain of thought, then reflection, on any chat provider.

Call 1 asks the model to reason over the frames and the transcript and answer the verdict
JSON; call 2 shows it that answer and asks it to look for counter-evidence, check itself
against the majority-class bias, and give a revised final verdict (the paper's CoT +
Reflection). Each call runs under the one :class:`RetryPolicy`, and the answer is parsed
inside the retried call, so output that is not the schema's JSON is retried like a 503
instead of ending the video.

Whatever the model or the network does, :meth:`VlmLabeler.label` returns an outcome: a
refusal at either call is recorded as refused (with the raw answer), and retries exhausted
or a provider error as failed, with an error that says what happened. Every call the
server billed counts in the outcome's usage, whatever its answer (a refusal, a content
filter, JSON that does not parse). The run's :class:`~training.pseudo.redact.Redactor`
blanks its secrets from each answer as it arrives (before the verdict is parsed from it)
and from the whole outcome, so a server that echoes a key cannot put it into a verdict,
an error or a raw response.

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
from dataclasses import dataclass, field, replace

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
from training.pseudo.redact import Redactor
from training.pseudo.retry import RetriesExhausted, RetryPolicy, call_with_retries

log = logging.getLogger(__name__)

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
    """One step (chain of thought or reflection) as the retry loop runs it: every attempt,
    every billed reply (invalid answers and refusals included) and the time inside the
    calls are counted. What the provider returns is redacted before it is parsed, so a
    secret echoed in the answer never reaches a verdict or an error message."""

    provider: ChatProvider
    turns: list[Turn]
    redact: Redactor
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0
    """Time inside ``provider.complete`` over every attempt (the retry waits are not)."""
    last_raw: str = ""

    def __call__(self) -> tuple[Reply, Verdict]:
        self.attempts += 1
        start = time.monotonic()
        try:
            reply = self.provider.complete(self.turns, VERDICT_SCHEMA)
        except (InvalidAnswer, Refusal) as error:
            self.usage = self.usage + _priced(self.provider, error.usage)
            self.last_raw = self.redact(error.raw) or self.last_raw
            raise
        finally:
            self.seconds += time.monotonic() - start
        self.usage = self.usage + _priced(self.provider, reply.usage)
        reply = Reply(self.redact(reply.text), self.redact(reply.raw), reply.usage)
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
    docstring). ``redact`` is the run's :class:`Redactor` (or the secrets to build one
    from); ``sleep`` is the retry loop's wait (tests pass one that does not wait)."""

    needs_images = True

    def __init__(self, provider: ChatProvider, prompts: PromptSet, policy: RetryPolicy,
                 *, redact: Redactor | Sequence[str] = (),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.chat = provider
        self.prompts = prompts
        self.policy = policy
        self.provider = provider.name
        self.model = provider.model
        self.prompt_version = prompts.version
        self.sleep = sleep
        self.redact = redact if isinstance(redact, Redactor) else Redactor(redact)

    def label(self, item: LabelInput) -> LabelOutcome:
        """Both calls for one video; never raises for what the provider or model does."""
        start = time.monotonic()
        first = _Call(self.chat, self.prompts.chain_of_thought(item), self.redact)
        outcome = self._step("chain of thought", first)
        if isinstance(outcome, LabelOutcome):
            return self._finish(outcome, start)
        first_reply, provisional = outcome
        second = _Call(self.chat, self.prompts.reflection(item, first_reply.text),
                       self.redact)
        result = self._step("reflection", second, before=first)
        if isinstance(result, LabelOutcome):
            return self._finish(result, start, provisional=provisional)
        second_reply, final = result
        return self._finish(LabelOutcome(
            Status.LABELLED, verdict=final, provisional=provisional,
            responses=(first_reply.raw, second_reply.raw), usage=first.usage + second.usage,
            attempts=first.attempts + second.attempts,
            call_seconds=first.seconds + second.seconds), start)

    def _step(self, name: str, call: _Call,
              before: _Call | None = None) -> tuple[Reply, Verdict] | LabelOutcome:
        """Run one call under the policy: its reply and verdict, or the outcome that ends
        the video (refused or failed), counting what ``before`` (call 1) already cost."""
        try:
            (reply, verdict), _ = call_with_retries(call, self.policy, sleep=self.sleep)
        except Refusal as refusal:
            return _ended(Status.REFUSED, f"{name}: refused: {refusal}", call, before)
        except RetriesExhausted as exhausted:
            return _ended(Status.FAILED, f"{name}: {exhausted}", call, before)
        except ProviderError as error:
            return _ended(Status.FAILED, f"{name}: {type(error).__name__}: {error}", call,
                          before)
        except Exception as error:  # noqa: BLE001 - one odd response must not end a run
            # of hundreds of videos: the video is recorded as failed (a rerun retries it)
            log.debug("%s: unexpected error from provider %s:\n%s", name, self.provider,
                      self.redact("".join(traceback.format_exception(error))))
            return _ended(Status.FAILED, f"{name}: unexpected {type(error).__name__}: "
                                         f"{error}", call, before)
        return reply, verdict

    def _finish(self, outcome: LabelOutcome, start: float,
                provisional: Verdict | None = None) -> LabelOutcome:
        return self.redact.outcome(replace(
            outcome, provisional=outcome.provisional or provisional,
            seconds=time.monotonic() - start))

    def close(self) -> None:
        self.chat.close()


def _ended(status: Status, error: str, call: _Call, before: _Call | None) -> LabelOutcome:
    """The outcome of a video whose ``call`` ended it: what both steps cost and the raw
    answers they left (call 1's reply, then this step's last answer, if any)."""
    steps = [step for step in (before, call) if step is not None]
    responses = ((before.last_raw,) if before is not None else ()) + call.kept()
    return LabelOutcome(status, responses=responses,
                        usage=sum((step.usage for step in steps), Usage()),
                        attempts=sum(step.attempts for step in steps),
                        call_seconds=sum(step.seconds for step in steps), error=error)
