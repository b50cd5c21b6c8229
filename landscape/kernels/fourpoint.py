"""Exact four-point Gaussian ReLU expectation for the finite-learning-rate term of the SGD ODE.

The ``eta^2`` term of ``dQ/dt`` (eq. (3.4) of docs/theory.md) needs, for every pair of student units
``(k, l)`` and every pair of units ``(i, j)``, the expectation

    ``E[step(a) step(b) relu(c) relu(d)] = E[c d 1{a, b, c, d > 0}]``

for a centred Gaussian vector ``(a, b, c, d)``. It contains the 4-variable orthant probability,
which has no elementary closed form. Everything here is computed exactly up to a 1-D quadrature
on fixed nodes: the expectation is integrated along the path ``S(t) = (1 - t) I + t R`` with
the path moments of :mod:`landscape.kernels.orthant` (see its docstring for the method), after exactly
duplicated variables have been merged and the reduced expectations evaluated in closed form.

Accuracy and cost
-----------------
Checked against Genz integration, closed forms (block-diagonal, equicorrelated, duplicated,
planar), a 2-D Gauss-Legendre quadrature of the bivariate normal CDF, first-order expansions
near alignment, mpmath at 40 digits and Monte Carlo: ``relu_four_point`` is within ``1e-13``
for generic covariances and ``6e-10`` in the worst nearly-aligned, nearly-singular cases found.
Near a global minimum the ``eta^2`` term is ``O(delta^2)`` and is obtained to ~1e-12 absolute
at ``delta = 1e-5``, which is what the rounding of the overlaps allows (~1e-16 / angle per
term). ``finite_lr_expectation`` costs about 60 ms for ``K = M = 10`` and 1 s for
``K = M = 20`` on two cores: one path integral (6 pairs x 43 nodes, or 16 for well-conditioned
sets) per set of four distinct units.
"""

from __future__ import annotations

import numpy as np

from .gaussian import relu_kernel
from .orthant import (
    PAIRS,
    RULE_SMOOTH,
    TINY,
    as_square_batch,
    check_symmetric_psd,
    gather,
    merge_duplicates,
    orthant_from_moments,
    path_moments,
    sqrt_one_minus_square,
    stable_order,
    standardise,
    tanh_sinh_rule,
    unchecked_orthant_probability_2,
    unchecked_orthant_probability_3,
)
from .overlaps import validate_overlaps

__all__ = ["relu_four_point", "finite_lr_expectation"]

# The pair index (0..5) of each pair of the four variables, in the order of PAIRS.
PAIR_INDEX = np.full((4, 4), -1)
for _p, (_i, _j, _k, _l) in enumerate(PAIRS):
    PAIR_INDEX[_i, _j] = PAIR_INDEX[_j, _i] = _p
del _p, _i, _j, _k, _l


# Step 1/7 (43 nodes) keeps the four-point expectation within 3e-12 of the converged value for
# generic matrices and 6e-10 with several nearly aligned units (1 - rho down to 1e-15).
# Well-conditioned matrices use 16 Gauss-Legendre nodes instead (orthant._RULE_SMOOTH).
_RULE_RELU4 = tanh_sinh_rule(1.0 / 7.0, 3.0)


# ----------------------------------------------------------------------------- closed forms


def _relu_relu(rho):
    """``E[relu(x) relu(y)]`` for unit variances: the arc-cosine kernel."""
    rho = np.clip(rho, -1.0, 1.0)
    return relu_kernel(1.0, 1.0, rho, residual=sqrt_one_minus_square(rho))


def _step_relu_squared(rho):
    """``E[step(x) relu(y)^2]`` for unit variances and correlation ``rho``.

    Stein on one factor ``y``: ``P2(rho) + rho E[y delta(x) 1{y > 0}]``.
    """
    rho = np.clip(rho, -1.0, 1.0)
    return unchecked_orthant_probability_2(rho) + rho * sqrt_one_minus_square(rho) / (2.0 * np.pi)


