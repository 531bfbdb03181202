"""The versioned prompts a VLM teacher is asked with: chain of thought, then reflection.

The prompt texts live in ``training/pseudo/prompts/<version>/`` as Markdown files (shipped
as package data) so that they can be read, reviewed and diffed as prose. Their content is
part of the cache key: :attr:`PromptSet.version` is the folder's name plus a hash of both
texts, so editing a word of a prompt makes every video a new call instead of silently
mixing answers to two different questions in one label store.

Placeholders in the files (``{{name}}``, replaced verbatim; JSON braces stay as written):
``frame_count``, ``frame_times``, ``transcript`` in the chain of thought;
``first_answer`` and ``transcript_hint`` in the reflection.

Example:
    >>> prompts = load_prompts("v1")
    >>> prompts.version.startswith("v1-")
    True
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from training.pseudo.providers.base import Turn
from training.pseudo.records import LabelInput

DEFAULT_VERSION = "v1"
CHAIN_OF_THOUGHT_FILE = "chain_of_thought.md"
REFLECTION_FILE = "reflection.md"
_VERSION_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")
CHAIN_OF_THOUGHT_FIELDS = frozenset({"frame_count", "frame_times", "transcript"})
REFLECTION_FIELDS = frozenset({"first_answer", "transcript_hint"})
REQUIRED_FIELDS = {CHAIN_OF_THOUGHT_FILE: frozenset({"frame_times"}),
                   REFLECTION_FILE: frozenset({"first_answer"})}
"""Without these the model would not know the frame order or its own first answer."""


class PromptError(ValueError):
    """A prompt version that does not exist or whose files are unusable."""


def _prompts_root() -> Traversable:
    return resources.files("training.pseudo").joinpath("prompts")


def available_versions() -> list[str]:
    """The prompt folders shipped with this install, e.g. ``["v1"]``."""
    root = _prompts_root()
    return sorted(entry.name for entry in root.iterdir()
                  if entry.is_dir() and entry.joinpath(CHAIN_OF_THOUGHT_FILE).is_file())


def _fill(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def _check_template(name: str, text: str, allowed: frozenset[str]) -> None:
    used = set(_PLACEHOLDER.findall(text))
    unknown = used - allowed
    if unknown:
        raise PromptError(f"prompt {name} uses unknown placeholder(s) "
                          f"{sorted('{{' + u + '}}' for u in unknown)}; allowed: "
                          f"{sorted(allowed)}")
    missing = REQUIRED_FIELDS[name.rsplit("/", 1)[-1]] - used
    if missing:
        raise PromptError(f"prompt {name} lacks the placeholder(s) {sorted(missing)}")


@dataclass(frozen=True)
class PromptSet:
    """Both prompt texts of one version, and the turns they make for one video."""

    name: str
    """The folder name (``v1``)."""
    chain_of_thought_text: str
    reflection_text: str

    @property
    def version(self) -> str:
        """``name`` + first 8 hex of sha256 over both texts: the cache key's prompt part."""
        digest = hashlib.sha256()
        for text in (self.chain_of_thought_text, self.reflection_text):
            data = text.encode()
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
        return f"{self.name}-{digest.hexdigest()[:8]}"

    def chain_of_thought(self, item: LabelInput) -> list[Turn]:
        """Call 1: one user turn, the video's images first, their times in the text."""
        return [Turn("user", self._first_text(item),
                     tuple(image.jpeg for image in item.images))]

    def reflection(self, item: LabelInput, first_reply_text: str) -> list[Turn]:
        """Call 2: the first exchange replayed (the model sees its own answer), then the
        request to critique and revise it."""
        hint = " and the transcript" if item.transcript.strip() else ""
        text = _fill(self.reflection_text, {"first_answer": first_reply_text.strip(),
                                            "transcript_hint": hint})
        return [*self.chain_of_thought(item), Turn("assistant", first_reply_text),
                Turn("user", text)]

    def _first_text(self, item: LabelInput) -> str:
        times = [image.time_s for image in item.images]
        if times:
            frame_times = "\n".join(f"- image {number}: at {time:.1f} s"
                                    for number, time in enumerate(times, 1))
        else:
            frame_times = "- (no images: judge from the transcript alone)"
        transcript = item.transcript.strip()
        if transcript:
            transcript_text = ("What the player said (interview transcript):\n\n"
                               f"<transcript>\n{transcript}\n</transcript>")
        else:
            transcript_text = "No transcript is available for this video: judge from the " \
                              "images alone."
        return _fill(self.chain_of_thought_text, {
            "frame_count": str(len(times)), "frame_times": frame_times,
            "transcript": transcript_text})


def load_prompts(version: str = DEFAULT_VERSION) -> PromptSet:
    """The prompt set shipped under ``prompts/<version>/``.

    Raises :class:`PromptError` naming the versions that exist when ``version`` is not one
    of them, or when a file uses a placeholder this module does not fill.
    """
    if not _VERSION_NAME.fullmatch(version):
        raise PromptError(f"prompt version {version!r} is not a folder name; use one of "
                          f"{available_versions()}")
    folder = _prompts_root().joinpath(version)
    texts = {}
    for name, allowed in ((CHAIN_OF_THOUGHT_FILE, CHAIN_OF_THOUGHT_FIELDS),
                          (REFLECTION_FILE, REFLECTION_FIELDS)):
        file = folder.joinpath(name)
        if not file.is_file():
            raise PromptError(f"prompt version {version!r} not found (no {version}/{name} in "
                              f"training/pseudo/prompts); available: {available_versions()}")
        text = file.read_text(encoding="utf-8")
        _check_template(f"{version}/{name}", text, allowed)
        texts[name] = text
    return PromptSet(version, texts[CHAIN_OF_THOUGHT_FILE], texts[REFLECTION_FILE])
