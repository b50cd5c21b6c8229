"""Compiled right-hand side of the summary-statistics ODE (numba).

The ODE of :mod:`landscape.dynamics.ode` needs a few hundred evaluations per trajectory on arrays of a few
dozen entries: with numpy every evaluation is dozens of calls whose fixed cost, not arithmetic,
sets the time. Here the same formulas run as compiled loops over the index pairs:

- the gradient-flow velocity of :func:`landscape.model.loss.gradient_flow_velocity` (two-point
  kernels, eqs. (2.1)-(2.4) of docs/theory.md), rounding as it does;
- the ``eta^2`` term with the carried four-point state of :mod:`landscape.dynamics.fourpoint_flow`
  (Price's theorem derivatives per quadruple of distinct units, closed forms of
  :mod:`landscape.kernels.fourpoint` for quadruples with a repeated unit).

Tests compare the gradient flow with its numpy version, the ``eta^2`` term with the quadrature
of :func:`landscape.kernels.fourpoint.finite_lr_expectation`, and the carried derivatives with finite
differences of the quadrature. One evaluation is described by a *model* tuple built by :func:`flow_model` and read by
:func:`velocity`; the compiled integrator (:mod:`landscape.dynamics.dop853`) calls :func:`velocity`.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
from numba import njit

from ..kernels.fourpoint import unit_quadruples
from ..kernels.gaussian import TINY
from ..kernels.orthant import PAIRS
from .fourpoint_flow import carried_four_point
from .span import teacher_rows

__all__ = []  # internal to the ODE

_TWO_PI = 2.0 * math.pi
# Mixed Stein terms (pair, a, j, b, partner) of landscape.kernels.fourpoint._mixed_terms, one row each.
_PAIR_TABLE = PAIRS.astype(np.int64)
# Smallest 1 - rho^2 of a pair in the derivatives (a few ulps).
_DET_PAIR_FLOOR = 1e-15

# IEEE semantics for 0/0 and x/0 (NaN marks a trial stage out of range); cached on disk.
_jit = njit(cache=True, error_model="numpy")


class CarriedTables(NamedTuple):
    """Index tables of the ``eta^2`` sum (see :func:`_carried_tables`); empty arrays without it."""

    quadruples: np.ndarray
    state_index: np.ndarray
    weight: np.ndarray
    forms: np.ndarray
    form_of: np.ndarray
    sets: np.ndarray
    set_of: np.ndarray
    pair_map: np.ndarray
    carried: np.ndarray


class FlowModel(NamedTuple):
    """The constants of one ODE run that :func:`velocity` reads (a named tuple: numba compiles it)."""

    T: np.ndarray
    V: np.ndarray
    lr: float
    noise: float
    K: int
    carried: bool
    bound: float
    tables: CarriedTables
    overlap_error: bool


def flow_model(T, lr, noise, n_students, bound, carried=False, overlap_error=None):
    """The constants of one ODE run, as the :class:`FlowModel` :func:`velocity` reads.

    Parameters
    ----------
    T : ndarray, shape (M, M)
    lr, noise : float
    n_students : int
    bound : float
        Overlaps beyond this make :func:`velocity` return NaN (a trial stage out of range).
    carried : bool
        Include the ``eta^2`` term with the carried four-point state of
        :class:`landscape.dynamics.fourpoint_flow.CarriedFourPoint` (layout ``(P4, F)``); without it,
        gradient flow times ``lr``.
    overlap_error : bool, optional
        What the integrator's error norm (:func:`error_sums`) measures: the error the student
        rows' error estimate makes in the overlaps ``(Q, R)`` and in the orthogonal factor relative
        to its rows' size (True), or each coordinate of the state, as
        :func:`scipy.integrate.solve_ivp` does (False). Default: ``carried``.

    Returns
    -------
    FlowModel
        With the teacher rows ``V`` (M, p) of :func:`landscape.dynamics.span.teacher_rows` and the
        index tables of :func:`_carried_tables` (empty without ``carried``).
    """
    T = np.ascontiguousarray(T, dtype=float)
    V = teacher_rows(T, int(n_students))
    tables = _carried_tables(n_students, T.shape[0]) if carried else _NO_TABLES
    on_overlaps = carried if overlap_error is None else overlap_error
    return FlowModel(T, V, float(lr), float(noise), int(n_students), bool(carried), float(bound), tables,
                     bool(on_overlaps))


def _read_only(tables):
    # One array type for the tables with and without the eta^2 term (numba compiles writable and
    # read-only arrays separately, and each compilation of the ODE takes tens of seconds).
    for table in tables:
        table.setflags(write=False)
    return tables


_NO_TABLES = _read_only(CarriedTables(
    np.zeros((0, 4), np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 5), np.int64),
    np.zeros(0, np.int64), np.zeros((0, 4), np.int64), np.zeros(0, np.int64), np.zeros((0, 6), np.int64),
    np.zeros((0, 4), np.int64),
))


@functools.lru_cache(maxsize=64)
def _carried_tables(n_students, n_teachers):
    """Index tables of the ``eta^2`` sum for ``K`` students and ``M`` teachers (read-only).

    ``quadruples`` (n, 4): ``(k, l, i, j)``, ``k <= l`` major, ``i <= j``; ``state_index`` (n,):
    the row of each in the carried state, -1 for quadruples with a repeated unit; ``weight``
    (n_ij,): the weight of ``(i, j)`` in ``(f - y)^2``; ``forms`` (n_forms, 5): the reductions
    chosen from the labels (distinct variables, squared relus, three unit labels in order of
    power) and ``form_of`` (n,): the form of each quadruple with a repeated unit, -1 otherwise;
    ``sets`` (n_sets, 4): the sets of four distinct units, sorted; ``set_of`` (n_carried,): the
    set of each carried quadruple; ``pair_map`` (n_carried, 6): the set's pair for each pair of
    roles (``PAIRS`` order); ``carried`` (n_carried, 4): the carried quadruples, in state order.
    """
    carrier = carried_four_point(n_students, n_teachers)
    quadruples, _, (i, j) = unit_quadruples(n_students, n_students + n_teachers)
    distinct = carrier.distinct
    state_index = np.full(quadruples.shape[0], -1, dtype=np.int64)
    state_index[distinct] = np.arange(int(distinct.sum()))
    sign = np.concatenate([np.ones(n_students), -np.ones(n_teachers)])
    weight = np.where(i == j, 1.0, 2.0) * sign[i] * sign[j]
    reduced = np.zeros((quadruples.shape[0], 5), np.int64)
    for (count, squared), rows, labels in carrier.repeated_cases:
        where = np.flatnonzero(~distinct)[rows]
        reduced[where, 0], reduced[where, 1] = count, squared
        reduced[where, 2 : 2 + min(count, 3)] = labels[:, : min(count, 3)]
    # Quadruples that reduce to the same form share one evaluation; sorted by case, the
    # evaluation loop branches predictably.
    forms, repeated_form = np.unique(reduced[~distinct], axis=0, return_inverse=True)
    form_of = np.full(quadruples.shape[0], -1, dtype=np.int64)
    form_of[~distinct] = repeated_form.reshape(-1)
    tables = (quadruples, state_index, weight, forms, form_of, carrier.sets, carrier.set_of, carrier.pair_map,
              carrier.carried)
    return _read_only(CarriedTables(*(np.ascontiguousarray(table, dtype=table.dtype if table.dtype == float else np.int64)
                                      for table in tables)))


# ------------------------------------------------------------------------------ two-point part


@_jit
def _span_rows(y, V, K):
    """The rows ``W = [U; V]`` (K + M, p): students from the flat state, then the teachers."""
    M, p = V.shape
    W = np.empty((K + M, p))
    for k in range(K):
        for a in range(p):
            W[k, a] = y[k * p + a]
    for m in range(M):
        for a in range(p):
            W[K + m, a] = V[m, a]
    return W


@_jit
def _gram(W):
    """``Omega = W W^T`` (n, n): the joint overlaps, a Gram matrix by construction."""
    n, p = W.shape
    omega = np.empty((n, n))
    for a in range(n):
        for b in range(a + 1):
            total = 0.0
            for c in range(p):
                total += W[a, c] * W[b, c]
            omega[a, b] = omega[b, a] = total
    return omega


@_jit
def _angle(r, c):
    """``atan2(r, c)`` for ``r >= 0``, by the arctangent of the ratio (half the time of atan2,
    which set a tenth of a gradient-flow right-hand side)."""
    if c > 0.0:
        return math.atan(r / c)
    if c < 0.0:
        return math.pi + math.atan(r / c)
    return 0.5 * math.pi if r > 0.0 else 0.0


@_jit
def _gradient_flow_coefficients(omega, W, K):
    """``C`` (K, n) with ``-grad_k L = sum_j C[k, j] W_j`` (students ``j < K``, then teachers).

    The coefficients of :func:`landscape.model.loss.gradient_coefficients` (``-alpha``, ``-beta``)
    with the pair residuals ``sqrt(q_k q_j - c^2) = |u_k| |w_j - (c / q_k) u_k|`` computed from the
    rows: exact near aligned units, where the square root of the cancellation keeps only half
    the digits (and a flow converging onto its teacher would stall at a loss of ~1e-9).
    """
    n, p = W.shape
    fire = np.empty((K, n))
    residual = np.empty((K, n))
    pair = np.empty((K, K))  # sqrt(q_k q_l - c^2) of the student pairs, symmetric: once per pair
    for k in range(K):
        q = omega[k, k]
        for j in range(n):
            if j < k:  # a student pair met in row j: its residual and angle are symmetric
                r = pair[j, k]
                fire[k, j] = fire[j, k]
            else:
                r = 0.0
                if j != k and q > TINY:
                    ratio = omega[k, j] / q
                    total = 0.0
                    for a in range(p):
                        e = W[j, a] - ratio * W[k, a]
                        total += e * e
                    r = math.sqrt(q * total)
                fire[k, j] = 0.5 if j == k else (math.pi - _angle(r, omega[k, j])) / _TWO_PI
                if j < K:
                    pair[k, j] = r
            if not (q > TINY and omega[j, j] > TINY):
                fire[k, j] = 0.0
            residual[k, j] = r / (_TWO_PI * q) if q > TINY else 0.0
    for k in range(K):
        kink = 0.0
        for j in range(K):
            kink += residual[k, j]
        for j in range(K, n):
            kink -= residual[k, j]
        fire[k, k] += kink
    for k in range(K):
        for j in range(K):
            fire[k, j] = -fire[k, j]
    return fire


@_jit
def _add_orthogonal_part(W, term, K, out):
    """Add ``dS = term S^{-T} / 2`` to the orthogonal columns of ``out`` (K, p): the ``eta^2``
    term ``dQ = term`` as a change of ``S`` (``dS S^T + S dS^T = term``). NaN if ``S`` is singular
    (Gaussian elimination with partial pivoting on ``S Y = term / 2``, ``dS = Y^T``)."""
    p = W.shape[1]
    first = p - K
    S = np.empty((K, K))
    Y = np.empty((K, K))
    for a in range(K):
        for b in range(K):
            S[a, b] = W[a, first + b]
            Y[a, b] = 0.5 * term[a, b]
    for col in range(K):
        pivot = col
        for row in range(col + 1, K):
            if abs(S[row, col]) > abs(S[pivot, col]):
                pivot = row
        if S[pivot, col] == 0.0:
            out[:] = np.nan
            return
        if pivot != col:
            for b in range(K):
                S[col, b], S[pivot, b] = S[pivot, b], S[col, b]
                Y[col, b], Y[pivot, b] = Y[pivot, b], Y[col, b]
        for row in range(col + 1, K):
            factor = S[row, col] / S[col, col]
            for b in range(col, K):
                S[row, b] -= factor * S[col, b]
            for b in range(K):
                Y[row, b] -= factor * Y[col, b]
    for col in range(K - 1, -1, -1):
        for b in range(K):
            total = Y[col, b]
            for c in range(col + 1, K):
                total -= S[col, c] * Y[c, b]
            Y[col, b] = total / S[col, col]
    for k in range(K):
        for a in range(K):
            out[k * p + first + a] += Y[a, k]


@_jit
def _gram_rate(W, f, K):
    """``d Omega / dt`` (n, n) from the rows ``W`` and the students' velocity ``f`` (K p,)."""
    n, p = W.shape
    rate = np.zeros((n, n))
    for a in range(K):
        for b in range(n):
            total = 0.0
            for c in range(p):
                total += f[a * p + c] * W[b, c]
            rate[a, b] += total
            rate[b, a] += total
    return rate


