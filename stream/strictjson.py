"""Strict JSON out: what hidemo writes parses with any JSON parser.

Python's ``json.dumps`` writes ``NaN`` and ``Infinity`` by default, which are not JSON: a
strict reader (JavaScript's ``JSON.parse``, jq, most databases) rejects the whole file.
:func:`dumps` writes a non-finite number as ``null`` (unknown) and refuses nothing else.

Example:
    >>> dumps({"p95": float("nan"), "n": 3})
    '{"p95": null, "n": 3}'
"""

from __future__ import annotations

import json
import math
import numbers

from pydantic import JsonValue

JsonDict = dict[str, JsonValue]
"""A JSON object as hidemo reports it: a status figure, an event, a run summary."""


def finite(value: object) -> object:
    """``value`` with every NaN or infinite float (nested in dicts, lists, tuples) as None."""
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, numbers.Integral):  # numpy integers too
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def dumps(value: object, *, indent: int | None = None) -> str:
    """``json.dumps`` that never writes NaN/Infinity (they become null); anything else that
    is not JSON (a path, an enum) is written as its ``str``."""
    return json.dumps(finite(value), allow_nan=False, indent=indent, default=str)
