"""What a labelling call costs: a small price table for the hosted Gemini models, and the
token estimate that turns "8 frames at 448 px" into a cost per video before a run starts.

Prices are USD per 1M tokens, Gemini Developer API, standard (paid, non-batch) tier, from
https://ai.google.dev/gemini-api/docs/pricing as of 2026-03 (read through transcriptions
of that page dated January to March 2026, which agree with each other and with the 2025
launch prices). They change: verify against that page before trusting a budget.
Thinking tokens are billed as output, and :mod:`training.pseudo.providers.gemini` counts
them into ``Usage.output_tokens``.

An OpenAI-compatible server (Ollama, vLLM, LM Studio, or OpenAI itself behind a custom
``base_url``) has no entry: its cost is None unless a :class:`Price` is configured for it.

Image tokens (https://ai.google.dev/gemini-api/docs/tokens, "Multimodal tokens"): an image
with both sides <= 384 px counts as 258 tokens; a larger one is cropped and scaled into
768x768 tiles of 258 tokens each. So a frame whose longest side is 448 px is one tile,
258 tokens, the same as a 384 px one; 769 px would be four tiles for a square frame.

Worked example (the cost per video in docs/training.md): 8 frames at 448 px, a 2,000-character
prompt, and a chain-of-thought answer of about 1,200 characters. The reflection call is
the same conversation plus that answer and a 1,000-character reflection prompt, so it
re-sends the 8 images. Output per call: 300 answer tokens plus 1,000 thinking tokens
(2.5 Pro always thinks; a budget assumption, not a measurement).

    >>> first = estimate_gemini_tokens(frames=8, size=448, prompt_chars=2_000)
    >>> second = estimate_gemini_tokens(frames=8, size=448, prompt_chars=2_000 + 1_200 + 1_000)
    >>> first, second  # 8 x 258 image tokens + chars / 4 text tokens
    (2564, 3114)
    >>> calls = [Usage(first, 1_300), Usage(second, 1_300)]
    >>> for model in ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"):
    ...     total = sum(cost_usd("gemini", model, call) for call in calls)
    ...     print(f"{model}: ${total:.4f} per video, ${1000 * total:.2f} per 1,000 videos")
    gemini-2.5-pro: $0.0331 per video, $33.10 per 1,000 videos
    gemini-2.5-flash: $0.0082 per video, $8.20 per 1,000 videos
    gemini-2.5-flash-lite: $0.0016 per video, $1.61 per 1,000 videos

The output side dominates on 2.5 Pro (2,600 output tokens x $10/1M = $0.026 of the
$0.033): the thinking budget, not the number of frames, is the lever that matters most.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from training.pseudo.records import Usage


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens. ``long_*`` apply to the whole call when its prompt is longer than
    ``long_above`` tokens (Gemini 2.5 Pro's long-context tier); None = no such tier."""

    input_per_m: float
    output_per_m: float
    long_above: int | None = None
    long_input_per_m: float | None = None
    long_output_per_m: float | None = None

    def cost(self, usage: Usage) -> float:
        """Cost of ONE call: the tier is decided per request by that request's prompt
        size, so pass each call's usage, not a sum over calls."""
        input_rate, output_rate = self.input_per_m, self.output_per_m
        if self.long_above is not None and usage.input_tokens > self.long_above:
            input_rate = self.long_input_per_m if self.long_input_per_m is not None \
                else input_rate
            output_rate = self.long_output_per_m if self.long_output_per_m is not None \
                else output_rate
        return (usage.input_tokens * input_rate + usage.output_tokens * output_rate) / 1e6


GEMINI_PRICES: dict[str, Price] = {
    # ai.google.dev/gemini-api/docs/pricing, standard tier, as of 2026-03.
    # 2.5 Pro: input $1.25 (<= 200k-token prompts) / $2.50 (> 200k); output, thinking
    # included, $10 / $15.
    "gemini-2.5-pro": Price(1.25, 10.00, long_above=200_000,
                            long_input_per_m=2.50, long_output_per_m=15.00),
    # 2.5 Flash: text / image / video input $0.30 (audio $1.00, not used here); output $2.50.
    "gemini-2.5-flash": Price(0.30, 2.50),
    # 2.5 Flash-Lite: text / image / video input $0.10 (audio $0.30); output $0.40.
    "gemini-2.5-flash-lite": Price(0.10, 0.40),
}

PRICES: dict[str, dict[str, Price]] = {"gemini": GEMINI_PRICES}
"""Provider name (``ChatProvider.name``) -> model -> price. ``openai`` is deliberately
absent: the same protocol serves free local models and paid hosted ones."""

_VARIANT = re.compile(r"^(?P<base>.+?)(?:-preview(?:-[0-9a-z-]+)?|-latest|-\d{3})?$")
"""Dated previews and pinned versions price like their family (``gemini-2.5-flash-
preview-09-2025``, ``gemini-2.5-pro-001``); other suffixes (``-image``, ``-tts``) are other
products with other prices and stay unknown."""


def price_for(provider: str, model: str) -> Price | None:
    """The listed price of ``model`` on ``provider``, or None when it is not listed."""
    table = PRICES.get(provider)
    if not table:
        return None
    name = model.removeprefix("models/")
    if name in table:
        return table[name]
    match = _VARIANT.match(name)
    return table.get(match.group("base")) if match else None


def cost_usd(provider: str, model: str, usage: Usage,
             price: Price | None = None) -> float | None:
    """USD cost of one call, or None when the model's price is unknown (any model of an
    OpenAI-compatible server, unless ``price`` is configured for it)."""
    price = price or price_for(provider, model)
    return None if price is None else price.cost(usage)


GEMINI_IMAGE_TOKENS = 258
"""Tokens per image tile (and per small image) on Gemini 2.x."""
GEMINI_SMALL_IMAGE_PX = 384
GEMINI_TILE_PX = 768
CHARS_PER_TOKEN = 4
"""Gemini's documented rule of thumb for text ("a token is about 4 characters")."""


def gemini_image_tokens(width: int, height: int) -> int:
    """Tokens one image costs on Gemini 2.x (see the module docstring for the rule)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if width <= GEMINI_SMALL_IMAGE_PX and height <= GEMINI_SMALL_IMAGE_PX:
        return GEMINI_IMAGE_TOKENS
    tiles = math.ceil(width / GEMINI_TILE_PX) * math.ceil(height / GEMINI_TILE_PX)
    return tiles * GEMINI_IMAGE_TOKENS


def estimate_gemini_tokens(frames: int, size: int, prompt_chars: int) -> int:
    """Estimated input tokens of one Gemini call showing ``frames`` images whose longest
    side is ``size`` px (:class:`training.pseudo.records.Sampling`) with ``prompt_chars``
    characters of text (every turn of the conversation sent, for a follow-up call).

    The shorter side is unknown here and taken as at most ``size``: exact for frames up to
    768 px, an upper bound on tiles above. Use the ``promptTokenCount`` a real call reports
    (``Usage.input_tokens``) for anything that must be exact.
    """
    if frames < 0 or prompt_chars < 0:
        raise ValueError(f"frames and prompt_chars must be >= 0, got {frames}, {prompt_chars}")
    image_tokens = frames * gemini_image_tokens(size, size) if frames else 0
    return image_tokens + math.ceil(prompt_chars / CHARS_PER_TOKEN)

