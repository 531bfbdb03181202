"""The VLM labeler over real clients and local wire servers: every path of the two calls
ends in an outcome (labelled, refused, failed), never an exception."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from wire_servers import Answer, Fail, Garbage, GeminiServer, OpenAIServer, Raw, Refuse

from training.pseudo.labeler import VlmLabeler, parse_verdict
from training.pseudo.prompts import load_prompts
from training.pseudo.providers.base import InvalidAnswer, ProviderError, Reply, Turn
from training.pseudo.providers.gemini import GeminiProvider
from training.pseudo.providers.openai_compat import OpenAICompatProvider
from training.pseudo.records import LabelInput, SampledImage, Status, Usage, Verdict
from training.pseudo.retry import RetryPolicy

FIRST = json.dumps({"label": "positive", "confidence": 0.7,
                    "reasoning": "smiles, open posture, talks about the next round"})
FINAL = json.dumps({"label": "negative", "confidence": 0.6,
                    "reasoning": "on reflection: neck touching at 12 s, masked smile"})
ITEM = LabelInput("vid", "ab" * 32, (SampledImage(b"\xff\xd8jpeg-1", 1.0),
                                     SampledImage(b"\xff\xd8jpeg-2", 3.0)),
                  transcript="It was a tough match.")
POLICY = RetryPolicy(max_attempts=3, base_delay_s=0.0)


def openai_labeler(server: OpenAIServer, waits: list[float] | None = None,
                   **kwargs) -> VlmLabeler:
    provider = OpenAICompatProvider("qwen2.5-vl", server.base_url, api_key="k-local-test")
    sleep = waits.append if waits is not None else (lambda _s: None)
    return VlmLabeler(provider, load_prompts("v1"), POLICY, sleep=sleep, **kwargs)


def gemini_labeler(server: GeminiServer) -> VlmLabeler:
    provider = GeminiProvider("gemini-2.5-pro", api_key="g-local-test-key",
                              base_url=server.base_url)
    return VlmLabeler(provider, load_prompts("v1"), POLICY, sleep=lambda _s: None)


def test_two_calls_give_the_reflected_verdict() -> None:
    with OpenAIServer([Answer(FIRST, 1000, 200), Answer(FINAL, 1300, 150)]) as server:
        labeler = openai_labeler(server)
        outcome = labeler.label(ITEM)
        requests = server.requests
    assert outcome.status is Status.LABELLED
    assert outcome.verdict == Verdict.model_validate_json(FINAL)
    assert outcome.provisional == Verdict.model_validate_json(FIRST)
    assert len(outcome.responses) == 2 and "neck touching" in outcome.responses[1]
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == (2300, 350)
    assert outcome.attempts == 2 and outcome.error is None and outcome.seconds > 0
    assert (labeler.provider, labeler.model) == ("openai", "qwen2.5-vl")
    assert labeler.prompt_version == load_prompts("v1").version
    # The reflection request replays the images and the model's own first answer.
    assert len(requests) == 2
    assert requests[1].images() == [b"\xff\xd8jpeg-1", b"\xff\xd8jpeg-2"]
    assert FIRST in requests[1].texts()
    assert any(FIRST in text and "majority" in text for text in requests[1].texts())
    assert requests[0].body["response_format"]["type"] == "json_schema"


def test_invalid_json_is_retried_within_the_policy() -> None:
    script = [Answer("I think they lost."), Answer('{"label": "lost"}'), Answer(FIRST),
              Answer(FINAL)]
    with OpenAIServer(script) as server:
        outcome = openai_labeler(server).label(ITEM)
        assert len(server.requests) == 4
    assert outcome.status is Status.LABELLED
    assert outcome.attempts == 4
    assert outcome.usage.input_tokens == 400  # invalid answers were paid for too


def test_invalid_json_past_the_cap_fails_keeping_the_last_answer() -> None:
    with OpenAIServer([Answer("not json at all")]) as server:
        outcome = openai_labeler(server).label(ITEM)
        assert len(server.requests) == POLICY.max_attempts
    assert outcome.status is Status.FAILED
    assert outcome.attempts == POLICY.max_attempts
    assert "chain of thought" in outcome.error and "verdict JSON" in outcome.error
    assert "not json at all" in outcome.responses[-1]


def test_refusal_at_the_first_call() -> None:
    with OpenAIServer([Refuse("I can't help with judging people's emotions.")]) as server:
        outcome = openai_labeler(server).label(ITEM)
        assert len(server.requests) == 1  # never retried into an answer
    assert outcome.status is Status.REFUSED
    assert outcome.verdict is None and outcome.provisional is None
    assert "chain of thought: refused" in outcome.error and "emotions" in outcome.error
    assert len(outcome.responses) == 1 and "refusal" in outcome.responses[0]
    assert outcome.attempts == 1


def test_refusal_at_the_reflection_keeps_the_first_answer() -> None:
    with OpenAIServer([Answer(FIRST), Refuse("policy")]) as server:
        outcome = openai_labeler(server).label(ITEM)
    assert outcome.status is Status.REFUSED
    assert outcome.verdict is None
    assert outcome.provisional == Verdict.model_validate_json(FIRST)
    assert outcome.error.startswith("reflection: refused") and "policy" in outcome.error
    assert len(outcome.responses) == 2 and outcome.attempts == 2


def test_refusals_are_billed_at_either_step_on_both_protocols() -> None:
    """The wire servers' refusals report usage (OpenAI 100 in / 10 out, Gemini a 100-token
    prompt): a refused video costs what its calls were billed, the reflection's included."""
    with OpenAIServer([Refuse("no")]) as server:
        first = openai_labeler(server).label(ITEM)
    assert first.status is Status.REFUSED
    assert (first.usage.input_tokens, first.usage.output_tokens) == (100, 10)
    with OpenAIServer([Answer(FIRST, 1000, 200), Refuse("no")]) as server:
        second = openai_labeler(server).label(ITEM)
    assert second.status is Status.REFUSED and second.attempts == 2
    assert (second.usage.input_tokens, second.usage.output_tokens) == (1100, 210)
    with GeminiServer([Answer(FIRST, 1000, 200), Refuse("SAFETY")]) as server:
        gemini = gemini_labeler(server).label(ITEM)
    assert gemini.status is Status.REFUSED
    assert (gemini.usage.input_tokens, gemini.usage.output_tokens) == (1100, 200)
    assert gemini.usage.cost_usd == pytest.approx((1100 * 1.25 + 200 * 10.0) / 1e6)


