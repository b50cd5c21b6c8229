"""Linear stability of fixed points of the summary-statistics ODE (docs/theory.md section 3).

Coordinates
-----------
The state is ``x = (Q_kl for k <= l, R_km)`` (row-major), of size ``N = K (K + 1) / 2 + K M``:
the coordinates of the ODE itself, with the rotations of the input space already quotiented out.
:func:`ode_jacobian` is the ``N x N`` Jacobian of ``dx/dt`` (the full right-hand side
:func:`landscape.dynamics.ode.ode_velocity`, ``eta^2`` term and label noise included).

It is computed by :func:`landscape.dynamics.jacobian.right_hand_side`: the four-point term's
derivatives by Price's theorem (compiled, no quadrature away from the point), the gradient-flow
part by central differences; where two units are (nearly) aligned, by differences of the
quadrature right-hand side.

Where the Jacobian exists
-------------------------
The ODE is smooth in ``(Q, R)`` inside the cone of Gram matrices. On its boundary (units inside the
teacher span, e.g. the realisable global minimum ``Q = R = T``) the velocity behaves like a square
root of the distance to the boundary and has no ``(Q, R)`` Jacobian; the fixed points of the full
ODE with label noise lie inside (the noise inflates the student norms out of the teacher span).

Gradient-flow regime (``eta2`` off)
-----------------------------------
The ODE is the image of gradient flow in the weights, ``du_k/dt = -lr grad_{u_k} L``, whose
Jacobian is ``-lr H`` (``H`` the Hessian of ``L``). Critical points of ``L`` mostly lie on the
boundary of the cone, so :func:`gradient_flow_eigenvalues` builds the ``(Q, R)`` linearisation from
the exact Hessian spectrum instead: ``-lr`` times the span-block eigenvalues (rotation zero modes
removed) and ``-lr (h_i + h_j)`` for pairs of bulk eigenvalues ``h`` (the Gram matrix of the
student components outside the span of all units evolves as ``dS/dt = -lr (H_bulk S + S H_bulk)``).
It is the limit of :func:`ode_jacobian` along fixed points of the full ODE that approach the
boundary from inside (tested on the noisy global-minimum branch as ``lr -> 0``). Its signs are
those of the Hessian: a critical point of ``L`` is an attractive fixed point of the gradient-flow ODE
exactly when ``H`` has no negative eigenvalue and no zero eigenvalue besides its exact zero modes
(rotations, the flat directions of split units).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ..dynamics.jacobian import STEP, overlaps_from_state, right_hand_side, state_vector
from ..kernels.fourpoint import unchecked_finite_lr_expectation
from ..kernels.overlaps import validate_overlaps
from .hessian import hessian_spectrum

__all__ = [
    "StabilityStatus",
    "Stability",
    "state_vector",
    "overlaps_from_state",
    "ode_jacobian",
    "lr_derivative",
    "fixed_point_stability",
    "stability_from_jacobian",
    "stability_from_spectrum",
    "gradient_flow_eigenvalues",
]

#: Eigenvalues with ``|Re| <= _ZERO_TOL * max(1, max |lambda|)`` are zero: neither attracting nor repelling.
_ZERO_TOL = 1e-7
#: Smallest eigenvalue of the Schur complement ``Q - R T^+ R^T`` (relative) inside the cone.
_CONE_TOL = 1e-9
#: Gradient-flow eigenvalues this small (relative) are the exact zero modes of flat directions.
_FLAT_TOL = 1e-6


class StabilityStatus(enum.Enum):
    """How the stability of a fixed point was decided; the value is a readable message."""

    JACOBIAN = "eigenvalues of the ODE Jacobian in (Q, R)"
    HESSIAN = "gradient-flow regime: (Q, R) linearisation from the exact Hessian of L, exact zero modes removed"
    REALISABLE = ("realisable minimum without label noise: gradient flow inside the teacher span, the "
                  "out-of-span block of docs/theory.md eq. (3.10) outside it")
    BOUNDARY = ("the point lies on the boundary of the Gram-matrix cone, where the (Q, R) right-hand side "
                "has no Jacobian; stability not decided")


@dataclass(frozen=True)
class Stability:
    """Linear stability of a fixed point of the summary-statistics ODE.

    Attributes
    ----------
    eigenvalues : ndarray of complex, shape (N,)
        Eigenvalues of the linearisation, by decreasing real part (exact zero modes removed).
    max_real_eigenvalue : float
        Largest real part (NaN if not decided).
    attractive : bool
        All real parts below ``-1e-7 max(1, max |lambda|)``.
    n_zero_modes : int
        Exact zero modes removed before deciding (rotations, flat directions; gradient-flow regime).
    success : bool
        Whether stability was decided.
    status : StabilityStatus
    message : str
    """

    eigenvalues: np.ndarray
    max_real_eigenvalue: float
    attractive: bool
    n_zero_modes: int
    success: bool
    status: StabilityStatus
    message: str

    def to_dict(self):
        """``{"attractive", "max_real_eigenvalue", "eigenvalues"}``; complex eigenvalues as ``[re, im]``
        pairs, real ones as numbers (the ``stability`` field of a catalogue point)."""
        values = [float(v.real) if v.imag == 0 else [float(v.real), float(v.imag)] for v in self.eigenvalues]
        return {"attractive": bool(self.attractive), "max_real_eigenvalue": float(self.max_real_eigenvalue),
                "eigenvalues": values}

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict` (status ``JACOBIAN``: the record does not keep it).

        Raises
        ------
        ValueError
            If a key is missing or malformed.
        """
        try:
            values = np.array([complex(v[0], v[1]) if isinstance(v, (list, tuple)) else complex(float(v), 0.0)
                               for v in data["eigenvalues"]], dtype=complex)
            top = float(data["max_real_eigenvalue"])
            return cls(values, top, bool(data["attractive"]), 0, bool(np.isfinite(top)), StabilityStatus.JACOBIAN,
                       "read from a record")
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ValueError(f"not a stability record: {error!r}") from None


