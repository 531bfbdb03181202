"""The chat providers driven through their REAL official clients (google-genai, openai)
against local servers speaking each wire protocol: request shape, answer parsing, error
mapping, the retry policy's bounds, pricing, and that the API key never leaks."""

from __future__ import annotations

import doctest
import json
import logging
import time
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_servers import (
    Answer,
    Fail,
    Garbage,
    GeminiServer,
    OpenAIServer,
    Raw,
    RecordedRequest,
    Refuse,
    Respond,
)

import training.pseudo.pricing as pricing
import training.pseudo.providers.openai_compat as openai_compat
import training.pseudo.retry as retry
from training.pseudo.pricing import Price, cost_usd, estimate_gemini_tokens, gemini_image_tokens
from training.pseudo.providers.base import (
    InvalidAnswer,
    ProviderError,
    Refusal,
    RetryableError,
    Turn,
)
from training.pseudo.providers.gemini import GeminiProvider
from training.pseudo.providers.openai_compat import OpenAICompatProvider, strip_code_fence
from training.pseudo.records import VERDICT_SCHEMA, Usage, Verdict
from training.pseudo.retry import (
    RetriesExhausted,
    RetryPolicy,
    call_with_retries,
    parse_retry_after,
)

KEY = "sk-test-SECRET-1234"
VERDICT = '{"label": "positive", "confidence": 0.8, "reasoning": "smiles at the end"}'


def _jpeg(value: int) -> bytes:
    image = np.full((48, 64, 3), value, dtype=np.uint8)
    image[8:24, 8:40] = 255 - value
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return encoded.tobytes()


JPEGS = (_jpeg(30), _jpeg(200))
TURNS = (
    Turn("user", "Label this video. Think step by step.", JPEGS),
    Turn("assistant", VERDICT),
    Turn("user", "Reflect on your answer; reply with the final JSON."),
)


@pytest.fixture(autouse=True)
def _no_ambient_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests decide which keys exist; a developer's real ones must not be picked up."""
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL",
                 "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE",
                 "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION"):
        monkeypatch.delenv(name, raising=False)


def gemini(server: GeminiServer, **kwargs: object) -> GeminiProvider:
    return GeminiProvider(**{"model": "gemini-2.5-flash", "api_key": KEY,
                             "base_url": server.base_url, **kwargs})  # type: ignore[arg-type]


def compat(server: OpenAIServer, **kwargs: object) -> OpenAICompatProvider:
    return OpenAICompatProvider(**{"model": "qwen2.5-vl:7b", "base_url": server.base_url,
                                   "api_key": KEY, **kwargs})  # type: ignore[arg-type]


@pytest.fixture(params=["gemini", "openai"])
def wire(request: pytest.FixtureRequest) -> Callable:
    """(server class, provider factory) for each protocol: the tests that hold for both."""
    if request.param == "gemini":
        return lambda script, **kw: (GeminiServer(script), lambda s: gemini(s, **kw))
    return lambda script, **kw: (OpenAIServer(script), lambda s: compat(s, **kw))


# -- Gemini ------------------------------------------------------------------------------


def test_gemini_request_shape_and_reply() -> None:
    with GeminiServer([Answer(VERDICT, input_tokens=2564, output_tokens=300)]) as server:
        provider = gemini(server)
        reply = provider.complete(TURNS, VERDICT_SCHEMA)
        provider.close()
    [request] = server.requests
    assert request.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert request.headers["x-goog-api-key"] == KEY
    body = request.body
    assert [content["role"] for content in body["contents"]] == ["user", "model", "user"]
    first = body["contents"][0]["parts"]
    assert [("inlineData" in part, "text" in part) for part in first] == \
        [(True, False), (True, False), (False, True)]
    assert first[2]["text"] == TURNS[0].text
    assert request.images() == list(JPEGS)
    for jpeg in request.images():
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    assert body["contents"][1]["parts"] == [{"text": VERDICT}]
    config = body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == VERDICT_SCHEMA
    assert "responseSchema" not in config

    assert Verdict.model_validate_json(reply.text).label == "positive"
    assert reply.usage.input_tokens == 2564 and reply.usage.output_tokens == 300
    assert reply.usage.cost_usd == pytest.approx((2564 * 0.30 + 300 * 2.50) / 1e6)
    assert json.loads(reply.raw)["candidates"][0]["content"]["parts"][0]["text"] == VERDICT


