"""Session generations that survive a restart of the capture process.

Every frame carries its stream's ``generation``; downstream (detect's tracker, features,
classify's windows and accounting) resets a stream's state on the first frame of a new
one, and within one generation sequence numbers and media time only go forward. A capture
process that is restarted opens its source again from the start (seq 0, media time 0): if
it reused the generation of the process it replaces, downstream would take the new frames
for stale ones of the old session until media time caught up, a silence as long as the
run had lived. So the generation is a counter kept in the run's private folder, one file
per source, read and advanced by each capture process: every process, and every reopening
or clock jump within one, gets a number no earlier frame of the stream carried.

Example:
    >>> ledger = GenerationLedger(Path(tempfile.mkdtemp()) / "generation-0")  # doctest: +SKIP
    >>> ledger.next(), ledger.next()  # doctest: +SKIP
    (1, 2)
    >>> GenerationLedger(ledger.path).next()   # a restarted capture goes on  # doctest: +SKIP
    3
"""

from __future__ import annotations

import logging
from pathlib import Path

from stream.files import write_document

log = logging.getLogger(__name__)

MAX_GENERATION = 2**31
"""The wire's bound of ``Header.generation``."""


class GenerationLedger:
    """The last generation used for one stream, kept in ``path`` (None: in memory only,
    for tests and tools that run a capture without a run folder)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.last = self._read()

    def next(self) -> int:
        """A generation no earlier frame of the stream carried; saved before it is used."""
        self.last = self.last + 1 if self.last < MAX_GENERATION else 1
        self._write(self.last)
        return self.last

    def _read(self) -> int:
        if self.path is None:
            return 0
        try:
            value = int(self.path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as error:
            # unreadable: start far past anything a run could have used, never behind
            log.warning("generation file %s unreadable (%s); starting a fresh range",
                        self.path, error)
            return MAX_GENERATION // 2
        return min(max(0, value), MAX_GENERATION)

    def _write(self, value: int) -> None:
        """Written whole (:func:`stream.files.write_document`: temp + rename): a crash or a
        full disk never leaves a torn number behind. A failure is logged and the run goes
        on: this process still counts forward, only a later restart could then reuse a
        number."""
        if self.path is None:
            return
        try:
            write_document(self.path, str(value), durable=False)
        except OSError as error:
            log.warning("could not save generation %d to %s: %s", value, self.path, error)