def _inside_cone(Q, R, T):
    spanned = R @ np.linalg.pinv(T) @ R.T
    schur = np.linalg.eigvalsh(0.5 * (Q - spanned + (Q - spanned).T))
    return schur.size == 0 or schur[0] > _CONE_TOL * max(1.0, float(np.max(np.diag(Q))))


def ode_jacobian(Q, R, T, lr, eta2=True, noise=0.0, step=STEP):
    """Jacobian of the ODE right-hand side in the coordinates ``x = (Q_kl (k <= l), R)``.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)
    lr : float
        Learning rate (positive).
    eta2 : bool, optional
        Include the ``lr^2`` term.
    noise : float, optional
        Label-noise variance (``>= 0``).
    step : float, optional
        Central-difference step, relative to ``max(1, max |x|)``.

    Returns
    -------
    ndarray, shape (N, N)
        ``J[i, j] = d (dx_i/dt) / d x_j`` with ``N = K (K + 1) / 2 + K M``.

    Raises
    ------
    ValueError
        If the overlaps are invalid, ``lr``, ``noise`` or ``step`` are out of range, or the point is
        on the boundary of the Gram-matrix cone (no Jacobian there; see the module notes).
    """
    Q, R, T = validate_overlaps(Q, R, T)
    lr, noise = _check_lr(lr), _check_noise(noise)
    if not (isinstance(step, (int, float, np.floating)) and 0 < step < 0.1):
        raise ValueError(f"step must be a number in (0, 0.1), got {step!r}")
    if not _inside_cone(Q, R, T):
        raise ValueError("the point lies on the boundary of the Gram-matrix cone (students inside the teacher "
                         "span): the (Q, R) right-hand side has no Jacobian there")
    return _jacobian(Q, R, T, lr, bool(eta2), noise, step)


def _jacobian(Q, R, T, lr, eta2, noise, step=STEP):
    return right_hand_side(Q, R, T, lr, eta2, noise, step=step).jacobian


