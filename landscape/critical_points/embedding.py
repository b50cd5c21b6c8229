"""Adding a student: the critical points of width ``K + 1`` that a critical point of width ``K`` gives.

Methods
-------
Split embedding
    ReLU is positively homogeneous, so replacing unit ``u_j`` by ``alpha u_j`` and a new unit
    ``(1 - alpha) u_j`` leaves the network's function unchanged: a critical point of width ``K``
    gives a line of critical points of width ``K + 1`` (``alpha`` in ``[0, 1]``) at the same loss.
    One split per orbit of students under the point's symmetries (splits of one orbit are images
    of each other). Splitting can turn a minimum into a saddle: the Hessian of the split point may
    gain negative eigenvalues (in the span of the units or in the bulk of directions orthogonal to
    them; the weights get one extra coordinate so that the bulk is represented).
Escapes
    From a split saddle, gradient flow (:func:`landscape.critical_points.batch_flow`, through
    :func:`landscape.critical_points.search.search_critical_points`) starts at the split point
    pushed both ways along the eigenvector of the most negative Hessian eigenvalue, and its end is
    Newton-polished to a gradient norm below ``1e-10`` (a certified critical point); the end's
    family, loss and spectrum say where the escape went.
Aligned-unit embedding
    Adding a unit ``t v_m`` along the ray of teacher ``m`` (``v_m`` of unit length) changes the loss by
    ``slope_m t + t^2 / 4`` exactly (``E[relu(v x)^2] = 1/2``), with
    ``slope_m = E[(f - f*) relu(v_m . x)]``. The unit of norm zero is a critical embedding (the end
    of a split continuum) where ``slope_m = 0``; where ``slope_m < 0`` a new unit along that teacher
    lowers the loss to first order, so the point does not survive as a minimum of width ``K + 1``.

See docs/theory.md (positive homogeneity, flat directions).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ..kernels.linalg import symmetric_eigh
from ..kernels.overlaps import embed_overlaps, validate_overlaps
from ..model.loss import gradient_from_weights, loss_from_weights, rejection_norms
from .batch_flow import EndReason, unchecked_batch_gradient
from .families import FAMILY_TOL, classify_point
from .hessian import hessian_spectrum, weight_hessian
from .search import newton_polish, search_critical_points
from .symmetry import orbit_partition

__all__ = ["EmbedStatus", "Escape", "SplitPoint", "AlignedUnit", "StudentEmbedding", "add_student", "split_unit"]

#: A point given as critical must have a gradient norm below this before it is polished.
CRITICAL_INPUT_TOL = 1e-6
_POLISH_TOL = 1e-10


class EmbedStatus(enum.Enum):
    """Outcome of :func:`add_student`; the value is a sentence."""

    DONE = "every split point is critical at the original loss and every escape ended at a certified critical point"
    ESCAPE_FAILED = "some escapes did not end at a certified critical point (see their status)"


@dataclass(frozen=True, eq=False)
class Escape:
    """Where gradient flow from a split saddle, pushed one way along its most negative direction, ends.

    Attributes
    ----------
    direction : int
        ``+1`` or ``-1``: the sign of the push.
    loss : float
    family : str
    kind : str
        ``minimum`` or ``saddle`` (Hessian of the end point in the dimension of the embedding).
    index : int
    min_eigenvalue : float
    gradient_norm : float
        Recomputed from the end's weights.
    Q : ndarray, shape (K + 1, K + 1)
    R : ndarray, shape (K + 1, M)
    success : bool
        The end is a Newton-polished critical point (gradient norm below 1e-10).
    message : str
    t, loss_path : ndarray, shape (p,)
        Loss along the escape flow over time (only when trajectories were asked for; else empty).
    """

    direction: int
    loss: float
    family: str
    kind: str
    index: int
    min_eigenvalue: float
    gradient_norm: float
    Q: np.ndarray
    R: np.ndarray
    success: bool
    message: str
    t: np.ndarray
    loss_path: np.ndarray

    def to_dict(self) -> dict:
        """JSON-ready dictionary (an entry of ``escapes`` in ``landscape embed``)."""
        return {"direction": self.direction, "loss": self.loss, "family": self.family, "kind": self.kind,
                "index": self.index, "min_eigenvalue": self.min_eigenvalue, "gradient_norm": self.gradient_norm,
                "success": self.success, "message": self.message, "Q": self.Q.tolist(), "R": self.R.tolist()}


@dataclass(frozen=True, eq=False)
class SplitPoint:
    """The point of width ``K + 1`` made by splitting one student.

    Attributes
    ----------
    split_unit : int
        The student split (the first of its orbit); the new unit is the last row.
    orbit_size : int
        Students of its orbit (splitting any of them gives an image of this point).
    alpha : float
        The split unit keeps ``alpha u``, the new one gets ``(1 - alpha) u``.
    W : ndarray, shape (K + 1, n)
    Q, R : ndarray
    loss, gradient_norm : float
        Gradient from the weights.
    index, n_zero : int
    min_eigenvalue : float
    eigenvalues, multiplicities : ndarray
        Distinct Hessian eigenvalues (ascending) in dimension ``d`` and their multiplicities.
    spectrum : HessianSpectrum
        The whole spectrum (span block and bulk), computed from the weights.
    escapes : tuple of Escape
        Empty when the split point is a minimum.
    """

    split_unit: int
    orbit_size: int
    alpha: float
    W: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    loss: float
    gradient_norm: float
    index: int
    n_zero: int
    min_eigenvalue: float
    eigenvalues: np.ndarray
    multiplicities: np.ndarray
    spectrum: object
    escapes: tuple

    @property
    def is_saddle(self) -> bool:
        """True when the split point has a negative Hessian eigenvalue."""
        return self.index > 0

    def to_dict(self) -> dict:
        """JSON-ready dictionary (an entry of ``points`` in ``landscape embed``)."""
        if self.is_saddle:
            ends = sorted({(round(e.loss, 10), e.family) for e in self.escapes})
            summary = "saddle; escapes end at " + "; ".join(f"{family} (loss {loss:.6g})" for loss, family in ends)
        else:
            summary = "minimum: no escape"
        return {"split_unit": self.split_unit, "orbit_size": self.orbit_size, "alpha": self.alpha,
                "Q": self.Q.tolist(), "R": self.R.tolist(), "loss": self.loss, "gradient_norm": self.gradient_norm,
                "index": self.index, "n_zero": self.n_zero, "min_eigenvalue": self.min_eigenvalue,
                "is_saddle": self.is_saddle, "summary": summary, "escapes": [e.to_dict() for e in self.escapes]}


@dataclass(frozen=True)
class AlignedUnit:
    """Adding a unit along teacher ``m``'s ray: loss change ``slope t + t^2 / 4`` for norm ``t``.

    Attributes
    ----------
    teacher : int
    slope : float
        ``E[(f - f*) relu(v_m . x)]``.
    critical : bool
        ``slope`` vanishes (to 1e-9): the unit of norm zero on this ray is a critical embedding.
    best_norm, best_loss : float
        ``t* = max(0, -2 slope)`` and the loss there (other units held fixed).
    """

    teacher: int
    slope: float
    critical: bool
    best_norm: float
    best_loss: float

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        return {"teacher": self.teacher, "slope": self.slope, "critical": self.critical, "best_norm": self.best_norm,
                "best_loss": self.best_loss}


@dataclass(frozen=True, eq=False)
class StudentEmbedding:
    """Result of :func:`add_student`.

    Attributes
    ----------
    points : tuple of SplitPoint
        One per orbit of students.
    aligned : tuple of AlignedUnit
        One per teacher.
    loss : float
        Loss of the original point (after polishing).
    family : str
        Family of the original point.
    K, M, d : int
    success : bool
    status : EmbedStatus
    message : str
    """

    points: tuple
    aligned: tuple
    loss: float
    family: str
    K: int
    M: int
    d: int
    success: bool
    status: EmbedStatus
    message: str

    def to_dict(self) -> dict:
        """What ``landscape embed`` prints."""
        return {"K": self.K, "M": self.M, "d": self.d, "loss": self.loss, "family": self.family,
                "points": [p.to_dict() for p in self.points], "aligned": [a.to_dict() for a in self.aligned],
                "success": self.success, "status": self.status.name.lower(), "message": self.message}


def split_unit(W: np.ndarray, j: int, alpha: float) -> np.ndarray:
    """Weights of width ``K + 1``: row ``j`` becomes ``alpha W[j]`` and ``(1 - alpha) W[j]`` is appended.

    Parameters
    ----------
    W : array_like, shape (K, n)
    j : int
        Row to split, ``0 <= j < K``.
    alpha : float
        Share kept by row ``j``, in ``(0, 1)``.

    Returns
    -------
    ndarray, shape (K + 1, n)

    Raises
    ------
    ValueError
        If ``W`` is not a finite matrix, ``j`` is not a row index or ``alpha`` is not in (0, 1).
    """
    W = np.asarray(W, dtype=float)
    if W.ndim != 2 or not np.all(np.isfinite(W)):
        raise ValueError(f"W must be a finite matrix (K, n), got shape {W.shape}")
    if isinstance(j, bool) or not isinstance(j, (int, np.integer)) or not 0 <= j < W.shape[0]:
        raise ValueError(f"j must be a row index in [0, {W.shape[0]}), got {j!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a number in (0, 1) (both units keep part of the weight), got {alpha!r}")
    split = np.vstack([W, (1.0 - alpha) * W[j]])
    split[j] *= alpha
    return split


def _certified_weights(Q, R, T, W, W_teacher) -> tuple[np.ndarray, np.ndarray]:
    """Weights of the input point with one extra coordinate, Newton-polished (it must be critical)."""
    if W is None or W_teacher is None:
        embedding = embed_overlaps(Q, R, T)
        W, W_teacher = embedding.student, embedding.teacher
    W, W_teacher = np.asarray(W, dtype=float), np.asarray(W_teacher, dtype=float)
    norm = float(np.linalg.norm(gradient_from_weights(W, W_teacher)))
    if norm > CRITICAL_INPUT_TOL:
        raise ValueError(f"the point is not a critical point (gradient norm {norm:.2e} > {CRITICAL_INPUT_TOL:.0e}); "
                         "give a point from a catalogue (landscape catalogue) or polish it first")
    pad = np.zeros((W.shape[0], 1)), np.zeros((W_teacher.shape[0], 1))
    W, W_teacher = np.hstack([W, pad[0]]), np.hstack([W_teacher, pad[1]])
    if norm > _POLISH_TOL:
        polished = newton_polish(W, W_teacher, tol=_POLISH_TOL)
        if not polished.success:
            raise ValueError(f"the point could not be Newton-polished to a critical point: {polished.message}")
        W = polished.W
    return W, W_teacher


def _flow_paths(starts, W_teacher, end_losses, t_max=1e4):
    """Loss along the gradient flows from ``starts`` (S, K, n), integrated together, until each has come
    within 1e-4 of its drop to ``end_losses`` (for drawing: the certified ends come from the search,
    so the slow last approach is not redrawn)."""
    from scipy.integrate import solve_ivp

    shape = starts.shape
    T, teacher_residual = W_teacher @ W_teacher.T, rejection_norms(W_teacher, W_teacher)
    first = np.array([loss_from_weights(W, W_teacher) for W in starts])
    targets = end_losses + 1e-4 * np.maximum(first - end_losses, 0.0)

    def losses(y):
        return np.array([loss_from_weights(W, W_teacher) for W in y.reshape(shape)])

    def velocity(_, y):
        # The batch flow's unchecked gradient: the inputs were checked once, and this runs ~1000 times.
        return -unchecked_batch_gradient(y.reshape(shape), W_teacher, T, teacher_residual).ravel()

    def arrived(_, y):
        return float(np.max(losses(y) - targets))

    arrived.terminal = True
    times = np.concatenate([[0.0], np.logspace(-2, np.log10(t_max), 200)])
    solution = solve_ivp(velocity, (0.0, t_max), starts.ravel(), t_eval=times, events=arrived, rtol=1e-5, atol=1e-9)
    t, states = solution.t, solution.y.T
    if solution.t_events[0].size:  # end the drawn paths where the last one arrived
        t, states = np.append(t, solution.t_events[0][0]), np.vstack([states, solution.y_events[0][0]])
    path = np.array([losses(y) for y in states])  # (p, S)
    return [(t, path[:, i]) for i in range(shape[0])]


def _escapes(split, W_teacher, T, d, push, trajectories):
    """Flows from the split saddle pushed both ways along its most negative direction, then Newton."""
    eigenvalues, vectors = symmetric_eigh(weight_hessian(split, W_teacher))
    direction = vectors[:, 0].reshape(split.shape)
    size = push * float(np.max(np.linalg.norm(split, axis=1)))
    starts = np.array([split + size * direction, split - size * direction])
    found = search_critical_points(starts, W_teacher, workers=1)
    end_losses = np.array([loss_from_weights(W, W_teacher) for W in found.W])
    empty = (np.empty(0), np.empty(0))
    paths = _flow_paths(starts, W_teacher, end_losses) if trajectories else [empty, empty]
    escapes = []
    for sign, W, reason, end_loss, (t, path) in zip((1, -1), found.W, found.reasons, end_losses, paths):
        Q, R = W @ W.T, W @ W_teacher.T
        norm = float(np.linalg.norm(gradient_from_weights(W, W_teacher)))
        success = reason is EndReason.CONVERGED and norm < _POLISH_TOL
        spectrum = hessian_spectrum(Q, R, T, d, W=W, W_teacher=W_teacher) if success else None
        escapes.append(Escape(
            direction=sign, loss=float(end_loss), family=classify_point(Q, R, T).label,
            kind=("minimum" if spectrum.index == 0 else "saddle") if success else "not converged",
            index=spectrum.index if success else -1,
            min_eigenvalue=spectrum.min_eigenvalue if success else float("nan"), gradient_norm=norm,
            Q=Q, R=R, success=success, message=reason.value, t=t, loss_path=path))
    return tuple(escapes)


def _aligned_units(W, W_teacher):
    """Slope of the loss when a unit is added along each teacher's ray (exact: L is quadratic in its norm)."""
    base = loss_from_weights(W, W_teacher)
    units = []
    for m, teacher in enumerate(W_teacher):
        ray = teacher / np.linalg.norm(teacher)
        # L(t) = base + slope t + t^2 / 4 exactly, so one evaluation at t = 1 gives the slope.
        slope = float(loss_from_weights(np.vstack([W, ray]), W_teacher) - base - 0.25)
        best = max(0.0, -2.0 * slope)
        units.append(AlignedUnit(teacher=m, slope=slope, critical=abs(slope) <= 1e-9, best_norm=best,
                                 best_loss=float(base + slope * best + best * best / 4.0)))
    return tuple(units)


