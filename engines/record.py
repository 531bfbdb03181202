"""The base of the typed records hidemo writes as JSON: the engine manifest and every record
in it (signature, source, parity, plans), and training's reports and summaries.

Example:
    >>> class Shape(Record):
    ...     dims: tuple[int, ...]
    >>> Shape.model_validate({"dims": [1, 4]}).model_dump(mode="json")
    {'dims': [1, 4]}
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """Base of the records written to JSON and read back (engine manifests, reports).

    Frozen (a record is a fact, about a built engine or a finished job), closed (an unknown
    key is an error, not silently dropped), and NaN or infinity anywhere, free-form maps such
    as ``config`` included, written as JSON's ``NaN``/``Infinity`` as :func:`json.dumps`
    always wrote them (pydantic would write ``null`` there), so such a value survives a
    round trip.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")
