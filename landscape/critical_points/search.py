"""Critical points of the population loss: Newton polishing, and the search from many starts
(batched gradient flow, then Newton polishing of the flows that converged).

The flow is in :mod:`landscape.critical_points.batch_flow`, the sharing of chunks of starts between processes in
:mod:`landscape.critical_points.parallel`; saddles from symmetric ansatzes are in :mod:`landscape.critical_points.ansatz`, fixed
points of the finite-learning-rate ODE in :mod:`landscape.critical_points.fixed_points`, canonical forms and
orbits in :mod:`landscape.critical_points.symmetry`.

Methods
-------
Newton polishing
    From the end of the flow, Newton's method on ``grad L = 0`` in weight space with the exact
    Hessian (:func:`landscape.critical_points.hessian.weight_hessian`), solved by Cholesky where it is
    well-conditioned positive definite and otherwise inverted on the eigenvectors whose eigenvalue
    is not negligible (a pseudo-inverse: flat directions and rotations are left alone), with a
    backtracking line search on the gradient norm (steps that would shrink a unit below half its
    length are cut back), down to ``|grad L| < tol`` (default 1e-10). Newton converges to nearby
    critical points of any index, minima and saddles alike. Units closer than 0.2 rad are first
    put on one ray with their shares kept (the angle between split units is a quartic, nearly
    flat direction where plain Newton steps are unreliable); that result is used if it is a
    critical point no higher than the flow's end.

Eqs. (2.6) and (5.1)-(5.3) of docs/theory.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import lapack

from ..kernels.gaussian import TINY
from ..kernels.linalg import symmetric_eigh
from ..model.loss import PairResiduals, loss_from_overlaps, rejection_norms
from .batch_flow import (
    DEAD_NORM,
    SAFE_HANDOVER,
    STRICT_CONVEX,
    EndReason,
    check_batch,
    check_positive,
    check_projector,
    flow_batch,
    locally_convex,
    restricted_hessian,
    row_norms,
    subspace_basis,
    unchecked_batch_gradient,
)
from .flow_kernel import warm_up
from .hessian import weight_hessian
from .parallel import CHUNK_SIZE, chunked, run_chunks

__all__ = [
    "PolishResult",
    "StartResults",
    "newton_polish",
    "search_critical_points",
]

_RCOND = 1e-9
# Cholesky Newton steps need this 1-norm reciprocal condition number (an estimate, within a factor
# of the dimension of the 2-norm one): far above _RCOND, so the pseudo-inverse would cut nothing.
_DEFINITE_RCOND = 1e-5
# A Newton step whose radial part takes a small unit at least this far towards zero kills it.
_DYING_RADIAL = 0.9
# ... and that the unit's gradient turns it by at most this fraction of its shrinking speed.
_DYING_TURN = 0.02
# Units closer than this angle (radians) are tried on one ray when plain Newton polishing fails.
_RAY_ANGLE = 0.2
# Continuations per start, off a saddle or on past the step limit (:func:`_go_on`); a start still at a
# saddle or at the step limit after them stays there, counted as such.
_ROUNDS = 4
# A push off a saddle: long enough that the gradient there (about |curvature| x length) is this many
# flow tolerances, so the flow does not stop at once, within these lengths (times the teacher norm).
_PUSH_GRADIENT = 100.0
_PUSH_LENGTH = (1e-3, 1e-1)
# A descent direction: Hessian eigenvalue below -_DESCENT x max(1, largest), as in the flow's hand-over test.
_DESCENT = 1e-9


# ----------------------------------------------------------------------------- Newton polishing


@dataclass(frozen=True)
class PolishResult:
    """Result of Newton polishing one point.

    Attributes
    ----------
    W : ndarray, shape (K, n)
    gradient_norm : float
    iterations : int
    success : bool
        True if the gradient norm is below the tolerance.
    status : EndReason
        ``CONVERGED``, ``POLISH_FAILED`` or ``UNIT_DIED``.
    message : str
    """

    W: np.ndarray
    gradient_norm: float
    iterations: int
    success: bool
    status: EndReason
    message: str


def _newton_step(W, W_teacher, gradient, basis):
    """Newton step, restricted to the span of ``basis`` (columns) if given; and whether the Hessian
    was positive definite.

    By a Cholesky factorisation where the Hessian is positive definite and well conditioned (a
    twentieth of the cost of an eigendecomposition at ``K = 18``); otherwise the pseudo-inverse on
    the eigenvectors whose eigenvalue is not negligible (flat directions and saddles). Where both
    apply they give the same step: every eigenvalue is then far above the pseudo-inverse's cut.
    """
    hessian = weight_hessian(W, W_teacher)
    g = gradient.ravel()
    if basis is not None:
        hessian, g = basis.T @ hessian @ basis, basis.T @ g
    step = _definite_solve(hessian, g)
    definite = step is not None
    if step is None:
        eigenvalues, eigenvectors = symmetric_eigh(hessian)
        keep = np.abs(eigenvalues) > _RCOND * max(np.max(np.abs(eigenvalues)), TINY)
        step = eigenvectors[:, keep] @ ((eigenvectors[:, keep].T @ g) / eigenvalues[keep])
    step = -step
    return (step if basis is None else basis @ step).reshape(W.shape), definite


def _definite_solve(hessian, g):
    """``hessian^-1 g`` by Cholesky if ``hessian`` is positive definite with a 1-norm reciprocal
    condition number above ``_DEFINITE_RCOND``, else None."""
    factor, info = lapack.dpotrf(hessian)
    if info != 0:
        return None
    rcond, info = lapack.dpocon(factor, float(np.abs(hessian).sum(axis=0).max()))
    if info != 0 or not rcond > _DEFINITE_RCOND:
        return None
    solution, info = lapack.dpotrs(factor, g)
    return solution if info == 0 else None


def _dying_units(W, gradient, step, scale):
    """Units that the flow from a near-critical ``W`` shrinks to zero, where Newton's step points.

    Near a minimum where a unit vanishes (``K > M``: an extra unit the others make useless) the
    flow shrinks it exponentially until it dies (:data:`~landscape.critical_points.batch_flow.DEAD_NORM`);
    Newton's steps point straight at zero, but the line search, keeping units above half their
    length, let it shrink only by a third a step: thirty Hessians per start at ``K = 18``. Newton
    sends any small unit to zero, so that alone does not decide: the flow could first turn it onto
    a ray where it survives as a split unit. Dying here means: the gradient is below
    :data:`~landscape.critical_points.batch_flow.SAFE_HANDOVER` (where the search hands over), the
    unit is small (below a tenth of the teacher scale), its gradient points outwards and turns it
    by less than ``_DYING_TURN`` of its shrinking speed (about 0.2 rad over its whole decay), and
    Newton's step takes it at least ``_DYING_RADIAL`` of the way to zero. At ``K = 18, M = 17``
    the dying units measured turned at 0.001-0.008 of their speed.
    """
    norms = row_norms(W)
    if float(np.linalg.norm(gradient)) >= SAFE_HANDOVER:
        return np.zeros(len(W), dtype=bool)
    directions = W / np.maximum(norms, TINY)[:, None]
    outward = np.einsum("kn,kn->k", gradient, directions)
    turning = np.linalg.norm(gradient - outward[:, None] * directions, axis=1)
    radial = np.einsum("kn,kn->k", step, directions) / np.maximum(norms, TINY)
    return (norms < 0.1 * scale) & (outward > 0) & (turning <= _DYING_TURN * outward) & (radial <= -_DYING_RADIAL)


def _line_search(W, step, norm, gradient_at):
    """Backtracking on the gradient norm; None if no step length lowers it."""
    shortest = row_norms(W).min()
    for _ in range(30):
        trial = W + step
        # Quasi-flat directions (split units, K > M) give long Newton steps; one that would
        # shrink a unit to a fraction of its length is cut back instead of killing the unit.
        if row_norms(trial).min() > 0.5 * shortest:
            gradient = gradient_at(trial)
            trial_norm = float(np.linalg.norm(gradient))
            if trial_norm < norm:
                return trial, gradient, trial_norm
        step = 0.5 * step
    return None


def _polish(W, W_teacher, tol, max_iter, projector):
    """Unchecked :func:`newton_polish`."""
    T = W_teacher @ W_teacher.T
    teacher_residual = rejection_norms(W_teacher, W_teacher)
    scale = float(np.sqrt(np.max(np.diag(T))))
    dead = DEAD_NORM * scale

    def gradient_at(X):
        return unchecked_batch_gradient(X, W_teacher, T, teacher_residual, exact=True)

    W = np.array(W, dtype=float)
    basis = None if projector is None else subspace_basis(projector)
    gradient = gradient_at(W)
    norm, iterations = float(np.linalg.norm(gradient)), 0
    while norm >= tol and iterations < max_iter and row_norms(W).min() >= dead:
        iterations += 1
        step, definite = _newton_step(W, W_teacher, gradient, basis)
        dying = _dying_units(W, gradient, step, scale) if definite and projector is None else None
        if dying is not None and dying.any():
            # Where the flow would end: the unit below the dead norm, its direction kept (a dead unit
            # shares the ray it points closest to, see _share_rays).
            W[dying] *= 0.5 * dead / row_norms(W[dying])[:, None]
            return PolishResult(W, norm, iterations, False, EndReason.UNIT_DIED,
                                f"{EndReason.UNIT_DIED.value}: Newton's step takes unit "
                                f"{int(np.flatnonzero(dying)[0])} to zero")
        found = _line_search(W, step, norm, gradient_at)
        if found is None:
            break
        W, gradient, norm = found
    if row_norms(W).min() < dead:
        return PolishResult(W, norm, iterations, False, EndReason.UNIT_DIED,
                            f"{EndReason.UNIT_DIED.value} during Newton polishing")
    if norm < tol:
        return PolishResult(W, norm, iterations, True, EndReason.CONVERGED,
                            f"gradient norm {norm:.2e} < {tol:.0e} after {iterations} Newton steps")
    return PolishResult(W, norm, iterations, False, EndReason.POLISH_FAILED,
                        f"{EndReason.POLISH_FAILED.value}: gradient norm {norm:.2e} after {iterations} steps")


def polish_on_rays(W, W_teacher, tol, max_iter):
    """Newton's method with nearly parallel units put on one ray, keeping their shares.

    With ``K > M`` flows end near continua of minima where units split a ray; the angle between
    them is a quartic direction (a vanishing Hessian eigenvalue), and plain Newton steps there can
    collapse a unit. Here the units of each group are set to ``a_i S`` (``S`` the sum of the
    group, ``a_i`` the shares) and stay so: the gradient of units on one ray is one vector ``g``,
    so a critical point of this subspace has ``g = 0``, a critical point of ``L``. Returns None
    if no units are nearly parallel, or if the result is not a critical point below the loss of
    ``W`` (then it cannot be where the flow from ``W`` ends).
    """
    from scipy.sparse.csgraph import connected_components

    norms = row_norms(W)
    directions = W / np.maximum(norms, TINY)[:, None]
    count, labels = connected_components(directions @ directions.T > np.cos(_RAY_ANGLE), directed=False)
    if count == W.shape[0]:
        return None
    rays, blocks = np.zeros_like(W), np.zeros((W.shape[0], W.shape[0]))
    for label in range(count):
        group = np.flatnonzero(labels == label)
        shares = norms[group] / norms[group].sum()
        rays[group] = shares[:, None] * W[group].sum(axis=0)
        blocks[np.ix_(group, group)] = np.outer(shares, shares) / np.dot(shares, shares)
    polished = _polish(rays, W_teacher, tol, max_iter, np.kron(blocks, np.eye(W.shape[1])))
    T = W_teacher @ W_teacher.T
    downhill = _loss(polished.W, W_teacher, T) <= _loss(W, W_teacher, T) + 1e-12
    return polished if polished.success and downhill else None


def _loss(W, W_teacher, T):
    residuals = PairResiduals.from_weights(W, W_teacher)
    return float(loss_from_overlaps(W @ W.T, W @ W_teacher.T, T, residuals))


def newton_polish(W, W_teacher, tol=1e-10, max_iter=40, projector=None):
    """Newton's method on ``grad L = 0`` from a point near a critical point.

    Parameters
    ----------
    W : array_like, shape (K, n)
    W_teacher : array_like, shape (M, n)
    tol : float, optional
        Target gradient norm.
    max_iter : int, optional
    projector : array_like, shape (K n, K n), optional
        Projection applied to every Newton step (stay in a fixed-point subspace).

    Returns
    -------
    PolishResult
        Failures are reported in ``status``, never raised.

    Raises
    ------
    ValueError
        If shapes disagree, entries are not finite or a parameter is out of range.
    """
    W3, W_teacher = check_batch(W, W_teacher)
    if np.ndim(W) != 2:
        raise ValueError(f"W must be one point of shape (K, n), got shape {np.shape(W)}")
    tol = check_positive("tol", tol)
    max_iter = check_positive("max_iter", max_iter, integer=True)
    projector = check_projector(projector, 1, W3.shape[1] * W3.shape[2])
    projector = None if projector is None else projector.reshape(W3.shape[1] * W3.shape[2], -1)
    return _polish(W3[0], W_teacher, tol, max_iter, projector)


# ----------------------------------------------------------------------------- many starts


@dataclass(frozen=True)
class StartResults:
    """Flow and Newton polishing from many starts.

    Attributes
    ----------
    W : ndarray, shape (S, K, n)
        Final weights: polished where the start converged, the last flow state otherwise.
    W_teacher : ndarray, shape (M, n)
    reasons : tuple of EndReason
        One per start.
    gradient_norm : ndarray, shape (S,)
        Final gradient norm.
    flow_steps, newton_iterations : ndarray of int, shape (S,)
    success : bool
        True if every start converged.
    message : str
    """

    W: np.ndarray
    W_teacher: np.ndarray
    reasons: tuple
    gradient_norm: np.ndarray
    flow_steps: np.ndarray
    newton_iterations: np.ndarray
    success: bool
    message: str

    @property
    def converged(self):
        """Boolean array: starts that ended at a polished critical point."""
        return np.array([reason is EndReason.CONVERGED for reason in self.reasons], dtype=bool)

    @property
    def failures(self):
        """``{reason code: count}`` for the starts that did not converge."""
        counts = {}
        for reason in self.reasons:
            if reason is not EndReason.CONVERGED:
                counts[reason.code] = counts.get(reason.code, 0) + 1
        return counts


def _search_chunk(W0, projector, W_teacher, flow_tol, tol, max_steps, rtol, handover_tol, rounds=_ROUNDS):
    """Flow then polish one chunk of starts (a module-level function, so worker processes can run it).

    A start of an unprojected flow whose unit dies goes on without that unit (see :func:`_without_dead_units`);
    one polished onto a saddle goes on downhill from it, one at the step limit goes on flowing (see
    :func:`_go_on`; ``rounds`` such continuations at most).
    """
    arguments = (flow_tol, tol, max_steps, rtol, handover_tol)
    *found, flow_end = _flow_and_polish(W0, projector, W_teacher, *arguments)
    if projector is None:
        first = found[1]
        found = _without_dead_units(tuple(found), W_teacher, *arguments)
        if rounds:
            found = _go_on(found, first, flow_end, W_teacher, arguments, rounds)
    return tuple(found)


def _go_on(found, first, flow_end, W_teacher, arguments, rounds):
    """Starts polished onto a saddle, pushed off it downhill on their flow's side, and starts at the
    step limit, flow on and are polished again (``first``: the reasons before dead units were handled).

    Gradient flow from a generic start never ends at a saddle, but it can pass close to one: on the
    saddle's plateau the gradient falls below the flow tolerance and Newton's method, which converges
    to critical points of any index, polished the flow's end onto the saddle. (Regression: at
    K = M + 1, M = 13..19, 3 to 37 of 1,000 starts ended at index-1 saddles this way, and at
    M = 17, 18 the rate of starts away from a global minimum was 2.7 standard errors off the
    published one.) The flow would have left the saddle along its unstable manifold on the side
    where it was: the push is along the descent directions' part of (flow's end - saddle), or, if
    that part vanishes, along the most negative curvature. Only unprojected flows: in an ansatz
    subspace saddles are the aim.

    The step limit is hit by flows that pass slowly by a saddle of higher index (Regression: one
    start at K = M = 17 took 17,000 steps to leave a plateau at L = 0.0539 with four Hessian
    eigenvalues near -0.001, the explicit steps being held near 0.5 by the stiffest mode, 4.9,
    and ended at a minimum after 21,428): they flow on from where they stopped.
    """
    W, reasons, gradient_norm, steps, iterations = found
    stuck, pushed = [], []
    for start, reason in enumerate(first):
        if reason is EndReason.MAX_STEPS:
            stuck.append(start)
            pushed.append(W[start])
        elif (reason is EndReason.CONVERGED and reasons[start] is EndReason.CONVERGED
              and not locally_convex(W[start], W_teacher, None)):
            stuck.append(start)
            pushed.append(W[start] + _push(W[start], flow_end[start], W_teacher, arguments[0]))
    if not stuck:
        return found
    part = _search_chunk(np.array(pushed), None, W_teacher, *arguments, rounds=rounds - 1)
    reasons = list(reasons)
    for position, start in enumerate(stuck):
        W[start], reasons[start], gradient_norm[start] = part[0][position], part[1][position], part[2][position]
        steps[start] += part[3][position]
        iterations[start] += part[4][position]
    return W, tuple(reasons), gradient_norm, steps, iterations


def _push(W_saddle, W_flow, W_teacher, flow_tol):
    """Displacement off a saddle along its descent directions, towards the flow's end ``W_flow``, shape (K, n)."""
    hessian = weight_hessian(W_saddle, W_teacher)
    eigenvalues, vectors = symmetric_eigh(hessian)
    descent = vectors[:, eigenvalues < -_DESCENT * max(1.0, eigenvalues[-1])]
    side = descent.T @ (W_flow - W_saddle).ravel()
    if np.linalg.norm(side) <= 1e-12 * max(np.linalg.norm(W_flow - W_saddle), TINY):
        side = np.eye(descent.shape[1])[0]  # on the saddle to rounding: either side, the steepest
    direction = descent @ (side / np.linalg.norm(side))
    curvature = -float(direction @ hessian @ direction)
    scale = float(np.sqrt(np.max(np.sum(W_teacher**2, axis=1))))
    length = np.clip(_PUSH_GRADIENT * flow_tol / max(curvature, TINY), *_PUSH_LENGTH) * scale
    return (length * direction).reshape(W_saddle.shape)


