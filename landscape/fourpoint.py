"""Exact four-point Gaussian ReLU expectation for the finite-learning-rate term of the SGD ODE.

The ``eta^2`` term of ``dQ/dt`` (THEORY.md section 3) needs, for every pair of student units
``(k, l)`` and every pair of units ``(i, j)``, the expectation

    ``E[step(a) step(b) relu(c) relu(d)] = E[c d 1{a, b, c, d > 0}]``

for a centred Gaussian vector ``(a, b, c, d)``. It contains the 4-variable orthant probability,
which has no elementary closed form. Everything here is computed exactly up to a 1-D quadrature
on fixed nodes.

Method
------
Both the orthant probability ``P4`` and the four-point expectation ``F`` are integrated along
the straight path ``S(t) = (1 - t) I + t R`` from the identity to the correlation matrix ``R``.
By Price's theorem ``dE[g]/dS_ij = E[d_i d_j g]``, and every such derivative is a Gaussian
density at ``x_i = x_j = 0`` times an elementary conditional expectation of the two other
variables (Plackett's identity for ``P4``):

* ``dP4/dt = sum_{i<j} rho_ij phi2(t rho_ij) W_ij(t)``, with ``W_ij = P(x_k > 0, x_l > 0 | x_i = x_j = 0)
  = 1/4 + asin(r_kl|ij) / (2 pi)``;
* ``dF/dt`` adds ``rho_cd P4(S(t))`` (integrated once more, which turns into a weight ``1 - t``),
  the conditional arc-cosine kernel of ``(c, d)`` given ``a = b = 0`` on the pair ``(a, b)``,
  and, for the mixed pairs ``(a, c)`` etc., conditional covariances (quadratic in ``t``) times
  the same ``W``'s.

Why the path and not Stein's lemma at ``t = 1``: the conditional correlations at ``t = 1`` are
0/0 when the four units span fewer than three dimensions (finite-``d`` catalogues, student in
the teacher span), and lose all accuracy near such configurations (near a global minimum).
Along the path ``S(t)`` is positive definite for every ``t < 1``, the integrands are bounded,
and rounding errors only matter in a vanishing neighbourhood of ``t = 1``.

Numerics: the density ``phi2(t rho) ~ 1 / sqrt(1 - t |rho|)`` is absorbed exactly by the
algebraic substitution ``sqrt(1 - t |rho|) = g + (1 - g) xi``, ``g = sqrt(1 - |rho|)``; the
remaining endpoint singularities (conditional correlations reaching +-1 as ``t -> 1``) are
handled by a tanh-sinh rule in ``xi`` on fixed nodes. The polynomials in ``t`` are evaluated
from factorised forms (eigenvalues of ``R``, ``1 +- rho``) so that nothing cancels near ``t = 1``.
Exactly duplicated variables (``|rho| = 1``) are merged first and the reduced expectations,
which are elementary, are evaluated in closed form.

Accuracy and cost
-----------------
Checked against Genz integration, closed forms (block-diagonal, equicorrelated, duplicated,
planar), a 2-D Gauss-Legendre quadrature of the bivariate normal CDF, first-order expansions
near alignment, mpmath at 40 digits and Monte Carlo: ``relu_four_point`` is within ``1e-13``
for generic covariances and ``6e-10`` in the worst nearly-aligned, nearly-singular cases found;
``orthant_probability_4`` within ``1e-14`` and ``3e-10``. Near a global minimum the ``eta^2``
term is ``O(delta^2)`` and is obtained to ~1e-12 absolute at ``delta = 1e-5``, which is what the
rounding of the overlaps allows (~1e-16 / angle per term). ``finite_lr_expectation`` costs
about 60 ms for ``K = M = 10`` and 1 s for ``K = M = 20`` on two cores: one path integral
(6 pairs x 43 nodes) per set of four distinct units.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .teacher import validate_overlaps

__all__ = [
    "orthant_probability_2",
    "orthant_probability_3",
    "orthant_probability_4",
    "relu_four_point",
    "finite_lr_expectation",
]

# Below this variance a unit is switched off: relu(0) = 0 and relu'(0) = step(0) = 0.
_TINY = 1e-300
# Variables with |rho| = 1 exactly are merged and the reduced problem is solved in closed form.
# Anything else, even one unit in the last place away, goes through the path integral, which is
# accurate to ~2e-9 there; merging it would move the result by O(angle) ~ 1e-8 instead.
_DUPLICATE_GAP = 0.0
# Relative tolerances of the input checks.
_SYMMETRY_TOLERANCE = 1e-9
_PSD_TOLERANCE = 1e-9
_UNIT_DIAGONAL_TOLERANCE = 1e-9
# Path-integral work is split in chunks of about this many (matrix, pair, node) values so the
# temporaries stay in cache and memory stays bounded for large batches.
_CHUNK_VALUES = 1 << 15
# Large batches are shared between this many threads (numpy releases the GIL in its loops),
# each taking at least this many chunks so that starting a thread pays off.
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
_WORKERS = max(1, min(4, _CORES))
_CHUNKS_PER_WORKER = 4

# The six pairs (i, j) of four variables with their complementary pair (k, l).
_PAIRS = np.array([(0, 1, 2, 3), (0, 2, 1, 3), (0, 3, 1, 2), (1, 2, 0, 3), (1, 3, 0, 2), (2, 3, 0, 1)])
_PAIR_INDEX = np.full((4, 4), -1)
for _p, (_i, _j, _k, _l) in enumerate(_PAIRS):
    _PAIR_INDEX[_i, _j] = _PAIR_INDEX[_j, _i] = _p
del _p, _i, _j, _k, _l


def _tanh_sinh_rule(step, reach):
    """Tanh-sinh (double-exponential) rule on ``[0, 1]``.

    Returns the nodes ``xi``, their complements ``1 - xi`` (each accurate near its own zero,
    which matters at the singular end ``xi -> 0``) and the weights. The trapezoidal variable runs
    over ``[-reach, reach]``; ``reach = 3`` leaves out a mass of ``2e-14`` at each end.
    """
    u = np.arange(-np.ceil(reach / step), np.ceil(reach / step) + 1) * step
    q = np.pi * np.sinh(u)
    xi = 1.0 / (1.0 + np.exp(q))
    complement = 1.0 / (1.0 + np.exp(-q))
    weight = step * np.pi * np.cosh(u) * xi * complement
    return xi, complement, weight


# Step 1/7 (43 nodes) keeps the four-point expectation within 3e-12 of the converged value for
# generic matrices and 6e-10 with several nearly aligned units (1 - rho down to 1e-15); the
# orthant probability alone is public and cheap, so it gets step 1/12 (73 nodes, 2e-10).
_RULE_RELU4 = _tanh_sinh_rule(1.0 / 7.0, 3.0)
_RULE_P4 = _tanh_sinh_rule(1.0 / 12.0, 3.0)


# ----------------------------------------------------------------------------- closed forms


def _sqrt_one_minus_square(rho):
    """``sqrt(1 - rho^2)`` without the cancellation of ``1 - rho * rho`` near ``|rho| = 1``."""
    return np.sqrt(np.maximum((1.0 - rho) * (1.0 + rho), 0.0))


def _p2(rho):
    return 0.25 + np.arcsin(np.clip(rho, -1.0, 1.0)) / (2.0 * np.pi)


def _p3(r01, r02, r12):
    angles = sum(np.arcsin(np.clip(r, -1.0, 1.0)) for r in (r01, r02, r12))
    return np.maximum(0.125 + angles / (4.0 * np.pi), 0.0)


def _relu_relu(rho):
    """``E[relu(x) relu(y)]`` for unit variances: the arc-cosine kernel."""
    rho = np.clip(rho, -1.0, 1.0)
    return (_sqrt_one_minus_square(rho) + rho * (np.pi - np.arccos(rho))) / (2.0 * np.pi)


def _step_relu_squared(rho):
    """``E[step(x) relu(y)^2]`` for unit variances and correlation ``rho``.

    Stein on one factor ``y``: ``P2(rho) + rho E[y delta(x) 1{y > 0}]``.
    """
    rho = np.clip(rho, -1.0, 1.0)
    return _p2(rho) + rho * _sqrt_one_minus_square(rho) / (2.0 * np.pi)


def _facet_mean(r_xy, r_xz, r_yz):
    """``4 pi E[delta(z) x 1{x > 0, y > 0}]`` for unit variances (``z`` the conditioning variable).

    Given ``z = 0``, ``E[x 1{x > 0, y > 0}] = sqrt(v_x) (1 + r) / (2 sqrt(2 pi))`` with the
    conditional variance ``v_x`` and correlation ``r``; the ``sqrt(v_x) r`` part is written as
    ``(r_xy - r_xz r_yz) / sqrt(1 - r_yz^2)`` so that nothing divides by a vanishing ``v_x``.
    ``y`` and ``z`` are never duplicates here (they have been merged), so the root is positive.
    """
    root_yz = np.maximum(_sqrt_one_minus_square(r_yz), 1e-300)
    return _sqrt_one_minus_square(r_xz) + (r_xy - r_xz * r_yz) / root_yz


def _step_relu_relu(r_bc, r_bd, r_cd):
    """``E[step(b) relu(c) relu(d)]`` for unit variances (three distinct variables).

    Stein on ``c``: ``r_cd P3 + r_cb E[d delta(b) 1{c, d > 0}] + E[d delta(c) 1{b, d > 0}]``.
    """
    boundary = r_bc * _facet_mean(r_cd, r_bd, r_bc) + _facet_mean(r_bd, r_cd, r_bc)
    return r_cd * _p3(r_bc, r_bd, r_cd) + boundary / (4.0 * np.pi)


def _step_step_relu_squared(r_ab, r_ac, r_bc):
    """``E[step(a) step(b) relu(c)^2]`` for unit variances (three distinct variables).

    Stein on one factor ``c``: ``P3 + sum_{m = a, b} r_cm E[c delta(m) 1{others > 0}]``.
    """
    boundary = r_ac * _facet_mean(r_bc, r_ac, r_ab) + r_bc * _facet_mean(r_ac, r_bc, r_ab)
    return _p3(r_ab, r_ac, r_bc) + boundary / (4.0 * np.pi)


# ------------------------------------------------------------------------- path integrals


def _pair_geometry(corr):
    """Per-pair constants of the path integrand for correlation matrices ``corr`` (n, 4, 4).

    Returns ``rho`` (n, 6), ``g = sqrt(1 - |rho|)``, the eigenvalues of ``corr`` (n, 4) and the
    coefficients ``c1, c2, c3`` (n, 6) of the cross cofactor
    ``det S(t)[ijk, ijl] = beta (c3 beta^2 + c2 alpha beta + c1 alpha^2)`` (``alpha = 1 - t``,
    ``beta = t``), which equals ``det S_ij`` times the conditional covariance of ``(k, l)``.
    """
    i, j, k, l = (_PAIRS[:, m] for m in range(4))
    rho = np.clip(corr[:, i, j], -1.0, 1.0)
    r_ik, r_il, r_jk, r_jl, r_kl = (corr[:, a, b] for a, b in ((i, k), (i, l), (j, k), (j, l), (k, l)))
    c1 = r_kl
    c2 = (r_kl - r_jl * r_jk) + (r_kl - r_il * r_ik)
    # c3 = det R[ijk, ijl] by elimination on the unit pivot (i, i): the 2x2 determinant of
    # partial covariances given x_i. Backward stable, unlike the cofactor expansion, whose
    # O(eps) absolute error swamps c3 when three units nearly coincide.
    p_jj = (1.0 - rho) * (1.0 + rho)
    p_jl = r_jl - rho * r_il
    p_kj = r_jk - r_ik * rho
    p_kl = r_kl - r_ik * r_il
    c3 = p_jj * p_kl - p_jl * p_kj
    # Eigenvalues rather than determinants: det(alpha I + beta R) = prod (alpha + beta lambda)
    # stays accurate when R is nearly singular in several directions (near global minima).
    eigenvalues = np.maximum(np.linalg.eigvalsh(corr), 0.0)
    g = np.sqrt(1.0 - np.abs(rho))
    return rho, g, eigenvalues, c1, c2, c3


def _pair_moments(g, eigenvalues, c1, c2, c3, rule, buffers):
    """Path moments for a flat list of pairs (all arguments per pair, ``eigenvalues`` (P, 4)).

    Arrays are laid out (node, pair) so that numpy's inner loops run over the long axis, and
    written into the preallocated ``buffers`` (fresh temporaries of this size would be returned
    to the operating system and faulted in again on every operation, doubling the run time).
    Returns ``mu`` (P, 3) and ``kappa`` (P,); see :func:`_path_moments`.
    """
    xi, complement, weight = (x[:, None] for x in rule)
    root, alpha, beta, det_pair, det_full, cross, orthant, kernel, scratch = (b[:, : g.size] for b in buffers)
    # root = sqrt(1 - t|rho|) = g + (1 - g) xi; then, without cancellation near t = 1,
    # alpha = 1 - t = xi (2 g + (1 - g) xi) / (1 + g) and beta = t = (1 - xi)(1 + root) / (1 + g).
    inverse = 1.0 / (1.0 + g)
    np.multiply(xi, 1.0 - g, out=root)
    root += g
    np.add(root, g, out=alpha)
    alpha *= xi
    alpha *= inverse
    np.add(root, 1.0, out=beta)
    beta *= complement
    beta *= inverse
    # det S_ij = (1 - t|rho|)(1 + t|rho|) = root^2 (2 - root^2); the density left over by the
    # substitution is 1 / sqrt(1 + t|rho|) (kept in scratch).
    np.multiply(root, root, out=det_pair)
    np.subtract(2.0, det_pair, out=scratch)
    det_pair *= scratch
    np.sqrt(scratch, out=scratch)
    np.divide(weight, scratch, out=scratch)
    # det S = prod (alpha + beta lambda_m).
    np.multiply(beta, eigenvalues[:, 0], out=det_full)
    det_full += alpha
    for m in range(1, 4):
        np.multiply(beta, eigenvalues[:, m], out=cross)
        cross += alpha
        det_full *= cross
    # cross = beta (c3 beta^2 + c2 alpha beta + c1 alpha^2).
    np.multiply(beta, c3, out=cross)
    np.multiply(alpha, c2, out=orthant)
    cross += orthant
    cross *= beta
    np.multiply(alpha, alpha, out=orthant)
    orthant *= c1
    cross += orthant
    cross *= beta
    # Sylvester: cross^2 + det_pair det_full = (product of the two conditional variances) * det_pair^2,
    # so the conditional correlation is cross / hypot(cross, sqrt(det_pair det_full)) and its
    # arcsine the arctangent below; the denominator is positive because alpha > 0 on every node.
    np.multiply(det_pair, det_full, out=orthant)
    np.sqrt(orthant, out=orthant)
    np.divide(cross, orthant, out=orthant)
    np.arctan(orthant, out=orthant)
    orthant *= 1.0 / (2.0 * np.pi)
    orthant += 0.25
    # Conditional arc-cosine kernel (sqrt(v_k v_l - c^2) + c (pi - acos r)) / (2 pi), clipped to
    # its bounds where rounding dominates (t within ~1e-16 of 1).
    np.divide(det_full, det_pair, out=kernel)
    np.sqrt(kernel, out=kernel)
    np.minimum(kernel, 1.0, out=kernel)
    kernel *= 1.0 / (2.0 * np.pi)
    np.divide(cross, det_pair, out=cross)
    np.clip(cross, -1.0, 1.0, out=cross)
    cross *= orthant
    kernel += cross
    kernel *= scratch
    orthant *= scratch
    mu0 = orthant.sum(0)
    orthant *= beta
    mu1 = orthant.sum(0)
    orthant *= beta
    return np.stack([mu0, mu1, orthant.sum(0)], -1), kernel.sum(0)


def _path_moments(corr, rule):
    """Moments of the conditional orthant probabilities along the path, for every pair.

    For each pair ``p = (i, j)`` with complement ``(k, l)`` and ``phi2`` absorbed by the
    substitution, returns (shapes (n, 6, 3) and (n, 6), then ``rho`` and ``g`` (n, 6))::

        mu_m  = int beta^m W_p w(xi) dxi,  m = 0, 1, 2      (W_p = P(x_k, x_l > 0 | x_i = x_j = 0))
        kappa = int K_p w(xi) dxi                          (K_p = E[relu x_k relu x_l | x_i = x_j = 0])

    with ``beta = t`` and ``w(xi) = 1 / sqrt(1 + t |rho_p|)``, so that ``int_0^1 phi2(t rho) f(t) dt``
    is ``int_0^1 f w dxi / (pi (1 + g))``. The work is done in chunks that keep the temporaries
    in cache and bound memory for large batches.
    """
    n = corr.shape[0]
    rho, g, eigenvalues, c1, c2, c3 = _pair_geometry(corr)
    g, c1, c2, c3 = (x.reshape(-1) for x in (g.copy(), c1, c2, c3))
    eigenvalues = np.repeat(eigenvalues, 6, axis=0)
    size = max(1, min(6 * n, _CHUNK_VALUES // rule[0].size))
    mu, kappa = np.empty((6 * n, 3)), np.empty(6 * n)

    def run(starts):
        buffers = np.empty((9, rule[0].size, size))
        for s in starts:
            chunk = slice(s, s + size)
            mu[chunk], kappa[chunk] = _pair_moments(
                g[chunk], eigenvalues[chunk], c1[chunk], c2[chunk], c3[chunk], rule, buffers
            )

    starts = range(0, 6 * n, size)
    workers = min(_WORKERS, len(starts) // _CHUNKS_PER_WORKER)
    if workers > 1:
        # numpy releases the GIL inside its loops; the chunks write disjoint slices.
        blocks = [starts[w::workers] for w in range(workers)]
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, blocks))
    else:
        run(starts)
    return mu.reshape(n, 6, 3), kappa.reshape(n, 6), rho, g.reshape(n, 6)


def _orthant_from_moments(mu, rho, g):
    """``P4 = 1/16 + sum_p rho_p int phi2 W_p dt``; ``rho / (pi (1 + g)) = sign(rho) (1 - g) / pi``."""
    one_minus_g = np.abs(rho) / (1.0 + g)
    return 1.0 / 16.0 + np.sum(np.sign(rho) * one_minus_g * mu[..., 0], -1) / np.pi


def _mixed_terms():
    """Table of the Stein terms behind :func:`_mixed_coefficients`.

    ``d F / dS_ab`` for a step variable ``a`` and a relu variable ``b`` is
    ``E[delta(a) step(a') step(b) relu(b')] = sum_{j != a} C'_{b' j}(t) phi2(t rho_aj) W_aj(t)``
    (Stein on the other relu ``b'`` given ``a = 0``), with the conditional covariance
    ``C'_{b' j} = S_b'j - S_b'a S_aj``. Each row is one ``(pair {a, j}, a, j, b, b')``.
    """
    terms = []
    for p, (i, j, _, _) in enumerate(_PAIRS):
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


def _relu4_distinct(corr, labels=None):
    """Four-point expectation for four distinct unit-variance variables, roles (step, step, relu, relu).

    With ``labels`` (n, 4) naming the variables (e.g. unit indices), matrices that are the same
    set of variables in another role order share one path integral.
    """
    if labels is None:
        mu, kappa, rho, g = _path_moments(corr, _RULE_RELU4)
        return _relu4_from_moments(corr, mu, kappa[:, 0], rho, g)
    order, position = _stable_order(labels)  # role r sits at position[r] of its sorted set
    sorted_labels = np.take_along_axis(labels, order, 1).astype(np.int64)
    base = int(sorted_labels.max(initial=0)) + 1
    key = sorted_labels @ base ** np.arange(3, -1, -1)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    set_corr = corr[first[:, None, None], order[first][:, :, None], order[first][:, None, :]]
    mu, kappa, rho, g = _path_moments(set_corr, _RULE_RELU4)
    pair_of_role = _PAIR_INDEX[position[:, _PAIRS[:, 0]], position[:, _PAIRS[:, 1]]]  # (n, 6)
    rows = inverse[:, None]
    kappa_step_pair = kappa[inverse, pair_of_role[:, 0]]
    return _relu4_from_moments(
        corr, mu[rows, pair_of_role], kappa_step_pair, rho[rows, pair_of_role], g[rows, pair_of_role]
    )


# ------------------------------------------------------------------ reduction of duplicates


def _standardise(cov):
    """Standard deviations (n, 4), correlations (n, 4, 4) and the mask of dead variables.

    ``C_ij / sqrt(C_ii C_jj)`` rather than ``C_ij / (sd_i sd_j)``: with correct rounding
    ``sqrt(c * c) == c``, so exactly duplicated variables get a correlation of exactly 1. The
    power-of-two rescaling (exact) keeps the products away from overflow and underflow.
    """
    variance = np.diagonal(cov, axis1=-2, axis2=-1)
    dead = variance <= _TINY
    scale = np.exp2(np.round(np.log2(np.max(np.where(dead, 1.0, variance), axis=-1))))[:, None]
    variance = np.where(dead, 1.0, variance / scale)
    corr = cov / scale[:, :, None] / np.sqrt(variance[:, :, None] * variance[:, None, :])
    corr = np.clip(corr, -1.0, 1.0)
    corr[:, np.arange(4), np.arange(4)] = 1.0
    return np.sqrt(variance * scale) * ~dead, corr, dead


def _merge_duplicates(corr):
    """Representative (lowest index) of each variable's class of exact duplicates, and a mask of
    matrices where two variables are exact opposites (then no orthant has positive mass)."""
    same = corr >= 1.0 - _DUPLICATE_GAP
    for _ in range(2):  # transitive closure on four nodes: paths of length <= 4
        same = np.matmul(same.astype(np.int8), same.astype(np.int8)) > 0
    representative = np.argmax(same, axis=-1)
    opposite = np.any(corr <= -1.0 + _DUPLICATE_GAP, axis=(-2, -1))
    return representative, opposite


def _stable_order(keys):
    """Stable sort of the four entries of each row of ``keys`` (n, 4), without a per-row argsort.

    Returns ``order`` (entries listed in sorted order) and its inverse ``position``
    (where each entry goes).
    """
    before = keys[:, None, :] < keys[:, :, None]
    tied_earlier = (keys[:, None, :] == keys[:, :, None]) & np.tri(4, k=-1, dtype=bool)
    position = np.sum(before | tied_earlier, axis=-1)
    order = np.empty_like(position)
    np.put_along_axis(order, position, np.broadcast_to(np.arange(4), position.shape), axis=1)
    return order, position


def _gather(corr, order, a, b):
    rows = np.arange(corr.shape[0])
    return corr[rows, order[:, a], order[:, b]]


def _orthant_probability_4(corr):
    """Unchecked :func:`orthant_probability_4` on a flat batch (n, 4, 4)."""
    representative, opposite = _merge_duplicates(corr)
    distinct = representative == np.arange(4)
    count = distinct.sum(-1)
    order, _ = _stable_order(~distinct)  # distinct variables first
    out = np.zeros(corr.shape[0])
    full = (count == 4) & ~opposite
    if np.any(full):
        mu, _, rho, g = _path_moments(corr[full], _RULE_P4)
        out[full] = _orthant_from_moments(mu, rho, g)
    three = (count == 3) & ~opposite
    c, o = corr[three], order[three]
    out[three] = _p3(_gather(c, o, 0, 1), _gather(c, o, 0, 2), _gather(c, o, 1, 2))
    two = (count == 2) & ~opposite
    out[two] = _p2(_gather(corr[two], order[two], 0, 1))
    out[(count == 1) & ~opposite] = 0.5
    return np.clip(out, 0.0, 1.0)


def _relu_four_point(cov, labels=None):
    """Unchecked :func:`relu_four_point` on a flat batch (n, 4, 4); see :func:`_relu4_distinct`."""
    sd, corr, dead = _standardise(cov)
    representative, opposite = _merge_duplicates(corr)
    # A merged class is one variable x raised to the number of relus it absorbed:
    # step(x) -> power 0, relu(x) -> 1, relu(x)^2 -> 2 (step(x) relu(x) = relu(x)).
    members = representative[:, :, None] == np.arange(4)  # members[e, m, r]: m belongs to class r
    power = np.einsum("emr,m->er", members, np.array([0, 0, 1, 1]))
    distinct = representative == np.arange(4)
    count = distinct.sum(-1)
    squared = np.sum(distinct & (power == 2), -1)
    order, _ = _stable_order(np.where(distinct, power, 9))  # by power, merged last
    live = ~opposite & ~np.any(dead, axis=-1)
    out = np.zeros(cov.shape[0])

    def case(n_distinct, n_squared):
        mask = live & (count == n_distinct) & (squared == n_squared)
        return mask, corr[mask], order[mask]

    mask, c, _ = case(4, 0)
    if np.any(mask):
        out[mask] = _relu4_distinct(c, None if labels is None else labels[mask])
    mask, c, o = case(3, 0)  # step(b) relu(c) relu(d)
    out[mask] = _step_relu_relu(_gather(c, o, 0, 1), _gather(c, o, 0, 2), _gather(c, o, 1, 2))
    mask, c, o = case(3, 1)  # step(a) step(b) relu(c)^2
    out[mask] = _step_step_relu_squared(_gather(c, o, 0, 1), _gather(c, o, 0, 2), _gather(c, o, 1, 2))
    mask, c, o = case(2, 0)  # relu(c) relu(d)
    out[mask] = _relu_relu(_gather(c, o, 0, 1))
    mask, c, o = case(2, 1)  # step(a) relu(c)^2
    out[mask] = _step_relu_squared(_gather(c, o, 0, 1))
    mask, _, _ = case(1, 1)  # relu(c)^2
    out[mask] = 0.5
    return np.maximum(out, 0.0) * sd[:, 2] * sd[:, 3]


# ---------------------------------------------------------------------------- validation


def _as_square_batch(name, value, size):
    try:
        array = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers, got {value!r}") from None
    if array.ndim < 2 or array.shape[-2:] != (size, size):
        raise ValueError(f"{name} must have shape (..., {size}, {size}), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite entries; all entries must be finite")
    return array.reshape((-1, size, size)), array.shape[:-2]


def _check_symmetric_psd(name, flat):
    """Symmetrised copy of a batch (n, m, m), after checking symmetry and positive semi-definiteness
    relative to the largest diagonal entry of each matrix (rounding scales with it)."""
    scale = np.max(np.abs(np.diagonal(flat, axis1=-2, axis2=-1)), axis=-1, initial=0.0)
    asymmetry = np.max(np.abs(flat - np.swapaxes(flat, -1, -2)), axis=(-2, -1), initial=0.0)
    if np.any(asymmetry > _SYMMETRY_TOLERANCE * scale):
        worst = float(np.max(asymmetry))
        raise ValueError(
            f"{name} must be symmetric; largest |{name} - {name}^T| is {worst:.3g} "
            f"(allowed: {_SYMMETRY_TOLERANCE:g} times the largest diagonal entry)"
        )
    flat = 0.5 * (flat + np.swapaxes(flat, -1, -2))
    smallest = np.linalg.eigvalsh(flat)[..., 0] if flat.shape[0] else np.zeros(0)
    if np.any(smallest < -_PSD_TOLERANCE * scale):
        raise ValueError(
            f"{name} must be positive semi-definite; smallest eigenvalue {float(np.min(smallest)):.3g} "
            f"(allowed: >= -{_PSD_TOLERANCE:g} times the largest diagonal entry)"
        )
    return flat


def _check_correlation(name, value, size):
    flat, batch_shape = _as_square_batch(name, value, size)
    diagonal = np.diagonal(flat, axis1=-2, axis2=-1)
    if np.any(np.abs(diagonal - 1.0) > _UNIT_DIAGONAL_TOLERANCE):
        worst = diagonal.reshape(-1)[np.argmax(np.abs(diagonal - 1.0))]
        raise ValueError(
            f"{name} must be a correlation matrix with unit diagonal, got a diagonal entry {worst!r}"
        )
    flat = _check_symmetric_psd(name, flat)
    return np.clip(flat, -1.0, 1.0), batch_shape


# ------------------------------------------------------------------------------ public API


def orthant_probability_2(rho):
    """Bivariate orthant probability ``P(x > 0, y > 0) = 1/4 + asin(rho) / (2 pi)``.

    Parameters
    ----------
    rho : array_like, shape (...)
        Correlations in ``[-1, 1]`` (rounding up to ``1e-9`` outside is clipped).

    Returns
    -------
    ndarray, shape (...)
        Probabilities in ``[0, 1/2]``.

    Raises
    ------
    ValueError
        If ``rho`` is not numeric, not finite, or outside ``[-1, 1]``.
    """
    try:
        rho = np.asarray(rho, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"rho must be an array of numbers, got {rho!r}") from None
    if not np.all(np.isfinite(rho)):
        raise ValueError("rho contains NaN or infinite entries; correlations must be finite")
    if np.any(np.abs(rho) > 1.0 + _UNIT_DIAGONAL_TOLERANCE):
        raise ValueError(f"rho must lie in [-1, 1], got {float(rho.flat[np.argmax(np.abs(rho))])!r}")
    return _p2(rho)


def orthant_probability_3(corr3):
    """Trivariate orthant probability ``P(x_1, x_2, x_3 > 0)``, closed form.

    ``P3 = 1/8 + (asin r12 + asin r13 + asin r23) / (4 pi)``; continuous up to and including
    singular matrices (duplicated or opposite variables).

    Parameters
    ----------
    corr3 : array_like, shape (..., 3, 3)
        Correlation matrices: symmetric, unit diagonal, positive semi-definite.

    Returns
    -------
    ndarray, shape (...)
        Probabilities in ``[0, 1/2]``.

    Raises
    ------
    ValueError
        If ``corr3`` has the wrong shape, non-finite entries, a diagonal entry other than 1,
        or is not symmetric positive semi-definite.
    """
    flat, batch_shape = _check_correlation("corr3", corr3, 3)
    return _p3(flat[:, 0, 1], flat[:, 0, 2], flat[:, 1, 2]).reshape(batch_shape)


def orthant_probability_4(corr):
    """Four-variable orthant probability ``P(z_1, ..., z_4 > 0)`` for ``z ~ N(0, corr)``.

    Plackett's identity integrated along ``I + t (corr - I)`` from the identity (see the module
    docstring): a 1-D integral per pair of variables, evaluated with a substitution that absorbs
    the ``1 / sqrt(1 - t^2 rho^2)`` singularity and a tanh-sinh rule for the remaining endpoint
    behaviour. Absolute error about ``1e-14`` for generic matrices and at most ``3e-10`` in the
    hardest cases we found (several pairs aligned to within ``1 - rho ~ 1e-14``). Singular
    matrices are fine: exact duplicates and opposites are reduced to lower dimension first, and
    rank-deficient matrices need nothing special.

    Parameters
    ----------
    corr : array_like, shape (..., 4, 4)
        Correlation matrices: symmetric, unit diagonal, positive semi-definite (possibly singular).

    Returns
    -------
    ndarray, shape (...)
        Probabilities in ``[0, 1/2]``.

    Raises
    ------
    ValueError
        If ``corr`` has the wrong shape, non-finite entries, a diagonal entry other than 1,
        or is not symmetric positive semi-definite.
    """
    flat, batch_shape = _check_correlation("corr", corr, 4)
    # Renormalise by the diagonal as given (within 1e-9 of 1), so that a duplicated row is an
    # exact duplicate even when the diagonal carries rounding.
    _, flat, _ = _standardise(flat)
    return _orthant_probability_4(flat).reshape(batch_shape)


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
    flat, batch_shape = _as_square_batch("cov", cov, 4)
    flat = _check_symmetric_psd("cov", flat)
    return _relu_four_point(flat).reshape(batch_shape)


def _unit_quadruples(n_students, n_units):
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
        :func:`landscape.teacher.validate_overlaps`) or ``noise`` is not a finite number ``>= 0``.
    """
    Q, R, T = validate_overlaps(Q, R, T)
    try:
        noise = float(noise)
    except (TypeError, ValueError):
        raise ValueError(f"noise must be a number >= 0, got {noise!r}") from None
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    return _finite_lr_expectation(Q, R, T, noise)


def _finite_lr_expectation(Q, R, T, noise):
    """Unchecked :func:`finite_lr_expectation`."""
    n_students = Q.shape[0]
    omega = np.block([[Q, R], [R.T, T]])
    sign = np.concatenate([np.ones(n_students), -np.ones(T.shape[0])])
    quadruples, (k, l), (i, j) = _unit_quadruples(n_students, omega.shape[0])
    cov = omega[quadruples[:, :, None], quadruples[:, None, :]]
    values = _relu_four_point(cov, labels=quadruples).reshape(k.size, i.size)
    weight = np.where(i == j, 1.0, 2.0) * sign[i] * sign[j]  # (i, j) and (j, i) are equal terms
    upper = values @ weight
    out = np.zeros((n_students, n_students))
    out[k, l] = upper
    out[l, k] = upper
    if noise > 0:
        variance = np.diag(Q)
        alive = variance > _TINY
        sd = np.sqrt(np.where(alive, variance, 1.0))
        both = alive[:, None] & alive[None, :]
        out += noise * np.where(both, _p2(Q / np.outer(sd, sd)), 0.0)
    return out