def _completion(message: dict, finish: str, usage: tuple[int, int]) -> Raw:
    return Raw(200, json.dumps({
        "id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                  "total_tokens": sum(usage)}}))


def test_content_filter_and_empty_answers_are_billed() -> None:
    filtered = _completion({"role": "assistant", "content": None}, "content_filter", (300, 7))
    with OpenAIServer([Answer(FIRST, 1000, 200), filtered]) as server:
        outcome = openai_labeler(server).label(ITEM)
    assert outcome.status is Status.REFUSED and "content filter" in outcome.error
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == (1300, 207)
    empty = _completion({"role": "assistant", "content": ""}, "length", (400, 90))
    with OpenAIServer([empty, Answer(FIRST), Answer(FINAL)]) as server:
        outcome = openai_labeler(server).label(ITEM)
    assert outcome.status is Status.LABELLED and outcome.attempts == 3
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == (600, 190)
    with OpenAIServer([empty]) as server:
        outcome = openai_labeler(server).label(ITEM)
    assert outcome.status is Status.FAILED
    assert outcome.usage.input_tokens == 400 * POLICY.max_attempts
    withheld = Raw(200, json.dumps({
        "candidates": [{"content": {"parts": [{"text": "partial"}], "role": "model"},
                        "finishReason": "SAFETY", "index": 0}],
        "usageMetadata": {"promptTokenCount": 500, "candidatesTokenCount": 30,
                          "thoughtsTokenCount": 20, "totalTokenCount": 550}}))
    with GeminiServer([withheld]) as server:
        outcome = gemini_labeler(server).label(ITEM)
    assert outcome.status is Status.REFUSED and "SAFETY" in outcome.error
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == (500, 50)


def test_a_key_echoed_in_the_answers_reaches_no_field() -> None:
    key = "sk-live-echo-0123456789"
    echo_first = json.dumps({"label": "positive", "confidence": 0.7,
                             "reasoning": f"the header said {key}"})
    echo_final = json.dumps({"label": "negative", "confidence": 0.6, "reasoning": key})
    provider_key = "k-local-test"
    with OpenAIServer([Answer(echo_first), Answer(echo_final)]) as server:
        provider = OpenAICompatProvider("m", server.base_url, api_key=provider_key)
        outcome = VlmLabeler(provider, load_prompts("v1"), POLICY, redact=[key],
                             sleep=lambda _s: None).label(ITEM)
        sent = [" ".join(request.texts()) for request in server.requests]
    assert outcome.status is Status.LABELLED
    assert outcome.provisional.reasoning == "the header said [redacted]"
    assert outcome.verdict.reasoning == "[redacted]"
    assert key not in repr(outcome)
    assert key not in sent[1]  # the reflection shows the model its answer, redacted


def test_rate_limit_waits_what_the_server_asks() -> None:
    waits: list[float] = []
    with OpenAIServer([Fail(429, retry_after=0.25), Answer(FIRST), Answer(FINAL)]) as server:
        outcome = openai_labeler(server, waits).label(ITEM)
    assert outcome.status is Status.LABELLED
    assert outcome.attempts == 3
    assert waits == [0.25]


def test_server_errors_past_the_cap_fail() -> None:
    with OpenAIServer([Fail(500)]) as server:
        outcome = openai_labeler(server).label(ITEM)
        assert len(server.requests) == POLICY.max_attempts
    assert outcome.status is Status.FAILED
    assert outcome.attempts == POLICY.max_attempts
    assert outcome.error.startswith("chain of thought: gave up after 3 attempts")
    assert "500" in outcome.error


def test_failure_at_the_reflection_keeps_the_provisional_answer() -> None:
    with OpenAIServer([Answer(FIRST), Fail(503)]) as server:
        outcome = openai_labeler(server).label(ITEM)
    assert outcome.status is Status.FAILED
    assert outcome.error.startswith("reflection:")
    assert outcome.provisional == Verdict.model_validate_json(FIRST)
    assert outcome.attempts == 1 + POLICY.max_attempts
    assert outcome.usage.input_tokens == 100


def test_a_non_retryable_error_fails_at_once() -> None:
    with OpenAIServer([Fail(401)]) as server:
        outcome = openai_labeler(server).label(ITEM)
        assert len(server.requests) == 1
    assert outcome.status is Status.FAILED and outcome.attempts == 1
    assert "401" in outcome.error


def test_garbage_bodies_are_retried() -> None:
    with OpenAIServer([Garbage("<html>oops"), Answer(FIRST), Answer(FINAL)]) as server:
        outcome = openai_labeler(server).label(ITEM)
    assert outcome.status is Status.LABELLED and outcome.attempts == 3


def test_gemini_labels_and_prices() -> None:
    with GeminiServer([Answer(FIRST, 3000, 2000), Answer(FINAL, 3500, 1500)]) as server:
        outcome = gemini_labeler(server).label(ITEM)
        requests = server.requests
    assert outcome.status is Status.LABELLED
    assert outcome.verdict.label == "negative"
    assert outcome.usage.cost_usd is not None and outcome.usage.cost_usd > 0
    assert GeminiServer.model_of(requests[0]) == "gemini-2.5-pro"
    assert FIRST in requests[1].texts()
    assert requests[1].body["contents"][1]["role"] == "model"


def test_gemini_safety_block_is_a_refusal() -> None:
    with GeminiServer([Refuse("SAFETY")]) as server:
        outcome = gemini_labeler(server).label(ITEM)
    assert outcome.status is Status.REFUSED and "SAFETY" in outcome.error


class Scripted:
    """A provider of our own, for what no wire server produces."""

    name = "scripted"
    model = "m"

    def __init__(self, actions: Sequence[object]) -> None:
        self.actions = list(actions)
        self.closed = False

    def complete(self, turns: Sequence[Turn], schema: dict | None) -> Reply:
        action = self.actions.pop(0)
        if isinstance(action, BaseException):
            raise action
        return Reply(str(action), "raw:" + str(action), Usage(1, 1))

    def close(self) -> None:
        self.closed = True


def test_an_unexpected_exception_becomes_a_failure_not_a_crash() -> None:
    labeler = VlmLabeler(Scripted([KeyError("choices")]), load_prompts(), POLICY)
    outcome = labeler.label(ITEM)
    assert outcome.status is Status.FAILED
    assert "unexpected KeyError" in outcome.error
    labeler.close()
    assert labeler.chat.closed


def test_secrets_are_redacted_from_errors_and_responses() -> None:
    secret = "sk-test-SECRET-1234"
    provider = Scripted([ProviderError(f"bad key {secret}")])
    outcome = VlmLabeler(provider, load_prompts(), POLICY, redact=[secret, "short"]).label(ITEM)
    assert secret not in outcome.error and "[redacted]" in outcome.error
    provider = Scripted([FIRST.replace("smiles", secret), FINAL])
    outcome = VlmLabeler(provider, load_prompts(), POLICY, redact=[secret]).label(ITEM)
    assert all(secret not in raw for raw in outcome.responses)


@pytest.mark.parametrize("text", [FIRST, f"```json\n{FIRST}\n```", f"  {FIRST}\n"])
def test_parse_verdict_accepts_the_json_and_a_fence(text: str) -> None:
    assert parse_verdict(text).label == "positive"


@pytest.mark.parametrize("text", ["", "positive", '{"label": "positive"}',
                                  '{"label": "win", "confidence": 0.5, "reasoning": "x"}',
                                  '{"label": "positive", "confidence": 2, "reasoning": "x"}',
                                  FIRST[:-1] + ', "extra": 1}'])
def test_parse_verdict_refuses_the_rest(text: str) -> None:
    with pytest.raises(InvalidAnswer):
        parse_verdict(text)
