"""The one override parser (``hidemo run --set``, ``hidemo train``'s options): an override
sets exactly the key it names, whatever else the configuration holds, and refuses a path
through a value that is not a section."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engines.overrides import apply_overrides, apply_values, parse_override, set_dotted

KEY = st.text(st.sampled_from("abcxyz_"), min_size=1, max_size=4)
LEAF = st.one_of(st.integers(-5, 5), st.booleans(), st.text("abc", max_size=3), st.none())
TREE = st.recursive(LEAF, lambda inner: st.dictionaries(KEY, inner, max_size=3), max_leaves=8)


def leaves(data: object, at: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    """Every leaf of ``data`` by its path (an empty section and a null are leaves)."""
    if not isinstance(data, dict) or not data:
        return {at: data}
    out: dict[tuple[str, ...], object] = {}
    for key, value in data.items():
        out.update(leaves(value, (*at, key)))
    return out


def related(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """One path is a prefix of the other (on the override's path, or under it)."""
    return a[:len(b)] == b or b[:len(a)] == a


@given(data=st.dictionaries(KEY, TREE, max_size=4), path=st.lists(KEY, min_size=1, max_size=3),
       value=st.integers())
def test_an_override_sets_its_key_and_nothing_else(data: dict, path: list[str],
                                                   value: int) -> None:
    before = copy.deepcopy(data)
    target = tuple(path)
    try:
        set_dotted(data, ".".join(path), value)
    except ValueError as error:
        assert "is not a section" in str(error)
        node: object = before  # refused only where the path runs through a plain value
        for part in path[:-1]:
            assert isinstance(node, dict)
            child = node.get(part)
            node = {} if child is None else child
            if not isinstance(node, dict):
                break
        assert not isinstance(node, dict), (before, path)
        assert data == before  # nothing half applied
        return
    after = leaves(data)
    assert after[target] == value
    kept = {k: v for k, v in leaves(before).items() if not related(k, target)}
    assert {k: v for k, v in after.items() if k != target} == kept


def test_key_value_text_reads_the_value_as_yaml_and_refuses_what_is_not_key_value() -> None:
    assert parse_override("a.b=0.5") == ("a.b", 0.5)
    assert parse_override("asr.mode=on") == ("asr.mode", True)  # YAML 1.1: a bare on
    assert parse_override("endpoints.curve={dir: k}") == ("endpoints.curve", {"dir": "k"})
    assert parse_override("x=") == ("x", None)
    for text in ("no-equals", "=3"):
        with pytest.raises(ValueError, match="is not KEY=VALUE"):
            parse_override(text)
    data: dict[str, object] = {"a": {"b": 1}, "c": None}
    apply_overrides(data, ["a.b=2", "a.d=x", "c.e=3", "a.b=4"])
    assert data == {"a": {"b": 4, "d": "x"}, "c": {"e": 3}}  # a later one wins
    with pytest.raises(ValueError, match="'b' is not a section"):
        apply_overrides(data, ["a.b.z=1"])


def test_typed_values_skip_an_option_not_given() -> None:
    data: dict[str, object] = {"seeds": [1], "synthetic": {"videos": 4}}
    apply_values(data, {"seeds": None, "synthetic.videos": 8, "out": "runs/x"})
    assert data == {"seeds": [1], "synthetic": {"videos": 8}, "out": "runs/x"}
