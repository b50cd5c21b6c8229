"""Caps on the work one interactive request may ask for on a hosted demo (:class:`DemoCaps`).

Caps apply in demo mode only (``LANDSCAPE_DEMO=1``); running locally, a lecturer may ask for
``K = 20`` or ``t_max = 1e9``. In demo mode a link value over a cap falls back to the cap with a
warning (:meth:`DemoCaps.clamp_link`), and every request has a budget in operations and bytes
(the SGD overlay's cost is ``steps x (K + M) x d``, :func:`~landscape.dynamics.sgd.sgd_cost`; the
other computations' costs come from their own cost models, estimated from the request's parameters
before any work starts, and :meth:`DemoCaps.over_budget` refuses those over the budget).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields

from ..dynamics.sgd import sgd_cost

__all__ = ["DemoCaps", "DEMO_VARIABLE", "OPERATIONS_PER_SECOND"]

#: The environment variable that turns demo mode on (``1``, ``true``, ``yes`` or ``on``).
DEMO_VARIABLE = "LANDSCAPE_DEMO"
_TRUE = ("1", "true", "yes", "on")
#: Operations of the cost models per CPU second on one core of the machine that measured them
#: (benchmarks/bench_costs.py); only used to say what a budget means in seconds.
OPERATIONS_PER_SECOND = 1e9


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
    max_sgd_operations : float
        Work of one SGD simulation, ``steps x (K + M) x d`` multiply-adds
        (``LANDSCAPE_MAX_SGD_OPERATIONS``; 2e9 is about 20 s on one core).
    max_sgd_bytes : float
        Memory of one SGD simulation: weights and a block of inputs (``LANDSCAPE_MAX_SGD_BYTES``).
    max_branch_K : int
        Width of a fixed point continued in lr on the Learning rate page (``LANDSCAPE_MAX_BRANCH_K``):
        a continuation step costs a Jacobian by differences with the four-point quadrature, about
        0.3 CPU s at K = 8, and a branch takes hundreds of steps.
    max_operations : float
        Work of any other request (a catalogue, connections, a continuation, flows, spectra, adding a
        student), estimated by its cost model before it starts (``LANDSCAPE_MAX_OPERATIONS``).
    max_bytes : float
        Memory of any other request, estimated the same way (``LANDSCAPE_MAX_BYTES``).
    enabled : bool
        False outside demo mode: nothing is capped.
    """

    max_K: int = 16
    max_starts: int = 200
    max_t_max: float = 20_000.0
    max_d: int = 1_000_000
    max_sgd_steps: int = 500_000
    max_sgd_operations: float = 2e9
    max_sgd_bytes: float = 256 * 2**20
    max_branch_K: int = 4
    max_operations: float = 3e10
    max_bytes: float = 512 * 2**20
    enabled: bool = True

    _ENV = {
        "max_K": "LANDSCAPE_MAX_K",
        "max_starts": "LANDSCAPE_MAX_STARTS",
        "max_t_max": "LANDSCAPE_MAX_T_MAX",
        "max_d": "LANDSCAPE_MAX_D",
        "max_sgd_steps": "LANDSCAPE_MAX_SGD_STEPS",
        "max_sgd_operations": "LANDSCAPE_MAX_SGD_OPERATIONS",
        "max_sgd_bytes": "LANDSCAPE_MAX_SGD_BYTES",
        "max_branch_K": "LANDSCAPE_MAX_BRANCH_K",
        "max_operations": "LANDSCAPE_MAX_OPERATIONS",
        "max_bytes": "LANDSCAPE_MAX_BYTES",
    }
    _FLOATS = ("max_t_max", "max_sgd_operations", "max_sgd_bytes", "max_operations", "max_bytes")
    #: Link parameters bounded by a cap, and the cap that bounds each.
    _LINK_CAPS = {"K": "max_K", "M": "max_K", "tmax": "max_t_max", "d": "max_d", "starts": "max_starts",
                  "sgd_d": "max_d"}

    def __post_init__(self):
        if not isinstance(self.enabled, bool):
            raise ValueError(f"enabled must be true or false, got {self.enabled!r}")
        for item in fields(self):
            if item.name == "enabled":
                continue
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"cap {item.name} must be a positive number, got {value!r}")

    @classmethod
    def from_env(cls, environ=None) -> DemoCaps:
        """Caps from environment variables: none unless ``LANDSCAPE_DEMO=1`` (then unset ones keep their defaults).

        Parameters
        ----------
        environ : mapping, optional
            Defaults to ``os.environ``.

        Raises
        ------
        ValueError
            Naming the variable, if one is set but is not a positive number (demo mode only).
        """
        environ = os.environ if environ is None else environ
        if environ.get(DEMO_VARIABLE, "").strip().lower() not in _TRUE:
            return cls(enabled=False)
        changes: dict = {}
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
            changes[name] = value if name in cls._FLOATS else int(value)
        return cls(**changes)

    def clamp_link(self, values: dict) -> tuple[dict, tuple]:
        """Link values over a cap, replaced by the cap (demo mode only).

        Parameters
        ----------
        values : dict
            Parsed link parameters by key (:attr:`QueryCheck.values`).

        Returns
        -------
        changes : dict
            ``{key: cap}`` for every value over its cap.
        warnings : tuple of str
            One sentence per change.
        """
        if not self.enabled:
            return {}, ()
        changes, warnings = {}, []
        for key, cap_name in self._LINK_CAPS.items():
            value = values.get(key)
            cap = getattr(self, cap_name)
            if value is not None and value > cap:
                changes[key] = type(value)(cap)
                warnings.append(f"Link parameter {key}={value:g} is over this demo's cap; using {cap:g} "
                                f"(the server sets it with {self._ENV[cap_name]}).")
        return changes, tuple(warnings)

    def summary(self) -> str:
        """The caps in one sentence (empty outside demo mode)."""
        if not self.enabled:
            return ""
        return (f"Demo caps: K, M ≤ {self.max_K}; t_max ≤ {self.max_t_max:g}; d ≤ {self.max_d:g}; "
                f"starts ≤ {self.max_starts}; SGD ≤ {self.max_sgd_steps:g} steps, "
                f"{self.max_sgd_operations:.3g} operations, {self.max_sgd_bytes / 2**20:.0f} MB; "
                f"continuations in lr K, M ≤ {self.max_branch_K}; any other request ≤ "
                f"{self.max_operations:.3g} operations and {self.max_bytes / 2**20:.0f} MB.")

    def over_budget(self, what, cost) -> tuple[str, ...]:
        """One sentence if ``cost`` is over the budget of a request (empty if not, or outside demo mode).

        Parameters
        ----------
        what : str
            The computation asked for, e.g. ``"a catalogue of 200 starts at K = 16, M = 16"``.
        cost : tuple of float
            ``(operations, bytes)`` from the computation's cost model (e.g.
            :func:`landscape.catalogues.build.catalogue_cost`), estimated before any work starts.

        Returns
        -------
        tuple of str
        """
        operations, memory = (float(value) for value in cost)
        if not self.enabled or (operations <= self.max_operations and memory <= self.max_bytes):
            return ()
        return (f"Refused: {what} needs about {operations:.1e} operations and {memory / 2**20:,.0f} MB, over this "
                f"hosted demo's budget per request of {self.max_operations:.1e} operations and "
                f"{self.max_bytes / 2**20:,.0f} MB (about {self.max_operations / OPERATIONS_PER_SECOND:.0f} s on "
                f"one core; the server raises them with {self._ENV['max_operations']} and "
                f"{self._ENV['max_bytes']}). Ask for less (fewer starts, smaller K or M), or run the app "
                "locally, where nothing is capped.",)

    def _over(self, what, value, cap, field_name):
        return (
            f"{what} = {value:g} is over the hosted-demo cap of {cap:g} "
            f"(raise it with the environment variable {self._ENV[field_name]})."
        )

    def branch_violations(self, config) -> tuple[str, ...]:
        """Sentences saying why continuing ``config``'s fixed point in lr is over the caps (empty if not).

        Parameters
        ----------
        config : RunConfig

        Returns
        -------
        tuple of str
            Always empty outside demo mode.
        """
        if not self.enabled or max(config.K, config.M) <= self.max_branch_K:
            return ()
        return (self._over("K" if config.K >= config.M else "M", max(config.K, config.M), self.max_branch_K,
                           "max_branch_K").replace("hosted-demo cap", "hosted demo's cap for continuations in lr"),)

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
            Always empty outside demo mode.
        """
        if not self.enabled:
            return ()
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
            if config is not None:
                # The cost is steps x (K + M) x d: capping steps and d apart let d = 1e6 ask for hours.
                steps = int(min(config.t_max * sgd_d, 1e18))
                operations, memory = sgd_cost(config.K, config.M, int(sgd_d), steps)
                if operations > self.max_sgd_operations:
                    found.append(self._over("SGD work steps x (K + M) x d", operations, self.max_sgd_operations,
                                            "max_sgd_operations"))
                if memory > self.max_sgd_bytes:
                    found.append(self._over("SGD memory (bytes)", memory, self.max_sgd_bytes, "max_sgd_bytes"))
        return tuple(found)
