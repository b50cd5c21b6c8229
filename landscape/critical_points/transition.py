"""Index-1 saddles reached from a minimum by hybrid eigenvector-following (partitioned RFO).

From a minimum, :func:`climb_to_saddle` walks uphill along one Hessian eigenvector and downhill
along all the others, with the partitioned rational-function-optimisation step of Baker (1986)
(as in OPTIM / pele): with ``g_i`` and ``lambda_i`` the gradient and eigenvalues in the eigenbasis
of the exact Hessian (:func:`landscape.critical_points.hessian.weight_hessian`),
``step_f = 2 g_f / (|lambda_f| + sqrt(lambda_f^2 + 4 g_f^2))`` along the followed mode ``f`` and
``step_i = -2 g_i / (|lambda_i| + sqrt(lambda_i^2 + 4 g_i^2))`` along the others, capped at a trust
radius. Zero modes (rotations, flat directions) are left alone, and the followed mode is tracked
from step to step by its overlap with the previous one. The walk ends at a point with one negative
eigenvalue and a small gradient, which Newton's method (:func:`landscape.critical_points.search.newton_polish`)
then polishes: a transition state out of the minimum's basin along that mode.

Section 6 of docs/theory.md (eigenvector-following; Cerjan & Miller 1981, Wales 2003).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels.linalg import symmetric_eigh
from ..model.loss import gradient_from_weights
from ..status import StatusEnum
from .batch_flow import DEAD_NORM, check_batch, check_positive, row_norms
from .hessian import weight_hessian
from .search import newton_polish

__all__ = ["ClimbStatus", "ClimbResult", "climb_to_saddle"]

_ZERO_TOL = 1e-7
_HANDOVER = 1e-7


class ClimbStatus(StatusEnum):
    """How a climb ended; the value is a sentence, ``code`` a short name."""

    CONVERGED = "reached an index-1 saddle (Newton-polished)"
    MAX_STEPS = "did not reach a saddle within the step limit"
    UNIT_DIED = "a student unit shrank to norm zero on the way"
    POLISH_FAILED = "Newton polishing of the end did not give an index-1 saddle"
    NO_MODE = "the point has fewer non-zero Hessian modes than the mode asked for"



@dataclass(frozen=True)
class ClimbResult:
    """End of one eigenvector-following climb.

    Attributes
    ----------
    W : ndarray, shape (K, n)
        Final student rows (the polished saddle when ``success``).
    iterations : int
    success : bool
    status : ClimbStatus
    message : str
    """

    W: np.ndarray
    iterations: int
    success: bool
    status: ClimbStatus
    message: str


def _prfo_step(gradient, eigenvalues, eigenvectors, followed, live):
    components = eigenvectors.T @ gradient
    size = np.abs(eigenvalues) + np.sqrt(eigenvalues**2 + 4.0 * components**2)
    step = np.where(live, -2.0 * components / np.where(size > 0, size, 1.0), 0.0)
    step[followed] = -step[followed]
    return eigenvectors @ step


def _result(W, W_teacher, iterations, status, detail=""):
    return ClimbResult(W, iterations, status is ClimbStatus.CONVERGED, status, status.value + detail)


def climb_to_saddle(W: np.ndarray, W_teacher: np.ndarray, mode: int = 0, sign: float = 1.0, trust: float = 0.05,
                    max_steps: int = 400) -> ClimbResult:
    """Hybrid eigenvector-following from a minimum up its ``mode``-th softest non-zero Hessian mode.

    Parameters
    ----------
    W : array_like, shape (K, n)
        Student rows at (or near) a minimum.
    W_teacher : array_like, shape (M, n)
    mode : int, optional
        Which non-zero eigenvalue to follow (0 = the smallest).
    sign : {1.0, -1.0}, optional
        Direction of the first step along the mode.
    trust : float, optional
        Largest step, relative to the Frobenius norm of ``W``.
    max_steps : int, optional

    Returns
    -------
    ClimbResult
        Failures are reported in ``status``, never raised.

    Raises
    ------
    ValueError
        If shapes disagree, entries are not finite, or a parameter is out of range.
    """
    W3, W_teacher = check_batch(W, W_teacher)
    if np.ndim(W) != 2:
        raise ValueError(f"W must be one point of shape (K, n), got shape {np.shape(W)}")
    if isinstance(mode, bool) or not isinstance(mode, (int, np.integer)) or mode < 0:
        raise ValueError(f"mode must be a whole number >= 0, got {mode!r}")
    if sign not in (1.0, -1.0):
        raise ValueError(f"sign must be 1.0 or -1.0, got {sign!r}")
    trust = check_positive("trust", trust)
    max_steps = check_positive("max_steps", max_steps, integer=True)
    W = W3[0].copy()
    radius = trust * float(np.linalg.norm(W))
    dead = DEAD_NORM * float(np.sqrt(np.max(np.sum(W_teacher**2, axis=1))))
    previous = None
    for iteration in range(max_steps):
        eigenvalues, eigenvectors = symmetric_eigh(weight_hessian(W, W_teacher))
        live = np.abs(eigenvalues) > _ZERO_TOL * max(1.0, float(np.abs(eigenvalues).max()))
        if previous is None:
            candidates = np.flatnonzero(live)
            if mode >= candidates.size:
                return _result(W, W_teacher, iteration, ClimbStatus.NO_MODE)
            followed = int(candidates[mode])
            step = sign * radius * eigenvectors[:, followed]
        else:
            followed = int(np.argmax(np.where(live, np.abs(eigenvectors.T @ previous), -1.0)))
            gradient = gradient_from_weights(W, W_teacher).ravel()
            if np.linalg.norm(gradient) < _HANDOVER and int(np.sum(eigenvalues < 0)) == 1 and eigenvalues[followed] < 0:
                break
            step = _prfo_step(gradient, eigenvalues, eigenvectors, followed, live)
            length = float(np.linalg.norm(step))
            if length > radius:
                step *= radius / length
        previous = eigenvectors[:, followed] * np.sign(eigenvectors[:, followed] @ (previous if previous is not None else step))
        W = W + step.reshape(W.shape)
        if row_norms(W).min() < dead:
            return _result(W, W_teacher, iteration + 1, ClimbStatus.UNIT_DIED)
    else:
        return _result(W, W_teacher, max_steps, ClimbStatus.MAX_STEPS)
    polished = newton_polish(W, W_teacher)
    if not polished.success:
        return _result(W, W_teacher, iteration, ClimbStatus.POLISH_FAILED, f": {polished.message}")
    negative = int(np.sum(np.linalg.eigvalsh(weight_hessian(polished.W, W_teacher)) < -_ZERO_TOL))
    if negative != 1:
        return _result(polished.W, W_teacher, iteration, ClimbStatus.POLISH_FAILED, f": index {negative} after polishing")
    return _result(polished.W, W_teacher, iteration, ClimbStatus.CONVERGED, f" after {iteration} steps")