@_jit
def error_sums(error5, error3, y, y_new, rtol, atol, model):
    """The sums of squared scaled errors of a step from ``y`` to ``y_new`` whose two embedded error
    estimates are ``error5``, ``error3`` (n,), and the number of terms: what DOP853's error norm
    combines (:func:`landscape.dynamics.dop853.integrate`).

    Each term is an error divided by ``atol + rtol * max(|x|, |x_new|)`` of its quantity ``x``.
    Without ``model.overlap_error`` the quantities are the state's coordinates, as in
    :func:`scipy.integrate.solve_ivp`. With it, the student rows ``U = [A | S]`` count twice:

    - through the overlaps ``Q = U U^T`` (all ``K^2`` entries) and ``R = U V^T``, with the errors
      ``dU U^T + U dU^T`` and ``dU V^T`` (first order): the error control of the ``(Q, R)``
      integration, whatever the rows' basis;
    - the orthogonal factor ``S`` against its own size, each entry of a student's row against
      that row's norm (basis-free too);

    then the carried state's coordinates.

    Why both, with the ``eta^2`` term. The rows alone (entry by entry: 81 steps to ``t = 200`` in
    the dynamics benchmark; by the rows of ``S``: 59) left the overlaps 7 times less accurate than
    the same tolerance on ``(Q, R)`` did before the span parametrisation (54 steps), because
    ``dS = lr^2 Phi S^-T / 2`` makes the rows' error estimate larger than the overlaps'. The
    overlaps alone under-weigh ``S`` where it is small (``dQ = dS S^T + S dS^T``): a flow
    converging onto its teacher, ``S -> 0``, where ``dS`` grows like ``1 / S``, took 10^4 steps
    without reaching the handover (K = M = 3 and 6, lr 0.1, t_max 3000: ``t_max`` at loss 3e-6
    instead of converged). Both: 73 steps at ``t = 200``, the overlaps' accuracy, and those flows
    converge. Gradient flow keeps the coordinates (its tail needs relative accuracy in ``S``, and
    its ``S`` moves smoothly).
    """
    total5, total3 = 0.0, 0.0
    first, n_terms = 0, 0
    if model.overlap_error:
        V, K = model.V, model.K
        M, p = V.shape
        first, n_terms = K * p, K * (K + M) + K * K
        for k in range(K):
            for j in range(K + M):
                error_of5, error_of3, old, new = 0.0, 0.0, 0.0, 0.0
                for a in range(p):
                    # (U U^T)_kj for a student j, (U V^T)_k(j-K) for a teacher.
                    other = y[j * p + a] if j < K else V[j - K, a]
                    other_new = y_new[j * p + a] if j < K else V[j - K, a]
                    error_of5 += error5[k * p + a] * other
                    error_of3 += error3[k * p + a] * other
                    if j < K:
                        error_of5 += y[k * p + a] * error5[j * p + a]
                        error_of3 += y[k * p + a] * error3[j * p + a]
                    old += y[k * p + a] * other
                    new += y_new[k * p + a] * other_new
                scale = atol + rtol * max(abs(old), abs(new))
                total5 += (error_of5 / scale) ** 2
                total3 += (error_of3 / scale) ** 2
        # The orthogonal factor against its own size, row by row (basis-free, as |S_k| is).
        for k in range(K):
            old, new = 0.0, 0.0
            for a in range(k * p + p - K, (k + 1) * p):
                old += y[a] * y[a]
                new += y_new[a] * y_new[a]
            scale = atol + rtol * math.sqrt(max(old, new))
            for a in range(k * p + p - K, (k + 1) * p):
                total5 += (error5[a] / scale) ** 2
                total3 += (error3[a] / scale) ** 2
    for a in range(first, y.size):
        scale = atol + rtol * max(abs(y[a]), abs(y_new[a]))
        total5 += (error5[a] / scale) ** 2
        total3 += (error3[a] / scale) ** 2
    return total5, total3, n_terms + y.size - first