def test_gemini_without_schema_asks_for_no_json_mode() -> None:
    with GeminiServer([Answer("plain")]) as server:
        reply = gemini(server).complete(TURNS[:1], None)
    config = server.requests[0].body.get("generationConfig", {})
    assert "responseMimeType" not in config and "responseJsonSchema" not in config
    assert reply.text == "plain"


def test_gemini_thoughts_are_billed_as_output_but_not_answer_text() -> None:
    body = {
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "Let me look at the hands...", "thought": True},
            {"text": VERDICT}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": 40,
                          "thoughtsTokenCount": 900, "totalTokenCount": 1940},
        "modelVersion": "gemini-2.5-pro",
    }
    with GeminiServer([Raw(200, json.dumps(body))]) as server:
        reply = gemini(server, model="gemini-2.5-pro").complete(TURNS, VERDICT_SCHEMA)
    assert reply.text == VERDICT
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (1000, 940)
    assert reply.usage.cost_usd == pytest.approx((1000 * 1.25 + 940 * 10.0) / 1e6)


def test_gemini_refusals() -> None:
    finish_safety = {"candidates": [{"content": {"role": "model", "parts": []},
                                     "finishReason": "PROHIBITED_CONTENT", "index": 0}]}
    with GeminiServer([Refuse("SAFETY"), Raw(200, json.dumps(finish_safety))]) as server:
        provider = gemini(server)
        with pytest.raises(Refusal, match="SAFETY") as blocked:
            provider.complete(TURNS, VERDICT_SCHEMA)
        with pytest.raises(Refusal, match="PROHIBITED_CONTENT"):
            provider.complete(TURNS, VERDICT_SCHEMA)
    assert json.loads(blocked.value.raw)["promptFeedback"]["blockReason"] == "SAFETY"


def test_gemini_unreadable_answers_are_invalid_not_retryable() -> None:
    no_text = {"candidates": [{"content": {"role": "model", "parts": [{"text": "  "}]},
                               "finishReason": "MAX_TOKENS", "index": 0}]}
    script = [Garbage("<html>proxy error</html>"), Raw(200, "{}"),
              Raw(200, json.dumps(no_text))]
    with GeminiServer(script) as server:
        provider = gemini(server)
        for expected in ("not a GenerateContentResponse", "no candidate", "MAX_TOKENS"):
            with pytest.raises(InvalidAnswer, match=expected) as caught:
                provider.complete(TURNS, VERDICT_SCHEMA)
            assert not isinstance(caught.value, RetryableError)


def test_gemini_http_errors() -> None:
    retry_info = json.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                       "message": "quota", "details": [{
                                           "@type": "type.googleapis.com/google.rpc.RetryInfo",
                                           "retryDelay": "17s"}]}})
    script = [Fail(429, retry_after=7), Fail(429, body=retry_info), Fail(500), Fail(503),
              Fail(400), Fail(403), Fail(404)]
    with GeminiServer(script) as server:
        provider = gemini(server)
        with pytest.raises(RetryableError) as limited:
            provider.complete(TURNS, VERDICT_SCHEMA)
        assert limited.value.retry_after == 7.0
        with pytest.raises(RetryableError) as limited:
            provider.complete(TURNS, VERDICT_SCHEMA)
        assert limited.value.retry_after == 17.0
        for status in (500, 503):
            with pytest.raises(RetryableError, match=str(status)) as failed:
                provider.complete(TURNS, VERDICT_SCHEMA)
            assert failed.value.retry_after is None
        for status, hint in ((400, "INVALID_ARGUMENT"), (403, "GEMINI_API_KEY"),
                             (404, "model name")):
            with pytest.raises(ProviderError, match=f"HTTP {status}") as failed:
                provider.complete(TURNS, VERDICT_SCHEMA)
            assert not isinstance(failed.value, RetryableError)
            assert "gemini-2.5-flash" in str(failed.value) and hint in str(failed.value)
    assert len(server.requests) == len(script)  # the client itself never retried


