"""An error in a few words, for one log or refusal line. Imports nothing of ours, so the
broker's supervisor (below app.ops.outage, which imports the broker) can use it too."""

from __future__ import annotations


def describe(error: BaseException) -> str:
    """Its message's first line, or its type's name when it has none (a TimeoutError says
    nothing of itself)."""
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__
