"""Exit codes shared by the stage processes and the supervisor, defined once.

A stage that cannot start because of its engines or its configuration exits with
:data:`EX_CONFIG` after logging one line that starts with :data:`FATAL_MARKER`; the
supervisor then does not restart it (a restart would fail the same way) and shows that line
on the console instead of a bare exit code.

Example:
    >>> EX_CONFIG
    78
"""

from __future__ import annotations

EX_CONFIG = 78
"""sysexits.h's EX_CONFIG: a stage refused its engines or configuration; never restarted."""

FATAL_MARKER = "cannot start:"
"""Starts the log message a stage writes before exiting with :data:`EX_CONFIG`."""
