"""Four-point expectations carried along a trajectory of the ODE (Price's theorem).

The ``eta^2`` term of the ODE needs, for every quadruple of four distinct units, the expectation
``F = E[step(a) step(b) relu(c) relu(d)]``, and each costs a path integral
(:mod:`landscape.fourpoint`, 43 nodes per pair). Along a trajectory, though, ``F`` and the orthant
probability ``P4`` of each quadruple change by elementary amounts. For unit variances, Price's
theorem ``dE[g] / d rho_ij = E[d_i d_j g]`` gives::

    dP4 / d rho_ij = phi2(rho_ij) W_ij
    dF  / d rho_cd = P4
    dF  / d rho_ab = phi2(rho_ab) K_ab
    dF  / d rho_ac = sum_{j != a} C'_{dj} phi2(rho_aj) W_aj     (a step, c relu, d the other relu)

with ``W_ij`` and ``K_ij`` the orthant probability and arc-cosine kernel of the complementary pair
given ``x_i = x_j = 0``, and ``C'`` the covariance given ``x_a = 0``: closed forms. So the
``(P4, F)`` of every quadruple join the ODE state. Their initial values come from the exact
quadrature; afterwards they are integrated with the same error control as the overlaps, and one
right-hand side costs one closed-form evaluation per pair instead of a 43-node quadrature.
Quadruples with a repeated unit are elementary and are evaluated directly at every step.

Near alignment (``|rho_ij| -> 1``, units converging onto a teacher) the conditional quantities are
ratios of small numbers and lose accuracy, but they are bounded and multiplied by
``phi2(rho) d rho / dt = -d sqrt(1 - rho^2) / dt / (2 pi)`` up to bounded factors: their
integrated contribution is at most ``~sqrt(eps)``. Closer than ``ALIGNMENT_MARGIN`` to alignment
the rates themselves are no longer resolved and the integrator's step collapses, and exactly
duplicated or dead units have no derivative at all: there the ODE uses the quadrature
(:func:`carried_four_point_applies` at the start, a handover during the run).
"""

from __future__ import annotations

import functools

import numpy as np

from .fourpoint import (
    _PAIR_INDEX,
    _TERM_A,
    _TERM_B,
    _TERM_J,
    _TERM_PARTNER,
    _TERM_TO_PAIR,
    _REDUCED_FORMS,
    _reduced_value,
    _reduction,
    _relu4_distinct,
    _relu_four_point,
    _unit_quadruples,
)
from .loss import gradient_flow_velocity
from .orthant import _PAIRS, _p2

__all__ = []  # internal to the ODE

# Configurations with two units this close to (anti-)alignment (1 - |rho|), or a unit this close
# to zero norm (relative to the largest), are left to the quadrature: the derivatives contain
# phi2(rho) ~ 1 / sqrt(1 - rho^2) times rates that rounding no longer resolves, and the step size
# of the integrator collapses (seen at 1 - rho ~ 1e-10 on a flow converging onto a teacher).
ALIGNMENT_MARGIN = 1e-8
_DEAD_NORM = 1e-12
# Smallest 1 - rho^2 of a pair in the derivatives (a few ulps).
_DET_PAIR_FLOOR = 1e-15

# Quadruple correlations are kept as pair vectors (n, 7): the six pairs in the order of _PAIRS,
# then the diagonal (1 for correlations, 0 for their rates). _SLOT[a, b] is the column of (a, b).
_SLOT = np.where(np.eye(4, dtype=bool), 6, _PAIR_INDEX)
_FIRST, _SECOND, _THIRD, _FOURTH = (_PAIRS[:, m] for m in range(4))
# Columns of r_ik, r_il, r_jk, r_jl, r_kl for the six pairs (i, j) with complement (k, l).
_COMPLEMENT_COLUMNS = np.concatenate([
    _SLOT[a, b] for a, b in ((_FIRST, _THIRD), (_FIRST, _FOURTH), (_SECOND, _THIRD), (_SECOND, _FOURTH), (_THIRD, _FOURTH))
])
# The mixed Stein terms of landscape.fourpoint._mixed_terms, as columns of the pair vector.
_TERM_PAIR = np.argmax(_TERM_TO_PAIR, axis=1)
# Columns of rate_ab, rho_b'j, rho_b'a and rho_aj for each term.
_TERM_COLUMNS = np.concatenate([
    _SLOT[_TERM_A, _TERM_B], _SLOT[_TERM_PARTNER, _TERM_J], _SLOT[_TERM_PARTNER, _TERM_A], _SLOT[_TERM_A, _TERM_J]
])
_N_TERMS = _TERM_PAIR.size
_STEP_PAIR = _PAIR_INDEX[0, 1]
_RELU_PAIR = _PAIR_INDEX[2, 3]