def _facet_mean(r_xy, r_xz, r_yz):
    """``4 pi E[delta(z) x 1{x > 0, y > 0}]`` for unit variances (``z`` the conditioning variable).

    Given ``z = 0``, ``E[x 1{x > 0, y > 0}] = sqrt(v_x) (1 + r) / (2 sqrt(2 pi))`` with the
    conditional variance ``v_x`` and correlation ``r``; the ``sqrt(v_x) r`` part is written as
    ``(r_xy - r_xz r_yz) / sqrt(1 - r_yz^2)`` so that nothing divides by a vanishing ``v_x``.
    ``y`` and ``z`` are never duplicates here (they have been merged), so the root is positive.
    """
    root_yz = np.maximum(sqrt_one_minus_square(r_yz), 1e-300)
    return sqrt_one_minus_square(r_xz) + (r_xy - r_xz * r_yz) / root_yz


def _step_relu_relu(r_bc, r_bd, r_cd):
    """``E[step(b) relu(c) relu(d)]`` for unit variances (three distinct variables).

    Stein on ``c``: ``r_cd P3 + r_cb E[d delta(b) 1{c, d > 0}] + E[d delta(c) 1{b, d > 0}]``.
    """
    boundary = r_bc * _facet_mean(r_cd, r_bd, r_bc) + _facet_mean(r_bd, r_cd, r_bc)
    return r_cd * unchecked_orthant_probability_3(r_bc, r_bd, r_cd) + boundary / (4.0 * np.pi)


def _step_step_relu_squared(r_ab, r_ac, r_bc):
    """``E[step(a) step(b) relu(c)^2]`` for unit variances (three distinct variables).

    Stein on one factor ``c``: ``P3 + sum_{m = a, b} r_cm E[c delta(m) 1{others > 0}]``.
    """
    boundary = r_ac * _facet_mean(r_bc, r_ac, r_ab) + r_bc * _facet_mean(r_ac, r_bc, r_ab)
    return unchecked_orthant_probability_3(r_ab, r_ac, r_bc) + boundary / (4.0 * np.pi)


# ------------------------------------------------------------------ four-point from the path


def _mixed_terms():
    """Table of the Stein terms behind :func:`_mixed_coefficients`.

    ``d F / dS_ab`` for a step variable ``a`` and a relu variable ``b`` is
    ``E[delta(a) step(a') step(b) relu(b')] = sum_{j != a} C'_{b' j}(t) phi2(t rho_aj) W_aj(t)``
    (Stein on the other relu ``b'`` given ``a = 0``), with the conditional covariance
    ``C'_{b' j} = S_b'j - S_b'a S_aj``. Each row is one ``(pair {a, j}, a, j, b, b')``.
    """
    terms = []
    for p, (i, j, _, _) in enumerate(PAIRS):
        for a, other in ((i, j), (j, i)):
            if a <= 1:  # only the step variables 0 and 1 carry a delta
                terms += [(p, a, other, b, 5 - b) for b in (2, 3)]
    terms = np.array(terms)
    scatter = np.zeros((len(terms), 6))
    scatter[np.arange(len(terms)), terms[:, 0]] = 1.0
    return terms[:, 1:].T, scatter


(_TERM_A, _TERM_J, _TERM_B, _TERM_PARTNER), _TERM_TO_PAIR = _mixed_terms()


def _mixed_coefficients(corr):
    """Coefficients ``(m0, m1, m2)`` (n, 6, 3) of ``M_p(t) = m0 + m1 t + m2 t^2`` per pair.

    ``M_p`` collects ``rho_ab C'_{b' j}(t)`` over the four mixed pairs ``(a, b)`` by the pair
    ``{a, j}`` whose ``phi2 W`` multiplies it (see :func:`_mixed_terms`); ``S_b'j = t rho_b'j``
    off the diagonal and ``1`` on it, ``S_b'a S_aj = t^2 rho_b'a rho_aj``.
    """
    weight = corr[:, _TERM_A, _TERM_B]
    diagonal = _TERM_PARTNER == _TERM_J
    m0 = np.where(diagonal, weight, 0.0)
    m1 = np.where(diagonal, 0.0, weight * corr[:, _TERM_PARTNER, _TERM_J])
    m2 = -weight * corr[:, _TERM_PARTNER, _TERM_A] * corr[:, _TERM_J, _TERM_A]
    return np.stack([m0 @ _TERM_TO_PAIR, m1 @ _TERM_TO_PAIR, m2 @ _TERM_TO_PAIR], -1)


