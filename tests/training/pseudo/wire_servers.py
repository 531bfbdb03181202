"""Real local HTTP servers that speak the Gemini and OpenAI chat wire protocols, so tests
drive the official clients (google-genai, openai) end to end: requests are built, sent,
and answers parsed exactly as in production; only the model behind the socket is scripted.

Each server answers from a script, one entry per request in order, repeating the LAST
entry once the script is exhausted (a long run needs one entry)::

    with OpenAIServer([Fail(429, retry_after=0.01), Answer('{"label": ...}')]) as server:
        provider = OpenAICompatProvider("qwen2.5-vl", server.base_url, api_key="k")
        ...
        assert len(server.requests) == 2

Entries: :class:`Answer` (a normal completion), :class:`Fail` (an HTTP error status,
with ``Retry-After`` when given), :class:`Refuse` (the model declines), :class:`Garbage`
(a 200 whose body is not JSON), :class:`Raw` (any status, body and headers, for shapes the
others do not cover), and :class:`Respond` (a function of the request that returns one of
the others, e.g. to answer per video from the images sent).

Response bodies are shaped as the real APIs shape them (``GenerateContentResponse`` with
``candidates``/``usageMetadata``/``promptFeedback``; ``chat.completion`` with
``choices``/``usage``), and errors as their error envelopes, so the clients' own parsing
and error classes are exercised.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    path: str
    headers: dict[str, str]
    """Header names lower-cased (HTTP names are case-insensitive)."""
    body: Any
    """The parsed JSON body (None when the body was empty or not JSON)."""

    def images(self) -> list[bytes]:
        """Every image sent, decoded, in request order (Gemini ``inlineData`` parts or
        OpenAI ``image_url`` data URIs)."""
        found: list[bytes] = []
        for part in _parts(self.body):
            inline = part.get("inlineData") or part.get("inline_data")
            if isinstance(inline, dict) and "data" in inline:
                found.append(_b64(inline["data"]))
            image_url = part.get("image_url")
            if isinstance(image_url, dict):
                url = str(image_url.get("url", ""))
                if url.startswith("data:") and "," in url:
                    found.append(_b64(url.split(",", 1)[1]))
        return found

    def texts(self) -> list[str]:
        """Every text part sent, in request order (both protocols; plain-string message
        contents included)."""
        found: list[str] = []
        for part in _parts(self.body):
            if isinstance(part.get("text"), str):
                found.append(part["text"])
        return found


def _b64(text: str) -> bytes:
    """Standard or URL-safe base64 (google-genai sends the URL-safe alphabet)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _parts(body: Any) -> list[dict]:
    """All content parts of a Gemini (``contents[].parts``) or OpenAI (``messages[].content``)
    request body, in order."""
    if not isinstance(body, dict):
        return []
    parts: list[dict] = []
    for content in body.get("contents") or []:
        parts.extend(p for p in content.get("parts") or [] if isinstance(p, dict))
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            parts.append({"type": "text", "text": content})
        elif isinstance(content, list):
            parts.extend(p for p in content if isinstance(p, dict))
    return parts


@dataclass(frozen=True)
class Answer:
    """A normal completion whose answer text is ``text``."""

    text: str
    input_tokens: int = 100
    output_tokens: int = 50


@dataclass(frozen=True)
class Fail:
    """An HTTP error. ``body`` empty = the API's own error envelope for that status;
    otherwise sent as is (e.g. a 400 whose message names ``response_format``)."""

    status: int
    retry_after: float | None = None
    body: str = ""


@dataclass(frozen=True)
class Refuse:
    """The model declines: Gemini ``promptFeedback.blockReason`` = ``reason`` (no
    candidates); OpenAI ``message.refusal`` = ``reason`` (no content)."""

    reason: str = "SAFETY"


@dataclass(frozen=True)
class Garbage:
    """A 200 (``Content-Type: application/json``) whose body is not valid JSON at all."""

    body: str


@dataclass(frozen=True)
class Raw:
    """Anything else: this exact status, body and extra headers."""

    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Respond:
    """Answer depending on the request: ``fn`` returns the entry to send."""

    fn: Callable[[RecordedRequest], Scripted]


Scripted = Answer | Fail | Refuse | Garbage | Raw | Respond


@dataclass(frozen=True)
class _Reply:
    status: int
    body: str
    headers: dict[str, str]


