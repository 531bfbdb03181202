"""The one redaction step: whatever text a secret is embedded in (plainly, JSON-escaped, in a
repr, URL-encoded, several times, next to other secrets), no secret survives; text without
one is left alone; an outcome, a log record and a server address are covered."""

from __future__ import annotations

import json
import logging
import string
from urllib.parse import quote, quote_plus

from hypothesis import given, settings
from hypothesis import strategies as st

from training.pseudo.records import LabelOutcome, Status, Usage, Verdict
from training.pseudo.redact import (
    MIN_SECRET_LENGTH,
    REDACTED,
    Redactor,
    run_secrets,
    url_secrets,
)

KEY_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs",))
secrets = st.text(KEY_CHARS, min_size=MIN_SECRET_LENGTH, max_size=40)
EMBEDDINGS = (lambda s: s, lambda s: json.dumps(s)[1:-1], lambda s: repr(s)[1:-1],
              lambda s: quote(s, safe=""), lambda s: quote_plus(s),
              lambda s: json.dumps({"k": s}))


@settings(max_examples=300, deadline=None)
@given(keys=st.lists(secrets, min_size=1, max_size=3),
       pieces=st.lists(st.tuples(st.text(max_size=30), st.integers(0, 2),
                                 st.integers(0, len(EMBEDDINGS) - 1)), max_size=6))
def test_no_secret_survives_in_any_embedding(keys: list[str],
                                             pieces: list[tuple[str, int, int]]) -> None:
    text = "".join(filler + EMBEDDINGS[how](keys[which % len(keys)])
                   for filler, which, how in pieces)
    redacted = Redactor(keys)(text)
    for key in keys:
        assert key not in redacted
        assert json.dumps(key)[1:-1] not in redacted
        assert quote(key, safe="") not in redacted


@settings(max_examples=200, deadline=None)
@given(key=secrets, text=st.text(max_size=200))
def test_text_without_the_secret_is_unchanged(key: str, text: str) -> None:
    redact = Redactor([key])
    ends = (key[:MIN_SECRET_LENGTH], key[-MIN_SECRET_LENGTH:])
    if not any(form in text for form in (key, json.dumps(key)[1:-1], repr(key)[1:-1],
                                         quote(key, safe=""), quote_plus(key),
                                         json.dumps(key, ensure_ascii=False)[1:-1], *ends)):
        assert redact(text) == text


KEY_LIKE = st.text(st.sampled_from(string.ascii_letters + string.digits + "-_."),
                   min_size=MIN_SECRET_LENGTH, max_size=64)


@settings(max_examples=300, deadline=None)
@given(key=KEY_LIKE, before=st.text(max_size=20), after=st.text(max_size=20),
       cut=st.integers(0, 64), keep_end=st.booleans())
def test_what_a_truncation_leaves_of_a_key_is_blanked_too(
        key: str, before: str, after: str, cut: int, keep_end: bool) -> None:
    """A library that cut a long value ("first 25...last 25") leaves a prefix or a suffix
    of the key: any such piece of MIN_SECRET_LENGTH characters or more is blanked."""
    piece = key[-cut:] if keep_end and cut else key[:cut]
    redacted = Redactor([key])(f"{before}{piece}...{after}")
    for size in range(MIN_SECRET_LENGTH, len(key) + 1):
        assert key[:size] not in redacted and key[-size:] not in redacted


def test_short_strings_are_not_secrets_and_an_empty_redactor_is_a_no_op() -> None:
    assert Redactor(["abc", ""])("abc abc") == "abc abc"
    assert not Redactor(["abc"]) and Redactor(["abcdefgh"])
    assert Redactor()("anything") == "anything"
    assert "abcdefgh" not in repr(Redactor(["abcdefgh"]))


def test_every_text_field_of_an_outcome_is_redacted() -> None:
    key = "sk-test-0123456789"
    outcome = LabelOutcome(
        Status.LABELLED,
        verdict=Verdict(label="positive", confidence=0.7, reasoning=key),
        provisional=Verdict(label="negative", confidence=0.4, reasoning=f"saw {key}"),
        responses=(json.dumps({"text": key}), "plain"), usage=Usage(1, 2), attempts=2,
        error=f"x {key!r}", seconds=1.0, call_seconds=0.5)
    clean = Redactor([key]).outcome(outcome)
    assert clean.verdict.reasoning == REDACTED
    assert clean.provisional.reasoning == f"saw {REDACTED}"
    assert key not in "".join(clean.responses) and key not in clean.error
    assert (clean.usage, clean.attempts, clean.seconds, clean.call_seconds) == \
        (outcome.usage, outcome.attempts, outcome.seconds, outcome.call_seconds)
    assert Redactor([key]).outcome(LabelOutcome(Status.FAILED)) == LabelOutcome(Status.FAILED)


def test_log_records_are_redacted_with_their_arguments_and_tracebacks() -> None:
    key = "sk-test-0123456789"
    logger = logging.getLogger("test_redact")
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(Redactor([key]).log_filter())
    logger.addHandler(handler)
    try:
        logger.warning("server said %s", key)
        try:
            raise RuntimeError(f"echo {key}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert len(records) == 2 and all(key not in text for text in records)
    assert REDACTED in records[0] and "RuntimeError" in records[1]


def test_credentials_in_a_server_address_are_secrets() -> None:
    assert url_secrets("https://user:tok-0123456789@host/v1?key=abcdefgh123&x=") == \
        ["user", "tok-0123456789", "abcdefgh123"]
    assert url_secrets("http://localhost:11434/v1") == []
    assert url_secrets(None) == []
    env = {"A_KEY": "k" * 12, "B_KEY": ""}
    assert run_secrets(env, ["A_KEY", "B_KEY", "C_KEY"],
                       ["https://u:p-0123456789@h/v1"]) == ["k" * 12, "u", "p-0123456789"]