def _relu4_from_moments(corr, mu, kappa_step_pair, rho, g):
    """Four-point expectation for unit variances from the path moments (all in role order).

    ``F = F(I) + rho_cd int P4(S(t)) dt + int sum_p phi2 (M_p W_p) dt + rho_ab int phi2 K_ab dt``
    with ``F(I) = 1/(8 pi)`` and ``int_0^1 P4(S(t)) dt = 1/16 + int (1 - t) dP4/dt dt``.
    """
    r_cd = corr[:, 2, 3]
    one_minus_g = np.abs(rho) / (1.0 + g)
    signed = np.sign(rho) * one_minus_g / np.pi  # rho / (pi (1 + g))
    orthant_part = r_cd * np.sum(signed * (mu[..., 0] - mu[..., 1]), -1)
    mixed = np.sum(_mixed_coefficients(corr) * mu, -1)
    mixed_part = np.sum(mixed / (np.pi * (1.0 + g)), -1)
    kernel_part = signed[:, 0] * kappa_step_pair
    return 1.0 / (8.0 * np.pi) + r_cd / 16.0 + orthant_part + mixed_part + kernel_part


def _relu4_distinct(corr, labels=None, orthant=False):
    """Four-point expectation for four distinct unit-variance variables, roles (step, step, relu, relu).

    With ``labels`` (n, 4) naming the variables (e.g. unit indices), matrices that are the same
    set of variables in another role order share one path integral. With ``orthant``, also
    returns the orthant probabilities ``P4`` (n,) from the same path moments.
    """
    if labels is None:
        mu, kappa, rho, g = path_moments(corr, _RULE_RELU4, RULE_SMOOTH)
        kappa_step_pair = kappa[:, 0]
    else:
        order, position = stable_order(labels)  # role r sits at position[r] of its sorted set
        sorted_labels = np.take_along_axis(labels, order, 1).astype(np.int64)
        base = int(sorted_labels.max(initial=0)) + 1
        key = sorted_labels @ base ** np.arange(3, -1, -1)
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        set_corr = corr[first[:, None, None], order[first][:, :, None], order[first][:, None, :]]
        pair_of_role = PAIR_INDEX[position[:, PAIRS[:, 0]], position[:, PAIRS[:, 1]]]  # (n, 6)
        value, set_orthant = relu4_on_sets(corr, set_corr, inverse, pair_of_role)
        return (value, set_orthant[inverse]) if orthant else value
    value = _relu4_from_moments(corr, mu, kappa_step_pair, rho, g)
    if orthant:
        return value, orthant_from_moments(mu, rho, g)
    return value


def relu4_on_sets(corr, set_corr, set_of, pair_of_role):
    """Four-point expectations of quadruples that share the path integrals of their sets.

    Parameters
    ----------
    corr : ndarray, shape (n, 4, 4)
        Correlations of the quadruples, roles (step, step, relu, relu), four distinct variables.
    set_corr : ndarray, shape (n_sets, 4, 4)
        Correlations of each set of four variables in one fixed order.
    set_of : ndarray, shape (n,)
        The set of each quadruple.
    pair_of_role : ndarray, shape (n, 6)
        For each pair of roles (``PAIRS`` order), the pair of its set (``PAIRS`` order).

    Returns
    -------
    value : ndarray, shape (n,)
        ``E[step step relu relu]`` of each quadruple.
    set_orthant : ndarray, shape (n_sets,)
        The orthant probability ``P4`` of each set.
    """
    mu, kappa, rho, g = path_moments(set_corr, _RULE_RELU4, RULE_SMOOTH)
    rows = set_of[:, None]
    value = _relu4_from_moments(corr, mu[rows, pair_of_role], kappa[set_of, pair_of_role[:, 0]],
                                rho[rows, pair_of_role], g[rows, pair_of_role])
    return value, orthant_from_moments(mu, rho, g)