@_jit
def overlap_events(y, f, model):
    """``(|d(Q, R)/dt|, largest |Q_kl|, |R_km|)`` at the state ``y`` with velocity ``f``: what the
    convergence and divergence events watch (the overlaps, not the coordinates)."""
    V, K = model.V, model.K
    M, p = V.shape
    W = _span_rows(y, V, K)
    omega = _gram(W)
    rate = _gram_rate(W, f, K)
    speed, largest = 0.0, 0.0
    for a in range(K):
        for b in range(K + M):
            speed += rate[a, b] * rate[a, b]  # dQ (K, K), then dR (K, M)
            largest = max(largest, abs(omega[a, b]))
    return math.sqrt(speed), largest


# ----------------------------------------------------------------------------- four-point part


@_jit
def _correlations(omega):
    n = omega.shape[0]
    sd = np.empty(n)
    for a in range(n):
        sd[a] = math.sqrt(omega[a, a])
    corr = np.empty((n, n))
    for a in range(n):
        for b in range(n):
            corr[a, b] = 1.0 if a == b else min(max(omega[a, b] / (sd[a] * sd[b]), -1.0), 1.0)
    return sd, corr


@_jit
def _asin(r):
    return math.asin(min(max(r, -1.0), 1.0))


@_jit
def _root(r):
    """``sqrt(1 - r^2)`` without the cancellation near ``|r| = 1``."""
    return math.sqrt(max((1.0 - r) * (1.0 + r), 0.0))


