"""The realisable global minimum without label noise: a fixed point at every lr, and where it stops attracting.

With ``K = M``, no label noise and student ``k`` equal to teacher ``k`` (``Q = R = T``) the
residual ``f - y`` vanishes, so does the ``eta^2`` term, and the point is a fixed point of the
full ODE at every learning rate, on the boundary of the Gram-matrix cone (the students lie in the
teacher span). There the ``(Q, R)`` right-hand side has no Jacobian, but the linearisation splits
(docs/theory.md section 3.1, eq. (3.10)):

- inside the teacher span the deviations move by gradient flow, ``-lr`` times the span block of
  the Hessian (the ``eta^2`` term is quadratic in the deviations): the span eigenvalues of
  :func:`landscape.critical_points.stability.gradient_flow_eigenvalues`;
- the Gram matrix ``S`` (K, K) of the student components outside the span, of the order of the
  squared deviations, obeys to leading order the linear ODE

      dS/dt = lr [ -(P2 S + S P2) + lr B(S) ],   B(S)_kl = sum_ij P4(k, l, i, j) S_ij,

  with ``P2_kl = P(nu_k > 0, nu_l > 0)`` (the bulk block of the Hessian: the Gauss-Newton matrix
  at zero residual) and ``P4`` the orthant probabilities of four teacher fields (repeated fields
  merged): for an out-of-span deviation ``eps_j``, ``f - y = sum_j step(nu_j) eps_j . x`` to
  first order, so ``E[step_k step_l (f - y)^2] = B(S)``.

The second block is what the learning rate changes: its largest eigenvalue crosses zero at
``lr_c = 1 / rho(D^-1 B)`` (``D S = P2 S + S P2``; ``B`` maps positive semi-definite matrices to
positive semi-definite ones, so its Perron root is real). Below ``lr_c`` the minimum attracts
the flows from its neighbourhood, above it the out-of-span components grow (tested against flows).
For ``K = M = 1`` this gives ``lr_c = 2``, as for linear regression with the Saad-Solla scaling.
"""

from __future__ import annotations

import numpy as np

from ..kernels.orthant import orthant_probability_2, orthant_probability_4
from ..kernels.overlaps import validate_overlaps
from ..model.loss import loss_from_overlaps
from .continuation import Branch, BranchEvent, BranchStatus, EventKind
from .stability import StabilityStatus, gradient_flow_eigenvalues, stability_from_spectrum

__all__ = ["REALISABLE_LOSS", "is_realisable_minimum", "out_of_span_operator", "realisable_spectrum",
           "critical_lr", "realisable_branch"]

#: A catalogue point with ``K = M`` and a loss below this is the realisable global minimum.
REALISABLE_LOSS = 1e-12


def is_realisable_minimum(Q, R, T):
    """Whether ``(Q, R)`` is the realisable global minimum of ``K = M`` students (loss ``< REALISABLE_LOSS``)."""
    Q, R, T = (np.asarray(a, dtype=float) for a in (Q, R, T))
    return R.shape[0] == R.shape[1] and float(loss_from_overlaps(Q, R, T)) < REALISABLE_LOSS


def _symmetric_basis(K):
    """Basis ``E_ab`` (n_s, K, K) of the symmetric matrices (``a <= b``) and the coordinates of one (upper triangle)."""
    a, b = np.triu_indices(K)
    basis = np.zeros((a.size, K, K))
    basis[np.arange(a.size), a, b] = 1.0
    basis[np.arange(a.size), b, a] = 1.0
    return basis, (a, b)


def out_of_span_operator(T):
    """``D`` and ``B`` of the out-of-span block as matrices (n_s, n_s) on the symmetric matrices.

    Parameters
    ----------
    T : ndarray, shape (M, M)
        Teacher overlaps (positive definite).

    Returns
    -------
    D, B : ndarray, shape (M (M + 1) / 2, M (M + 1) / 2)
        ``dS/dt = lr (-D + lr B) S`` in the coordinates ``S_ab (a <= b)``.
    """
    sd = np.sqrt(np.diag(T))
    corr = T / np.outer(sd, sd)
    np.fill_diagonal(corr, 1.0)
    K = T.shape[0]
    index = np.stack(np.meshgrid(*(np.arange(K),) * 4, indexing="ij"), -1).reshape(-1, 4)
    p4 = orthant_probability_4(corr[index[:, :, None], index[:, None, :]]).reshape((K,) * 4)
    p2 = orthant_probability_2(corr)  # the bulk block of the Hessian at zero residual
    basis, (a, b) = _symmetric_basis(K)
    drift = p2 @ basis + basis @ p2
    forcing = np.einsum("klij,sij->skl", p4, basis)
    return drift[:, a, b].T, forcing[:, a, b].T


def _out_of_span_eigenvalues(D, B, lr):
    return lr * np.linalg.eigvals(-D + lr * B)


