"""Where a process stands in a tenant's event log (app.events.event_log): which broker message
is the next one, a duplicate (already delivered, e.g. replayed from the log first), or after a
gap (something was lost on the way or arrived out of order: read the log)."""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    NEXT = "next"
    DUPLICATE = "duplicate"
    GAP = "gap"


class SequenceTracker:
    """The last sequence delivered to this process's subscribers of one tenant."""

    __slots__ = ("duplicates", "last", "lost", "replayed")

    def __init__(self, last: int) -> None:
        self.last = last
        self.duplicates = 0  # broker messages dropped: delivered already
        self.replayed = 0  # events delivered from the log instead of the broker
        self.lost = 0  # events that were gone from the log when needed (pruned)

    def check(self, seq: int) -> Verdict:
        if seq <= self.last:
            return Verdict.DUPLICATE
        return Verdict.NEXT if seq == self.last + 1 else Verdict.GAP

    def advance(self, seq: int) -> int:
        """Records ``seq`` as delivered; how many events before it are missing (0: none)."""
        missing = max(0, seq - self.last - 1)
        self.lost += missing
        self.last = max(self.last, seq)
        return missing