@_jit
def _angle_tables(corr):
    """``asin(rho)`` and ``sqrt(1 - rho^2)`` of every pair (n, n): the closed forms share them."""
    n = corr.shape[0]
    arcsin, root = np.empty((n, n)), np.empty((n, n))
    for a in range(n):
        for b in range(a + 1):
            arcsin[a, b] = arcsin[b, a] = _asin(corr[a, b])
            root[a, b] = root[b, a] = _root(corr[a, b])
    return arcsin, root


# The per-element helpers below take scalars. A compiled call with array arguments pays reference
# counts (atomic operations) that inlining does not remove: with the arrays passed, the 192 closed
# forms of K = M = 4 took 8 us of a 21 us right-hand side, with scalars 1 us.


@_jit
def _facet_mean(root_xz, r_xy, r_xz, r_yz, root_yz):
    """``4 pi E[delta(z) x 1{x > 0, y > 0}]`` for unit-variance ``x, y, z`` with correlations
    ``r_xy, r_xz, r_yz`` and ``root_xz = sqrt(1 - r_xz^2)``, ``root_yz``; see
    :func:`landscape.kernels.fourpoint._facet_mean`."""
    return root_xz + (r_xy - r_xz * r_yz) / max(root_yz, 1e-300)


@_jit
def _reduced_form(count, squared, r_bc, r_bd, r_cd, asin_bc, asin_bd, asin_cd, root_bc, root_bd, root_cd):
    """The closed forms of ``landscape.kernels.fourpoint._REDUCED_FORMS`` (unit variances) for the
    distinct units ``b, c, d`` in order of power, from their correlations ``r``, ``asin(r)`` and
    ``sqrt(1 - r^2)`` (the entries unused by a form are ignored)."""
    if count == 3:
        p3 = max(0.125 + (asin_bc + asin_bd + asin_cd) / (4.0 * math.pi), 0.0)
        facet_dcb = _facet_mean(root_bd, r_cd, r_bd, r_bc, root_bc)
        facet_dbc = _facet_mean(root_cd, r_bd, r_cd, r_bc, root_bc)
        if squared == 0:  # step(b) relu(c) relu(d)
            return r_cd * p3 + (r_bc * facet_dcb + facet_dbc) / (4.0 * math.pi)
        # step(b) step(c) relu(d)^2
        return p3 + (r_bd * facet_dcb + r_cd * facet_dbc) / (4.0 * math.pi)
    if count == 2 and squared == 0:  # relu(b) relu(c)
        return (root_bc + r_bc * (0.5 * math.pi + asin_bc)) / _TWO_PI
    if count == 2:  # step(b) relu(c)^2
        return 0.25 + asin_bc / _TWO_PI + r_bc * root_bc / _TWO_PI
    return 0.5  # relu(b)^2


