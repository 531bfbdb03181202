"""Terminal output shared by every command's tables."""

from __future__ import annotations

from rich.console import Console


def wide_console() -> Console:
    """A stdout console; when piped or logged (no terminal), wide enough for our tables."""
    console = Console()
    return console if console.is_terminal else Console(width=160)