def _without_dead_units(found, W_teacher, *arguments):
    """Starts whose unit died end where the surviving units' flow ends, the dead unit sharing a ray.

    A unit that shrinks to zero under gradient flow stays there (ReLU has no gradient at zero
    weights), so the network goes on as one with fewer units: with ``K > M`` the extra unit often
    dies this way while the others reach a minimum, the end of a flat continuum where its share is
    zero. The survivors are flowed and polished on (units may die again: recursion on fewer
    units); the dead unit is then put on the ray of the survivor it pointed closest to, sharing it
    equally, which is a critical point of the full network on the same continuum (units on one
    ray have the same gradient) and computes the same function. Only if no unit survives does the
    start stay ``UNIT_DIED``.
    """
    W, reasons, gradient_norm, steps, iterations = found
    scale = float(np.sqrt(np.max(np.sum(W_teacher**2, axis=1))))
    dead_starts = [s for s, reason in enumerate(reasons) if reason is EndReason.UNIT_DIED]
    alive = {s: row_norms(W[s]) >= DEAD_NORM * scale for s in dead_starts}
    by_survivors = {}
    for s in dead_starts:
        if 0 < alive[s].sum():
            by_survivors.setdefault(int(alive[s].sum()), []).append(s)
    reasons = list(reasons)
    for group in by_survivors.values():
        survivors = np.array([W[s][alive[s]] for s in group])
        part = _search_chunk(survivors, None, W_teacher, *arguments)
        for position, s in enumerate(group):
            W[s] = _share_rays(W[s], alive[s], part[0][position])
            reasons[s], gradient_norm[s] = part[1][position], part[2][position]
            steps[s] += part[3][position]
            iterations[s] += part[4][position]
    return W, tuple(reasons), gradient_norm, steps, iterations