def critical_lr(T):
    """``lr_c = 1 / rho(D^-1 B)``: where the realisable minimum (no label noise) stops attracting.

    Parameters
    ----------
    T : array_like, shape (M, M)

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``T`` is not a valid (positive definite) teacher matrix.
    """
    T = _check_teacher(T)
    D, B = out_of_span_operator(T)
    values = np.linalg.eigvals(np.linalg.solve(D, B))
    return float(1.0 / np.max(values.real))


def _check_teacher(T):
    T = np.asarray(T, dtype=float)
    validate_overlaps(T, T, T)
    if np.linalg.eigvalsh(T)[0] <= 1e-12 * max(1.0, float(np.max(np.diag(T)))):
        raise ValueError("the teacher matrix T must be positive definite (linearly independent teacher vectors)")
    return T


def realisable_spectrum(T, lr):
    """Eigenvalues (N,) of the linearisation at the realisable minimum ``Q = R = T`` without label noise.

    The span block of :func:`landscape.critical_points.stability.gradient_flow_eigenvalues` and
    ``lr`` times the eigenvalues of ``-D + lr B`` (see the module notes), ``N = K (K + 1) / 2 + K M``.

    Raises
    ------
    ValueError
        If ``T`` is invalid or ``lr`` is not positive.
    """
    T = _check_teacher(T)
    K = T.shape[0]
    span = gradient_flow_eigenvalues(T, T, T, lr)[: K * K]  # the K M span values come first
    D, B = out_of_span_operator(T)
    return np.concatenate([span, _out_of_span_eigenvalues(D, B, lr)])


def realisable_branch(Q, R, T, lr, lr_max, n_points=60):
    """The branch of the realisable minimum without label noise, from ``lr`` to ``lr_max``: the point
    itself at every lr, its stability from :func:`realisable_spectrum`, and a ``stability_change``
    event at :func:`critical_lr` when that lies in the range.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
        The minimum (``K = M``, loss below ``REALISABLE_LOSS``; any labelling of the students).
    T : array_like, shape (M, M)
    lr, lr_max : float
        The range (``0 < lr < lr_max``).
    n_points : int, optional
        Points of the branch, evenly spaced in lr (the critical lr is added).

    Returns
    -------
    Branch
        Status ``REACHED_LR_MAX``.

    Raises
    ------
    ValueError
        If the point is not the realisable minimum, or ``lr``, ``lr_max`` or ``n_points`` are out of range.
    """
    Q, R, T = validate_overlaps(Q, R, T)
    T = _check_teacher(T)
    if not is_realisable_minimum(Q, R, T):
        K, M, loss = R.shape[0], R.shape[1], float(loss_from_overlaps(Q, R, T))
        if K > M and loss < REALISABLE_LOSS:
            raise ValueError(f"without label noise a zero-loss minimum of K = {K} > M = {M} students lies on the boundary "
                             "of the Gram-matrix cone, where the ODE has no Jacobian, so it cannot be continued in lr: "
                             "set a label noise > 0, or K = M")
        raise ValueError(f"not the realisable global minimum of K = M students (loss < {REALISABLE_LOSS:.0e}): "
                         f"K = {K}, M = {M}, loss = {loss:.3e}")
    if not (np.isfinite(lr) and np.isfinite(lr_max) and 0 < lr < lr_max):
        raise ValueError(f"need 0 < lr < lr_max, got lr = {lr!r}, lr_max = {lr_max!r}")
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 2:
        raise ValueError(f"n_points must be a whole number >= 2, got {n_points!r}")
    threshold = critical_lr(T)
    grid = np.linspace(float(lr), float(lr_max), int(n_points))
    if lr < threshold < lr_max:
        grid = np.sort(np.append(grid, threshold))
    stabilities = [stability_from_spectrum(realisable_spectrum(T, value), StabilityStatus.REALISABLE) for value in grid]
    events = ()
    if lr < threshold < lr_max:
        after = int(np.searchsorted(grid, threshold)) - 1
        events = (BranchEvent(EventKind.STABILITY_CHANGE, threshold, 0.0, max(after, 0), Q, R),)
    n = grid.size
    message = (f"{BranchStatus.REACHED_LR_MAX.value}: the realisable minimum without label noise is a fixed point "
               f"at every lr; it stops attracting at lr = {threshold:.6g}")
    return Branch(
        s=grid - grid[0], lr=grid, loss=np.zeros(n), Q=np.repeat(Q[None], n, 0), R=np.repeat(R[None], n, 0),
        stable=np.array([st.attractive for st in stabilities]),
        max_real_eigenvalue=np.array([st.max_real_eigenvalue for st in stabilities]),
        eigenvalues=np.array([st.eigenvalues for st in stabilities]), events=events, success=True,
        status=BranchStatus.REACHED_LR_MAX, message=message,
    )