# A merged class of duplicated variables is one variable x raised to the number of relus it
# absorbed: step(x) -> power 0, relu(x) -> 1, relu(x)^2 -> 2 (step(x) relu(x) = relu(x)). What is
# left, keyed by (distinct variables, squared relus), is elementary in the correlations of the
# distinct variables taken in order of power; (1, 1) is E[relu(x)^2] = 1/2 for unit variance.
REDUCED_FORMS = {
    (3, 0): _step_relu_relu,  # step(b) relu(c) relu(d)
    (3, 1): _step_step_relu_squared,  # step(a) step(b) relu(c)^2
    (2, 0): _relu_relu,  # relu(c) relu(d)
    (2, 1): _step_relu_squared,  # step(a) relu(c)^2
    (1, 1): None,
}


def reduction(representative):
    """Number of distinct variables (n,), of squared relus among them (n,), and the order (n, 4)
    of the variables by power, merged ones last, given each role's class ``representative`` (n, 4)."""
    members = representative[:, :, None] == np.arange(4)  # members[e, m, r]: m belongs to class r
    power = np.einsum("emr,m->er", members, np.array([0, 0, 1, 1]))
    distinct = representative == np.arange(4)
    squared = np.sum(distinct & (power == 2), -1)
    order, _ = stable_order(np.where(distinct, power, 9))
    return distinct.sum(-1), squared, order


def _reduced_value(case, correlation):
    """Value of the reduced form of ``case`` (a key of ``REDUCED_FORMS``); ``correlation(a, b)``
    gives the correlations of the ``a``-th and ``b``-th distinct variables."""
    form = REDUCED_FORMS[case]
    if form is None:
        return 0.5
    if case[0] == 2:
        return form(correlation(0, 1))
    return form(correlation(0, 1), correlation(0, 2), correlation(1, 2))


def _relu_four_point(cov, labels=None):
    """Unchecked :func:`relu_four_point` on a flat batch (n, 4, 4); see :func:`_relu4_distinct`."""
    sd, corr, dead = standardise(cov)
    representative, opposite = merge_duplicates(corr)
    count, squared, order = reduction(representative)
    live = ~opposite & ~np.any(dead, axis=-1)
    out = np.zeros(cov.shape[0])
    mask = live & (count == 4)
    if np.any(mask):
        out[mask] = _relu4_distinct(corr[mask], None if labels is None else labels[mask])
    for case in REDUCED_FORMS:
        mask = live & (count == case[0]) & (squared == case[1])
        c, o = corr[mask], order[mask]
        out[mask] = _reduced_value(case, lambda a, b, c=c, o=o: gather(c, o, a, b))
    return np.maximum(out, 0.0) * sd[:, 2] * sd[:, 3]


# ------------------------------------------------------------------------------ public API


def relu_four_point(cov):
    """``E[step(a) step(b) relu(c) relu(d)] = E[c d 1{a, b, c, d > 0}]`` for centred Gaussians.

    Exact up to a fixed 1-D quadrature: absolute error (in units of ``sqrt(C_cc C_dd)``) about
    ``1e-13`` for generic covariances and below ``1e-9`` for nearly aligned ones (``1 - rho``
    down to ``1e-15``, several pairs at once), rank-deficient ones included. Exactly repeated
    variables (``a == b``, ``a == c``, ``c == d``, ...; correlation exactly +-1) are reduced in
    closed form. A variable of zero variance is switched off (``step(0) = relu(0) = 0``),
    giving 0.

    Parameters
    ----------
    cov : array_like, shape (..., 4, 4)
        Covariance matrices of ``(a, b, c, d)``: symmetric positive semi-definite, possibly
        singular.

    Returns
    -------
    ndarray, shape (...)
        Non-negative expectations.

    Raises
    ------
    ValueError
        If ``cov`` has the wrong shape, non-finite entries, or is not symmetric positive
        semi-definite.
    """
    flat, batch_shape = as_square_batch("cov", cov, 4)
    flat = check_symmetric_psd("cov", flat)
    return _relu_four_point(flat).reshape(batch_shape)