def test_gemini_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ProviderError, match="GEMINI_API_KEY"):
        GeminiProvider()
    monkeypatch.setenv("GOOGLE_API_KEY", "google-key")
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-key")
    with GeminiServer([Answer(VERDICT)]) as server:
        GeminiProvider(base_url=server.base_url).complete(TURNS, VERDICT_SCHEMA)
        monkeypatch.delenv("GEMINI_API_KEY")
        GeminiProvider(base_url=server.base_url).complete(TURNS, VERDICT_SCHEMA)
    assert [r.headers["x-goog-api-key"] for r in server.requests] == ["gemini-key",
                                                                     "google-key"]
    assert GeminiServer.model_of(server.requests[0]) == "gemini-2.5-pro"


# -- OpenAI-compatible -------------------------------------------------------------------


def test_openai_request_shape_and_reply() -> None:
    with OpenAIServer([Answer(VERDICT, input_tokens=1800, output_tokens=120)]) as server:
        provider = compat(server)
        reply = provider.complete(TURNS, VERDICT_SCHEMA)
        provider.close()
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = request.body
    assert body["model"] == "qwen2.5-vl:7b"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    first = body["messages"][0]["content"]
    assert [part["type"] for part in first] == ["image_url", "image_url", "text"]
    assert first[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert request.images() == list(JPEGS)
    assert request.texts()[0] == TURNS[0].text
    assert body["messages"][1]["content"] == VERDICT
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "verdict", "schema": VERDICT_SCHEMA, "strict": True}}

    assert Verdict.model_validate_json(reply.text).confidence == 0.8
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (1800, 120)
    assert reply.usage.cost_usd is None  # a local server: no price unless configured
    assert json.loads(reply.raw)["choices"][0]["message"]["content"] == VERDICT


def test_openai_configured_price_and_code_fence() -> None:
    fenced = f"```json\n{VERDICT}\n```"
    with OpenAIServer([Answer(fenced, input_tokens=1000, output_tokens=100)]) as server:
        reply = compat(server, price=Price(0.5, 1.5)).complete(TURNS, VERDICT_SCHEMA)
    assert reply.text == VERDICT
    assert reply.usage.cost_usd == pytest.approx((1000 * 0.5 + 100 * 1.5) / 1e6)
    assert json.loads(reply.raw)["choices"][0]["message"]["content"] == fenced


@pytest.mark.parametrize(("text", "expected"), [
    ("```json\n{\"a\": 1}\n```", "{\"a\": 1}"),
    ("```\n{\"a\": 1}\n```\n", "{\"a\": 1}"),
    ("  ```JSON\r\n{\"a\": 1}\r\n```  ", "{\"a\": 1}"),
    ("{\"a\": 1}", "{\"a\": 1}"),
    ("Here you go:\n```json\n{}\n```", "Here you go:\n```json\n{}\n```"),
    ("```json\n{}\n```\nanything after", "```json\n{}\n```\nanything after"),
])
def test_strip_code_fence(text: str, expected: str) -> None:
    assert strip_code_fence(text) == expected