def _share_rays(W_dead, alive, survivors):
    """The full network: survivors in place, each dead unit halving the ray it points closest to."""
    W = np.zeros_like(W_dead)
    W[alive] = survivors
    living = np.flatnonzero(alive)
    directions = survivors / np.maximum(row_norms(survivors), TINY)[:, None]
    for k in np.flatnonzero(~alive):
        j = living[int(np.argmax(directions @ W_dead[k]))]
        W[k] = W[j] = 0.5 * W[j]
    return W


def _flow_and_polish(W0, projector, W_teacher, flow_tol, tol, max_steps, rtol, handover_tol):
    """Batched flow, then Newton polishing of the starts whose flow converged; also returns the flow's ends."""
    flow = flow_batch(W0, W_teacher, flow_tol, max_steps, rtol, projector, handover_tol)
    W, flow_end = flow.W.copy(), flow.W.copy()
    reasons = list(flow.reasons)
    steps = flow.steps.copy()
    gradient_norm = flow.gradient_norm.copy()
    iterations = np.zeros(len(reasons), dtype=int)
    uncertified = []
    for start in np.flatnonzero(flow.converged):
        own = projector if projector is None or projector.ndim == 2 else projector[start]
        polished = polish_on_rays(W[start], W_teacher, tol, 40) if own is None else None
        if polished is None:
            polished = _polish(W[start], W_teacher, tol, 40, own)
        early = flow.gradient_norm[start] >= SAFE_HANDOVER
        if early and not (polished.success and _basin_certified(W[start], polished.W, W_teacher, own)):
            uncertified.append(start)
            continue
        W[start], gradient_norm[start], iterations[start] = polished.W, polished.gradient_norm, polished.iterations
        reasons[start] = polished.status
    if uncertified:
        # Back to the flow from the hand-over point, handing over at a smaller gradient next time.
        own = projector if projector is None or projector.ndim == 2 else projector[uncertified]
        part = _flow_and_polish(W[uncertified], own, W_teacher, flow_tol, tol, max_steps, rtol,
                                min(0.3 * handover_tol, SAFE_HANDOVER))
        for position, start in enumerate(uncertified):
            W[start], reasons[start], gradient_norm[start] = part[0][position], part[1][position], part[2][position]
            steps[start] += part[3][position]
            iterations[start] = part[4][position]
            flow_end[start] = part[5][position]
    return W, tuple(reasons), gradient_norm, steps, iterations, flow_end


