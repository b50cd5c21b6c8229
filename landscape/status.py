"""The base of every status enum of the package: a readable sentence as the value, a short code.

Outside the layers (every layer may import it): results of every layer carry a status whose
``value`` is a sentence for the user and whose ``code`` is the short lower-case name that JSON
output and tests use.
"""

from __future__ import annotations

import enum

__all__ = ["StatusEnum", "Stopped", "check_should_stop", "counted", "stop_if_asked"]


class StatusEnum(enum.Enum):
    """An enum whose values are sentences; ``code`` is the member's name in lower case."""

    @property
    def code(self) -> str:
        """Short machine-readable name, e.g. ``converged``."""
        return self.name.lower()


class Stopped(RuntimeError):
    """Raised by a long computation when its ``should_stop`` callback returns True (nobody waits for it).

    The dashboard passes a callback that is True once the page's visitor has left; the computation
    checks it between steps and stops instead of finishing for nobody.
    """


def check_should_stop(should_stop):
    """``should_stop`` if it is None or callable.

    Raises
    ------
    ValueError
        If it is neither.
    """
    if should_stop is not None and not callable(should_stop):
        raise ValueError(f"should_stop must be callable (no arguments, True to stop), got {should_stop!r}")
    return should_stop


def stop_if_asked(should_stop, what):
    """Raise :class:`Stopped` saying ``what`` stopped if ``should_stop()`` is True (None: never)."""
    if should_stop is not None and should_stop():
        raise Stopped(f"{what} stopped: nobody waits for it")


def counted(number, one, many):
    """``"1 saddle"``, ``"3 saddles"``: a count with its noun, for result messages."""
    return f"{number} {one if number == 1 else many}"
