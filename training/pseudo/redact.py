"""The one redaction step of pseudo-labelling: every secret a labelling run holds (its API
keys, any credential in its server address) is blanked from every text it keeps or shows.

A server can echo a key anywhere: in an error body, in a header, inside the model's
reasoning or its label. So nothing downstream is trusted to be clean: the same
:class:`Redactor` is applied where text arrives (provider errors and replies, before they
are parsed or cut short, so a key cannot be half-kept by a truncation), where it is stored
(:meth:`Redactor.outcome`, applied by the label store to every text column), where it is
logged (:meth:`Redactor.log_filter`) and where it is printed.

Each secret is also matched in the forms it takes once embedded in JSON, a Python repr
or a URL, since raw responses and error messages quote it so, and so is any prefix or
suffix of it at least :data:`MIN_SECRET_LENGTH` long: what is left of a key when a
client or a library cut the text that held it (a validation error shows the start and the
end of a long value). Strings shorter than :data:`MIN_SECRET_LENGTH` are not redacted:
blanking "abc" everywhere would garble every answer, and no real key is that short.

Example:
    >>> redact = Redactor(["sk-live-0123456789"])
    >>> redact('{"error": "key sk-live-0123456789 is invalid"}')
    '{"error": "key [redacted] is invalid"}'
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

from training.pseudo.records import REASONING_MAX_CHARS, LabelOutcome, Verdict

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 8
"""Shorter strings are not treated as secrets (see the module docstring)."""


def _forms(secret: str) -> set[str]:
    """The secret as it appears embedded in JSON, a repr or a URL."""
    return {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
            repr(secret)[1:-1], quote(secret, safe=""), quote_plus(secret)}


def _ends(secret: str) -> str:
    """A pattern for any prefix or any suffix of ``secret`` at least
    :data:`MIN_SECRET_LENGTH` long (nested optional groups: one pass, longest match)."""
    chars = [re.escape(c) for c in secret]
    rest = len(secret) - MIN_SECRET_LENGTH
    prefix = "".join(chars[:MIN_SECRET_LENGTH]) + "".join(
        f"(?:{c}" for c in chars[MIN_SECRET_LENGTH:]) + ")?" * rest
    suffix = "(?:" * rest + "".join(f"{c})?" for c in chars[:rest]) + "".join(chars[rest:])
    return f"{prefix}|{suffix}"


class Redactor:
    """Replaces every given secret (its embedded forms, and its long enough prefixes and
    suffixes) in any text with :data:`REDACTED`. An empty redactor returns text
    unchanged."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        kept = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH}
        forms = {form for secret in kept for form in _forms(secret)}
        # Longest first: a secret that contains another is blanked whole.
        self._forms = tuple(sorted((f for f in forms if len(f) >= MIN_SECRET_LENGTH),
                                   key=lambda f: (-len(f), f)))
        self._ends = re.compile("|".join(_ends(s) for s in sorted(kept, key=len, reverse=True))
                                ) if kept else None
        # Every prefix holds the first characters, every suffix the last: a plain search
        # for those decides whether the (slower) pattern needs to run at all.
        self._anchors = tuple({end for s in kept
                               for end in (s[:MIN_SECRET_LENGTH], s[-MIN_SECRET_LENGTH:])})
        self.count = len(kept)

    def __call__(self, text: str) -> str:
        if not text or not self._forms:
            return text
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        if self._ends is not None and any(anchor in text for anchor in self._anchors):
            text = self._ends.sub(REDACTED, text)
        # A secret that contains the marker, or pieces that meet once another secret is
        # replaced, could still leave one whole: remove what is left until none is
        # (each pass shortens the text, so this ends).
        while any(form in text for form in self._forms):
            for form in self._forms:
                text = text.replace(form, "")
        return text

    def __bool__(self) -> bool:
        return bool(self._forms)

    def __repr__(self) -> str:
        return f"Redactor({self.count} secret(s))"

    def verdict(self, verdict: Verdict | None) -> Verdict | None:
        if verdict is None:
            return None
        reasoning = self(verdict.reasoning)
        if reasoning == verdict.reasoning:
            return verdict
        # The marker may be longer than what it replaces: keep the field within its bound.
        return verdict.model_copy(
            update={"reasoning": (reasoning or REDACTED)[:REASONING_MAX_CHARS]})

    def outcome(self, outcome: LabelOutcome) -> LabelOutcome:
        """``outcome`` with every text field redacted: the verdict's and the provisional
        verdict's reasoning, the raw responses and the error."""
        if not self:
            return outcome
        return replace(outcome, verdict=self.verdict(outcome.verdict),
                       provisional=self.verdict(outcome.provisional),
                       responses=tuple(self(text) for text in outcome.responses),
                       error=None if outcome.error is None else self(outcome.error))

    def log_filter(self) -> logging.Filter:
        """A filter for log handlers that redacts each record's message and traceback."""
        return _RedactingFilter(self)


class _RedactingFilter(logging.Filter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redact:
            return True
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def url_secrets(url: str | None) -> list[str]:
    """Credentials written into a server address: the user and password of
    ``https://user:token@host/v1`` and the values of its query (``?key=...``)."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.username or "", parts.password or ""]
    found += [value for _, value in parse_qsl(parts.query, keep_blank_values=False)]
    return [s for s in found if s]


def run_secrets(env: Mapping[str, str], variables: Iterable[str],
                urls: Iterable[str | None] = ()) -> list[str]:
    """Every secret a run holds: the values of the environment ``variables`` that may hold
    a key (all of them, whichever one this run's provider reads: blanking a key that was
    never sent costs nothing) and the credentials in its ``urls``."""
    found = [env[name] for name in variables if env.get(name)]
    for url in urls:
        found += url_secrets(url)
    return list(dict.fromkeys(found))