@pytest.mark.parametrize(("structured", "expected"), [
    ("none", None),
    ("json_object", {"type": "json_object"}),
    ("json_schema", {"type": "json_schema", "json_schema": {
        "name": "verdict", "schema": VERDICT_SCHEMA, "strict": True}}),
])
def test_openai_structured_modes(structured: str, expected: dict | None) -> None:
    with OpenAIServer([Answer(VERDICT)]) as server:
        compat(server, structured=structured).complete(TURNS, VERDICT_SCHEMA)
    assert server.requests[0].body.get("response_format") == expected


NO_SCHEMA_400 = json.dumps({"error": {"message": "response_format json_schema is not "
                                                 "supported by this server", "code": 400}})


def test_openai_auto_falls_back_once_and_keeps_working(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="training.pseudo.providers.openai_compat")
    with OpenAIServer([Fail(400, body=NO_SCHEMA_400), Answer(VERDICT)]) as server:
        provider = compat(server)
        replies = [provider.complete(TURNS, VERDICT_SCHEMA) for _ in range(3)]
    assert [reply.text for reply in replies] == [VERDICT] * 3
    formats = [r.body.get("response_format") for r in server.requests]
    assert formats[0]["type"] == "json_schema" and formats[1:] == [None, None, None]
    warnings = [r for r in caplog.records if "rejected response_format" in r.getMessage()]
    assert len(warnings) == 1


def test_openai_fallback_needs_auto_and_a_format_complaint() -> None:
    with OpenAIServer([Fail(400, body=NO_SCHEMA_400)]) as server, \
            pytest.raises(ProviderError, match="400") as failed:
        compat(server, structured="json_schema").complete(TURNS, VERDICT_SCHEMA)
    assert not isinstance(failed.value, RetryableError)
    assert len(server.requests) == 1
    other_400 = json.dumps({"error": {"message": "messages: too many images"}})
    with OpenAIServer([Fail(400, body=other_400)]) as server:
        provider = compat(server)
        for _ in range(2):
            with pytest.raises(ProviderError, match="too many images"):
                provider.complete(TURNS, VERDICT_SCHEMA)
    assert [r.body["response_format"]["type"] for r in server.requests] == ["json_schema"] * 2


def test_openai_refusals() -> None:
    filtered = {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "finish_reason": "content_filter",
                             "message": {"role": "assistant", "content": None}}]}
    with OpenAIServer([Refuse("I can't help with that."), Raw(200, json.dumps(filtered))]) \
            as server:
        provider = compat(server)
        with pytest.raises(Refusal, match="can't help") as refused:
            provider.complete(TURNS, VERDICT_SCHEMA)
        with pytest.raises(Refusal, match="content filter"):
            provider.complete(TURNS, VERDICT_SCHEMA)
    assert json.loads(refused.value.raw)["choices"][0]["message"]["refusal"]


def test_openai_unreadable_answers_are_invalid_not_retryable() -> None:
    empty = {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
             "choices": [{"index": 0, "finish_reason": "length",
                          "message": {"role": "assistant", "content": ""}}]}
    script = [Garbage("{not json"), Raw(200, "{}"), Raw(200, json.dumps(empty)),
              Raw(200, "plain text", headers={"Content-Type": "text/plain"})]
    with OpenAIServer(script) as server:
        provider = compat(server)
        for expected in ("not a chat completion", "no choice", "length", "no choice"):
            with pytest.raises(InvalidAnswer, match=expected) as caught:
                provider.complete(TURNS, VERDICT_SCHEMA)
            assert not isinstance(caught.value, RetryableError)
    assert len(server.requests) == len(script)


def test_openai_garbage_keeps_the_raw_body() -> None:
    with OpenAIServer([Garbage("{not json")]) as server, \
            pytest.raises(InvalidAnswer) as caught:
        compat(server).complete(TURNS, VERDICT_SCHEMA)
    assert caught.value.raw == "{not json"


