"""Analysis-rate decimation: one frame per grid slot, the slots windows are built on."""

from __future__ import annotations

import numpy as np
import pytest

from engines.adapters.rates import RateSampler, decimate, slot_of
from engines.adapters.windows import place_on_grid


def test_25_fps_to_5_keeps_every_fifth_frame() -> None:
    times = np.arange(250) / 25.0
    assert decimate(times, 5.0).tolist() == list(range(0, 250, 5))


@pytest.mark.parametrize("fps, rate", [(25.0, 10.0), (29.97, 2.0), (10.0, 5.0), (30.0, 7.0)])
def test_each_kept_frame_owns_one_grid_slot(fps: float, rate: float) -> None:
    times = np.arange(int(fps * 10)) / fps
    kept = decimate(times, rate)
    slots = [slot_of(t, rate) for t in times[kept]]
    assert slots == list(range(len(slots)))  # no slot empty, none twice
    assert len(kept) == pytest.approx(10 * rate, abs=1)
    _, mask = place_on_grid(times[kept], np.ones((len(kept), 1)), start=0.0,
                            slots=len(kept), rate=rate)
    assert mask.all()


def test_a_slower_stream_keeps_every_frame() -> None:
    times = np.arange(20) / 4.0
    assert decimate(times, 10.0).tolist() == list(range(20))


def test_reset_starts_a_new_stream() -> None:
    sampler = RateSampler(2.0)
    assert sampler.take(3.0) and not sampler.take(3.1)
    sampler.reset()
    assert sampler.take(0.0)


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bad_rate_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        RateSampler(rate)