def _basin_certified(W_start, W_end, W_teacher, projector):
    """Whether gradient flow from ``W_start`` ends at the minimum ``W_end`` that Newton's method reached.

    If ``L`` is strongly convex on the ball around ``W_end`` through ``W_start``, the flow's
    distance to ``W_end`` only falls: it stays in the ball and ends at ``W_end``. Checked where it
    can fail, on the segment Newton's method crossed: the Hessian is positive definite (smallest
    eigenvalue above ``STRICT_CONVEX`` times the largest) at ``W_end``, half-way and at
    ``W_start``. Not a proof (the ball is not the segment); the basin-faithfulness test and
    ``benchmarks/bench_basins.py`` measure how often the end point differs from a tight flow's.
    """
    for point in (W_end, 0.5 * (W_start + W_end), W_start):
        eigenvalues = np.linalg.eigvalsh(restricted_hessian(point, W_teacher, projector))
        if eigenvalues[0] <= STRICT_CONVEX * eigenvalues[-1]:
            return False
    return True


def search_critical_points(W0, W_teacher, flow_tol=1e-6, tol=1e-10, max_steps=20_000, rtol=1e-3,
                           projector=None, workers=None, progress=None, handover_tol=SAFE_HANDOVER, chunk_size=CHUNK_SIZE):
    """Gradient flow from every start, then Newton polishing of the flows that converged.

    Starts are processed in chunks of :data:`~landscape.critical_points.parallel.CHUNK_SIZE` (vectorised inside a
    chunk); chunks are shared between ``workers`` processes. The chunks do not depend on ``workers``, so the result
    is the same, bit for bit, for any number of workers.

    Parameters
    ----------
    W0 : array_like, shape (S, K, n)
        Initial student rows.
    W_teacher : array_like, shape (M, n)
    flow_tol : float, optional
        Gradient norm at which the flow hands over to Newton's method.
    handover_tol : float, optional
        Earlier hand-over to Newton's method where the Hessian has no negative eigenvalue (see
        :func:`landscape.critical_points.batch_flow.flow_to_critical`). Above
        :data:`~landscape.critical_points.batch_flow.SAFE_HANDOVER` the Hessian must be positive
        definite and the polished minimum certified to be the flow's (strong convexity around it,
        :func:`_basin_certified`); starts that fail go back to the flow from where they left it.
        Default ``SAFE_HANDOVER`` (1e-4): with the cheap batched gradient, ``1e-2`` saves a quarter
        of the flow steps but costs as much in Hessians (``benchmarks/bench_basins.py``).
    tol : float, optional
        Gradient norm required of a polished point.
    max_steps : int, optional
        Flow steps per start and round: a start at the limit flows on from where it stopped, up to
        four more times (slow passages by saddles), then ends ``MAX_STEPS``.
    rtol : float, optional
        Relative local error of the flow integrator. At ``1e-2`` one start in 100 at ``K = M = 16``
        ended at another minimum than the flow integrated to ``1e-3`` or ``1e-4`` (which agree);
        ``1e-3`` costs about the same there (fewer convexity checks and Newton steps), 1.5x more
        at ``K = M = 6`` (``benchmarks/bench_basins.py``).
    projector : array_like, shape (K n, K n) or (S, K n, K n), optional
        Keep flows and Newton steps in a subspace (see :func:`landscape.critical_points.ansatz.ansatz_projector`),
        one for all starts or one per start.
    workers : int, optional
        Processes; default 2 on a machine with two or more cores when there are several chunks
        (1 inside a daemonic process such as a Dask worker).
    progress : callable, optional
        ``progress(done, total)`` after each chunk.
    chunk_size : int, optional
        Starts per chunk. The result depends on it (bit for bit), never on ``workers``.

    Returns
    -------
    StartResults

    Raises
    ------
    ValueError
        If shapes disagree, entries are not finite or a parameter is out of range.
    """
    W0, W_teacher = check_batch(W0, W_teacher)
    flow_tol, tol, rtol, handover_tol = (check_positive(n, v) for n, v in (
        ("flow_tol", flow_tol), ("tol", tol), ("rtol", rtol), ("handover_tol", handover_tol)))
    max_steps = check_positive("max_steps", max_steps, integer=True)
    projector = check_projector(projector, W0.shape[0], W0.shape[1] * W0.shape[2])
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be callable as progress(done, total), got {progress!r}")
    chunk_size = check_positive("chunk_size", chunk_size, integer=True)
    if projector is not None and projector.ndim == 3:
        chunks = chunked(W0, projector, size=chunk_size)
    else:
        chunks = [(chunk, projector) for (chunk,) in chunked(W0, size=chunk_size)]
    arguments = (W_teacher, flow_tol, tol, max_steps, rtol, max(handover_tol, flow_tol))
    warm_up()
    parts = run_chunks(_search_chunk, chunks, arguments, workers, progress)
    reasons = tuple(reason for part in parts for reason in part[1])
    n_converged = sum(reason is EndReason.CONVERGED for reason in reasons)
    return StartResults(
        W=np.concatenate([part[0] for part in parts]), W_teacher=W_teacher, reasons=reasons,
        gradient_norm=np.concatenate([part[2] for part in parts]),
        flow_steps=np.concatenate([part[3] for part in parts]),
        newton_iterations=np.concatenate([part[4] for part in parts]),
        success=n_converged == len(reasons),
        message=f"{n_converged} of {len(reasons)} starts converged to a critical point",
    )