def _correlations(omega):
    """Standard deviations (n,) and correlation matrix (n, n) of a covariance with positive diagonal."""
    sd = np.sqrt(np.diagonal(omega))
    corr = omega / np.outer(sd, sd)
    np.fill_diagonal(corr, 1.0)
    return sd, np.clip(corr, -1.0, 1.0)


def _pair_vector(matrix, quadruples, diagonal):
    """Entries ``matrix[q_a, q_b]`` of each quadruple as a pair vector (n, 7)."""
    out = np.empty((quadruples.shape[0], 7))
    out[:, :6] = matrix[quadruples[:, _FIRST], quadruples[:, _SECOND]]
    out[:, 6] = diagonal
    return out


def _pair_terms(corr):
    """``phi2 W`` and ``phi2 K`` of the six pairs of each quadruple (unit variances), shapes (n, 6).

    ``corr`` is a pair vector (n, 7). For the pair ``(i, j)`` with complement ``(k, l)``: the
    determinants of the ``(i, j, k)`` and ``(i, j, l)`` blocks and the cross cofactor are computed
    by elimination on ``x_i`` (partial covariances ``p``), as in :mod:`landscape.orthant`; they
    are ``det_pair`` times the conditional variances and covariance of ``(k, l)`` given
    ``x_i = x_j = 0``.
    """
    rho = corr[:, :6]
    r_ik, r_il, r_jk, r_jl, r_kl = np.moveaxis(corr[:, _COMPLEMENT_COLUMNS].reshape(-1, 5, 6), 1, 0)
    det_pair = (1.0 - rho) * (1.0 + rho)
    p_jk = r_jk - rho * r_ik
    p_jl = r_jl - rho * r_il
    cross = det_pair * (r_kl - r_ik * r_il) - p_jl * p_jk
    var_k = np.maximum(det_pair * (1.0 - r_ik) * (1.0 + r_ik) - p_jk * p_jk, 0.0)
    var_l = np.maximum(det_pair * (1.0 - r_il) * (1.0 + r_il) - p_jl * p_jl, 0.0)
    scale = np.sqrt(var_k * var_l)
    # Where a complementary variable lies in the span of the pair, W is undefined but bounded; any
    # value in [0, 1/2] does, since it is multiplied by a vanishing rate.
    r = np.clip(np.divide(cross, scale, out=np.zeros_like(cross), where=scale > 0), -1.0, 1.0)
    W = 0.25 + np.arcsin(r) / (2.0 * np.pi)
    # Rounding puts pairs within ~eps of alignment anywhere in [0, eps] (or past 1 in a trial
    # stage); the floor keeps phi2 finite there, where rho has stopped moving to working precision.
    det_pair = np.maximum(det_pair, _DET_PAIR_FLOOR)
    phi2 = 1.0 / (2.0 * np.pi * np.sqrt(det_pair))
    # K = (sqrt(v_k v_l - c^2) + c (pi - acos r)) / (2 pi) with v, c = (var, cross) / det_pair,
    # a conditional E[relu relu] of unit-bounded variances: in [0, 1/2] whatever the rounding.
    kernel = np.sqrt(np.maximum(var_k * var_l - cross * cross, 0.0)) / (2.0 * np.pi) + cross * W
    kernel = np.clip(kernel / det_pair, 0.0, 0.5)
    return phi2 * W, phi2 * kernel