def test_openai_http_errors() -> None:
    script = [Fail(429, retry_after=3), Fail(429, retry_after=0.25), Fail(500), Fail(502),
              Fail(400), Fail(401), Fail(404)]
    with OpenAIServer(script) as server:
        provider = compat(server)
        for expected in (3.0, 0.25):
            with pytest.raises(RetryableError) as limited:
                provider.complete(TURNS, VERDICT_SCHEMA)
            assert limited.value.retry_after == expected
        for status in (500, 502):
            with pytest.raises(RetryableError, match=str(status)) as failed:
                provider.complete(TURNS, VERDICT_SCHEMA)
            assert failed.value.retry_after is None
        for status, hint in ((400, "scripted failure"), (401, "OPENAI_API_KEY"),
                             (404, "base_url")):
            with pytest.raises(ProviderError, match=f"HTTP {status}") as failed:
                provider.complete(TURNS, VERDICT_SCHEMA)
            assert not isinstance(failed.value, RetryableError)
            assert "qwen2.5-vl:7b" in str(failed.value) and hint in str(failed.value)
    assert len(server.requests) == len(script)  # max_retries=0: the client never retried


def test_openai_key_from_environment_or_placeholder(monkeypatch: pytest.MonkeyPatch) -> None:
    with OpenAIServer([Answer(VERDICT)]) as server:
        OpenAICompatProvider("m", server.base_url).complete(TURNS, None)
        monkeypatch.setenv("OPENAI_API_KEY", "env-key")
        OpenAICompatProvider("m", server.base_url).complete(TURNS, None)
    assert [r.headers["authorization"] for r in server.requests] == \
        ["Bearer not-needed", "Bearer env-key"]


