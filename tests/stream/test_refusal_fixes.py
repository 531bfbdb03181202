"""Every fix a configuration refusal suggests makes the configuration acceptable.

A refusal (:class:`stream.config.Refusal`) carries its fixes as ``--set`` overrides (after
a step such as making keys), and its text is rendered from them. The property: for any
configuration in the refused families (CURVE keys for the outside endpoints, key paths
that do not exist, fused placement with feature replicas, URL timeouts the watchdog would
take for a hang, an ASR lead too short), applying any one suggested fix to each refusal,
as a user would paste it, and validating again ends in an accepted configuration (a fix
can reveal the next refusal, whose own fix is then applied), and the user's message names
every fix.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from stream.config import KEYS_DIR, Refusal, load_config
from stream.transport.curve import write_keys

HOSTS = ["127.0.0.1", "localhost", "[::1]", "0.0.0.0", "*", "192.168.1.20", "eth0",
         "cam.example.org", "127.0.0.2"]


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real keys, as ``hidemo keys --out DIR`` makes them: the step a keys fix asks for."""
    return write_keys(tmp_path_factory.mktemp("keys") / "keys").server_secret.parent


def refusals(error: ValidationError) -> list[Refusal]:
    found = [e.get("ctx", {}).get("error") for e in error.errors()]
    assert all(isinstance(r, Refusal) for r in found), \
        f"a refusal without its fixes: {error}"
    return found  # type: ignore[return-value]


def fixed_config(raw: dict[str, Any], keys: Path, choose: Any) -> list[str]:
    """Validate ``raw``; while refused, apply one fix (``choose(n)`` picks which of ``n``)
    to each refusal, as ``--set`` strings. Returns the overrides it took; fails if the
    configuration is still refused after a few rounds or a fix does not clear its own
    refusal."""
    dotted: list[str] = []
    for _ in range(6):
        try:
            load_config(None, copy.deepcopy(raw), dotted)
            return dotted
        except ValidationError as error:
            found = refusals(error)
            message = str(error)
            cleared = []
            for refusal in found:
                assert refusal.fixes, f"no fix offered: {refusal}"
                assert str(refusal) in message  # the user sees exactly these fixes
                fix = refusal.fixes[choose(len(refusal.fixes))]
                dotted += [f"{key}={value.replace(KEYS_DIR, str(keys))}"
                           for key, value in fix.overrides.items()]
                cleared.append(refusal.problem)
        try:
            load_config(None, copy.deepcopy(raw), dotted)
        except ValidationError as error:
            left = [r.problem for r in refusals(error)]
            assert not set(cleared) & set(left), f"a fix did not clear its refusal: {left}"
    raise AssertionError(f"still refused after fixes {dotted}")


def endpoint(host: str, port: int) -> str:
    return f"tcp://{host}:{port}"


ENDPOINTS = st.fixed_dictionaries({
    "secure": st.sampled_from(["auto", "always"]),
    "predictions": st.builds(endpoint, st.sampled_from(HOSTS), st.integers(1024, 65535)),
    "text": st.one_of(st.builds(endpoint, st.sampled_from(HOSTS), st.integers(1024, 65535)),
                      st.just("ipc:///tmp/hidemo-text")),
})
TIMEOUT = st.floats(0.1, 120.0, allow_nan=False)
URL_SOURCES = st.lists(st.fixed_dictionaries({
    "spec": st.sampled_from(["rtsp://cam/live", "http://cam/mjpg"]),
    "open_timeout_s": TIMEOUT, "read_timeout_s": TIMEOUT}), min_size=1, max_size=3)
ASR = st.fixed_dictionaries({
    "lead_s": st.floats(0.0, 60.0), "max_utterance_s": st.floats(1.5, 30.0),
    "batch_s": st.floats(0.0, 40.0), "min_silence_s": st.floats(0.1, 3.0),
    "step_s": st.floats(0.1, 5.0), "overlap_s": st.floats(0.0, 8.0)})


@st.composite
def refused_families(draw: st.DrawFn) -> dict[str, Any]:
    """A configuration drawing on any mix of the refused families."""
    raw: dict[str, Any] = {"sources": [{"spec": "demo"}]}
    if draw(st.booleans()):
        raw["endpoints"] = draw(ENDPOINTS)
        if draw(st.booleans()):
            raw["endpoints"]["curve"] = draw(st.sampled_from([
                {"dir": "/nonexistent/keys"},
                {"server_secret": "/nonexistent/server.key_secret",
                 "client_secret": "/nonexistent/client.key_secret",
                 "authorized_clients": "/nonexistent/authorized_clients"}]))
    if draw(st.booleans()):
        raw["placement"] = "fused"
        raw["features"] = {"replicas": draw(st.integers(1, 8))}
    if draw(st.booleans()):
        raw["sources"] = draw(URL_SOURCES)
        raw["supervisor"] = {"hang_after_s": draw(st.floats(0.5, 100.0))}
    if draw(st.booleans()):
        raw["asr"] = draw(ASR)
    return raw


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=refused_families(), data=st.data())
def test_any_suggested_fix_makes_the_configuration_acceptable(
        keys_dir: Path, raw: dict[str, Any], data: st.DataObject) -> None:
    fixed_config(raw, keys_dir,
                 lambda n: data.draw(st.integers(0, n - 1), label="which fix"))


@pytest.mark.parametrize(("raw", "says", "never"), [
    ({"endpoints": {"secure": "always"}},  # loopback already: binding it there is no fix
     "--set endpoints.secure=auto", "127.0.0.1"),
    ({"endpoints": {"predictions": "tcp://0.0.0.0:5560"}},
     "--set endpoints.predictions=tcp://127.0.0.1:5560", "endpoints.secure"),
    ({"endpoints": {"secure": "always", "text": "tcp://*:5561"}},
     "--set endpoints.secure=auto --set endpoints.text=tcp://127.0.0.1:5561", None),
    ({"endpoints": {"predictions": "tcp://cam.example.org:5560", "curve": {
        "server_secret": "/nonexistent/s", "client_secret": "/nonexistent/c",
        "authorized_clients": "/nonexistent/a"}}},
     "then --set 'endpoints.curve={dir: DIR}'", "curve.dir="),
    ({"placement": "fused", "features": {"replicas": 3}},
     "--set placement=split; or --set placement=auto; or --set features.replicas=1", None),
    ({"sources": [{"spec": "rtsp://cam/live", "read_timeout_s": 40.5}]},
     "--set supervisor.hang_after_s=41", None),
    ({"asr": {"lead_s": 5}}, "--set asr.lead_s=23.0", None),
], ids=["always-on-loopback", "wildcard", "always-and-wildcard", "missing-key-paths",
        "fused-replicas", "url-timeout", "asr-lead"])
def test_each_refusal_names_the_fix_for_the_configuration_it_refuses(
        keys_dir: Path, raw: dict[str, Any], says: str, never: str | None) -> None:
    raw = {"sources": [{"spec": "demo"}], **raw}
    with pytest.raises(ValidationError) as refused:
        load_config(None, copy.deepcopy(raw))
    assert says in str(refused.value), refused.value
    fixes = "; or ".join(str(fix) for fix in refusals(refused.value)[0].fixes)
    assert never is None or never not in fixes, fixes
    for which in range(len(refusals(refused.value)[0].fixes)):
        fixed_config(raw, keys_dir, lambda n, which=which: min(which, n - 1))