def _quadruple_derivatives(corr, rate, p4):
    """``dP4/dt`` and ``dF/dt`` (n,) of quadruples in role order (step, step, relu, relu).

    ``corr`` and ``rate`` are pair vectors (n, 7) of the correlations and of their time derivatives.
    """
    phi2_w, phi2_k = _pair_terms(corr)
    pair_rate = rate[:, :6]
    d_p4 = np.sum(phi2_w * pair_rate, axis=1)
    n = _N_TERMS
    gathered = corr[:, _TERM_COLUMNS[n:]]
    given_a = gathered[:, :n] - gathered[:, n : 2 * n] * gathered[:, 2 * n :]
    mixed = np.einsum("nt,nt,nt->n", rate[:, _TERM_COLUMNS[:n]], given_a, phi2_w[:, _TERM_PAIR])
    d_f = p4 * pair_rate[:, _RELU_PAIR] + phi2_k[:, _STEP_PAIR] * pair_rate[:, _STEP_PAIR] + mixed
    return d_p4, d_f


class _RepeatedUnits:
    """Closed forms for the quadruples ``(k, l, i, j)`` with a repeated unit.

    The reduction of :func:`landscape.fourpoint._relu_four_point`, decided once from the unit
    labels instead of from the values: a repeated unit is one variable raised to the number of
    relus it absorbs (``step(x) relu(x) = relu(x)``), leaving an elementary expectation of two
    or three distinct variables, scaled by ``sd_i sd_j``.
    """

    def __init__(self, quadruples):
        q = quadruples
        representative = np.argmax(q[:, :, None] == q[:, None, :], axis=-1)
        count, squared, order = _reduction(representative)
        labels = np.take_along_axis(q, order, axis=1)
        rows = {case: np.flatnonzero((count == case[0]) & (squared == case[1])) for case in _REDUCED_FORMS}
        self.cases = [(case, rows[case], labels[rows[case]]) for case in _REDUCED_FORMS]
        self.relu_units = q[:, 2], q[:, 3]
        self.quadruples = q
        self.size = q.shape[0]

    def values(self, corr, sd):
        """Expectations (n,) for the unit correlation matrix ``corr`` and standard deviations ``sd``."""
        out = np.empty(self.size)
        for case, rows, labels in self.cases:
            out[rows] = _reduced_value(case, lambda a, b: corr[labels[:, a], labels[:, b]])
        out = np.maximum(out, 0.0) * sd[self.relu_units[0]] * sd[self.relu_units[1]]
        # Distinct units that rounding has made exactly (anti-)aligned (a flow converging onto
        # a teacher) are one variable: the general reduction merges them by value.
        if np.count_nonzero(np.abs(corr) >= 1.0) > corr.shape[0]:  # beyond the unit diagonal
            q = self.quadruples
            quadruple_corr = corr[q[:, :, None], q[:, None, :]]
            merged = np.any((np.abs(quadruple_corr) >= 1.0) & (q[:, :, None] != q[:, None, :]), axis=(1, 2))
            if np.any(merged):
                q = q[merged]
                cov = quadruple_corr[merged] * (sd[q][:, :, None] * sd[q][:, None, :])
                out[merged] = _relu_four_point(cov)
        return out


def carried_four_point_applies(Q, R, T):
    """Whether the four-point term can be carried from ``(Q, R, T)``: all units alive and no two
    (anti-)aligned. Otherwise the derivatives are 0/0 and the ODE uses the quadrature."""
    omega = np.block([[Q, R], [R.T, T]])
    variance = np.diagonal(omega)
    if np.min(variance) <= _DEAD_NORM * np.max(variance):
        return False
    _, corr = _correlations(omega)
    off = np.abs(corr[~np.eye(corr.shape[0], dtype=bool)])
    return off.size == 0 or float(np.max(off)) < 1.0 - ALIGNMENT_MARGIN


