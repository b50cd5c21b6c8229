"""Compiled (numba) gradient flow of many starts: each start integrated on its own, in machine code.

The batched numpy flow spent most of its time on numpy's fixed cost per call, not on arithmetic:
a chunk's slowest starts (flows creeping into the degenerate minima of ``K > M``) run thousands
of steps after the others have stopped, with one or two starts per call (at ``K = 18, M = 17``,
four in five Runge-Kutta steps of a 64-start chunk had at most four active starts). Here every
start runs its own loop of Bogacki-Shampine 3(2) steps, with the same step-size rule, the same
gradient (the pair residuals from the Gram matrix, recomputed from the rejection for nearly
parallel pairs, as :func:`landscape.model.loss.gram_rejection_norms`) and the same stopping
tests as :func:`landscape.critical_points.batch_flow.flow_to_critical`, until an *event*: the
gradient norm falls below the tolerance or below the start's next hand-over check (the caller
checks convexity with the Hessian and resumes it), a unit dies, the weights blow up, or the
steps run out. Tests compare the gradient with :func:`landscape.model.loss.gradient_from_weights`
and the flow with the numpy integrator step for step.

Eqs. (2.6) and (5.1)-(5.3) of docs/theory.md.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..kernels.gaussian import TINY

__all__ = [
    "EVENT_BLOWN", "EVENT_DEAD", "EVENT_TOL", "EVENT_CHECK", "EVENT_OUT",
    "advance", "negative_gradients", "sparse_projectors", "warm_up",
]

#: Events that stop :func:`advance` for a start.
EVENT_BLOWN, EVENT_DEAD, EVENT_TOL, EVENT_CHECK, EVENT_OUT = 1, 2, 3, 4, 5

_TWO_PI = 2.0 * math.pi
# Pairs with sin^2 of their angle below this get the rejection formula (as gram_rejection_norms).
_ALIGNED_SIN2 = 1e-4
# Bogacki-Shampine 3(2): third-order weights and (third minus second order) error weights.
_B1, _B2, _B3 = 2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0
_E1, _E2, _E3, _E4 = 2.0 / 9.0 - 7.0 / 24.0, 1.0 / 3.0 - 1.0 / 4.0, 4.0 / 9.0 - 1.0 / 3.0, -1.0 / 8.0

# IEEE semantics for 0/0 and x/0 (a NaN marks a blown-up start); cached on disk.
_jit = njit(cache=True, error_model="numpy")


# Cephes' arctangent (S. L. Moshier), rational on |x| <= tan(pi / 8) after range reduction (error
# below 3e-16), written without branches so that the loop over pairs vectorises: libm's atan2,
# which numba calls otherwise, cost 20 ns a pair and most of the gradient (numpy's SIMD one: 2.5 ns).
_ATAN_P = (-8.750608600031904122785e-1, -1.615753718733365076637e1, -7.500855792314704667340e1,
           -1.228866684490136173410e2, -6.485021904942025371773e1)
_ATAN_Q = (2.485846490142306297962e1, 1.650270098316988542046e2, 4.328810604912902668951e2,
           4.853903996359136964868e2, 1.945506571482613964425e2)
_TAN_PI_8 = 0.41421356237309504880
# The part of pi / 4 that a double misses.
_PI_4_LOW = 3.061616997868382943065e-17


@_jit
def _firing(r, c):
    """``P(u > 0, v > 0) = (pi - atan2(r, c)) / (2 pi)`` for the residual ``r >= 0`` and covariance ``c``
    (not both zero)."""
    a = abs(c)
    x = min(r, a) / max(r, a)  # in [0, 1]: arctan(x) = pi / 4 + arctan((x - 1) / (x + 1))
    reduced = x > _TAN_PI_8
    u = (x - 1.0) / (x + 1.0) if reduced else x
    z = u * u
    p = (((_ATAN_P[0] * z + _ATAN_P[1]) * z + _ATAN_P[2]) * z + _ATAN_P[3]) * z + _ATAN_P[4]
    q = ((((z + _ATAN_Q[0]) * z + _ATAN_Q[1]) * z + _ATAN_Q[2]) * z + _ATAN_Q[3]) * z + _ATAN_Q[4]
    angle = u * (z * p / q) + u
    angle = (0.25 * math.pi + (angle + _PI_4_LOW)) if reduced else angle  # arctan(min / max)
    angle = (0.5 * math.pi - angle) + 2.0 * _PI_4_LOW if r > a else angle  # arctan(r / |c|)
    return (math.pi - angle) / _TWO_PI if c >= 0.0 else angle / _TWO_PI


@_jit
def _minus_gradient(W, work, out):
    """``-grad L`` (K, n) of the student rows ``W``, with the work arrays of :func:`_work_space`.

    ``U`` (J, n) holds the rows of all ``J = K + M`` units (students, copied in here, then the
    teachers), ``UT`` (n, K) the students' transpose, ``gram`` (K + 2, J) row ``k`` the Gram row of
    student ``k``, then its coefficients (``alpha`` against students, ``-beta`` against teachers,
    :func:`landscape.model.loss.gradient_coefficients`), then the squared norms and the residuals of
    one row. The teacher rows are sparse (``starts``, ``columns``, ``values``; one entry each for
    Safran & Shamir's orthonormal teacher), which halves the work.
    """
    U, UT, gram, starts, columns, values = work
    K, n = W.shape
    J = U.shape[0]
    variance, residual = gram[K], gram[K + 1]
    for k in range(K):
        for i in range(n):
            U[k, i] = UT[i, k] = W[k, i]
    for k in range(K):
        row = gram[k]
        row[:K] = 0.0
        for i in range(n):  # the inner loop over students vectorises (sums in the order of the dot product)
            w = W[k, i]
            for l in range(K):
                row[l] += w * UT[i, l]
        for m in range(J - K):
            total = 0.0
            for entry in range(starts[m], starts[m + 1]):
                total += W[k, columns[entry]] * values[entry]
            row[K + m] = total
        variance[k] = row[k]
    for k in range(K):
        _coefficients(U, K, k, gram[k], variance, residual)
    for k in range(K):
        row = gram[k]
        for i in range(n):
            out[k, i] = 0.0
        for l in range(K):
            weight = row[l]
            for i in range(n):
                out[k, i] -= weight * W[l, i]
        for m in range(J - K):
            for entry in range(starts[m], starts[m + 1]):
                out[k, columns[entry]] += row[K + m] * values[entry]


@_jit
def _coefficients(U, K, k, row, variance, residual):
    """Overwrite the Gram row of student ``k`` (against all units ``U``, ``K`` students first) with
    its gradient coefficients; ``residual`` (J,) is work space.

    Pair residuals ``sqrt(q_k q_j - c^2)`` from the Gram entries, recomputed from the rejection where
    the two units are nearly parallel (as :func:`landscape.model.loss.gram_rejection_norms`); then
    the firing probabilities (for teachers ``-beta``), and the kink terms on the diagonal.
    """
    J, n = U.shape
    q = variance[k]
    for j in range(J):
        squared = q * variance[j] - row[j] * row[j]
        residual[j] = math.sqrt(max(squared, 0.0))
    for j in range(J):
        product = q * variance[j]
        if product - row[j] * row[j] <= _ALIGNED_SIN2 * product:  # rare: nearly parallel units
            ratio = row[j] / q if q > 0.0 else row[j]
            total = 0.0
            for i in range(n):
                e = U[j, i] - ratio * U[k, i]
                total += e * e
            residual[j] = math.sqrt(q * total) if j != k else 0.0
    for j in range(J):  # vectorises: no branches
        row[j] = _firing(residual[j], row[j])
    alive = q > TINY
    for j in range(J):
        if not (alive and variance[j] > TINY):  # a dead unit fires never (and has no kink)
            row[j] = 0.0
    kink = 0.0
    for j in range(K):
        kink += residual[j]
    for j in range(K, J):
        kink -= residual[j]
    if alive:
        row[k] += kink / (_TWO_PI * q)


@_jit
def _work_space(K, V):
    """Work arrays of :func:`_minus_gradient` for ``K`` students and teacher rows ``V`` (M, n):
    ``(U, UT, gram, starts, columns, values)``, the last three the teacher rows' nonzero entries."""
    M, n = V.shape
    U = np.zeros((K + M, n))
    U[K:] = V
    gram = np.zeros((K + 2, K + M))
    starts = np.zeros(M + 1, dtype=np.int64)
    columns = np.zeros(M * n, dtype=np.int64)
    values = np.zeros(M * n)
    count = 0
    for m in range(M):
        gram[K, K + m] = np.dot(V[m], V[m])
        for i in range(n):
            if V[m, i] != 0.0:
                columns[count], values[count] = i, V[m, i]
                count += 1
        starts[m + 1] = count
    return U, np.zeros((n, K)), gram, starts, columns, values


@_jit
def negative_gradients(W, V, out):
    """``-grad L`` for every start: ``W`` (S, K, n), teacher rows ``V`` (M, n), into ``out`` (S, K, n)."""
    work = _work_space(W.shape[1], V)
    for s in range(W.shape[0]):
        _minus_gradient(W[s], work, out[s])


@_jit
def _norm(A):
    total = 0.0
    for value in A.flat:
        total += value * value
    return math.sqrt(total)


@_jit
def _project(Y, pointers, indices, values, flat):
    """``Y <- P Y`` on the flattened state (a flow in the range of the projector ``P``), ``P`` sparse:
    row ``a`` has the entries ``pointers[a]`` to ``pointers[a + 1]`` of ``indices`` (columns) and
    ``values``. ``flat`` is work space of the state's size."""
    state = Y.ravel()
    flat[:] = state
    for a in range(state.shape[0]):
        total = 0.0
        for entry in range(pointers[a], pointers[a + 1]):
            total += values[entry] * flat[indices[entry]]
        state[a] = total


@_jit
def _advance_one(W, f1, h, steps, stop, tol, max_steps, rtol, work, projector, project, scale, decades):
    """Integrate one start from ``W`` (velocity ``f1``, step ``h``) until an event; returns
    ``(event, h, steps, gradient norm)`` with ``W`` and ``f1`` updated in place."""
    K, n = W.shape
    Y, f2, f3, f4 = np.empty((K, n)), np.empty((K, n)), np.empty((K, n)), np.empty((K, n))
    pointers, indices, values = projector
    flat = np.empty(K * n)
    while True:
        smallest, largest = np.inf, 0.0
        for k in range(K):
            norm = math.sqrt(np.dot(W[k], W[k]))
            smallest, largest = min(smallest, norm), max(largest, norm)
        gradient_norm = _norm(f1)
        if not math.isfinite(gradient_norm) or largest > 1e6 * scale:
            return EVENT_BLOWN, h, steps, gradient_norm
        if smallest < 1e-6 * scale:
            return EVENT_DEAD, h, steps, gradient_norm
        if gradient_norm < tol:
            return EVENT_TOL, h, steps, gradient_norm
        if gradient_norm < stop:
            return EVENT_CHECK, h, steps, gradient_norm
        if steps >= max_steps:
            return EVENT_OUT, h, steps, gradient_norm
        decades[min(max(int(math.floor(math.log10(max(gradient_norm, 1e-300)))) + 16, 0), 31)] += 1
        for k in range(K):
            for i in range(n):
                Y[k, i] = W[k, i] + 0.5 * h * f1[k, i]
        _minus_gradient(Y, work, f2)
        for k in range(K):
            for i in range(n):
                Y[k, i] = W[k, i] + 0.75 * h * f2[k, i]
        _minus_gradient(Y, work, f3)
        for k in range(K):
            for i in range(n):
                Y[k, i] = W[k, i] + h * (_B1 * f1[k, i] + _B2 * f2[k, i] + _B3 * f3[k, i])
        if project:
            _project(Y, pointers, indices, values, flat)
        _minus_gradient(Y, work, f4)
        error = 0.0
        for k in range(K):
            for i in range(n):
                e = h * (_E1 * f1[k, i] + _E2 * f2[k, i] + _E3 * f3[k, i] + _E4 * f4[k, i])
                error += e * e
        size = rtol * (h * gradient_norm)
        ratio = math.sqrt(error) / max(size, TINY)
        if not math.isfinite(ratio):
            ratio = 1e10
        if ratio <= 1.0:
            W[:] = Y
            f1[:] = f4
        steps += 1
        h *= min(max(0.9 * max(ratio, 1e-10) ** (-1.0 / 3.0), 0.2), 5.0)


@_jit
def advance(W, velocity, dt, steps, stop, active, events, gradient_norm, tol, max_steps, rtol, V, projectors, project,
            scale, decades):
    """Integrate the starts ``active`` until each meets an event (``EVENT_*``), in place.

    Parameters
    ----------
    W, velocity : ndarray, shape (S, K, n)
        States and their velocities ``-grad L`` (updated).
    dt : ndarray, shape (S,)
        Step sizes (updated).
    steps : ndarray of int, shape (S,)
        Step attempts so far (updated).
    stop : ndarray, shape (S,)
        Gradient norm of each start's next hand-over check (``EVENT_CHECK`` below it).
    active : ndarray of int, shape (A,)
        The starts to integrate.
    events : ndarray of int, shape (S,)
        Event of each active start (written).
    gradient_norm : ndarray, shape (S,)
        Gradient norm at the event (written).
    tol, max_steps, rtol, scale : float, int, float, float
        As in :func:`landscape.critical_points.batch_flow.flow_batch`.
    V : ndarray, shape (M, n)
        Teacher rows.
    projectors : tuple of ndarray
        ``(pointers, indices, values)``: sparse projectors applied after every step if ``project``,
        one for all starts or one per start; row ``a`` of start ``s``'s projector has the entries
        ``pointers[s, a]`` to ``pointers[s, a + 1]`` of the columns ``indices`` and ``values``
        (``pointers`` of shape (1 or S, K n + 1)).
    project : bool
    decades : ndarray of int, shape (32,)
        Step attempts by decade of the gradient norm, entry ``16 + floor(log10 |grad|)`` (added to).
    """
    work = _work_space(W.shape[1], V)
    for s in active:
        pointers, indices, values = projectors
        own = (pointers[s if pointers.shape[0] > 1 else 0], indices, values)
        event, h, count, norm = _advance_one(W[s], velocity[s], dt[s], steps[s], stop[s], tol, max_steps, rtol,
                                             work, own, project, scale, decades)
        events[s], dt[s], steps[s], gradient_norm[s] = event, h, count, norm


def warm_up():
    """Compile (first time on a machine, about 10 s) or load from numba's disk cache both entry points,
    with the argument types :func:`landscape.critical_points.batch_flow.flow_batch` passes: done once
    before worker processes fork, so that they inherit the machine code instead of each loading it."""
    W, V = np.ones((1, 1, 1)), np.ones((1, 1))
    velocity = np.empty_like(W)
    negative_gradients(W, V, velocity)
    one = np.zeros(1, dtype=np.int64)
    advance(W, velocity, np.ones(1), one.copy(), np.zeros(1), one.copy(), one.copy(), np.zeros(1), 1.0, 0, 1.0, V,
            sparse_projectors(None, 1), False, 1.0, np.zeros(32, dtype=np.int64))


def sparse_projectors(projector, size):
    """``(pointers, indices, values)`` of :func:`advance` for a projector (size, size), one per start
    (S, size, size), or None. The ansatz projectors average over orbits of a permutation group: a few
    entries per row, where the dense product cost more than the gradient at ``K = 18``."""
    if projector is None:
        return np.zeros((1, 1), dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    matrices = np.asarray(projector, dtype=float).reshape(-1, size, size)
    nonzero = matrices != 0.0
    counts = nonzero.sum(axis=2)
    ends = np.cumsum(counts.ravel()).reshape(counts.shape)
    pointers = np.concatenate([ends - counts, ends[:, -1:]], axis=1).astype(np.int64)
    return pointers, np.nonzero(nonzero)[2].astype(np.int64), matrices[nonzero]