def lr_derivative(Q, R, T, lr, eta2=True, noise=0.0):
    """``d/d lr`` of the scaled right-hand side ``(dx/dt) / lr = g(x) + lr Phi(x)``: ``Phi``, shape (N,).

    ``g`` is the gradient-flow velocity and ``Phi`` the ``eta^2`` expectation (zero without ``eta2``);
    this is the parameter derivative of the continuation in ``lr``.
    """
    K, M = R.shape
    if not eta2:
        return np.zeros(K * (K + 1) // 2 + K * M)
    return state_vector(unchecked_finite_lr_expectation(Q, R, T, noise), np.zeros((K, M)))


def stability_from_jacobian(jacobian, n_zero_modes=0):
    """:class:`Stability` from a Jacobian (status ``JACOBIAN``).

    Parameters
    ----------
    jacobian : ndarray, shape (N, N)
    n_zero_modes : int, optional
        Known exact zero modes: that many eigenvalues of smallest modulus are removed first.

    Returns
    -------
    Stability
    """
    values = np.linalg.eigvals(np.asarray(jacobian, dtype=float))
    return _stability(values, n_zero_modes, StabilityStatus.JACOBIAN)


def stability_from_spectrum(eigenvalues, status):
    """:class:`Stability` from the eigenvalues (N,) of a linearisation obtained another way (``status`` says how)."""
    return _stability(eigenvalues, 0, status)


def _stability(values, n_zero_modes, status):
    values = np.asarray(values, dtype=complex)
    if n_zero_modes:
        values = values[np.argsort(np.abs(values), kind="stable")[n_zero_modes:]]
    values = values[np.lexsort((-values.imag, -values.real))]
    scale = max(1.0, float(np.max(np.abs(values)))) if values.size else 1.0
    top = float(values.real.max()) if values.size else -np.inf
    attractive = top < -_ZERO_TOL * scale
    verdict = "attractive" if attractive else ("marginal" if top <= _ZERO_TOL * scale else "unstable")
    return Stability(values, top, bool(attractive), int(n_zero_modes), True, status,
                     f"{verdict}: largest real part {top:.3e} ({status.value})")


def fixed_point_stability(Q: ArrayLike, R: ArrayLike, T: ArrayLike, lr: float, eta2: bool = True, noise: float = 0.0,
                          W: ArrayLike | None = None, W_teacher: ArrayLike | None = None) -> Stability:
    """Linear stability of a fixed point of the ODE of one-pass SGD.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)
    lr : float
        Learning rate (positive). In the gradient-flow regime the eigenvalues scale with it (use 1
        for rates per unit of ``lr t``).
    eta2 : bool, optional
        False: gradient-flow regime (:func:`gradient_flow_eigenvalues`, from the exact Hessian; valid
        on the boundary of the cone too). True: the Jacobian of the full ODE (:func:`ode_jacobian`).
    noise : float, optional
        Label-noise variance.
    W, W_teacher : array_like, optional
        Weights with these overlaps (gradient-flow regime: exact residuals of aligned units).

    Returns
    -------
    Stability
        ``success`` False (status ``BOUNDARY``) for the full ODE at a point on the boundary of the cone.

    Raises
    ------
    ValueError
        If the overlaps, ``lr`` or ``noise`` are invalid.
    """
    Q, R, T = validate_overlaps(Q, R, T)
    lr, noise = _check_lr(lr), _check_noise(noise)
    K, M = R.shape
    if not eta2:
        values = gradient_flow_eigenvalues(Q, R, T, lr, W=W, W_teacher=W_teacher)
        scale = max(1.0, float(np.max(np.abs(values))))
        flat = int(np.sum(np.abs(values) <= _FLAT_TOL * scale))
        return _stability(values, flat, StabilityStatus.HESSIAN)
    if not _inside_cone(Q, R, T):
        return Stability(np.zeros(0, dtype=complex), float("nan"), False, 0, False, StabilityStatus.BOUNDARY,
                         StabilityStatus.BOUNDARY.value)
    return stability_from_jacobian(_jacobian(Q, R, T, lr, True, noise))


def gradient_flow_eigenvalues(Q, R, T, lr, W=None, W_teacher=None):
    """Eigenvalues of the ``(Q, R)`` linearisation of the gradient-flow ODE at a critical point of ``L``.

    With ``H_span`` (``K r`` eigenvalues, ``r`` the dimension of the span of all units) and the bulk
    eigenvalues ``h_1..h_K`` of the Hessian (:func:`landscape.critical_points.hessian.hessian_spectrum`),
    and ``p = r - rank T`` the dimension of the student span outside the teacher span::

        spec J = -lr [ spec H_span without its p (p - 1) / 2 rotation zero modes ]
                 U -lr [ h_i + h_j, i <= j, over the K - p bulk eigenvalues that are not
                         forced to zero (G E = 0 for the p out-of-span directions E) ]

    (``N = K (K + 1) / 2 + K M`` values). Inside the cone (``p = K``) this is the chain rule; on its
    boundary the first set is the motion inside the span (smooth in the weights) and the second
    that of ``S = Q - R T^+ R^T``, ``dS/dt = -2 lr (G S + S G)`` with ``2 G`` the bulk block: the
    limit of the Jacobian of the full ODE along fixed points approaching the boundary from inside
    (tested: the noisy global-minimum branch as ``lr -> 0``).

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)
    lr : float
    W, W_teacher : array_like, optional
        Weights with these overlaps (exact residuals of aligned units).

    Returns
    -------
    ndarray, shape (N,)
        Real eigenvalues, in no particular order.

    Raises
    ------
    ValueError
        If the overlaps or ``lr`` are invalid.
    """
    Q, R, T = validate_overlaps(Q, R, T)
    lr = _check_lr(lr)
    K, M = R.shape
    spectrum = hessian_spectrum(Q, R, T, K + M, W=W, W_teacher=W_teacher)
    p = max(spectrum.rank - int(np.linalg.matrix_rank(T)), 0)
    span = spectrum.span_eigenvalues[np.argsort(np.abs(spectrum.span_eigenvalues), kind="stable")[p * (p - 1) // 2:]]
    bulk = spectrum.bulk_eigenvalues[np.argsort(np.abs(spectrum.bulk_eigenvalues), kind="stable")[p:]]
    i, j = np.triu_indices(bulk.size)
    return -lr * np.concatenate([span, bulk[i] + bulk[j]])


def _check_lr(lr):
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)) or not np.isfinite(lr) \
            or lr <= 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    return float(lr)


def _check_noise(noise):
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.integer, np.floating)) \
            or not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    return float(noise)