class CarriedFourPoint:
    """Bookkeeping of the carried four-point term for ``K`` students and ``M`` teachers.

    The carried state is ``(P4, F)`` per quadruple of four distinct units ``(k, l, i, j)``
    (students ``k < l``, units ``i < j``), each an array of shape (n,). Internal to the ODE.
    """

    def __init__(self, n_students, n_teachers):
        quadruples, (self._k, self._l), (i, j) = _unit_quadruples(n_students, n_students + n_teachers)
        q = quadruples
        distinct = (
            (q[:, 0] != q[:, 1]) & (q[:, 0] != q[:, 2]) & (q[:, 0] != q[:, 3])
            & (q[:, 1] != q[:, 2]) & (q[:, 1] != q[:, 3]) & (q[:, 2] != q[:, 3])
        )
        self.n_students = n_students
        self.distinct = distinct
        self.carried = q[distinct]
        self._repeated_quadruples = q[~distinct]
        self._repeated = _RepeatedUnits(self._repeated_quadruples)
        self.size = 2 * int(distinct.sum())
        sign = np.concatenate([np.ones(n_students), -np.ones(n_teachers)])
        # (i, j) and (j, i) are equal terms of the square (f - y)^2.
        self._weight = np.where(i == j, 1.0, 2.0) * sign[i] * sign[j]
        self._shape = (self._k.size, i.size)

    def _gather(self, matrix, quadruples):
        return matrix[quadruples[:, :, None], quadruples[:, None, :]]

    def initial_state(self, omega):
        """Exact ``(P4, F)`` by quadrature, concatenated, shape (size,)."""
        _, corr = _correlations(omega)
        # P4 from the path moments of F (43 nodes): within 1e-12 of the 73-node orthant rule for
        # generic correlations, and one path integral per set of four units instead of two.
        f, p4 = _relu4_distinct(self._gather(corr, self.carried), labels=self.carried, orthant=True)
        return np.concatenate([p4, f])

    def expectation(self, sd, corr, state, noise):
        """The ``eta^2`` expectation (K, K) from the carried state and closed forms.

        ``sd`` (n,) and ``corr`` (n, n) are the standard deviations and correlations of all units.
        """
        half = self.size // 2
        values = np.empty(self._shape[0] * self._shape[1])
        values[self.distinct] = state[half:] * sd[self.carried[:, 2]] * sd[self.carried[:, 3]]
        values[~self.distinct] = self._repeated.values(corr, sd)
        upper = values.reshape(self._shape) @ self._weight
        K = self.n_students
        out = np.empty((K, K))
        out[self._k, self._l] = upper
        out[self._l, self._k] = upper
        if noise > 0:
            out += noise * _p2(corr[:K, :K])
        return out

    def velocity(self, Q, R, T, lr, noise, state):
        """The full ODE with the carried four-point term.

        Returns ``dQ`` (K, K), ``dR`` (K, M) and the time derivative of ``state`` (size,).
        """
        K = self.n_students
        omega = np.empty((K + T.shape[0],) * 2)
        omega[:K, :K], omega[:K, K:], omega[K:, :K], omega[K:, K:] = Q, R, R.T, T
        sd, corr = _correlations(omega)
        flow_Q, flow_R = gradient_flow_velocity(Q, R, T)
        dQ = lr * flow_Q + lr**2 * self.expectation(sd, corr, state, noise)
        dR = lr * flow_R
        # d rho_ij = d omega_ij / (sd_i sd_j) - rho_ij (d omega_ii / 2 omega_ii + d omega_jj / 2 omega_jj)
        rate = np.zeros_like(omega)
        rate[:K, :K], rate[:K, K:], rate[K:, :K] = dQ, dR, dR.T
        relative = np.diagonal(rate) / (2.0 * sd * sd)
        corr_rate = rate / np.outer(sd, sd) - corr * (relative[:, None] + relative[None, :])
        half = self.size // 2
        d_p4, d_f = _quadruple_derivatives(
            _pair_vector(corr, self.carried, 1.0), _pair_vector(corr_rate, self.carried, 0.0), state[:half]
        )
        return dQ, dR, np.concatenate([d_p4, d_f])


@functools.lru_cache(maxsize=64)
def carried_four_point(n_students, n_teachers):
    """The :class:`CarriedFourPoint` of ``K`` students and ``M`` teachers, built once per size
    (its tables depend on nothing else; do not modify it)."""
    return CarriedFourPoint(n_students, n_teachers)