def test_openai_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="structured must be one of"):
        OpenAICompatProvider("m", "http://localhost:11434/v1", structured="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="base_url must be an http"):
        OpenAICompatProvider("m", "localhost:11434")


# -- both protocols ----------------------------------------------------------------------


def test_transport_errors_are_retryable(wire: Callable) -> None:
    server, make = wire([Answer(VERDICT)])
    with server:
        provider = make(server)
    # The server is gone: connection refused.
    with pytest.raises(RetryableError, match=r"transport error|Connection error"):
        provider.complete(TURNS, VERDICT_SCHEMA)


def test_timeouts_are_retryable(wire: Callable) -> None:
    def slow(_request: RecordedRequest) -> Answer:
        time.sleep(1.5)
        return Answer(VERDICT)

    server, make = wire([Respond(slow)], timeout_s=0.3)
    with server:
        started = time.monotonic()
        with pytest.raises(RetryableError, match=r"(?i)timeout|timed out"):
            make(server).complete(TURNS, VERDICT_SCHEMA)
        assert time.monotonic() - started < 1.4


def test_respond_answers_per_request(wire: Callable) -> None:
    """The hook an end-to-end test uses: answer by which video's frames were sent."""
    def by_video(request: RecordedRequest) -> Answer:
        label = "positive" if request.images()[0] == JPEGS[1] else "negative"
        return Answer(json.dumps({"label": label, "confidence": 0.7, "reasoning": "r"}))

    server, make = wire([Respond(by_video)])
    with server:
        provider = make(server)
        labels = [Verdict.model_validate_json(provider.complete(
            [Turn("user", "label", (jpeg,))], VERDICT_SCHEMA).text).label for jpeg in JPEGS]
    assert labels == ["negative", "positive"]


def test_call_with_retries_over_the_wire(wire: Callable) -> None:
    server, make = wire([Fail(429, retry_after=0.01), Fail(500), Answer(VERDICT)])
    waits: list[float] = []
    with server:
        provider = make(server)
        reply, attempts = call_with_retries(lambda: provider.complete(TURNS, VERDICT_SCHEMA),
                                            RetryPolicy(base_delay_s=0.01), sleep=waits.append)
    assert attempts == 3 and len(server.requests) == 3
    assert reply.text == VERDICT
    assert waits[0] == 0.01  # the server's Retry-After, honoured
    assert 0.01 <= waits[1] <= 0.04  # exponential backoff (0.02) plus jitter (< 0.01)


def test_retries_are_bounded_over_the_wire(wire: Callable) -> None:
    server, make = wire([Fail(500)])
    waits: list[float] = []
    with server:
        provider = make(server)
        with pytest.raises(RetriesExhausted) as exhausted:
            call_with_retries(lambda: provider.complete(TURNS, VERDICT_SCHEMA),
                              RetryPolicy(max_attempts=4), sleep=waits.append)
    assert exhausted.value.attempts == 4 and len(server.requests) == 4
    assert isinstance(exhausted.value.last_error, RetryableError)
    assert "500" in str(exhausted.value) and len(waits) == 3


def test_invalid_answers_are_retried_over_the_wire(wire: Callable) -> None:
    server, make = wire([Garbage("<html>"), Answer(VERDICT)])
    with server:
        provider = make(server)
        reply, attempts = call_with_retries(lambda: provider.complete(TURNS, VERDICT_SCHEMA),
                                            sleep=lambda _s: None)
    assert (reply.text, attempts) == (VERDICT, 2)


@pytest.mark.parametrize("entry", [Refuse(), Fail(400)], ids=["refusal", "bad-request"])
def test_refusals_and_bad_requests_are_called_once(wire: Callable, entry: object) -> None:
    server, make = wire([entry, Answer(VERDICT)])
    with server:
        provider = make(server)
        with pytest.raises(ProviderError) as caught:
            call_with_retries(lambda: provider.complete(TURNS, VERDICT_SCHEMA),
                              sleep=lambda _s: pytest.fail("must not wait"))
    assert not isinstance(caught.value, RetryableError | RetriesExhausted)
    assert len(server.requests) == 1


def test_the_key_never_leaks(wire: Callable, caplog: pytest.LogCaptureFixture,
                             capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    echoing = json.dumps({"error": {"message": f"API key {KEY} is not valid", "code": 401}})
    script = [Answer(VERDICT), Fail(429, retry_after=0.01), Fail(400),
              Fail(401, body=echoing), Garbage("<html>"), Refuse(), Answer(VERDICT), Fail(500)]
    server, make = wire(script)
    seen: list[str] = []
    with server:
        provider = make(server)
        seen.append(repr(provider))
        for _ in script:
            try:
                provider.complete(TURNS, VERDICT_SCHEMA)
            except ProviderError as error:
                seen += [str(error), repr(error)]
        with pytest.raises(RetriesExhausted) as exhausted:
            call_with_retries(lambda: provider.complete(TURNS, VERDICT_SCHEMA),
                              RetryPolicy(max_attempts=2), sleep=lambda _s: None)
        seen.append(str(exhausted.value))
        provider.close()
    out, err = capsys.readouterr()
    assert caplog.records, "DEBUG logging was captured"
    for text in [caplog.text, out, err, *seen]:
        assert KEY not in text
    assert any("[redacted]" in text for text in seen)  # the echoed key was scrubbed
    headers = server.requests[0].headers
    sent = headers.get("x-goog-api-key") or headers["authorization"].removeprefix("Bearer ")
    assert sent == KEY  # ...yet it was used


# -- the retry policy --------------------------------------------------------------------


OUTCOMES = st.one_of(
    st.builds(RetryableError, st.just("rate limited"),
              st.one_of(st.none(), st.floats(0, 10_000, allow_nan=False))),
    st.builds(InvalidAnswer, st.just("not json")),
    st.builds(Refusal, st.just("SAFETY")),
    st.builds(ProviderError, st.just("HTTP 400")),
    st.just("ok"),
)


@settings(max_examples=150, deadline=None)
@given(script=st.lists(OUTCOMES, min_size=1, max_size=10),
       max_attempts=st.integers(1, 6),
       base=st.floats(0, 5, allow_nan=False), max_delay=st.floats(0, 60, allow_nan=False),
       max_retry_after=st.floats(0, 120, allow_nan=False))
def test_call_with_retries_is_bounded(script: list, max_attempts: int, base: float,
                                      max_delay: float, max_retry_after: float) -> None:
    policy = RetryPolicy(max_attempts, base, max_delay, max_retry_after)
    calls: list[object] = []
    waits: list[float] = []

    def call() -> str:
        outcome = script[min(len(calls), len(script) - 1)]
        calls.append(outcome)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    try:
        result, attempts = call_with_retries(call, policy, sleep=waits.append)
    except RetriesExhausted as exhausted:
        assert exhausted.attempts == len(calls) == max_attempts
        assert isinstance(exhausted.last_error, RetryableError | InvalidAnswer)
    except ProviderError as error:
        assert isinstance(error, Refusal) or type(error) is ProviderError
        assert calls[-1] is error  # raised as is, on the call that produced it
    else:
        assert result == "ok" and attempts == len(calls)
    assert len(calls) <= max_attempts
    assert len(waits) == len(calls) - 1
    for outcome, wait in zip(calls, waits, strict=False):
        server_asked = isinstance(outcome, RetryableError) and outcome.retry_after is not None
        assert 0 <= wait <= (max_retry_after if server_asked else max_delay)
        if server_asked:
            assert wait == min(outcome.retry_after, max_retry_after)


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="max_delay_s"):
        RetryPolicy(max_delay_s=float("inf"))


def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= parse_retry_after({"Retry-After": future}) <= 31  # type: ignore[operator]


# -- pricing -----------------------------------------------------------------------------


def test_gemini_prices_and_the_long_prompt_tier() -> None:
    short = cost_usd("gemini", "gemini-2.5-pro", Usage(200_000, 1_000))
    long = cost_usd("gemini", "gemini-2.5-pro", Usage(200_001, 1_000))
    assert short == pytest.approx((200_000 * 1.25 + 1_000 * 10.0) / 1e6)
    assert long == pytest.approx((200_001 * 2.50 + 1_000 * 15.0) / 1e6)
    assert cost_usd("gemini", "gemini-2.5-flash", Usage(10**6, 10**6)) == pytest.approx(2.80)
    assert cost_usd("gemini", "gemini-2.5-flash-lite", Usage(10**6, 10**6)) == \
        pytest.approx(0.50)
    assert cost_usd("gemini", "models/gemini-2.5-flash", Usage(10**6, 0)) == pytest.approx(0.3)
    assert cost_usd("gemini", "gemini-2.5-flash-preview-09-2025", Usage(10**6, 0)) == \
        pytest.approx(0.3)
    assert cost_usd("gemini", "gemini-2.5-flash-image", Usage(10, 10)) is None
    assert cost_usd("gemini", "gemini-9-ultra", Usage(10, 10)) is None
    assert cost_usd("openai", "gpt-4o", Usage(10, 10)) is None
    assert cost_usd("openai", "llava", Usage(10**6, 0), Price(0.2, 0.6)) == pytest.approx(0.2)


def test_gemini_image_token_rule() -> None:
    assert gemini_image_tokens(384, 384) == 258
    assert gemini_image_tokens(448, 252) == 258
    assert gemini_image_tokens(768, 768) == 258
    assert gemini_image_tokens(769, 769) == 4 * 258
    assert gemini_image_tokens(1536, 768) == 2 * 258
    assert estimate_gemini_tokens(frames=8, size=448, prompt_chars=2_000) == 8 * 258 + 500
    assert estimate_gemini_tokens(frames=0, size=448, prompt_chars=3) == 1


@pytest.mark.parametrize("module", [pricing, retry, openai_compat],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module: object) -> None:
    """The worked cost-per-video example (and the others) are computed, not typed."""
    failures, tried = doctest.testmod(module, verbose=False)  # type: ignore[arg-type]
    assert tried > 0 and failures == 0
