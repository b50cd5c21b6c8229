"""Four-point expectations carried along a trajectory of the ODE (Price's theorem).

The ``eta^2`` term of the ODE needs, for every quadruple of four distinct units, the expectation
``F = E[step(a) step(b) relu(c) relu(d)]``, and each costs a path integral
(:mod:`landscape.kernels.fourpoint`, 16 to 43 nodes per pair). Along a trajectory, though, ``F`` and
the orthant probability ``P4`` of each quadruple change by elementary amounts. For unit
variances, Price's theorem ``dE[g] / d rho_ij = E[d_i d_j g]`` gives::

    dP4 / d rho_ij = phi2(rho_ij) W_ij
    dF  / d rho_cd = P4
    dF  / d rho_ab = phi2(rho_ab) K_ab
    dF  / d rho_ac = sum_{j != a} C'_{dj} phi2(rho_aj) W_aj     (a step, c relu, d the other relu)

with ``W_ij`` and ``K_ij`` the orthant probability and arc-cosine kernel of the complementary pair
given ``x_i = x_j = 0``, and ``C'`` the covariance given ``x_a = 0``: closed forms. So the
``(P4, F)`` of every quadruple join the ODE state. Their initial values come from the exact
quadrature; afterwards they are integrated with the same error control as the overlaps, and one
right-hand side costs one closed-form evaluation per pair instead of a quadrature.
Quadruples with a repeated unit are elementary and are evaluated directly at every step.

This module holds the bookkeeping (which quadruples are carried, their exact initial values, the
reductions of the others); the derivatives and closed forms are evaluated in compiled code by
:mod:`landscape.dynamics.compiled_flow`, whose tests check them against finite differences of the quadrature.

Near alignment (``|rho_ij| -> 1``, units converging onto a teacher) the conditional quantities are
ratios of small numbers and lose accuracy, but they are bounded and multiplied by
``phi2(rho) d rho / dt = -d sqrt(1 - rho^2) / dt / (2 pi)`` up to bounded factors: their
integrated contribution is at most ``~sqrt(eps)``. Closer than ``ALIGNMENT_MARGIN`` to alignment
the rates themselves are no longer resolved and the integrator's step collapses, and exactly
duplicated or dead units have no derivative at all: there the ODE uses the quadrature
(:func:`carried_four_point_applies` at the start, a handover during the run).

Eq. (4.9) of docs/theory.md (Price 1958).
"""

from __future__ import annotations

import functools

import numpy as np

from ..kernels.fourpoint import PAIR_INDEX, PAIRS, REDUCED_FORMS, reduction, relu4_on_sets, stable_order, unit_quadruples

__all__ = []  # internal to the ODE

# Configurations with two units this close to (anti-)alignment (1 - |rho|), or a unit this close
# to zero norm (relative to the largest), are left to the quadrature: the derivatives contain
# phi2(rho) ~ 1 / sqrt(1 - rho^2) times rates that rounding no longer resolves, and the step size
# of the integrator collapses (seen at 1 - rho ~ 1e-10 on a flow converging onto a teacher).
ALIGNMENT_MARGIN = 1e-8
_DEAD_NORM = 1e-12


def _correlations(omega):
    """Standard deviations (n,) and correlation matrix (n, n) of a covariance with positive diagonal."""
    sd = np.sqrt(np.diagonal(omega))
    corr = omega / np.outer(sd, sd)
    np.fill_diagonal(corr, 1.0)
    return sd, np.clip(corr, -1.0, 1.0)


