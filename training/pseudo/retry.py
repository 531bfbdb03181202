"""The one retry policy of pseudo-labelling: a bounded number of attempts, waiting what the
server asked for (``Retry-After``, capped) or else an exponential backoff with jitter.

Providers never retry (their clients' own retries are off), so a labelling call makes at
most ``max_attempts`` requests and the attempt count recorded with each outcome is exact.
Only what a later attempt can fix is retried: :class:`RetryableError` (transport errors,
rate limits, 5xx) and :class:`InvalidAnswer` (output that is not the schema's JSON). A
:class:`Refusal` or any other :class:`ProviderError` (bad key, unknown model, bad request)
propagates at once: retrying it would only pay for the same answer again.

Example:
    >>> calls = []
    >>> def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise RetryableError("HTTP 503", retry_after=0.5)
    ...     return "ok"
    >>> waits = []
    >>> call_with_retries(flaky, RetryPolicy(), sleep=waits.append)
    ('ok', 3)
    >>> waits
    [0.5, 0.5]
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from training.pseudo.providers.base import InvalidAnswer, ProviderError, RetryableError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one provider call.

    ``base_delay_s`` is both the first backoff and the jitter's width; the backoff doubles
    per attempt up to ``max_delay_s``. A server's ``Retry-After`` replaces the backoff but
    is capped at ``max_retry_after_s``, so a misbehaving server cannot park a run for hours.
    """

    max_attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    max_retry_after_s: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        for name in ("base_delay_s", "max_delay_s", "max_retry_after_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"RetryPolicy.{name} must be a finite number >= 0, got {value}")


class RetriesExhausted(ProviderError):
    """Every allowed attempt failed with a retryable error; ``last_error`` is the final one."""

    def __init__(self, attempts: int, last_error: BaseException) -> None:
        super().__init__(
            f"gave up after {attempts} attempt{'s' if attempts != 1 else ''}: "
            f"{type(last_error).__name__}: {last_error}")
        self.attempts = attempts
        self.last_error = last_error


def call_with_retries(call: Callable[[], T], policy: RetryPolicy | None = None,
                      sleep: Callable[[float], None] = time.sleep) -> tuple[T, int]:
    """Run ``call`` under ``policy``; return its result and the attempts it took.

    Raises :class:`RetriesExhausted` (with the last error) when every attempt failed with
    a retryable error, or the first non-retryable error (a :class:`Refusal`, a
    :class:`ProviderError`, or anything unexpected) as it was raised. ``sleep`` is
    injectable so tests do not wait for real.
    """
    policy = policy or RetryPolicy()

    backoff = tenacity.wait_exponential_jitter(
        initial=policy.base_delay_s, max=policy.max_delay_s, jitter=policy.base_delay_s)

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, RetryableError) and error.retry_after is not None:
            return min(max(error.retry_after, 0.0), policy.max_retry_after_s)
        return backoff(state)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.info("attempt %d/%d failed (%s: %s); retrying in %.2f s", state.attempt_number,
                 policy.max_attempts, type(error).__name__, error, delay)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.max_attempts),
        wait=wait,
        retry=tenacity.retry_if_exception_type((RetryableError, InvalidAnswer)),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=False,
    )
    try:
        result = retrying(call)
    except tenacity.RetryError as exhausted:
        last = exhausted.last_attempt.exception()
        assert last is not None  # RetryError is only raised after a failed attempt
        raise RetriesExhausted(exhausted.last_attempt.attempt_number, last) from last
    return result, int(retrying.statistics.get("attempt_number", 1))


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a server asked us to wait, from ``retry-after-ms`` or ``Retry-After``
    (delta-seconds, fractional accepted, or an HTTP date); None when absent or unreadable.

    Both providers' rate-limit answers carry it; the policy caps what it honours.
    """
    if not headers:
        return None
    lowered = {str(name).lower(): str(value) for name, value in headers.items()}
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lowered.get(name)
        if value is None:
            continue
        try:
            seconds = float(value.strip()) / divisor
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    return max(moment.timestamp() - time.time(), 0.0)