def add_student(Q: ArrayLike, R: ArrayLike, T: ArrayLike, *, W: ArrayLike | None = None,
                W_teacher: ArrayLike | None = None, alpha: float = 0.5, d: int | None = None, push: float = 1e-2,
                trajectories: bool = False) -> StudentEmbedding:
    """Split each orbit's first student of a critical point, and follow the escapes from split saddles.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)
    W, W_teacher : array_like, shape (K, n) and (M, n), optional
        Weights of the point (else the overlaps are embedded).
    alpha : float, optional
        Share kept by the split unit, in (0, 1).
    d : int, optional
        Input dimension of the spectra (default: rank of the units plus one, so the bulk shows).
    push : float, optional
        Size of the push along the most negative direction, relative to the largest unit norm, in (0, 1).
    trajectories : bool, optional
        Also record the loss along each escape flow (``Escape.t``, ``Escape.loss_path``).

    Returns
    -------
    StudentEmbedding

    Raises
    ------
    ValueError
        If the overlaps are invalid, the point is not critical (gradient norm above 1e-6), ``alpha``
        or ``push`` is not in (0, 1), or ``d`` is below the rank of the units.
    """
    Q, R, T = validate_overlaps(Q, R, T)
    if isinstance(push, bool) or not isinstance(push, (int, float, np.floating)) or not 0 < push < 1:
        raise ValueError(f"push must be a number in (0, 1), got {push!r}")
    W, W_teacher = _certified_weights(Q, R, T, W, W_teacher)
    K, M = W.shape[0], W_teacher.shape[0]
    singular = np.linalg.svd(np.vstack([W, W_teacher]), compute_uv=False)
    rank = int(np.sum(singular > 1e-9 * singular[0]))
    d = rank + 1 if d is None else d
    Q0, R0 = W @ W.T, W @ W_teacher.T
    students, _ = orbit_partition(Q0, R0, T, tol=FAMILY_TOL)
    points = []
    for orbit in range(students.max() + 1):
        members = np.flatnonzero(students == orbit)
        split = split_unit(W, int(members[0]), alpha)
        Qs, Rs = split @ split.T, split @ W_teacher.T
        spectrum = hessian_spectrum(Qs, Rs, T, d, W=split, W_teacher=W_teacher)
        escapes = _escapes(split, W_teacher, T, d, push, trajectories) if spectrum.index > 0 else ()
        points.append(SplitPoint(
            split_unit=int(members[0]), orbit_size=int(members.size), alpha=float(alpha), W=split, Q=Qs, R=Rs,
            loss=float(loss_from_weights(split, W_teacher)),
            gradient_norm=float(np.linalg.norm(gradient_from_weights(split, W_teacher))), index=spectrum.index,
            n_zero=spectrum.n_zero, min_eigenvalue=spectrum.min_eigenvalue, eigenvalues=spectrum.eigenvalues,
            multiplicities=spectrum.multiplicities, spectrum=spectrum, escapes=escapes))
    failed = sum(not e.success for p in points for e in p.escapes)
    saddles = sum(p.is_saddle for p in points)
    status = EmbedStatus.ESCAPE_FAILED if failed else EmbedStatus.DONE
    message = (f"{len(points)} distinct splits, {saddles} of them saddles; "
               f"{sum(len(p.escapes) for p in points) - failed} escapes ended at certified critical points"
               + (f", {failed} did not" if failed else ""))
    return StudentEmbedding(points=tuple(points), aligned=_aligned_units(W, W_teacher),
                            loss=float(loss_from_weights(W, W_teacher)), family=classify_point(Q0, R0, T).label,
                            K=K, M=M, d=int(d), success=not failed, status=status, message=message)
