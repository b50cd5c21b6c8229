"""Branches of ODE fixed points in the learning rate: pseudo-arclength continuation, folds, stability.

Method
------
A fixed point of the full ODE solves ``F(x, lr) = (dx/dt) / lr = g(x) + lr Phi(x) = 0`` (``g`` the
gradient-flow velocity, ``Phi`` the ``eta^2`` expectation with label noise), in the coordinates
``x = (Q_kl (k <= l), R)`` of :mod:`landscape.critical_points.stability`. Dividing by ``lr`` keeps
the equations of order one as ``lr`` varies; ``dF/d lr = Phi``.

Pseudo-arclength continuation follows the curve ``(x(s), lr(s))``: from a point with unit tangent
``tau`` (the null vector of ``[F_x | F_lr]``, oriented like the previous one), predict
``(x, lr) + ds tau``, then correct by chord-Newton on ``F = 0`` and ``tau . ((x, lr) - predicted) = 0``
with the Jacobian of the previous point. The branch passes folds (``lr`` turns back) because ``lr``
is an unknown, not the parameter. Steps grow after easy corrections and halve after failed ones.

Events between two consecutive points are located by the Illinois (regula falsi) method in the
arclength from the first of them, each trial point corrected onto the branch:

- ``fold``: the ``lr`` component of the tangent changes sign (the fixed point disappears as ``lr``
  grows past it); located until ``lr`` at the bracketing points agrees to ``1e-8``;
- ``stability_change``: the largest real part of the Jacobian's eigenvalues crosses zero (a real
  eigenvalue, at a fold too, or a complex pair); located the same way.

Stability at every point is that of :func:`landscape.critical_points.stability.fixed_point_stability`
(the Jacobian is computed once per point and serves the tangent, the corrector and the eigenvalues).
The branch needs the point inside the cone of Gram matrices (see the stability module): with
label noise the fixed points of the full ODE are, and so are those next to the spurious minima
without it; the realisable global minimum without noise (``Q = R = T`` for every ``lr``) is on the
boundary, and :mod:`landscape.critical_points.realisable` gives its branch (:func:`continue_fixed_points`
uses it for such starts).

The Jacobian at each point is that of :func:`landscape.dynamics.jacobian.right_hand_side` (Price
derivatives of the four-point term, compiled) and the corrector's residuals use the same exact
right-hand side; the corrector improves the previous point's Jacobian by Broyden updates.

Section 3.1 of docs/theory.md (pseudo-arclength continuation; Keller 1977).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ..dynamics.jacobian import overlaps_from_state, right_hand_side, state_vector
from ..dynamics.ode import ode_velocity
from ..kernels.overlaps import validate_overlaps
from ..model.loss import loss_from_overlaps
from ..status import StatusEnum, check_should_stop, stop_if_asked
from .parallel import chunked, run_chunks
from .stability import _check_lr, _check_noise, _inside_cone, stability_from_jacobian

__all__ = [
    "BranchStatus",
    "EventKind",
    "BranchEvent",
    "Branch",
    "FIXED_POINT_TOL",
    "continue_fixed_point",
    "continue_fixed_points",
    "branch_from",
    "fixed_point_near",
    "global_minimum_start",
]

#: A start is accepted as a fixed point when ``|F| = |dx/dt| / lr`` is below this; it is then polished.
FIXED_POINT_TOL = 1e-6
#: Corrector tolerance on |F| = |dx/dt| / lr (flows count as converged at 1e-8).
_NEWTON_TOL = 1e-10
_EVENT_LR_TOL = 1e-8
_MAX_CORRECTOR = 8
#: A fixed point found by Newton from a critical point counts as next to it when no student-teacher
#: overlap moved by more than this (relative to the teacher norm).
_NEAR = 0.25


class BranchStatus(StatusEnum):
    """How a continuation ended; the value is a readable message."""

    REACHED_LR_MAX = "reached lr_max"
    RETURNED = "the branch turned back at a fold and returned below lr_min"
    LEFT_CONE = "the branch reached the boundary of the Gram-matrix cone (units entering the teacher span)"
    DIVERGED = "the overlaps along the branch grew beyond 1e6"
    STEP_TOO_SMALL = "the corrector failed even at the smallest arclength step"
    MAX_STEPS = "the branch used its maximum number of steps"



class EventKind(StatusEnum):
    """Kinds of events along a branch; the value is a readable message."""

    FOLD = "fold: the branch turns back in lr, the fixed point disappears beyond it"
    STABILITY_CHANGE = "stability change: an eigenvalue (or a complex pair) crosses the imaginary axis"



@dataclass(frozen=True)
class BranchEvent:
    """An event located on a branch.

    Attributes
    ----------
    kind : EventKind
    lr, loss : float
    after : int
        Index of the branch point just before the event.
    Q : ndarray, shape (K, K)
    R : ndarray, shape (K, M)
    """

    kind: EventKind
    lr: float
    loss: float
    after: int
    Q: np.ndarray
    R: np.ndarray

    def to_dict(self, branch=0):
        """``{"kind", "lr", "loss", "branch"}`` as ``landscape bifurcation`` prints it."""
        return {"kind": self.kind.code, "lr": float(self.lr), "loss": float(self.loss), "branch": int(branch)}


@dataclass(frozen=True)
class Branch:
    """A branch of fixed points of the full ODE, continued in the learning rate.

    Attributes
    ----------
    s : ndarray, shape (n,)
        Arclength in ``(x, lr)`` from the start.
    lr, loss : ndarray, shape (n,)
    Q : ndarray, shape (n, K, K)
    R : ndarray, shape (n, K, M)
    stable : ndarray of bool, shape (n,)
        Attractive fixed point (all eigenvalues with negative real part).
    max_real_eigenvalue : ndarray, shape (n,)
    eigenvalues : ndarray of complex, shape (n, N)
        Jacobian eigenvalues at each point, by decreasing real part.
    events : tuple of BranchEvent
        Folds and stability changes, in order along the branch.
    success : bool
        True when the branch reached ``lr_max`` or came back below ``lr_min`` after a fold.
    status : BranchStatus
    message : str
    """

    s: np.ndarray
    lr: np.ndarray
    loss: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    stable: np.ndarray
    max_real_eigenvalue: np.ndarray
    eigenvalues: np.ndarray
    events: tuple
    success: bool
    status: BranchStatus
    message: str

    def to_dict(self):
        """``{"lr", "loss", "stable", "Q", "R", "max_real_eigenvalue"}`` lists (one branch of ``landscape bifurcation``)."""
        return {"lr": self.lr.tolist(), "loss": self.loss.tolist(), "stable": [bool(v) for v in self.stable],
                "Q": self.Q.tolist(), "R": self.R.tolist(), "max_real_eigenvalue": self.max_real_eigenvalue.tolist(),
                "status": self.status.code, "message": self.message}


class _Problem:
    """``F(x, lr)``, its derivatives and the stability of a point, for one teacher and setting."""

    def __init__(self, T, eta2, noise):
        self.T, self.eta2, self.noise = T, eta2, noise
        self.K: int | None = None
        self.M: int | None = None

    def residual(self, x, lr):
        Q, R = overlaps_from_state(x, self.K, self.M)
        return right_hand_side(Q, R, self.T, lr, self.eta2, self.noise, jacobian=False).velocity / lr

    def point(self, x, lr):
        """The Jacobian ``[F_x | F_lr]`` (N, N + 1) and the stability at a point on the branch."""
        Q, R = overlaps_from_state(x, self.K, self.M)
        rhs = right_hand_side(Q, R, self.T, lr, self.eta2, self.noise)
        return np.column_stack([rhs.jacobian / lr, rhs.phi]), stability_from_jacobian(rhs.jacobian)

    def inside(self, x):
        Q, R = overlaps_from_state(x, self.K, self.M)
        return bool(np.all(np.isfinite(x))) and _inside_cone(Q, R, self.T)


def _tangent(augmented, previous):
    """Unit null vector of ``[F_x | F_lr]`` with positive overlap with ``previous``."""
    system = np.vstack([augmented, previous])
    rhs = np.zeros(system.shape[0])
    rhs[-1] = 1.0
    tangent = np.linalg.solve(system, rhs)
    tangent /= np.linalg.norm(tangent)
    return tangent if tangent @ previous >= 0 else -tangent


def _correct(problem, guess, tangent, anchor, augmented):
    """Quasi-Newton onto ``F = 0`` within the hyperplane ``tangent . (y - anchor) = 0``; ``y = (x, lr)``.

    Starts from the Jacobian of the previous branch point and improves it by Broyden's rank-one
    updates from the residuals it evaluates: the chord method alone contracted slowly where the
    Jacobian changes fast along the branch (near folds), which kept the steps small.
    Returns the corrected ``y`` and the iterations, or ``(None, iterations)`` on failure.
    """
    system = np.vstack([augmented, tangent])
    y, previous = guess.copy(), np.inf
    F_old, move = None, np.zeros(guess.size)
    for iteration in range(1, _MAX_CORRECTOR + 1):
        if y[-1] <= 0 or not problem.inside(y[:-1]):
            return None, iteration
        with np.errstate(all="ignore"):
            F = problem.residual(y[:-1], y[-1])
        size = float(np.linalg.norm(F))
        if not np.isfinite(size) or size > 0.5 * previous and iteration > 2:
            return None, iteration
        if size < _NEWTON_TOL:
            return y, iteration
        if F_old is not None:  # Broyden: the secant condition on the last step (the tangent row is exact)
            system[:-1] += np.outer(F - F_old - system[:-1] @ move, move) / (move @ move)
        previous, F_old = size, F
        move = -np.linalg.solve(system, np.concatenate([F, [tangent @ (y - anchor)]]))
        y = y + move
    return None, _MAX_CORRECTOR


def _polish(problem, x, lr):
    """Newton at fixed ``lr`` (fresh Jacobian each step); returns ``x`` or None."""
    for _ in range(12):
        F = problem.residual(x, lr)
        if np.linalg.norm(F) < _NEWTON_TOL:
            return x
        augmented, _ = problem.point(x, lr)
        x = x - np.linalg.lstsq(augmented[:, :-1], F, rcond=None)[0]
        if not problem.inside(x):
            return None
    return x if np.linalg.norm(problem.residual(x, lr)) < 1e-9 else None


class _Recorder:
    def __init__(self, problem):
        self.problem = problem
        self.s, self.y, self.stability, self.tangent, self.augmented = [], [], [], [], []

    def add(self, s, y, augmented, stability, tangent):
        self.s.append(s)
        self.y.append(y)
        self.augmented.append(augmented)
        self.stability.append(stability)
        self.tangent.append(tangent)


def _locate(problem, start, quantity, length):
    """Illinois method on ``quantity(y, tangent, stability)`` along the arclength ``(0, length)`` from ``start``.

    ``start`` is ``(y, tangent, augmented, value)``; the value at ``length`` has the opposite sign.
    Returns the located ``y`` (or None if a corrector failed).
    """
    y0, tangent0, augmented0, value0 = start

    def evaluate(sigma):
        y, _ = _correct(problem, y0 + sigma * tangent0, tangent0, y0 + sigma * tangent0, augmented0)
        if y is None:
            return None, None
        augmented, stability = problem.point(y[:-1], y[-1])
        return y, quantity(y, _tangent(augmented, tangent0), stability)

    a, fa, ya = 0.0, value0, y0
    b = length
    yb, fb = evaluate(b)
    if yb is None:
        return None
    side = 0
    for _ in range(60):
        if abs(ya[-1] - yb[-1]) < _EVENT_LR_TOL and b - a < 1e-6:
            break
        c = (a * fb - b * fa) / (fb - fa) if fb != fa else 0.5 * (a + b)
        if not (a < c < b):
            c = 0.5 * (a + b)
        yc, fc = evaluate(c)
        if yc is None:
            return None
        if np.sign(fc) == np.sign(fa):
            a, fa, ya = c, fc, yc
            if side == -1:
                fb *= 0.5
            side = -1
        else:
            b, fb, yb = c, fc, yc
            if side == 1:
                fa *= 0.5
            side = 1
        if fc == 0:
            return yc
    return ya if abs(fa) <= abs(fb) else yb


def _check_start(Q, R, T, lr, lr_max, eta2, noise, lr_min, ds, max_steps
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, float | None, float]:
    Q, R, T = validate_overlaps(Q, R, T)
    lr, noise = _check_lr(lr), _check_noise(noise)
    if not eta2:
        raise ValueError("eta2 must be True: without the lr^2 term the fixed points do not depend on lr "
                         "(the critical points of L, stability from the Hessian)")
    if isinstance(lr_max, bool) or not isinstance(lr_max, (int, float, np.integer, np.floating)) \
            or not np.isfinite(lr_max) or lr_max <= lr:
        raise ValueError(f"lr_max must be a number above the starting lr {lr}, got {lr_max!r}")
    lr_min = lr if lr_min is None else lr_min
    if isinstance(lr_min, bool) or not isinstance(lr_min, (int, float, np.integer, np.floating)) \
            or not 0 < lr_min <= lr:
        raise ValueError(f"lr_min must be a number in (0, {lr}], got {lr_min!r}")
    if not (isinstance(ds, (int, float, np.floating)) and 0 < ds <= 1):
        raise ValueError(f"ds must be a number in (0, 1], got {ds!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 2:
        raise ValueError(f"max_steps must be a whole number >= 2, got {max_steps!r}")
    if not _inside_cone(Q, R, T):
        raise ValueError("the branch cannot start: the point lies on the boundary of the Gram-matrix cone "
                         "(students inside the teacher span, e.g. the realisable global minimum without label "
                         "noise), where the ODE has no Jacobian (the realisable minimum without noise has its own branch: "
                         "landscape.critical_points.realisable)")
    residual = float(np.linalg.norm(state_vector(*ode_velocity(Q, R, T, lr, True, noise)))) / lr
    if not residual < FIXED_POINT_TOL:
        raise ValueError(f"the point is not a fixed point of the ODE at lr = {lr}: |dx/dt| / lr = {residual:.2e} "
                         f"> {FIXED_POINT_TOL:.0e}")
    return Q, R, T, lr, float(lr_max), float(lr_min), noise


def continue_fixed_point(Q: ArrayLike, R: ArrayLike, T: ArrayLike, lr: float, lr_max: float, eta2: bool = True,
                         noise: float = 0.0, lr_min: float | None = None, ds: float = 0.05,
                         max_steps: int = 400, should_stop: Callable[[], bool] | None = None) -> Branch:
    """Continue a fixed point of the full ODE in the learning rate, through folds, with its stability.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
        A fixed point of the ODE at ``lr`` (``|dx/dt| / lr < FIXED_POINT_TOL``; it is polished first).
    T : array_like, shape (M, M)
    lr : float
        Learning rate at the start (positive).
    lr_max : float
        The branch ends when it reaches this learning rate (above ``lr``).
    eta2 : bool, optional
        Must be True (the ``lr^2`` term is what makes fixed points move with ``lr``).
    noise : float, optional
        Label-noise variance.
    lr_min : float, optional
        After a fold the branch ends when it comes back below this (default ``lr``).
    ds : float, optional
        Largest arclength step in ``(x, lr)``.
    max_steps : int, optional
    should_stop : callable, optional
        Called before every step; True stops the continuation with :class:`landscape.status.Stopped`
        (the dashboard's visitor has left).

    Returns
    -------
    Branch
        Failures along the way (leaving the cone, the corrector failing) end the branch with that status.

    Raises
    ------
    ValueError
        If the input is out of range, the point is not a fixed point within ``FIXED_POINT_TOL``, or it is on the
        boundary of the cone (the branch cannot start).
    Stopped
        When ``should_stop()`` returns True.
    """
    Q, R, T, lr, lr_max, lr_min, noise = _check_start(Q, R, T, lr, lr_max, eta2, noise, lr_min, ds, max_steps)
    check_should_stop(should_stop)
    problem = _Problem(T, True, noise)
    problem.K, problem.M = R.shape
    x = _polish(problem, state_vector(Q, R), lr)
    if x is None:
        raise ValueError(f"the branch cannot start: Newton's method does not converge from this point at lr = {lr}")
    return _follow(problem, np.append(x, lr), lr_max, lr_min, float(ds), int(max_steps), should_stop)


def _follow(problem, y, lr_max, lr_min, ds_max, max_steps, should_stop=None):
    augmented, stability = problem.point(y[:-1], y[-1])
    direction = np.zeros(y.size)
    direction[-1] = 1.0
    tangent = _tangent(augmented, direction)
    record = _Recorder(problem)
    record.add(0.0, y, augmented, stability, tangent)
    ds, s, status = 0.25 * ds_max, 0.0, BranchStatus.MAX_STEPS
    events = []
    while len(record.y) < max_steps:
        stop_if_asked(should_stop, "continuation in lr")  # each step costs a Jacobian: not for nobody
        guess = y + ds * tangent
        new, iterations = _correct(problem, guess, tangent, guess, augmented)
        if new is None:
            ds *= 0.5
            if ds < 1e-7:
                status = BranchStatus.STEP_TOO_SMALL
                break
            continue
        if new[-1] > lr_max:  # land exactly on lr_max: the hyperplane lr = lr_max
            plane = direction
            new, _ = _correct(problem, y + tangent * (lr_max - y[-1]) / tangent[-1], plane,
                              np.append(y[:-1], lr_max), augmented)
            if new is None:
                ds *= 0.5
                continue
        if np.max(np.abs(new)) > 1e6:
            status = BranchStatus.DIVERGED
            break
        new_augmented, new_stability = problem.point(new[:-1], new[-1])
        new_tangent = _tangent(new_augmented, tangent)
        step = float(np.linalg.norm(new - y))
        events += _events(problem, len(record.y) - 1, (y, tangent, augmented, stability),
                          (new, new_tangent, new_stability), step)
        s += step
        y, augmented, stability, tangent = new, new_augmented, new_stability, new_tangent
        record.add(s, y, augmented, stability, tangent)
        if y[-1] >= lr_max - 1e-12:
            status = BranchStatus.REACHED_LR_MAX
            break
        if y[-1] < lr_min and any(e.kind is EventKind.FOLD for e in events):
            status = BranchStatus.RETURNED
            break
        ds = min(ds_max, ds * (1.5 if iterations <= 5 else 0.7 if iterations >= 7 else 1.0))
    if status is BranchStatus.STEP_TOO_SMALL and not problem.inside(y[:-1] + 1e-3 * tangent[:-1]):
        status = BranchStatus.LEFT_CONE
    return _branch(problem, record, events, status)


def _events(problem, index, before, after, length):
    """Folds and stability changes between two consecutive branch points, located."""
    y0, tangent0, augmented0, stability0 = before
    y1, tangent1, stability1 = after
    found = []
    if np.sign(tangent0[-1]) != np.sign(tangent1[-1]):
        located = _locate(problem, (y0, tangent0, augmented0, tangent0[-1]), lambda y, t, st: t[-1], length)
        found.append((EventKind.FOLD, located))
    if stability0.attractive != stability1.attractive:
        located = _locate(problem, (y0, tangent0, augmented0, stability0.max_real_eigenvalue),
                          lambda y, t, st: st.max_real_eigenvalue, length)
        found.append((EventKind.STABILITY_CHANGE, located))
    events = []
    for kind, located in found:
        if located is None:  # the located point could not be corrected: report the bracket's midpoint
            located = 0.5 * (y0 + y1)
        Q, R = overlaps_from_state(located[:-1], problem.K, problem.M)
        events.append(BranchEvent(kind, float(located[-1]), float(loss_from_overlaps(Q, R, problem.T)), index, Q, R))
    return sorted(events, key=lambda e: abs(e.lr - y0[-1]))


def _branch(problem, record, events, status):
    Y = np.array(record.y)
    K, M = problem.K, problem.M
    Q, R = zip(*(overlaps_from_state(y[:-1], K, M) for y in Y))
    Q, R = np.array(Q), np.array(R)
    success = status in (BranchStatus.REACHED_LR_MAX, BranchStatus.RETURNED)
    folds = sum(e.kind is EventKind.FOLD for e in events)
    message = (f"{status.value}: {len(Y)} points from lr {Y[0, -1]:.4g} to {Y[-1, -1]:.4g}, "
               f"{folds} fold(s), {len(events) - folds} stability change(s)")
    return Branch(
        s=np.array(record.s), lr=Y[:, -1].copy(), loss=loss_from_overlaps(Q, R, problem.T), Q=Q, R=R,
        stable=np.array([st.attractive for st in record.stability]),
        max_real_eigenvalue=np.array([st.max_real_eigenvalue for st in record.stability]),
        eigenvalues=np.array([st.eigenvalues for st in record.stability]),
        events=tuple(events), success=success, status=status, message=message,
    )


def global_minimum_start(K, T):
    """Overlaps of a global minimum of ``L`` for ``K >= M`` students: student ``m`` on teacher ``m``, and
    the extra students sharing the last teacher's vector in equal parts.

    Returns
    -------
    Q : ndarray, shape (K, K)
    R : ndarray, shape (K, M)

    Raises
    ------
    ValueError
        If ``K < M``.
    """
    T = np.asarray(T, dtype=float)
    M = T.shape[0]
    if K < M:
        raise ValueError(f"the global minimum is continued, which needs K >= M; got K = {K}, M = {M}")
    shares = np.zeros((K, M))
    shares[np.arange(M), np.arange(M)] = 1.0
    shares[M - 1:, M - 1] = 1.0 / (K - M + 1)
    return shares @ T @ shares.T, shares @ T


def _newton_from_inside(Q, R, T, lr, noise):
    """Newton's method in ``(Q, R)`` from the critical point with the student norms inflated out of the
    teacher span (the label noise does that to the fixed point; Newton needs a start inside the cone).
    Returns ``(Q, R)`` or None. Much faster than the weight-space search of ``ode_fixed_point``."""
    problem = _Problem(T, True, noise)
    problem.K, problem.M = R.shape
    scale = float(np.mean(np.diag(T)))
    for inflation in (1e-2, 3e-2, 1e-1):
        start = state_vector(Q + inflation * scale * np.eye(Q.shape[0]), R)
        if not problem.inside(start):
            continue
        with np.errstate(all="ignore"):
            x = _polish(problem, start, lr)
        if x is not None:
            found = overlaps_from_state(x, problem.K, problem.M)
            # Newton may land on another fixed point: keep only the one next to the critical point.
            if np.max(np.abs(found[1] - R)) < _NEAR * np.sqrt(scale):
                return found
    return None


def fixed_point_near(Q, R, T, lr, noise):
    """The fixed point of the full ODE at ``lr`` next to a critical point of ``L``: Newton's method
    from it first (it may be unstable, and the flow would leave it), then the flow.

    Returns
    -------
    Q : ndarray, shape (K, K)
    R : ndarray, shape (K, M)

    Raises
    ------
    ValueError
        If neither finds a fixed point (e.g. the flow diverges: lr beyond the fold).
    """
    from .fixed_points import ode_fixed_point

    Q, R, T = validate_overlaps(Q, R, T)
    quick = _newton_from_inside(Q, R, T, lr, noise)
    if quick is not None:
        return quick
    for flow in (False, True):
        result = ode_fixed_point(Q, R, T, lr, True, noise, flow=flow)
        if result.success:
            return result.Q, result.R
    raise ValueError(f"the branch cannot start: no fixed point of the ODE at lr = {lr} was found next to this point "
                     f"({result.message})")


def branch_from(Q, R, T, lr, lr_max, noise, lr_min=None, ds=0.05, max_steps=400, from_critical=False, should_stop=None):
    """The branch of one start: the realisable minimum without label noise by
    :func:`landscape.critical_points.realisable.realisable_branch`, any other point by
    :func:`continue_fixed_point` (from the fixed point next to it if ``from_critical``; ``should_stop`` as there).

    Raises
    ------
    ValueError
        If the branch cannot start (see :func:`continue_fixed_point`, :func:`fixed_point_near`).
    """
    from .realisable import REALISABLE_LOSS, realisable_branch

    if noise == 0 and loss_from_overlaps(Q, R, T) < REALISABLE_LOSS:  # a fixed point at every lr
        return realisable_branch(Q, R, T, lr, lr_max)
    if from_critical:
        Q, R = fixed_point_near(Q, R, T, lr, noise)
    return continue_fixed_point(Q, R, T, lr, lr_max, True, noise, lr_min, ds, max_steps, should_stop)


def _branch_chunk(Q0, R0, T, lr, lr_max, noise, lr_min, ds, max_steps, from_critical):
    branches = []
    for Q, R in zip(Q0, R0):
        try:
            branches.append(branch_from(Q, R, T, lr, lr_max, noise, lr_min, ds, max_steps, from_critical))
        except ValueError as error:  # a branch that cannot start is reported, not raised, in a batch
            branches.append(str(error))
    return branches


def continue_fixed_points(Q0, R0, T, lr, lr_max, noise=0.0, lr_min=None, ds=0.05, max_steps=400, workers=None,
                          progress=None, from_critical=False):
    """:func:`continue_fixed_point` for many fixed points, shared between processes (both cores).

    Parameters
    ----------
    Q0 : array_like, shape (S, K, K)
    R0 : array_like, shape (S, K, M)
        Fixed points of the full ODE at ``lr`` (or critical points of ``L``, see ``from_critical``).
    T : array_like, shape (M, M)
    lr, lr_max, noise, lr_min, ds, max_steps
        As for :func:`continue_fixed_point` (``eta2`` on).
    workers : int, optional
        Processes (default: 2 where available).
    progress : callable, optional
        ``progress(done, total)``.
    from_critical : bool, optional
        The starts are critical points of ``L`` (e.g. catalogue minima): each is first moved to the
        fixed point of the full ODE at ``lr`` next to it (Newton, then the flow).

    Returns
    -------
    tuple
        Per start, a :class:`Branch`, or the message (str) of why its branch could not start.

    Raises
    ------
    ValueError
        If the stacks are malformed or a setting is out of range.
    """
    Q0, R0 = np.asarray(Q0, dtype=float), np.asarray(R0, dtype=float)
    if Q0.ndim != 3 or R0.ndim != 3 or len(Q0) != len(R0) or len(Q0) == 0:
        raise ValueError(f"Q0 and R0 must be non-empty stacks (S, K, K) and (S, K, M), got {Q0.shape} and {R0.shape}")
    T = np.asarray(T, dtype=float)
    for Q, R in zip(Q0, R0):
        validate_overlaps(Q, R, T)
    _check_lr(lr), _check_noise(noise)
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be callable as progress(done, total), got {progress!r}")
    arguments = (T, lr, lr_max, noise, lr_min, ds, max_steps, bool(from_critical))
    parts = run_chunks(_branch_chunk, chunked(Q0, R0, size=1), arguments, workers, progress)
    return tuple(branch for part in parts for branch in part)
