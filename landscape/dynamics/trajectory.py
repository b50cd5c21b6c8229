"""The result of a run of the dynamics, shared by the ODE integrator and the SGD simulator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from dataclasses import dataclass

import numpy as np

from ..status import StatusEnum

__all__ = ["FlowStatus", "SolverStats", "Trajectory"]


class FlowStatus(StatusEnum):
    """Why a run stopped; the value is a sentence for the user, the name (lower case) the code."""

    CONVERGED = "reached a fixed point: the overlaps stopped moving"
    DIVERGED = "diverged: the overlaps grew without bound (learning rate too large?)"
    T_MAX = "reached the time horizon t_max before converging"
    FAILED = "failed: the integrator could not continue"



@dataclass(frozen=True)
class SolverStats:
    """What the ODE solvers did for one run (summed over the compiled solver and ``solve_ivp``).

    Attributes
    ----------
    accepted_steps : int
        Runge-Kutta steps taken.
    rejected_steps : int
        Trial steps rejected by the error control (for ``solve_ivp``, inferred from its count
        of right-hand sides: 12 per trial step, 3 more per accepted step for the dense output).
    rhs_evaluations : int
        Right-hand-side evaluations (the event searches' included).
    handover_time : float or None
        Where the compiled solver handed over to ``solve_ivp`` with the exact quadrature of the
        four-point term (``None``: no handover).
    variables : str
        ``"span"``: integrated as student rows in the span of the units (the Gram matrix is
        positive semi-definite by construction); ``"schur"``: as the students' teacher-span
        coordinates and the Schur complement ``C = Q - R T^+ R^T`` (the ``eta^2`` term by
        quadrature; ``C`` positive semi-definite in the exact flow, to its tolerance ``1e-11`` in
        the integration, and the output's overlaps those of the rows ``[A | C_+^(1/2)]``, with
        ``C`` projected onto the positive semi-definite cone); ``"span, then schur"``: the first
        until a handover, then the second.
    """

    accepted_steps: int
    rejected_steps: int
    rhs_evaluations: int
    handover_time: float | None
    variables: str = "span"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {"accepted_steps": self.accepted_steps, "rejected_steps": self.rejected_steps,
                "rhs_evaluations": self.rhs_evaluations, "handover_time": self.handover_time,
                "variables": self.variables}


@dataclass(frozen=True)
class Trajectory:
    """Summary statistics along a run.

    Attributes
    ----------
    t : ndarray, shape (n,)
        Times, in steps / d.
    Q : ndarray, shape (n, K, K)
    R : ndarray, shape (n, K, M)
    T : ndarray, shape (M, M)
    loss : ndarray, shape (n,)
        Population loss ``1/2 E[(f - f*)^2]`` (without label noise).
    status : FlowStatus
    message : str
        What happened, with the time, in plain language.
    method : str
        ``ode`` or ``sgd (d = ...)``.
    stats : SolverStats or None
        The ODE solvers' statistics (``None`` for direct SGD).
    """

    t: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    T: np.ndarray
    loss: np.ndarray
    status: FlowStatus
    message: str
    method: str = "ode"
    stats: SolverStats | None = None

    @property
    def success(self) -> bool:
        """True when the run ended at a fixed point."""
        return self.status is FlowStatus.CONVERGED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (the output format of ``landscape flow``)."""
        return {
            "t": self.t.tolist(),
            "loss": self.loss.tolist(),
            "Q": self.Q.tolist(),
            "R": self.R.tolist(),
            "T": self.T.tolist(),
            "status": self.status.code,
            "message": self.message,
            "method": self.method,
            "solver": None if self.stats is None else self.stats.to_dict(),
        }

    def to_frame(self) -> pd.DataFrame:
        """Long table: one row per time with the loss and every entry of ``Q`` and ``R``.

        Returns
        -------
        pandas.DataFrame
            Columns ``t``, ``loss``, ``Q[k,l]`` (``k <= l``) and ``R[k,m]``.
        """
        import pandas as pd

        K, M = self.R.shape[1:]
        columns = {"t": self.t, "loss": self.loss}
        for k in range(K):
            for l in range(k, K):
                columns[f"Q[{k},{l}]"] = self.Q[:, k, l]
        for k in range(K):
            for m in range(M):
                columns[f"R[{k},{m}]"] = self.R[:, k, m]
        return pd.DataFrame(columns)


def final_time_message(status, time):
    """One sentence saying how a run ended and when."""
    return f"{status.value} (t = {time:.4g})"