def _repeated_unit_cases(quadruples):
    """The reduction of :func:`landscape.kernels.fourpoint._relu_four_point` for quadruples ``(k, l, i, j)``
    (n, 4) with a repeated unit, decided once from the unit labels instead of from the values.

    A repeated unit is one variable raised to the number of relus it absorbs
    (``step(x) relu(x) = relu(x)``), leaving an elementary expectation of two or three distinct
    variables. Returns, per key ``(distinct variables, squared relus)`` of ``REDUCED_FORMS``, the
    rows and the unit labels (rows, 4) in order of power.
    """
    representative = np.argmax(quadruples[:, :, None] == quadruples[:, None, :], axis=-1)
    count, squared, order = reduction(representative)
    labels = np.take_along_axis(quadruples, order, axis=1)
    rows = {case: np.flatnonzero((count == case[0]) & (squared == case[1])) for case in REDUCED_FORMS}
    return [(case, rows[case], labels[rows[case]]) for case in REDUCED_FORMS]


def carried_four_point_applies(Q, R, T):
    """Whether the four-point term can be carried from ``(Q, R, T)``: all units alive and no two
    within ``ALIGNMENT_MARGIN`` of (anti-)alignment. Otherwise the ODE uses the quadrature."""
    omega = np.block([[Q, R], [R.T, T]])
    variance = np.diagonal(omega)
    if np.min(variance) <= _DEAD_NORM * np.max(variance):
        return False
    _, corr = _correlations(omega)
    off = np.abs(corr[~np.eye(corr.shape[0], dtype=bool)])
    return off.size == 0 or float(np.max(off)) < 1.0 - ALIGNMENT_MARGIN


class CarriedFourPoint:
    """Bookkeeping of the carried four-point term for ``K`` students and ``M`` teachers.

    Of the quadruples ``(k, l, i, j)`` of the ``eta^2`` sum (students ``k <= l``, units
    ``i <= j``), ``distinct`` marks those of four distinct units, ``carried`` (n, 4) lists them
    and ``repeated_cases`` reduces the others. Quadruples of the same four units share their
    path integrals and the derivatives of their pairs: ``sets`` (n_sets, 4) lists the sets of
    four units (sorted), ``set_of`` (n,) gives each carried quadruple's set and ``pair_map``
    (n, 6) the set's pair for each pair of roles (``PAIRS`` order). The carried state is
    ``(P4, F)`` of the carried quadruples, concatenated, shape (2 n,). Internal to the ODE.
    """

    def __init__(self, n_students, n_teachers):
        q, _, _ = unit_quadruples(n_students, n_students + n_teachers)
        self.distinct = (
            (q[:, 0] != q[:, 1]) & (q[:, 0] != q[:, 2]) & (q[:, 0] != q[:, 3])
            & (q[:, 1] != q[:, 2]) & (q[:, 1] != q[:, 3]) & (q[:, 2] != q[:, 3])
        )
        self.carried = q[self.distinct]
        self.repeated = q[~self.distinct]
        self.repeated_cases = _repeated_unit_cases(self.repeated)
        order, position = stable_order(self.carried)  # as _relu4_distinct ranks the roles in a set
        sets, set_of = np.unique(np.take_along_axis(self.carried, order, 1), axis=0, return_inverse=True)
        self.sets, self.set_of = sets, set_of.reshape(-1)
        self.pair_map = PAIR_INDEX[position[:, PAIRS[:, 0]], position[:, PAIRS[:, 1]]]

    def initial_state(self, omega):
        """Exact ``(P4, F)`` by quadrature for the joint overlaps ``omega`` (n, n), shape (2 n,)."""
        _, corr = _correlations(omega)
        # P4 from the path moments of F (16 or 43 nodes): within 1e-12 of the 73-node orthant rule
        # for generic correlations, and one path integral per set of four units instead of two.
        quadruple_corr = corr[self.carried[:, :, None], self.carried[:, None, :]]
        set_corr = corr[self.sets[:, :, None], self.sets[:, None, :]]
        f, set_p4 = relu4_on_sets(quadruple_corr, set_corr, self.set_of, self.pair_map)
        return np.concatenate([set_p4[self.set_of], f])


@functools.lru_cache(maxsize=64)
def carried_four_point(n_students, n_teachers):
    """The :class:`CarriedFourPoint` of ``K`` students and ``M`` teachers, built once per size
    (its tables depend on nothing else; do not modify it)."""
    return CarriedFourPoint(n_students, n_teachers)