@_jit
def _form_value(count, squared, b, c, d, corr, arcsin, root):
    """:func:`_reduced_form` of the units ``b, c, d`` of the pair tables ``corr``, ``arcsin``,
    ``root`` (n, n) (the rare paths; the hot loop of :func:`_finite_lr_term` gathers the same
    entries itself)."""
    return _reduced_form(count, squared, corr[b, c], corr[b, d], corr[c, d], arcsin[b, c], arcsin[b, d],
                         arcsin[c, d], root[b, c], root[b, d], root[c, d])


@_jit
def _merged_value(labels, corr, arcsin, root, same, representative, power, order):
    """``E[step step relu relu]`` of the unit-variance units ``labels`` (4,), merging by value.

    The reduction of :func:`landscape.kernels.fourpoint._relu_four_point`: units that are the same, or
    that rounding made exactly aligned (a flow converging onto a teacher), are one variable
    raised to the number of relus it absorbs; exact opposites leave no orthant. The last four
    arguments are work arrays (4, 4), (4,), (4,), (4,).
    """
    for r in range(4):
        for s in range(4):
            same[r, s] = corr[labels[r], labels[s]] >= 1.0
            if corr[labels[r], labels[s]] <= -1.0:
                return 0.0
    for via in range(4):  # transitive closure
        for r in range(4):
            for s in range(4):
                same[r, s] = same[r, s] or (same[r, via] and same[via, s])
    for r in range(4):
        representative[r] = r
        for s in range(r - 1, -1, -1):
            if same[r, s]:
                representative[r] = s
    power[:] = 0
    for r in range(2, 4):
        power[representative[r]] += 1
    # Distinct variables in order of power (stable), as landscape.kernels.fourpoint._reduction orders them.
    order[:] = 0
    count = 0
    squared = 0
    for p in range(3):
        for r in range(4):
            if representative[r] == r and power[r] == p:
                order[count] = labels[r]
                count += 1
                squared += p == 2
    return _form_value(count, squared, order[0], order[1], order[2], corr, arcsin, root)


@_jit
def _pair_term(rho, r_ik, r_il, r_jk, r_jl, r_kl, inverse_det):
    """``(W, K)`` of the pair ``(i, j)`` with correlation ``rho`` and ``1 / det = 1 / (1 - rho^2)``
    (from :func:`_pair_tables`) among four unit-variance variables, the complement ``(k, l)``.

    The determinants of the ``(i, j, k)`` and ``(i, j, l)`` blocks and the cross cofactor, by
    elimination on ``x_i`` (partial covariances), as in :mod:`landscape.kernels.orthant`; they are
    ``det_pair`` times the conditional variances and covariance of ``(k, l)`` given ``x_i = x_j = 0``.
    """
    det_pair = (1.0 - rho) * (1.0 + rho)
    p_jk = r_jk - rho * r_ik
    p_jl = r_jl - rho * r_il
    cross = det_pair * (r_kl - r_ik * r_il) - p_jl * p_jk
    var_k = max(det_pair * (1.0 - r_ik) * (1.0 + r_ik) - p_jk * p_jk, 0.0)
    var_l = max(det_pair * (1.0 - r_il) * (1.0 + r_il) - p_jl * p_jl, 0.0)
    # W = 1/4 + asin(r) / (2 pi) with r = cross / sqrt(var_k var_l), as the arctangent
    # atan2(cross, root) (atan of the ratio: half the time of atan2, a third of asin's); |r| > 1
    # from rounding gives the bound 0 or 1/2. Where a complementary variable lies in the span
    # of the pair (var = cross = 0) W is undefined but bounded; 1/4 does, since it is
    # multiplied by a vanishing rate.
    root = math.sqrt(max(var_k * var_l - cross * cross, 0.0))
    if root > 0.0:
        angle = math.atan(cross / root)
    else:
        angle = 0.0 if cross == 0.0 else math.copysign(0.5 * math.pi, cross)
    w = 0.25 + angle / _TWO_PI
    # K = (sqrt(v_k v_l - c^2) + c (pi - acos r)) / (2 pi) with v, c = (var, cross) / det_pair,
    # a conditional E[relu relu] of unit-bounded variances: in [0, 1/2] whatever the rounding.
    kernel = min(max((root / _TWO_PI + cross * w) * inverse_det, 0.0), 0.5)
    return w, kernel


