"""Connections of a catalogue: where the descent paths out of its saddles end, and the barriers.

For every index-1 saddle of a :class:`~landscape.catalogues.records.Catalogue`, :func:`connect_catalogue`
pushes the point both ways along the unstable eigenvector of the exact weight-space Hessian
(:func:`landscape.critical_points.hessian.weight_hessian`), follows gradient flow to the end (the
Bogacki-Shampine steps of :mod:`landscape.critical_points.batch_flow`, every start of every saddle in
one batch, with the states recorded), polishes each end with Newton's method
(:func:`landscape.critical_points.search.newton_polish`) and matches it to the catalogue's points
modulo the symmetries (units on one ray merged first, as the catalogue does). An end that is not
yet listed becomes a new point with its spectrum (``found_by = ("connection",)``, basin count 0).
Saddles of index 2 to ``max_index`` are pushed both ways along each of their unstable
eigenvectors: where their ends are saddles, these are the links of the Morse complex. A catalogue
found by flows and symmetric ansatzes may lack the index-1 saddles that lead out of its minima:
with ``climb_modes > 0`` they are looked for by eigenvector-following from every minimum
(:mod:`landscape.critical_points.transition`), added, and connected like the others.

The barrier of a descent path is the saddle's loss minus the loss of its end; the path itself is
kept as the loss against the arclength (Frobenius norm in the weights ``u = w / sqrt(d)``),
resampled at ``path_points`` points evenly spaced in arclength.

Section 6 of docs/theory.md; the method follows energy-landscape practice (Wales, Energy Landscapes, 2003).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ..critical_points.batch_flow import (
    DEAD_NORM,
    DIVERGENCE_NORM,
    EndReason,
    locally_convex,
    rk_step,
    row_norms,
    unchecked_batch_gradient,
)
from ..critical_points.flat import gradient_repolish, make_candidate, same_point
from ..critical_points.hessian import weight_hessian
from ..critical_points.search import newton_polish
from ..critical_points.transition import climb_to_saddle
from ..kernels.linalg import symmetric_eigh
from ..model.initialisation import teacher_weights
from ..model.loss import PairResiduals, gradient_from_weights, loss_from_overlaps, rejection_norms
from ..status import StatusEnum, check_should_stop, counted, stop_if_asked
from .build import mark_global, point_record
from .records import Catalogue, PointKind

__all__ = ["ConnectOptions", "ConnectionStatus", "Connection", "ConnectedCatalogue", "connect_catalogue",
           "saddle_weights"]

_NEGATIVE_TOL = 1e-9
_RECHECK = 25


@dataclass(frozen=True)
class ConnectOptions:
    """Settings of :func:`connect_catalogue` (one object per run).

    Attributes
    ----------
    push : float
        Length of the push off the saddle, relative to the Frobenius norm of its weights.
    flow_tol : float
        Gradient norm at which a descent hands over to Newton's method.
    max_steps : int
        Flow step attempts per descent.
    path_points : int
        Points of each stored path (evenly spaced in arclength, saddle and end included).
    max_index : int
        Saddles of index 2 up to this are pushed along each unstable eigenvector (0 or 1: none).
    climb_modes : int
        From every minimum, climb by eigenvector-following up its ``climb_modes`` softest non-zero
        Hessian modes, both ways (:func:`landscape.critical_points.transition.climb_to_saddle`): the index-1
        saddles found that are not in the catalogue are added (``found_by = ("climb",)``) and connected too.
    """

    push: float = 1e-3
    flow_tol: float = 1e-6
    max_steps: int = 20_000
    path_points: int = 64
    max_index: int = 2
    climb_modes: int = 0

    def __post_init__(self):
        for name, low, high in (("push", 0.0, 0.5), ("flow_tol", 0.0, 1e-2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < high:
                raise ValueError(f"{name} must be a number in ({low:g}, {high:g}), got {value!r}")
        for name, low in (("max_steps", 1), ("path_points", 2), ("max_index", 0), ("climb_modes", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")


class ConnectionStatus(StatusEnum):
    """Outcome of the two descents from one saddle; the value is a sentence, ``code`` a short name."""

    CONNECTED = "both descent paths ended at polished critical points"
    HALF = "one descent path did not end at a critical point"
    FAILED = "neither descent path ended at a critical point"



@dataclass(frozen=True, eq=False)
class Connection:
    """The two descent paths from one saddle along one unstable direction.

    Attributes
    ----------
    saddle : int
        Index of the saddle in the catalogue's ``points``.
    direction : int
        Which unstable eigenvector (0 = the most negative eigenvalue; always 0 for index 1).
    ends : tuple of (int or None)
        Points where the descents along ``+v`` and ``-v`` end (None where a descent failed).
    barriers : tuple of (float or None)
        Saddle loss minus end loss, one per end.
    arclength : tuple of ndarray, shape (path_points,) each
        Arclength from the saddle along each path.
    paths : tuple of ndarray, shape (path_points,) each
        Loss along each path, at those arclengths.
    reasons : tuple of EndReason
        How each descent ended.
    status : ConnectionStatus
    message : str
    """

    saddle: int
    direction: int
    ends: tuple
    barriers: tuple
    arclength: tuple
    paths: tuple
    reasons: tuple
    status: ConnectionStatus
    message: str

    @property
    def success(self):
        """True when both ends were found."""
        return self.status is ConnectionStatus.CONNECTED

    def to_dict(self):
        """JSON-ready dictionary (the format of an entry of ``"connections"``)."""
        return {
            "saddle": self.saddle, "direction": self.direction, "ends": list(self.ends),
            "barriers": [None if b is None else float(b) for b in self.barriers],
            "paths": [[float(v) for v in path] for path in self.paths],
            "arclength": [[float(v) for v in s] for s in self.arclength],
            "reasons": [reason.code for reason in self.reasons], "status": self.status.code, "message": self.message,
        }

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            If a key is missing or a value has the wrong type.
        """
        try:
            return cls(
                saddle=int(data["saddle"]), direction=int(data.get("direction", 0)),
                ends=tuple(None if e is None else int(e) for e in data["ends"]),
                barriers=tuple(None if b is None else float(b) for b in data["barriers"]),
                arclength=tuple(np.array(s, dtype=float) for s in data["arclength"]),
                paths=tuple(np.array(p, dtype=float) for p in data["paths"]),
                reasons=tuple(EndReason[str(r).upper()] for r in data["reasons"]),
                status=ConnectionStatus[str(data["status"]).upper()], message=str(data["message"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a connection record: {error!r}") from None


@dataclass(frozen=True, eq=False)
class ConnectedCatalogue:
    """A catalogue with the connections of its saddles (new end points added to ``catalogue.points``).

    Attributes
    ----------
    catalogue : Catalogue
        Points sorted by loss; ``Connection.saddle`` and ``Connection.ends`` index them.
    connections : tuple of Connection
        Index-1 saddles first (one each), then the higher-index directions.
    added : int
        Points that were not in the input catalogue.
    success : bool
        True when every descent of every index-1 saddle ended at a critical point.
    status : ConnectionStatus
        ``CONNECTED``, ``HALF`` if some descents failed, ``FAILED`` if all did.
    message : str
    """

    catalogue: Catalogue
    connections: tuple
    added: int
    success: bool
    status: ConnectionStatus
    message: str

    def to_dict(self):
        """The catalogue's dictionary with ``"connections"`` (and ``"connect_message"``) added."""
        data = self.catalogue.to_dict()
        data["connections"] = [c.to_dict() for c in self.connections]
        data["connect_message"] = self.message
        return data

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            If the dictionary is not a catalogue with connections.
        """
        catalogue = Catalogue.from_dict(data)
        if not isinstance(data.get("connections"), list):
            raise ValueError("the catalogue has no connections (make it with landscape catalogue ... --connect)")
        connections = tuple(Connection.from_dict(c) for c in data["connections"])
        for c in connections:
            if not all(0 <= i < len(catalogue.points) for i in (c.saddle,) + tuple(e for e in c.ends if e is not None)):
                raise ValueError(f"connection of saddle {c.saddle} refers to a point outside the catalogue")
        added = sum(bool({"connection", "climb"} & set(p.found_by)) for p in catalogue.points)
        return cls(catalogue, connections, added, *_outcome(connections, catalogue))


def _outcome(connections, catalogue):
    first = [c for c in connections if catalogue.points[c.saddle].index == 1]
    ends = [e for c in first for e in c.ends]
    found = sum(e is not None for e in ends)
    if found == len(ends):
        status = ConnectionStatus.CONNECTED
    else:
        status = ConnectionStatus.FAILED if found == 0 else ConnectionStatus.HALF
    higher = len(connections) - len(first)
    message = (f"{counted(len(first), 'index-1 saddle', 'index-1 saddles')}, {found} of {len(ends)} descents ended at "
               f"critical points; {counted(higher, 'unstable direction', 'unstable directions')} of higher-index saddles "
               "followed")
    return status is ConnectionStatus.CONNECTED, status, message


# ----------------------------------------------------------------------------- weights of a point


def _span_dimension(catalogue):
    T = catalogue.config.teacher_matrix()
    t = int(np.sum(np.linalg.eigvalsh(T) > 1e-12 * np.linalg.eigvalsh(T).max()))
    # One coordinate beyond the students' span when d allows it, so unstable bulk directions exist too.
    return t, t + min(catalogue.config.K + 1, catalogue.d - t)


def saddle_weights(Q: np.ndarray, R: np.ndarray, W_teacher: np.ndarray) -> np.ndarray:
    """Student rows with overlaps ``Q``, ``R`` against the given teacher rows.

    Parameters
    ----------
    Q : ndarray, shape (K, K)
    R : ndarray, shape (K, M)
    W_teacher : ndarray, shape (M, n)
        Teacher rows spanning the first ``t`` coordinates (``t = rank T``), zero beyond.

    Returns
    -------
    ndarray, shape (K, n)
        Part in the teacher span from ``R``, the rest from the Gram matrix of the residuals.

    Raises
    ------
    ValueError
        If the residual Gram matrix needs more than ``n - t`` coordinates.
    """
    nonzero = np.flatnonzero(np.any(W_teacher != 0, axis=0))
    t = int(nonzero.max()) + 1 if nonzero.size else 0
    K, n = Q.shape[0], W_teacher.shape[1]
    inside = R @ np.linalg.pinv(W_teacher[:, :t]).T
    residual = Q - inside @ inside.T
    eigenvalues, eigenvectors = np.linalg.eigh(0.5 * (residual + residual.T))
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = np.clip(eigenvalues[order], 0.0, None), eigenvectors[:, order]
    room = n - t
    if room < K and eigenvalues[room:].max(initial=0.0) > 1e-8 * max(1.0, eigenvalues[0]):
        raise ValueError(f"the point needs more than {room} coordinates outside the teacher span")
    W = np.zeros((K, n))
    W[:, :t] = inside
    width = min(room, K)
    W[:, t:t + width] = eigenvectors[:, :width] * np.sqrt(eigenvalues[:width])
    return W


def _unstable_directions(W, W_teacher, count):
    """Eigenvectors (rows, unit Frobenius norm, shape (j, K, n)) of the ``count`` lowest negative eigenvalues."""
    eigenvalues, eigenvectors = symmetric_eigh(weight_hessian(W, W_teacher))
    negative = np.flatnonzero(eigenvalues < -_NEGATIVE_TOL * max(1.0, abs(eigenvalues[-1])))[:count]
    return eigenvectors[:, negative].T.reshape(len(negative), *W.shape)


# ----------------------------------------------------------------------------- recorded descents


def _descend(W0, W_teacher, options, should_stop=None):
    """Gradient flow of many starts, every accepted state recorded: (ends, reasons, list of paths (steps, K, n))."""
    T = W_teacher @ W_teacher.T
    teacher_residual = rejection_norms(W_teacher, W_teacher)
    scale = float(np.sqrt(np.max(np.diag(T))))
    S = W0.shape[0]
    W, dt = W0.copy(), np.full(S, 0.05)
    reasons = np.full(S, None, dtype=object)
    steps, checked = np.zeros(S, dtype=int), np.zeros(S, dtype=int)
    paths = [[W0[s].copy()] for s in range(S)]

    def slope(Y):
        return -unchecked_batch_gradient(Y, W_teacher, T, teacher_residual)

    velocity, active = slope(W), np.arange(S)
    while active.size:
        stop_if_asked(should_stop, "connecting the catalogue")
        norms = row_norms(W[active])
        gradient_norm = np.linalg.norm(velocity[active].reshape(active.size, -1), axis=1)
        blown = ~np.isfinite(gradient_norm) | (norms.max(axis=1) > DIVERGENCE_NORM * scale)
        dead = (norms.min(axis=1) < DEAD_NORM * scale) & ~blown
        done = (gradient_norm < options.flow_tol) & ~dead & ~blown
        # As in the catalogue's search: hand a slow end in a basin (no descent direction) to Newton
        # early. Checked again every _RECHECK steps: a descent may first cross the threshold beside a
        # saddle barely above its minimum (barriers of 1e-5 occur) and enter the basin only later.
        due = (gradient_norm < 1e-4) & (steps[active] >= checked[active]) & ~done & ~dead & ~blown
        for position in np.flatnonzero(due):
            checked[active[position]] = steps[active[position]] + _RECHECK
            done[position] = locally_convex(W[active[position]], W_teacher, None)
        out = (steps[active] >= options.max_steps) & ~done & ~dead & ~blown
        for mask, reason in ((blown, EndReason.DIVERGED), (dead, EndReason.UNIT_DIED),
                             (done, EndReason.CONVERGED), (out, EndReason.MAX_STEPS)):
            reasons[active[mask]] = reason
        active = active[~(blown | dead | done | out)]
        if not active.size:
            break
        Y3, f4, ratio = rk_step(W[active], velocity[active], dt[active][:, None, None], slope, None, 1e-2)
        accept = ratio <= 1.0
        W[active[accept]], velocity[active[accept]] = Y3[accept], f4[accept]
        for s in active[accept]:
            paths[s].append(W[s].copy())
        steps[active] += 1
        dt[active] *= np.clip(0.9 * np.maximum(ratio, 1e-10) ** (-1.0 / 3.0), 0.2, 5.0)
    return W, list(reasons), [np.array(p) for p in paths]


def _resampled_path(saddle, states, end, W_teacher, points):
    """Loss against arclength from the saddle through the flow's states to the polished end."""
    chain = np.concatenate([saddle[None], states, end[None]])
    steps = np.linalg.norm((chain[1:] - chain[:-1]).reshape(len(chain) - 1, -1), axis=1)
    arclength = np.concatenate([[0.0], np.cumsum(steps)])
    wanted = np.linspace(0.0, arclength[-1], points)
    # Nearest recorded state at or after each wanted arclength (states are dense where the path bends).
    picks = np.minimum(np.searchsorted(arclength, wanted), len(chain) - 1)
    picks[0], picks[-1] = 0, len(chain) - 1
    return arclength[picks], _batch_loss(chain[picks], W_teacher)


def _batch_loss(W, W_teacher):
    """Loss of many students at once, shape (P,), with exact residuals from the weights (P, K, n)."""
    T = W_teacher @ W_teacher.T
    residuals = PairResiduals(student=rejection_norms(W, W), cross=rejection_norms(W, W_teacher),
                              teacher=rejection_norms(W_teacher, W_teacher))
    return loss_from_overlaps(W @ np.swapaxes(W, 1, 2), W @ W_teacher.T, T, residuals)


# ----------------------------------------------------------------------------- matching ends


def _keep(W, W_teacher, groups, loss):
    """Repolish of a point already in the catalogue (its units on one ray have equal shares): none."""
    return W, float(np.linalg.norm(gradient_from_weights(W, W_teacher)))


def _polished_end(W, W_teacher):
    """Newton-polished end of a descent, or None; units nearly on one ray are first put on it."""
    from ..critical_points.search import polish_on_rays

    polished = polish_on_rays(W, W_teacher, 1e-10, 40)
    if polished is None:
        polished = newton_polish(W, W_teacher)
    return polished.W if polished.success else None


def _match(candidate, known, T):
    """Position of the first known candidate in the same orbit (units on one ray merged), or None."""
    for position, other in enumerate(known):
        if same_point(other, candidate, T):
            return position
    return None


def _check_connect(catalogue, options):
    if not isinstance(catalogue, Catalogue):
        raise ValueError(f"catalogue must be a Catalogue, got {type(catalogue).__name__}")
    if catalogue.regime != "gradient_flow":
        raise ValueError(f"connections follow gradient flow of L: the catalogue's regime must be 'gradient_flow', "
                         f"got {catalogue.regime!r}")
    options = ConnectOptions() if options is None else options
    if not isinstance(options, ConnectOptions):
        raise ValueError(f"options must be a ConnectOptions, got {type(options).__name__}")
    return options


def _starts(points, W_teacher, options, weights):
    """Polished saddles and their pushed starts: (saddle index, direction, saddle W), starts (2 j, K, n)."""
    jobs, starts = [], []
    for number, point in enumerate(points):
        if point.kind is not PointKind.SADDLE or not 1 <= point.index <= max(1, options.max_index):
            continue
        W = weights.get(number)
        if W is None:
            W = saddle_weights(point.Q, point.R, W_teacher)
            polished = newton_polish(W, W_teacher)
            W = polished.W if polished.success else W
        directions = _unstable_directions(W, W_teacher, point.index)
        push = options.push * float(np.linalg.norm(W))
        for direction, vector in enumerate(directions):
            jobs.append((number, direction, W))
            starts.extend([W + push * vector, W - push * vector])
    return jobs, np.array(starts)


def _climb(catalogue, known, W_teacher, T, options, should_stop=None):
    """New index-1 saddles climbed to from the minima (appended to ``known``): list of (point, W)."""
    found = []
    for point in catalogue.points:
        if point.kind is not PointKind.MINIMUM or options.climb_modes == 0:
            continue
        stop_if_asked(should_stop, "connecting the catalogue")
        polished = newton_polish(saddle_weights(point.Q, point.R, W_teacher), W_teacher)
        for mode in range(options.climb_modes):
            for sign in (1.0, -1.0):
                climb = climb_to_saddle(polished.W, W_teacher, mode, sign)
                if not climb.success:
                    continue
                norm = float(np.linalg.norm(gradient_from_weights(climb.W, W_teacher)))
                candidate = make_candidate(climb.W, W_teacher, norm, "climb", gradient_repolish)
                if _match(candidate, known, T) is not None:
                    continue
                saddle = point_record(candidate, T, catalogue.d, catalogue.config, catalogue.regime)
                if saddle.index == 1:  # in the catalogue's d (the climb checked the embedding only)
                    known.append(candidate)
                    found.append((saddle, candidate.W))
    return found


def _matched_ends(ends, reasons, known, W_teacher, T):
    """Polish every converged end and find it among ``known`` (appending new ones); updates ``reasons``.

    Returns the positions in ``known`` (None where a descent failed) and the end weights.
    """
    positions, weights = [], []
    for number, (W, reason) in enumerate(zip(ends, reasons)):
        polished = _polished_end(W, W_teacher) if reason is EndReason.CONVERGED else None
        if polished is None:
            reasons[number] = reason if reason is not EndReason.CONVERGED else EndReason.POLISH_FAILED
            positions.append(None)
            weights.append(W)
            continue
        norm = float(np.linalg.norm(gradient_from_weights(polished, W_teacher)))
        candidate = make_candidate(polished, W_teacher, norm, "connection", gradient_repolish)
        position = _match(candidate, known, T)
        if position is None:
            known.append(candidate)
            position = len(known) - 1
        positions.append(position)
        weights.append(polished)
    return positions, weights


def _connection(job, ends, reasons, paths, points):
    saddle, direction, _ = job
    barriers = tuple(None if e is None else points[saddle].loss - points[e].loss for e in ends)
    found = sum(e is not None for e in ends)
    status = (ConnectionStatus.CONNECTED, ConnectionStatus.HALF, ConnectionStatus.FAILED)[2 - found]
    named = [f"point {e} (barrier {b:.3e})" if e is not None else f"nowhere ({r.code})"
             for e, b, r in zip(ends, barriers, reasons)]
    message = f"saddle {saddle} (index {points[saddle].index}), direction {direction}: " + " and ".join(named)
    return Connection(saddle=saddle, direction=direction, ends=tuple(ends), barriers=barriers,
                      arclength=tuple(s for s, _ in paths), paths=tuple(loss for _, loss in paths),
                      reasons=tuple(reasons), status=status, message=message)


def connect_catalogue(catalogue: Catalogue, options: ConnectOptions | None = None,
                      should_stop: Callable[[], bool] | None = None) -> ConnectedCatalogue:
    """Follow the descent paths out of every saddle of a catalogue and match their ends to its points.

    Parameters
    ----------
    catalogue : Catalogue
        A ``gradient_flow`` catalogue (:func:`landscape.catalogues.build.build_catalogue`).
    options : ConnectOptions, optional
        Push length, tolerances, path resolution, highest saddle index followed.
    should_stop : callable, optional
        Called between climbs and before every step of the descents; True stops the run with
        :class:`landscape.status.Stopped` (the dashboard's visitor has left).

    Returns
    -------
    ConnectedCatalogue
        Ends not in the catalogue are added as points (with spectra in the catalogue's ``d``);
        points stay sorted by loss, and every index refers to the new list. Descents that do not
        end at a critical point (a unit dies, no convergence) have end None and say why.

    Raises
    ------
    ValueError
        If ``catalogue`` is not a gradient-flow Catalogue or ``options`` not a ConnectOptions.
    Stopped
        When ``should_stop()`` returns True.
    """
    options = _check_connect(catalogue, options)
    check_should_stop(should_stop)
    T = catalogue.config.teacher_matrix()
    _, n = _span_dimension(catalogue)
    W_teacher = teacher_weights(T, n)
    known = [make_candidate(saddle_weights(p.Q, p.R, W_teacher), W_teacher, p.gradient_norm, "flow", _keep)
             for p in catalogue.points]
    climbed = _climb(catalogue, known, W_teacher, T, options, should_stop)
    points = list(catalogue.points) + [point for point, _ in climbed]
    weights = {len(catalogue.points) + number: W for number, (_, W) in enumerate(climbed)}
    jobs, starts = _starts(points, W_teacher, options, weights)
    ends, reasons, states = (_descend(starts, W_teacher, options, should_stop) if len(starts) else ([], [], []))
    end_positions, end_weights = _matched_ends(ends, reasons, known, W_teacher, T)
    added = [point for point, _ in climbed] + [point_record(c, T, catalogue.d, catalogue.config,
                                                            catalogue.regime) for c in known[len(points):]]
    points = list(catalogue.points) + added
    order = sorted(range(len(points)), key=lambda i: (points[i].loss, points[i].index))
    new_index = {old: new for new, old in enumerate(order)}
    points = list(mark_global([points[i] for i in order], catalogue.config.K >= catalogue.config.M))
    connections = []
    for number, job in enumerate(jobs):
        pair = (2 * number, 2 * number + 1)
        renumbered = (new_index[job[0]],) + job[1:]
        pair_ends = [None if end_positions[i] is None else new_index[end_positions[i]] for i in pair]
        paths = [_resampled_path(job[2], states[i], end_weights[i], W_teacher, options.path_points) for i in pair]
        connections.append(_connection(renumbered, pair_ends, [reasons[i] for i in pair], paths, points))
    connections.sort(key=lambda c: (points[c.saddle].index, c.saddle, c.direction))
    result = replace(catalogue, points=tuple(points))
    return ConnectedCatalogue(result, tuple(connections), len(added), *_outcome(connections, result))
