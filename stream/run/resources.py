"""CPU time and memory of the stage processes, sampled by the supervisor.

The run summary reports, per stage process, the CPU it used (seconds, and as a percentage
of one core over the time it ran) and its peak resident memory, plus the totals: what a
deployment has to budget for the pipeline, measured rather than guessed. ``series`` keeps
every sample (time, RSS and CPU seconds per process) so ``hidemo bench`` can plot memory
over time and fit its trend in a soak; it is thinned (every other sample dropped) when it
reaches ``max_samples``, so a long run keeps its whole span in bounded memory.

Example:
    >>> meter = ResourceMeter()
    >>> meter.sample({"detect[0]": os.getpid()})  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil
from pydantic import JsonValue

from stream.strictjson import JsonDict


@dataclass
class _Usage:
    cpu_s: float = 0.0
    peak_rss: int = 0
    first: float = 0.0
    last: float = 0.0
    pid: int = 0
    base_cpu_s: float = 0.0
    rss: int = 0


class ResourceMeter:
    """Peak RSS and CPU seconds per process label; a restarted process adds to its label."""

    def __init__(self, interval_s: float = 1.0, max_samples: int = 4096) -> None:
        self.interval_s = interval_s
        self.max_samples = max_samples
        self._usage: dict[str, _Usage] = {}
        self._next = 0.0
        self._origin: float | None = None
        self.series: list[JsonDict] = []

    def sample(self, pids: dict[str, int], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.interval_s
        if self._origin is None:
            self._origin = now
        rss_mb: dict[str, JsonValue] = {}
        cpu_s: dict[str, JsonValue] = {}
        for label, pid in pids.items():
            usage = self._usage.setdefault(label, _Usage(first=now))
            try:
                process = psutil.Process(pid)
                times = process.cpu_times()
                rss = process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if usage.pid != pid:  # a restart: keep what the previous process used
                usage.base_cpu_s, usage.pid = usage.cpu_s, pid
            usage.cpu_s = usage.base_cpu_s + times.user + times.system
            usage.peak_rss = max(usage.peak_rss, rss)
            usage.rss = rss
            usage.last = now
            rss_mb[label] = round(rss / 2**20, 2)
            cpu_s[label] = round(usage.cpu_s, 3)
        if rss_mb:
            self.series.append({"t": round(now - self._origin, 3), "rss_mb": rss_mb,
                                "cpu_s": cpu_s})
            if len(self.series) > self.max_samples:
                self.series = self.series[::2]

    def usage(self) -> dict[str, tuple[float, int]]:
        """Per process label, its CPU seconds (restarts added up) and its resident memory
        (bytes) at the last sample: what the metrics endpoint serves. Safe to call from
        another thread than the one sampling."""
        return {label: (usage.cpu_s, usage.rss) for label, usage in list(self._usage.items())}

    def report(self) -> JsonDict:
        stages = {}
        for label, usage in sorted(self._usage.items()):
            # one sample (a process that lived less than an interval) spans no time: its
            # CPU is set against one interval, not against zero
            span = max(usage.last - usage.first, self.interval_s)
            stages[label] = {"cpu_s": round(usage.cpu_s, 2),
                             "cpu_percent": round(100.0 * usage.cpu_s / span, 1),
                             "peak_rss_mb": round(usage.peak_rss / 2**20, 1)}
        return {"stages": stages,
                "total_cpu_s": round(sum(u.cpu_s for u in self._usage.values()), 2),
                "total_peak_rss_mb": round(sum(u.peak_rss for u in self._usage.values())
                                           / 2**20, 1),
                "interval_s": self.interval_s, "origin": self._origin, "series": self.series}