@_jit
def _pair_tables(corr):
    """``phi2 = 1 / (2 pi sqrt(1 - rho^2))`` and ``1 / (1 - rho^2)`` of every pair of units (n, n).

    Rounding puts pairs within ~eps of alignment anywhere in [0, eps] (or past 1 in a trial
    stage); the floor keeps both finite there, where rho has stopped moving to working precision.
    """
    n = corr.shape[0]
    phi2, inverse_det = np.empty((n, n)), np.empty((n, n))
    for a in range(n):
        for b in range(n):
            det_pair = max((1.0 - corr[a, b]) * (1.0 + corr[a, b]), _DET_PAIR_FLOOR)
            inverse_det[a, b] = 1.0 / det_pair
            phi2[a, b] = 1.0 / (_TWO_PI * math.sqrt(det_pair))
    return phi2, inverse_det


@_jit
def _set_terms(sets, corr, corr_rate):
    """``phi2 W``, ``phi2 K`` (n_sets, 6) and ``dP4/dt`` (n_sets,) of every set of four distinct
    units (sorted labels, pairs in the order of ``PAIRS``): they do not depend on the roles."""
    n_sets = sets.shape[0]
    phi2_w, phi2_k, d_p4 = np.empty((n_sets, 6)), np.empty((n_sets, 6)), np.zeros(n_sets)
    phi2_of, inverse_det_of = _pair_tables(corr)
    for s in range(n_sets):
        for p in range(6):
            i, j = sets[s, _PAIR_TABLE[p, 0]], sets[s, _PAIR_TABLE[p, 1]]
            k, l = sets[s, _PAIR_TABLE[p, 2]], sets[s, _PAIR_TABLE[p, 3]]
            w, kernel = _pair_term(corr[i, j], corr[i, k], corr[i, l], corr[j, k], corr[j, l], corr[k, l],
                                   inverse_det_of[i, j])
            phi2_w[s, p] = phi2_of[i, j] * w
            phi2_k[s, p] = phi2_of[i, j] * kernel
            d_p4[s] += phi2_w[s, p] * corr_rate[i, j]
    return phi2_w, phi2_k, d_p4


@_jit
def _relu_rate(carried, index, corr, corr_rate, p4, set_w, set_k, s, pair_map):
    """``dF/dt`` of the carried quadruple ``carried[index]`` (roles step, step, relu, relu), whose
    set ``s`` has the ``phi2 W``, ``phi2 K`` rows ``set_w[s]``, ``set_k[s]``, with the set's pair
    ``pair_map[index, p]`` for each pair of roles ``p`` (``PAIRS`` order).

    ``dF/dt = P4 d rho_23 + phi2 K_01 d rho_01 +`` the twelve Stein terms of
    :func:`landscape.kernels.fourpoint._mixed_terms`, ``d rho_ab C'_{b'j} phi2 W_aj`` with
    ``C'_{b'j} = rho_b'j - rho_b'a rho_aj``, written out by pair ``{a, j}`` (a loop over that
    table took five times as long; a test checks the two agree).
    """
    u0, u1, u2, u3 = carried[index, 0], carried[index, 1], carried[index, 2], carried[index, 3]
    r01, r02, r03 = corr[u0, u1], corr[u0, u2], corr[u0, u3]
    r12, r13, r23 = corr[u1, u2], corr[u1, u3], corr[u2, u3]
    d01, d02, d03 = corr_rate[u0, u1], corr_rate[u0, u2], corr_rate[u0, u3]
    d12, d13, d23 = corr_rate[u1, u2], corr_rate[u1, u3], corr_rate[u2, u3]
    w01, w02, w03 = set_w[s, pair_map[index, 0]], set_w[s, pair_map[index, 1]], set_w[s, pair_map[index, 2]]
    w12, w13 = set_w[s, pair_map[index, 3]], set_w[s, pair_map[index, 4]]
    mixed = (
        w01 * (d02 * (r13 - r03 * r01) + d03 * (r12 - r02 * r01) + d12 * (r03 - r13 * r01) + d13 * (r02 - r12 * r01))
        + w02 * (d02 * (r23 - r03 * r02) + d03 * (1.0 - r02 * r02))
        + w03 * (d02 * (1.0 - r03 * r03) + d03 * (r23 - r02 * r03))
        + w12 * (d12 * (r23 - r13 * r12) + d13 * (1.0 - r12 * r12))
        + w13 * (d12 * (1.0 - r13 * r13) + d13 * (r23 - r12 * r13))
    )
    return p4 * d23 + set_k[s, pair_map[index, 0]] * d01 + mixed


