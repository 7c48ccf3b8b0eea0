"""How many CSV exports may run at once in this app (each is a long read of the database)."""

from __future__ import annotations

from dataclasses import dataclass

MAX_EXPORTS = 2


@dataclass(slots=True)
class ExportSlots:
    limit: int = MAX_EXPORTS
    running: int = 0

    def take(self) -> bool:
        """A slot if one is free (then `give_back` it when the export ends), else False.
        Taken before the response starts: a count raised only once the body streamed let
        every request that arrived meanwhile through."""
        if self.running >= self.limit:
            return False
        self.running += 1
        return True

    def give_back(self) -> None:
        self.running -= 1