class _WireServer:
    """A ThreadingHTTPServer on 127.0.0.1 (free port) in a daemon thread, answering POSTs
    on its protocol's route from the script."""

    def __init__(self, script: list[Scripted]) -> None:
        if not script:
            raise ValueError("a wire server needs at least one scripted entry")
        self._script = list(script)
        self._next = 0
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> _WireServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                request = RecordedRequest(
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=body)
                reply = server._handle(request)
                payload = reply.body.encode()
                try:
                    self.send_response(reply.status)
                    headers = {"Content-Type": "application/json; charset=UTF-8",
                               **reply.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (a timeout test): nothing to answer

            def log_message(self, format: str, *args: object) -> None:
                """Silent: tests read ``server.requests``, not stderr."""

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        name=type(self).__name__, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- what tests read ----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started: use it as a context "
                               "manager (with ...Server([...]) as server:)")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        raise NotImplementedError

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order (a snapshot)."""
        with self._lock:
            return list(self._requests)

    # -- answering ----------------------------------------------------------------------

    def _handle(self, request: RecordedRequest) -> _Reply:
        with self._lock:
            self._requests.append(request)
            if not self._route(request.path):
                return _Reply(404, self._error_body(404, f"no route {request.path}"), {})
            entry = self._script[min(self._next, len(self._script) - 1)]
            self._next += 1
        for _ in range(16):  # a Respond may return another Respond; bounded
            if not isinstance(entry, Respond):
                break
            entry = entry.fn(request)
        else:
            raise RuntimeError("Respond returned Respond 16 times in a row")
        if isinstance(entry, Answer):
            return _Reply(200, json.dumps(self._answer_body(request, entry)), {})
        if isinstance(entry, Refuse):
            return _Reply(200, json.dumps(self._refusal_body(request, entry)), {})
        if isinstance(entry, Garbage):
            return _Reply(200, entry.body, {})
        if isinstance(entry, Raw):
            return _Reply(entry.status, entry.body, dict(entry.headers))
        if isinstance(entry, Fail):
            headers = {} if entry.retry_after is None else \
                {"Retry-After": format(entry.retry_after, "g")}
            body = entry.body or self._error_body(entry.status, "scripted failure")
            return _Reply(entry.status, body, headers)
        raise TypeError(f"not a scripted entry: {entry!r}")

    def _route(self, path: str) -> bool:
        raise NotImplementedError

    def _answer_body(self, request: RecordedRequest, answer: Answer) -> dict:
        raise NotImplementedError

    def _refusal_body(self, request: RecordedRequest, refuse: Refuse) -> dict:
        raise NotImplementedError

    def _error_body(self, status: int, message: str) -> str:
        raise NotImplementedError


_GEMINI_ROUTE = re.compile(r"^/(?P<version>v1beta|v1|v1alpha)/models/(?P<model>[^/:?]+)"
                           r":generateContent(?:\?.*)?$")

_GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                  404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED", 429: "RESOURCE_EXHAUSTED",
                  500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
                  504: "DEADLINE_EXCEEDED"}


class GeminiServer(_WireServer):
    """``POST /v1beta/models/{model}:generateContent`` (any of v1, v1beta, v1alpha), the
    Gemini Developer API; the client sends its key in ``x-goog-api-key``. Point
    ``GeminiProvider(base_url=server.base_url)`` at it."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @staticmethod
    def model_of(request: RecordedRequest) -> str | None:
        """The model named in the request path."""
        match = _GEMINI_ROUTE.match(request.path)
        return match.group("model") if match else None

    def _route(self, path: str) -> bool:
        return _GEMINI_ROUTE.match(path) is not None

    def _usage(self, input_tokens: int, output_tokens: int) -> dict:
        return {"promptTokenCount": input_tokens, "candidatesTokenCount": output_tokens,
                "totalTokenCount": input_tokens + output_tokens,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": input_tokens}]}

    def _answer_body(self, request: RecordedRequest, answer: Answer) -> dict:
        return {
            "candidates": [{
                "content": {"parts": [{"text": answer.text}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }],
            "usageMetadata": self._usage(answer.input_tokens, answer.output_tokens),
            "modelVersion": self.model_of(request) or "unknown",
            "responseId": uuid.uuid4().hex[:22],
        }

    def _refusal_body(self, request: RecordedRequest, refuse: Refuse) -> dict:
        return {
            "promptFeedback": {
                "blockReason": refuse.reason,
                "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                                   "probability": "HIGH", "blocked": True}],
            },
            "usageMetadata": {"promptTokenCount": 100, "totalTokenCount": 100},
            "modelVersion": self.model_of(request) or "unknown",
            "responseId": uuid.uuid4().hex[:22],
        }

    def _error_body(self, status: int, message: str) -> str:
        reason = _GOOGLE_STATUS.get(status, "UNKNOWN")
        return json.dumps({"error": {"code": status, "message": message, "status": reason}})


_OPENAI_ERROR_TYPE = {400: "invalid_request_error", 401: "invalid_request_error",
                      403: "invalid_request_error", 404: "invalid_request_error",
                      429: "rate_limit_exceeded"}


class OpenAIServer(_WireServer):
    """``POST /v1/chat/completions``, the OpenAI chat protocol that Ollama, vLLM and LM
    Studio also speak; the client sends its key as ``Authorization: Bearer``. Point
    ``OpenAICompatProvider(base_url=server.base_url)`` (``http://127.0.0.1:PORT/v1``) at
    it."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _route(self, path: str) -> bool:
        return path.split("?", 1)[0] == "/v1/chat/completions"

    def _completion(self, request: RecordedRequest, message: dict, finish_reason: str,
                    input_tokens: int, output_tokens: int) -> dict:
        model = request.body.get("model", "unknown") if isinstance(request.body, dict) \
            else "unknown"
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                      "total_tokens": input_tokens + output_tokens},
            "system_fingerprint": "fp_wire_server",
        }

    def _answer_body(self, request: RecordedRequest, answer: Answer) -> dict:
        message = {"role": "assistant", "content": answer.text, "refusal": None,
                   "annotations": []}
        return self._completion(request, message, "stop", answer.input_tokens,
                                answer.output_tokens)

    def _refusal_body(self, request: RecordedRequest, refuse: Refuse) -> dict:
        message = {"role": "assistant", "content": None, "refusal": refuse.reason,
                   "annotations": []}
        return self._completion(request, message, "stop", 100, 10)

    def _error_body(self, status: int, message: str) -> str:
        kind = _OPENAI_ERROR_TYPE.get(status, "server_error")
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "error"
        return json.dumps({"error": {"message": f"{message} ({phrase})", "type": kind,
                                     "param": None, "code": None}})


__all__ = ["Answer", "Fail", "Garbage", "GeminiServer", "OpenAIServer", "Raw",
           "RecordedRequest", "Refuse", "Respond", "Scripted"]