@_jit
def _any_exactly_aligned(corr):
    n = corr.shape[0]
    for a in range(n):
        for b in range(a):
            if abs(corr[a, b]) >= 1.0:
                return True
    return False


@_jit
def _finite_lr_term(sd, corr, state, K, noise, tables):
    """The ``eta^2`` expectation (K, K) from the carried state and the closed forms."""
    quadruples, state_index, weight = tables.quadruples, tables.state_index, tables.weight
    forms, form_of = tables.forms, tables.form_of
    n_pairs = weight.size
    half = state.size // 2
    arcsin, root = _angle_tables(corr)
    # Rounding can make two distinct units exactly aligned: then the reductions chosen from the
    # labels divide by sqrt(1 - rho^2) = 0, and the units are merged by value instead.
    by_value = _any_exactly_aligned(corr)
    form_value = np.empty(forms.shape[0])
    # Rows are read by element, not as row views: a view costs a reference count (atomic
    # operations), which in these loops took as long as the arithmetic.
    if not by_value:
        for f in range(forms.shape[0]):
            b, c, d = forms[f, 2], forms[f, 3], forms[f, 4]
            form_value[f] = _reduced_form(forms[f, 0], forms[f, 1], corr[b, c], corr[b, d], corr[c, d], arcsin[b, c],
                                          arcsin[b, d], arcsin[c, d], root[b, c], root[b, d], root[c, d])
    same, representative = np.empty((4, 4), np.bool_), np.empty(4, np.int64)
    power, order = np.empty(4, np.int64), np.empty(4, np.int64)
    out = np.zeros((K, K))
    # Rows come in blocks of one (k, l) with every (i, j) in weight order (see _carried_tables).
    for block in range(quadruples.shape[0] // n_pairs):
        total = 0.0
        for pair in range(n_pairs):
            row = block * n_pairs + pair
            index = state_index[row]
            if index >= 0:
                value = state[half + index]
            elif by_value:
                value = _merged_value(quadruples[row], corr, arcsin, root, same, representative, power, order)
            else:
                value = form_value[form_of[row]]
            total += weight[pair] * max(value, 0.0) * sd[quadruples[row, 2]] * sd[quadruples[row, 3]]
        out[quadruples[block * n_pairs, 0], quadruples[block * n_pairs, 1]] = total
    for k in range(K):
        for l in range(k):
            out[k, l] = out[l, k]
    if noise > 0:
        for k in range(K):
            for l in range(K):
                out[k, l] += noise * (0.25 + arcsin[k, l] / _TWO_PI)
    return out


# -------------------------------------------------------------------------------- full ODE


@_jit
def velocity(y, model, out, span_only):
    """Write ``dy/dt`` of the flat state ``y = (U[, P4, F])`` into ``out``.

    ``U`` (K, p) are the student rows in the span (:mod:`landscape.dynamics.span`). With
    ``span_only``, only the rows' part of ``out`` (the first ``K p`` entries) is written: the
    carried state's own rates, most of the cost, are skipped.

    NaN everywhere when ``y`` is not finite or a coordinate is beyond the square root of the
    model's bound (an overlap beyond the bound): a Runge-Kutta trial stage out of range, which
    the integrator rejects.
    """
    V, K, lr, noise = model.V, model.K, model.lr, model.noise
    carried, bound, tables = model.carried, model.bound, model.tables
    p = V.shape[1]
    n_span = K * p
    limit = math.sqrt(bound)
    for a in range(y.size):
        if not math.isfinite(y[a]) or (a < n_span and abs(y[a]) > limit):
            out[:] = np.nan
            return
    W = _span_rows(y, V, K)
    omega = _gram(W)
    coefficients = _gradient_flow_coefficients(omega, W, K)
    n = omega.shape[0]
    for k in range(K):
        for a in range(p):
            total = 0.0
            for j in range(n):
                total += coefficients[k, j] * W[j, a]
            out[k * p + a] = lr * total
    if carried:
        sd, corr = _correlations(omega)
        state = y[n_span:]
        term = _finite_lr_term(sd, corr, state, K, noise, tables)
        for k in range(K):
            for l in range(K):
                term[k, l] *= lr * lr
        _add_orthogonal_part(W, term, K, out)
        if not span_only and math.isfinite(out[0]):
            _carried_rates(sd, corr, _gram_rate(W, out, K), state, tables, out[n_span:])


@_jit
def _carried_rates(sd, corr, rate, state, tables, out):
    """Time derivatives of the carried ``(P4, F)`` from those of the overlaps ``rate`` (n, n)."""
    sets, set_of, pair_map, carried = tables.sets, tables.set_of, tables.pair_map, tables.carried
    n = sd.size
    # d rho_ij = d omega_ij / (sd_i sd_j) - rho_ij (d omega_ii / 2 omega_ii + d omega_jj / 2 omega_jj)
    inverse_sd, relative = np.empty(n), np.empty(n)
    for a in range(n):
        inverse_sd[a] = 1.0 / sd[a]
        relative[a] = 0.5 * rate[a, a] * inverse_sd[a] * inverse_sd[a]
    corr_rate = np.empty((n, n))
    for a in range(n):
        for b in range(n):
            corr_rate[a, b] = rate[a, b] * inverse_sd[a] * inverse_sd[b] - corr[a, b] * (relative[a] + relative[b])
    set_w, set_k, set_dp4 = _set_terms(sets, corr, corr_rate)
    half = state.size // 2
    for index in range(carried.shape[0]):
        s = set_of[index]
        out[index] = set_dp4[s]
        out[half + index] = _relu_rate(carried, index, corr, corr_rate, state[index], set_w, set_k, s, pair_map)


@_jit
def carried_margin(y, model):
    """How far the state ``y`` is from where the carried derivatives break down: the smallest
    ``1 - |rho|`` over pairs of units with a student, or 0 if a student's norm is nearly zero.

    The carried derivatives contain ``phi2(rho) ~ 1 / sqrt(1 - rho^2)`` times rates that
    rounding no longer resolves when ``rho`` is within ~1e-8 of +-1 (a flow converging onto a
    teacher): the step size then collapses.
    """
    V, K = model.V, model.K
    omega = _gram(_span_rows(y, V, K))
    n = omega.shape[0]
    largest = 0.0
    for a in range(n):
        largest = max(largest, omega[a, a])
    margin = 1.0
    for a in range(K):
        if omega[a, a] <= 1e-12 * largest:
            return 0.0
        for b in range(n):
            if b != a:
                margin = min(margin, 1.0 - abs(omega[a, b]) / math.sqrt(omega[a, a] * omega[b, b]))
    return margin


# ------------------------------------------------------------- derivatives at one point


@_jit
def finite_lr_term_derivatives(omega, state, directions, noise, K, tables, step):
    """The ``eta^2`` expectation at the joint overlaps ``omega`` (n, n) and its derivatives along
    ``directions`` (n_dir, n, n) of ``omega`` (for the Jacobian of the ODE in ``(Q, R)``).

    ``state`` is the exact carried ``(P4, F)`` at ``omega`` (the quadrature of
    :meth:`landscape.dynamics.fourpoint_flow.CarriedFourPoint.initial_state`). Each derivative is a
    central difference of :func:`_finite_lr_term` with step ``step`` in which the carried state
    moves by its Price's-theorem derivatives (:func:`_carried_rates`, linear in the state, so no
    quadrature away from the point); the closed forms of the quadruples with a repeated unit and
    the standard deviations are differenced (error ``~ step^2``).

    Returns
    -------
    value : ndarray, shape (K, K)
    derivatives : ndarray, shape (n_dir, K, K)
    """
    sd, corr = _correlations(omega)
    value = _finite_lr_term(sd, corr, state, K, noise, tables)
    n_dir, n = directions.shape[0], omega.shape[0]
    derivatives = np.empty((n_dir, K, K))
    state_rate = np.zeros(state.size)
    moved_state = np.empty(state.size)
    moved = np.empty((n, n))
    for d in range(n_dir):
        _carried_rates(sd, corr, directions[d], state, tables, state_rate)
        for a in range(K):
            for b in range(K):
                derivatives[d, a, b] = 0.0
        for sign in (1.0, -1.0):
            for a in range(n):
                for b in range(n):
                    moved[a, b] = omega[a, b] + sign * step * directions[d, a, b]
            for a in range(state.size):
                moved_state[a] = state[a] + sign * step * state_rate[a]
            moved_sd, moved_corr = _correlations(moved)
            term = _finite_lr_term(moved_sd, moved_corr, moved_state, K, noise, tables)
            for a in range(K):
                for b in range(K):
                    derivatives[d, a, b] += sign * term[a, b] / (2.0 * step)
    return value, derivatives
