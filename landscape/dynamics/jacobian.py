"""The ODE's right-hand side in ``(Q, R)`` and its Jacobian at one point, without quadrature away from it.

Coordinates
-----------
The state is ``x = (Q_kl for k <= l, R_km)`` (row-major), of size ``N = K (K + 1) / 2 + K M``:
the coordinates of the ODE itself, with the rotations of the input space quotiented out
(:func:`state_vector`, :func:`overlaps_from_state`).

Method
------
``dx/dt = lr g(x) + lr^2 Phi(x)`` (eqs. (3.2)-(3.4) of docs/theory.md): ``g`` the gradient-flow
velocity (two-point kernels, :func:`landscape.model.loss.gradient_flow_velocity`) and ``Phi`` the
``eta^2`` expectation with label noise.

- ``Phi`` at the point: the four-point expectations of distinct units by the quadrature (one
  path integral per set of four units, :mod:`landscape.dynamics.fourpoint_flow`), the others by
  their closed forms, summed by the compiled code of the ODE
  (:func:`landscape.dynamics.compiled_flow.finite_lr_term_derivatives`).
- its derivatives: Price's theorem moves the four-point expectations with the overlaps (eq. (4.9)),
  so the ``N`` columns cost closed-form evaluations only (compiled; milliseconds at ``K = M = 8``,
  against ``2 N`` quadratures for differences of the quadrature);
- ``g``'s derivatives: central differences of the batched numpy velocity (one call for all columns).

Where two units are within ``1e-8`` of alignment or a unit is dead the carried derivatives do not
apply (:func:`landscape.dynamics.fourpoint_flow.carried_four_point_applies`); there, and for the
independent check in the tests, :func:`quadrature_jacobian` differences the quadrature right-hand
side :func:`landscape.dynamics.ode_solvers.ode_velocity`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels.fourpoint import unchecked_finite_lr_expectation
from ..model.loss import gradient_flow_velocity
from .compiled_flow import finite_lr_term_derivatives, flow_model
from .fourpoint_flow import carried_four_point, carried_four_point_applies
from .ode_solvers import ode_velocity

__all__ = ["state_vector", "overlaps_from_state", "RightHandSide", "right_hand_side", "quadrature_jacobian"]

#: Relative step of the central differences (error ~ step^2 times the third derivative).
STEP = 1e-5


def state_vector(Q, R):
    """``x = (Q_kl for k <= l, R)`` of shape (..., N) from ``Q`` (..., K, K) and ``R`` (..., K, M)."""
    Q, R = np.asarray(Q, dtype=float), np.asarray(R, dtype=float)
    upper = np.triu_indices(Q.shape[-1])
    return np.concatenate([Q[..., upper[0], upper[1]], R.reshape(R.shape[:-2] + (-1,))], axis=-1)


def overlaps_from_state(x, K, M):
    """Inverse of :func:`state_vector`: ``Q`` (..., K, K) symmetric and ``R`` (..., K, M)."""
    x = np.asarray(x, dtype=float)
    upper = np.triu_indices(K)
    n = upper[0].size
    Q = np.zeros(x.shape[:-1] + (K, K))
    Q[..., upper[0], upper[1]] = x[..., :n]
    Q[..., upper[1], upper[0]] = x[..., :n]
    return Q, x[..., n:].reshape(x.shape[:-1] + (K, M))


def _unit_directions(K, M):
    """``(dQ, dR)`` (N, K, K), (N, K, M) of the N coordinate directions."""
    N = K * (K + 1) // 2 + K * M
    return overlaps_from_state(np.eye(N), K, M)


def _joint(Q, R, T):
    return np.block([[Q, R], [R.T, T]])


@dataclass(frozen=True)
class RightHandSide:
    """``dx/dt`` and (optionally) its Jacobian at one point.

    Attributes
    ----------
    velocity : ndarray, shape (N,)
        ``dx/dt``.
    gradient : ndarray, shape (N,)
        ``g(x)``, the gradient-flow velocity per unit ``lr``.
    phi : ndarray, shape (N,)
        ``Phi(x)`` in the ``Q`` coordinates (zero in the ``R`` ones; zero without ``eta2``).
    jacobian : ndarray, shape (N, N) or None
        ``d (dx/dt) / dx``.
    """

    velocity: np.ndarray
    gradient: np.ndarray
    phi: np.ndarray
    jacobian: np.ndarray | None


def right_hand_side(Q, R, T, lr, eta2=True, noise=0.0, jacobian=True, step=STEP):
    """``dx/dt`` at ``(Q, R)`` and its Jacobian (no validation; the point inside the cone).

    Parameters
    ----------
    Q : ndarray, shape (K, K)
    R : ndarray, shape (K, M)
    T : ndarray, shape (M, M)
    lr : float
    eta2 : bool
    noise : float
    jacobian : bool, optional
        Also compute the Jacobian.
    step : float, optional
        Central-difference step, relative to ``max(1, max |x|)``.

    Returns
    -------
    RightHandSide
    """
    K, M = R.shape
    gradient = state_vector(*gradient_flow_velocity(Q, R, T))
    h = step * max(1.0, float(np.max(np.abs(state_vector(Q, R)))))
    phi_q, matrix = np.zeros((K, K)), None
    if eta2 and carried_four_point_applies(Q, R, T):
        omega = _joint(Q, R, T)
        carried = carried_four_point(K, M).initial_state(omega)
        dQ, dR = _unit_directions(K, M) if jacobian else (np.zeros((0, K, K)), np.zeros((0, K, M)))
        directions = np.zeros((dQ.shape[0], K + M, K + M))
        directions[:, :K, :K], directions[:, :K, K:] = dQ, dR
        directions[:, K:, :K] = np.swapaxes(dR, 1, 2)
        tables = flow_model(T, lr, noise, K, np.inf, carried=True).tables
        phi_q, phi_jacobian = finite_lr_term_derivatives(omega, carried, directions, float(noise), K, tables, h)
        if jacobian:
            matrix = lr * _gradient_jacobian(Q, R, T, h) + lr**2 * _phi_vector(phi_jacobian, K, M).T
    elif eta2:  # aligned or dead units: the quadrature, differenced
        phi_q = unchecked_finite_lr_expectation(Q, R, T, noise)
        if jacobian:
            matrix = quadrature_jacobian(Q, R, T, lr, eta2, noise, step)
    elif jacobian:
        matrix = lr * _gradient_jacobian(Q, R, T, h)
    phi = _phi_vector(phi_q, K, M)
    return RightHandSide(lr * gradient + lr**2 * phi, gradient, phi, matrix)


def _phi_vector(phi_q, K, M):
    """``(Phi_kl (k <= l), 0)`` (..., N) from ``Phi`` (..., K, K)."""
    return state_vector(phi_q, np.zeros(phi_q.shape[:-2] + (K, M)))


def _gradient_jacobian(Q, R, T, h):
    """``dg/dx`` (N, N) by central differences of the batched gradient-flow velocity."""
    K, M = R.shape
    dQ, dR = _unit_directions(K, M)
    plus = state_vector(*gradient_flow_velocity(Q + h * dQ, R + h * dR, T))
    minus = state_vector(*gradient_flow_velocity(Q - h * dQ, R - h * dR, T))
    return ((plus - minus) / (2 * h)).T


def quadrature_jacobian(Q, R, T, lr, eta2=True, noise=0.0, step=STEP):
    """``d (dx/dt) / dx`` (N, N) by central differences of :func:`landscape.dynamics.ode_solvers.ode_velocity`
    (the ``eta^2`` term by quadrature at every evaluation): ``2 N`` quadratures, for points where the
    carried derivatives do not apply, and an implementation independent of :func:`right_hand_side`."""
    K, M = R.shape
    h = step * max(1.0, float(np.max(np.abs(state_vector(Q, R)))))
    columns = []
    for dQ, dR in zip(*_unit_directions(K, M)):
        plus = ode_velocity(Q + h * dQ, R + h * dR, T, lr, eta2, noise)
        minus = ode_velocity(Q - h * dQ, R - h * dR, T, lr, eta2, noise)
        columns.append((state_vector(*plus) - state_vector(*minus)) / (2 * h))
    return np.column_stack(columns)
