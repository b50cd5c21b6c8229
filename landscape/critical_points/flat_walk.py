"""Walking a flat direction: the path between two ends of a continuum of split units, with its zero modes.

Two student units on one ray, ``u_1 = s S`` and ``u_2 = (c - s) S`` (``S`` the ray, ``c`` their total
share), compute ``c relu(S . x)`` for every ``s`` in ``[0, c]``: the loss is constant along the
segment, whose ends are the two points where one of the units has norm zero (there the network is a
network of width ``K - 1`` with a unit to spare). Along the segment the tangent ``(S, -S)`` is an
exact zero mode of the Hessian; :func:`walk_flat_direction` samples the segment, evaluates the loss
and gradient from the weights, and the Hessian at the interior points (at the ends a unit has norm
zero and ``L`` is not twice differentiable).

See docs/theory.md (positive homogeneity, flat directions).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from ..model.loss import gradient_from_weights, loss_from_weights
from .flat import parallel_groups
from .hessian import embed_overlaps, hessian_spectrum, weight_hessian

__all__ = ["FlatStatus", "FlatPath", "walk_flat_direction"]

_ZERO_TOL = 1e-9


class FlatStatus(enum.Enum):
    """Outcome of :func:`walk_flat_direction`; the value is a sentence."""

    FLAT = "loss constant to 1e-12, gradient below 1e-9 and the tangent a Hessian zero mode at every sample"
    NOT_FLAT = "the loss, the gradient or the tangent's Hessian residual is not flat to its tolerance somewhere"


@dataclass(frozen=True, eq=False)
class FlatPath:
    """Samples of a flat segment between two ends.

    Attributes
    ----------
    units : tuple of int
        The two students whose shares move (``u_1`` gains what ``u_2`` loses).
    shares : ndarray, shape (p,)
        ``s``, the share of the first unit, from 0 to ``c`` (both ends included).
    W : ndarray, shape (p, K, n)
    W_teacher : ndarray, shape (M, n)
        Teacher rows in the coordinates of ``W``.
    loss, gradient_norm : ndarray, shape (p,)
        From the weights.
    loss_spread : float
        ``max |loss - loss[0]|`` along the path.
    n_zero : ndarray of int, shape (p,)
        Zero Hessian eigenvalues in dimension ``d`` (``-1`` at the ends, where a unit has norm zero).
    tangent_residual : ndarray, shape (p,)
        ``|H t| / |t|`` for the path's tangent ``t`` (NaN at the ends): the tangent is a zero mode.
    min_eigenvalue : ndarray, shape (p,)
        Smallest Hessian eigenvalue (NaN at the ends).
    d : int
    success : bool
        Loss constant to 1e-12, gradient below 1e-9 and the tangent a zero mode (1e-8) at every sample.
    status : FlatStatus
    message : str
    """

    units: tuple
    shares: np.ndarray
    W: np.ndarray
    W_teacher: np.ndarray
    loss: np.ndarray
    gradient_norm: np.ndarray
    loss_spread: float
    n_zero: np.ndarray
    tangent_residual: np.ndarray
    min_eigenvalue: np.ndarray
    d: int
    success: bool
    status: FlatStatus
    message: str

    def to_dict(self) -> dict:
        """JSON-ready dictionary (no weights)."""
        return {"units": list(self.units), "shares": self.shares.tolist(), "loss": self.loss.tolist(),
                "gradient_norm": self.gradient_norm.tolist(), "loss_spread": self.loss_spread,
                "n_zero": self.n_zero.tolist(), "tangent_residual": self.tangent_residual.tolist(),
                "min_eigenvalue": self.min_eigenvalue.tolist(), "d": self.d, "status": self.status.name.lower(),
                "message": self.message}


def _check_samples(samples):
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or not 3 <= samples <= 1000:
        raise ValueError(f"samples must be a whole number in [3, 1000], got {samples!r}")
    return int(samples)


def walk_flat_direction(Q, R, T, *, W=None, W_teacher=None, units=None, samples: int = 21,
                        d: int | None = None) -> FlatPath:
    """Sample the flat segment through a point with two students on one ray.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)
    W, W_teacher : array_like, optional
        Weights of the point (else the overlaps are embedded).
    units : pair of int, optional
        Two students on one ray (default: the first two of the first group of units on one ray).
    samples : int, optional
        Points on the segment, ends included, in [3, 1000].
    d : int, optional
        Input dimension of the spectra (default: rank of the units plus one).

    Returns
    -------
    FlatPath

    Raises
    ------
    ValueError
        If the overlaps are invalid, no two students lie on one ray (or ``units`` are not on one
        ray), ``samples`` is out of range or ``d`` is below the rank.
    """
    samples = _check_samples(samples)
    if W is None or W_teacher is None:
        embedding = embed_overlaps(Q, R, T)
        W, W_teacher = embedding.student, embedding.teacher
    W, W_teacher = np.asarray(W, dtype=float), np.asarray(W_teacher, dtype=float)
    W, W_teacher = np.hstack([W, np.zeros((len(W), 1))]), np.hstack([W_teacher, np.zeros((len(W_teacher), 1))])
    groups, _ = parallel_groups(W, W_teacher)
    if units is None:
        if not groups:
            raise ValueError("no two students of the point lie on one ray, so it has no flat segment "
                             "(continua of split units occur at K > M points)")
        units = (int(groups[0][0]), int(groups[0][1]))
    units = tuple(int(u) for u in units)
    if len(units) != 2 or not any(set(units) <= set(g.tolist()) for g in groups):
        raise ValueError(f"units must be two students on one ray, got {units!r}; rays: {[g.tolist() for g in groups]}")
    first, second = units
    norms = np.linalg.norm(W[[first, second]], axis=1)
    ray = (W[first] + W[second]) / norms.sum()  # the unit of share 1 on this ray, averaged over the two
    total = float(norms.sum())
    shares = np.linspace(0.0, total, samples)
    path = np.repeat(W[None], samples, axis=0)
    path[:, first] = shares[:, None] * ray
    path[:, second] = (total - shares)[:, None] * ray
    tangent = np.zeros_like(W)
    tangent[first], tangent[second] = ray, -ray
    tangent = tangent.ravel() / np.linalg.norm(tangent)

    loss = np.array([loss_from_weights(p, W_teacher) for p in path])
    gradient = np.array([np.linalg.norm(gradient_from_weights(p, W_teacher)) for p in path])
    n_zero = np.full(samples, -1)
    residual, lowest = np.full(samples, np.nan), np.full(samples, np.nan)
    singular = np.linalg.svd(np.vstack([W, W_teacher]), compute_uv=False)
    d = int(np.sum(singular > 1e-9 * singular[0])) + 1 if d is None else d
    for i in range(1, samples - 1):
        residual[i] = np.linalg.norm(weight_hessian(path[i], W_teacher) @ tangent)
        spectrum = hessian_spectrum(path[i] @ path[i].T, path[i] @ W_teacher.T, W_teacher @ W_teacher.T, d,
                                    W=path[i], W_teacher=W_teacher, zero_tol=_ZERO_TOL)
        n_zero[i], lowest[i] = spectrum.n_zero, spectrum.min_eigenvalue
    spread = float(np.max(np.abs(loss - loss[0])))
    flat = spread <= 1e-12 and gradient.max() < 1e-9 and np.nanmax(residual) < 1e-8
    message = (f"loss {loss[0]:.10g} constant to {spread:.1e} over {samples} samples between the ends "
               f"(unit {first} or {second} of norm zero); Hessian zero modes {int(n_zero[1:-1].min())} to "
               f"{int(n_zero[1:-1].max())}, tangent residual {np.nanmax(residual):.1e}")
    return FlatPath(units=units, shares=shares, W=path, W_teacher=W_teacher, loss=loss, gradient_norm=gradient,
                    loss_spread=spread,
                    n_zero=n_zero, tangent_residual=residual, min_eigenvalue=lowest, d=int(d), success=bool(flat),
                    status=FlatStatus.FLAT if flat else FlatStatus.NOT_FLAT, message=message)
