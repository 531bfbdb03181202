"""The versioned prompts: loading, the content-derived version, and the turns they build."""

from __future__ import annotations

import re

import pytest

from training.pseudo import prompts as prompts_module
from training.pseudo.prompts import PromptError, PromptSet, available_versions, load_prompts
from training.pseudo.records import LabelInput, SampledImage

ITEM = LabelInput("vid", "0" * 64, (SampledImage(b"jpeg-1", 0.25), SampledImage(b"jpeg-2", 61.5)),
                  transcript="I am disappointed, he served well.")


def test_v1_is_shipped_and_versioned_by_content() -> None:
    prompts = load_prompts("v1")
    assert "v1" in available_versions()
    assert re.fullmatch(r"v1-[0-9a-f]{8}", prompts.version)
    assert load_prompts("v1").version == prompts.version
    edited = PromptSet("v1", prompts.chain_of_thought_text + " ", prompts.reflection_text)
    assert edited.version != prompts.version
    swapped = PromptSet("v1", prompts.reflection_text, prompts.chain_of_thought_text)
    assert swapped.version != prompts.version


def test_chain_of_thought_attaches_images_and_states_times() -> None:
    turns = load_prompts().chain_of_thought(ITEM)
    assert len(turns) == 1 and turns[0].role == "user"
    assert turns[0].images == (b"jpeg-1", b"jpeg-2")
    text = turns[0].text
    assert "image 1: at 0.2 s" in text and "image 2: at 61.5 s" in text
    assert "I am disappointed, he served well." in text
    assert "{{" not in text
    for topic in ("press conference", "Micro-gestures", "scratching the neck",
                  "folding the arms", "Posture", "Words and tone", "confidence",
                  '"label"', '"reasoning"'):
        assert topic in text


def test_no_transcript_is_said() -> None:
    text = load_prompts().chain_of_thought(LabelInput("v", "h", ITEM.images))[0].text
    assert "No transcript is available" in text
    assert "<transcript>" not in text


def test_reflection_replays_the_first_answer() -> None:
    first = '{"label": "positive", "confidence": 0.7, "reasoning": "relaxed"}'
    turns = load_prompts().reflection(ITEM, first)
    assert [t.role for t in turns] == ["user", "assistant", "user"]
    assert turns[0].images == (b"jpeg-1", b"jpeg-2")
    assert turns[1].text == first and not turns[1].images
    text = turns[2].text
    assert first in text
    assert "majority" in text.lower() and "counter-evidence" in text.lower()
    assert "frames and the transcript" in text
    assert "{{" not in text
    no_transcript = load_prompts().reflection(LabelInput("v", "h", ITEM.images), first)
    assert "frames and the transcript" not in no_transcript[2].text


def test_unknown_versions_are_clear_errors() -> None:
    with pytest.raises(PromptError, match=r"'v99' not found.*available: \['v1'"):
        load_prompts("v99")
    with pytest.raises(PromptError, match="not a folder name"):
        load_prompts("../v1")


def test_a_bad_placeholder_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    folder = tmp_path / "prompts" / "vx"
    folder.mkdir(parents=True)
    (folder / "chain_of_thought.md").write_text("frames {{frame_times}} {{typo}}")
    (folder / "reflection.md").write_text("{{first_answer}}")
    monkeypatch.setattr(prompts_module, "_prompts_root", lambda: tmp_path / "prompts")
    with pytest.raises(PromptError, match=r"unknown placeholder.*typo"):
        load_prompts("vx")
    (folder / "chain_of_thought.md").write_text("no frames here")
    with pytest.raises(PromptError, match=r"lacks the placeholder.*frame_times"):
        load_prompts("vx")
