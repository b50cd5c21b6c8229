"""Caps on the work one interactive request may ask for on a hosted demo (:class:`DemoCaps`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields

__all__ = ["DemoCaps"]


@dataclass(frozen=True)
class DemoCaps:
    """Largest work one interactive request may ask for (hosted-demo safety).

    Attributes
    ----------
    max_K : int
        Student and teacher widths (env ``LANDSCAPE_MAX_K``).
    max_starts : int
        Random starts of an on-demand catalogue (``LANDSCAPE_MAX_STARTS``).
    max_t_max : float
        Time horizon of a run, steps / d (``LANDSCAPE_MAX_T_MAX``).
    max_d : int
        Input dimension of a random start or an SGD simulation (``LANDSCAPE_MAX_D``).
    max_sgd_steps : int
        Steps of one SGD simulation, ``t_max * d`` (``LANDSCAPE_MAX_SGD_STEPS``).
    """

    max_K: int = 16
    max_starts: int = 200
    max_t_max: float = 20_000.0
    max_d: int = 1_000_000
    max_sgd_steps: int = 500_000

    _ENV = {
        "max_K": "LANDSCAPE_MAX_K",
        "max_starts": "LANDSCAPE_MAX_STARTS",
        "max_t_max": "LANDSCAPE_MAX_T_MAX",
        "max_d": "LANDSCAPE_MAX_D",
        "max_sgd_steps": "LANDSCAPE_MAX_SGD_STEPS",
    }

    def __post_init__(self):
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"cap {item.name} must be a positive number, got {value!r}")

    @classmethod
    def from_env(cls, environ=None):
        """Caps from environment variables (unset ones keep their defaults).

        Parameters
        ----------
        environ : mapping, optional
            Defaults to ``os.environ``.

        Raises
        ------
        ValueError
            Naming the variable, if one is set but is not a positive number.
        """
        environ = os.environ if environ is None else environ
        changes = {}
        for name, variable in cls._ENV.items():
            if variable not in environ:
                continue
            text = environ[variable].strip()
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{variable}={text!r} is not a number") from None
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{variable}={text!r} must be a positive number")
            changes[name] = value if name == "max_t_max" else int(value)
        return cls(**changes)

    def _over(self, what, value, cap, field_name):
        return (
            f"{what} = {value:g} is over the hosted-demo cap of {cap:g} "
            f"(raise it with the environment variable {self._ENV[field_name]})."
        )

    def violations(self, config=None, starts=None, sgd_d=None):
        """Sentences saying which requested amounts are over the caps (empty if none).

        Parameters
        ----------
        config : RunConfig, optional
            Checked for ``K``, ``M``, ``t_max`` and the random start's ``d``.
        starts : int, optional
            Random starts of a catalogue.
        sgd_d : int, optional
            Input dimension of an SGD simulation of ``config`` (also checks ``t_max * d``).

        Returns
        -------
        tuple of str
        """
        found = []
        if config is not None:
            for what, value in (("K", config.K), ("M", config.M)):
                if value > self.max_K:
                    found.append(self._over(what, value, self.max_K, "max_K"))
            if config.t_max > self.max_t_max:
                found.append(self._over("t_max", config.t_max, self.max_t_max, "max_t_max"))
            if config.init.kind == "random" and config.init.d > self.max_d:
                found.append(self._over("init d", config.init.d, self.max_d, "max_d"))
        if starts is not None and starts > self.max_starts:
            found.append(self._over("starts", starts, self.max_starts, "max_starts"))
        if sgd_d is not None:
            if sgd_d > self.max_d:
                found.append(self._over("SGD d", sgd_d, self.max_d, "max_d"))
            if config is not None and config.t_max * sgd_d > self.max_sgd_steps:
                found.append(self._over("SGD steps t_max * d", config.t_max * sgd_d, self.max_sgd_steps, "max_sgd_steps"))
        return tuple(found)
