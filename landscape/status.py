"""The base of every status enum of the package: a readable sentence as the value, a short code.

Outside the layers (every layer may import it): results of every layer carry a status whose
``value`` is a sentence for the user and whose ``code`` is the short lower-case name that JSON
output and tests use.
"""

from __future__ import annotations

import enum

__all__ = ["StatusEnum"]


class StatusEnum(enum.Enum):
    """An enum whose values are sentences; ``code`` is the member's name in lower case."""

    @property
    def code(self) -> str:
        """Short machine-readable name, e.g. ``converged``."""
        return self.name.lower()