def unit_quadruples(n_students, n_units):
    """Rows ``(k, l, i, j)`` for all students ``k <= l`` and units ``i <= j`` (``(k, l)`` major),
    with the index pairs ``(k, l)`` and ``(i, j)``."""
    k, l = np.triu_indices(n_students)
    i, j = np.triu_indices(n_units)
    quadruples = np.stack(np.broadcast_arrays(k[:, None], l[:, None], i[None, :], j[None, :]), -1)
    return quadruples.reshape(-1, 4), (k, l), (i, j)


def finite_lr_expectation(Q, R, T, noise=0.0):
    """``E[step(lambda_k) step(lambda_l) (f - y)^2]`` for all student pairs: the ``eta^2`` term.

    ``(lambda, nu) ~ N(0, [[Q, R], [R^T, T]])``, ``f = sum_k relu(lambda_k)``,
    ``y = sum_m relu(nu_m) + sqrt(noise) xi``. Expanding the square over all ``K + M`` units
    ``z = (lambda, nu)`` with signs ``s = (+1, ..., -1, ...)``::

        E[...] = sum_{i, j} s_i s_j E[step(lambda_k) step(lambda_l) relu(z_i) relu(z_j)]
                 + noise * P(lambda_k > 0, lambda_l > 0).

    Symmetry in ``k <-> l`` and ``i <-> j`` is used, and the quadruples that are the same four
    units in another order share one path integral. In the ODE,
    ``dQ/dt += lr**2 * finite_lr_expectation(Q, R, T, noise)``. It vanishes at a realisable
    global minimum (student equal to teacher, ``noise = 0``).

    Parameters
    ----------
    Q : array_like, shape (K, K)
        Student-student overlaps.
    R : array_like, shape (K, M)
        Student-teacher overlaps.
    T : array_like, shape (M, M)
        Teacher-teacher overlaps.
    noise : float, optional
        Label-noise variance, ``>= 0``.

    Returns
    -------
    ndarray, shape (K, K)
        Symmetric, positive semi-definite matrix of expectations.

    Raises
    ------
    ValueError
        If the overlaps are not the overlaps of real vectors (see
        :func:`landscape.model.teacher.validate_overlaps`) or ``noise`` is not a finite number ``>= 0``.
    """
    Q, R, T = validate_overlaps(Q, R, T)
    try:
        noise = float(noise)
    except (TypeError, ValueError):
        raise ValueError(f"noise must be a number >= 0, got {noise!r}") from None
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    return unchecked_finite_lr_expectation(Q, R, T, noise)


def unchecked_finite_lr_expectation(Q, R, T, noise):
    """Unchecked :func:`finite_lr_expectation`."""
    n_students = Q.shape[0]
    omega = np.block([[Q, R], [R.T, T]])
    sign = np.concatenate([np.ones(n_students), -np.ones(T.shape[0])])
    quadruples, (k, l), (i, j) = unit_quadruples(n_students, omega.shape[0])
    cov = omega[quadruples[:, :, None], quadruples[:, None, :]]
    values = _relu_four_point(cov, labels=quadruples).reshape(k.size, i.size)
    weight = np.where(i == j, 1.0, 2.0) * sign[i] * sign[j]  # (i, j) and (j, i) are equal terms
    upper = values @ weight
    out = np.zeros((n_students, n_students))
    out[k, l] = upper
    out[l, k] = upper
    if noise > 0:
        variance = np.diag(Q)
        alive = variance > TINY
        sd = np.sqrt(np.where(alive, variance, 1.0))
        both = alive[:, None] & alive[None, :]
        corr = Q / np.outer(sd, sd)
        # Exactly 1 on the diagonal: asin is infinitely steep there, and a rounding error of
        # one ulp in Q_kk / sd_k^2 would move P(lambda_k > 0) = 1/2 by ~1e-9.
        np.fill_diagonal(corr, 1.0)
        out += noise * np.where(both, unchecked_orthant_probability_2(corr), 0.0)
    return out
