"""Closed-form Gaussian expectations of ReLU networks, as pure functions of overlap arrays.

Every function broadcasts over leading array dimensions, so whole overlap matrices are
evaluated at once. Notation: ``(u, v)`` is a centred Gaussian pair with variances ``a, b``
and covariance ``c``; ``theta = arccos(c / sqrt(a b))``.

The four-point term of the finite-learning-rate correction lives in
:mod:`landscape.kernels.fourpoint` (orthant probabilities in :mod:`landscape.kernels.orthant`).

Eqs. (2.1)-(2.2) of docs/theory.md (the arc-cosine kernel of Cho & Saul 2009).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "pair_residual",
    "relu_kernel",
    "step_step_probability",
    "relu_on_hyperplane_density",
]

# Below this variance a unit is treated as switched off (relu'(0) = 0, relu(0) = 0).
TINY = 1e-300


def pair_residual(a, b, c):
    """``sqrt(a b - c^2)``, clipped at zero where rounding makes it slightly negative.

    Near aligned units this loses half the digits (a square root of a cancellation); where
    the weights are known, :meth:`landscape.model.loss.PairResiduals.from_weights` computes it
    to full precision and the kernels below accept it through ``residual``.

    Parameters
    ----------
    a, b, c : array_like
        Variances and covariance (broadcastable).

    Returns
    -------
    ndarray
    """
    a, b, c = np.asarray(a, dtype=float), np.asarray(b, dtype=float), np.asarray(c, dtype=float)
    return np.sqrt(np.maximum(a * b - c * c, 0.0))


def _geometry(a, b, c, residual):
    a, b, c = np.asarray(a, dtype=float), np.asarray(b, dtype=float), np.asarray(c, dtype=float)
    if residual is None:
        residual = pair_residual(a, b, c)
    # arctan2 keeps the angle accurate near 0 and pi, where arccos(c / sqrt(ab)) does not.
    return a, b, c, residual, np.arctan2(residual, c)


def relu_kernel(a, b, c, residual=None):
    """Arc-cosine kernel of degree one: ``E[relu(u) relu(v)]``.

    Parameters
    ----------
    a, b : array_like
        Variances of ``u`` and ``v`` (broadcastable, non-negative).
    c : array_like
        Covariance of ``u`` and ``v``.
    residual : array_like, optional
        ``sqrt(a b - c^2)`` if known more accurately than from ``a, b, c``.

    Returns
    -------
    ndarray
        ``(sqrt(a b - c^2) + c (pi - theta)) / (2 pi)``; equals ``a / 2`` on the diagonal.
    """
    a, b, c, residual, angle = _geometry(a, b, c, residual)
    return (residual + c * (np.pi - angle)) / (2.0 * np.pi)


def step_step_probability(a, b, c, residual=None):
    """Orthant probability ``P(u > 0, v > 0) = (pi - theta) / (2 pi)``.

    This is also ``E[relu'(u) relu'(v)]`` and the derivative of :func:`relu_kernel`
    with respect to the covariance ``c``. A unit of zero variance never fires.

    Parameters
    ----------
    a, b : array_like
        Variances (non-negative).
    c : array_like
        Covariance.
    residual : array_like, optional
        ``sqrt(a b - c^2)`` if known more accurately.

    Returns
    -------
    ndarray
        Probabilities in ``[0, 1/2]``.
    """
    a, b, c, residual, angle = _geometry(a, b, c, residual)
    alive = (a > TINY) & (b > TINY)
    return np.where(alive, (np.pi - angle) / (2.0 * np.pi), 0.0)


def relu_on_hyperplane_density(a, b, c, residual=None):
    """``E[delta(u) relu(v)] = sqrt(a b - c^2) / (2 pi a)``.

    The density of ``u`` at zero times the conditional mean of ``relu(v)`` there: the
    term that the kink of ``relu'`` contributes to gradients and Hessians.

    Parameters
    ----------
    a : array_like
        Variance of ``u`` (the unit whose kink is taken).
    b, c : array_like
        Variance of ``v`` and covariance of ``u`` and ``v``.
    residual : array_like, optional
        ``sqrt(a b - c^2)`` if known more accurately.

    Returns
    -------
    ndarray
        Non-negative values; zero where ``a`` vanishes (a dead unit has no kink in reach).
    """
    a, b, c = np.asarray(a, dtype=float), np.asarray(b, dtype=float), np.asarray(c, dtype=float)
    if residual is None:
        residual = pair_residual(a, b, c)
    safe_a = np.where(a > TINY, a, 1.0)
    return np.where(a > TINY, residual / (2.0 * np.pi * safe_a), 0.0)
