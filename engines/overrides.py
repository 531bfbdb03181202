"""Dotted configuration overrides, the one parser both ``hidemo run --set`` and
``hidemo train``'s options go through.

A configuration is a nested mapping read from a file; an override names one key by its
path (``classify.stride_s``) and replaces its value before the whole is validated by the
configuration's own model, so an override is checked exactly as the file would be.
``KEY=VALUE`` text (``--set``) reads the value as YAML: ``0.5`` is a number, ``on`` and
``true`` are booleans, ``{dir: keys}`` is a mapping.

Example:
    >>> data = {"classify": {"stride_s": 1.0}}
    >>> apply_overrides(data, ["classify.stride_s=0.5", "profile=edge"])
    >>> data
    {'classify': {'stride_s': 0.5}, 'profile': 'edge'}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping

import yaml


def set_dotted(data: MutableMapping[str, object], key: str, value: object) -> None:
    """Set ``a.b.c`` in nested ``data`` to ``value``, making the sections on the way (an
    absent or null one becomes a new section); a path through a value that is not a
    section is refused, naming it."""
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, MutableMapping):
            raise ValueError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[leaf] = value


def parse_override(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` as the key and the value read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"override {text!r} is not KEY=VALUE (e.g. classify.stride_s=0.5)")
    return key, yaml.safe_load(raw)


def apply_overrides(data: MutableMapping[str, object], overrides: Iterable[str]) -> None:
    """Apply each ``KEY=VALUE`` text in turn (a later one wins)."""
    for text in overrides:
        set_dotted(data, *parse_override(text))


def apply_values(data: MutableMapping[str, object], values: Mapping[str, object]) -> None:
    """Apply already typed ``values`` by dotted key (command-line options); a None value is
    an option not given and leaves the key as it is."""
    for key, value in values.items():
        if value is not None:
            set_dotted(data, key, value)
