"""Catalogues of critical points: many seeded starts, distinct points with spectra, families, basins.

:func:`build_catalogue` runs the dynamics of a :class:`~landscape.config.RunConfig` from ``starts``
random initialisations (``config.init``: input dimension ``d`` and ``scale``; the randomness comes
from ``seed``, not from ``config.init.seed``), polishes every end point with Newton's method, adds
saddles from symmetric ansatzes (:mod:`landscape.ansatz`), and lists each distinct point once in
canonical form with its exact Hessian spectrum in dimension ``d``, its family
(:mod:`landscape.families`), its orbit size and the number of starts whose dynamics ended there.

Regimes
-------
``gradient_flow``
    ``lr -> 0``: critical points of ``L``, flows in the weight space of the span of the units (exact
    for any ``d``). Safran & Shamir's protocol is ``init = {"kind": "random", "d": M, "scale": 1}``.
``finite_lr``
    Fixed points of the full ODE at ``config.lr`` (with ``config.eta2`` and ``config.noise``), from
    the same random starts (slow: the four-point term costs milliseconds per evaluation, so keep
    ``K`` and ``starts`` small). Saddles are the gradient-flow ansatz saddles continued to ``lr``
    by Newton's method. ``gradient_norm`` is then the ODE residual ``|(dQ/dt, dR/dt)| / lr``, and
    ``kind``/``index`` still describe the Hessian of ``L`` at the point.

Flat directions
---------------
Two student units on the same ray compute ``a u`` and ``(1 - a) u`` for every share ``a``: with
``K > M`` minima come in such continua. Units whose directions agree within ``PARALLEL_ANGLE`` are
merged into equal shares before deduplication (the loss and the gradient are unchanged along the
continuum), and the point carries a :class:`FlatManifold`: which students share a ray, which teacher
that ray is, and the dimension of the continuum (``sum (g - 1)`` over groups of ``g`` units).
Points are deduplicated by the function they compute (units on one ray summed): continua that
differ only in how many units share each ray are joined through a unit of norm zero and are
listed once, with the representative found first.

Saddles come from flows in fixed-point subspaces of symmetric ansatzes
(:func:`landscape.ansatz.ansatz_projector`): the most symmetric ``Delta(S_b1 x ...)`` subspaces
(teachers invariant under all permutations only) and the least merged student-only subspaces (split
units), and for such teachers with ``d >= M + K`` the unspecialised subspace of the Saad-Solla plateau
(:func:`landscape.ansatz.plateau_projector`), a few seeded starts each (``ansatz_starts`` in the result). Their basin count is zero unless
random starts also end there (``found_by``).

Starts that die (a unit shrinks to zero), do not converge or diverge are counted in ``failures``
by reason; they are never dropped silently.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .ansatz import ansatz_starts, integer_partitions, plateau_projector
from .batch_flow import EndReason
from .config import RunConfig
from .critical import newton_polish, search_critical_points
from .families import classify_point
from .fixed_points import ode_fixed_points, ode_residual
from .hessian import hessian_spectrum
from .initialisation import teacher_weights
from .loss import gradient_from_weights, loss_from_weights
from .symmetry import canonical_form, orbit_size, same_orbit

__all__ = [
    "REGIMES",
    "MAX_STARTS",
    "PARALLEL_ANGLE",
    "PointKind",
    "CatalogueStatus",
    "FlatManifold",
    "CriticalPoint",
    "Catalogue",
    "build_catalogue",
    "Reachability",
    "reachability",
    "ReachabilityCurve",
    "reachability_curve",
    "wilson_interval",
    "GLOBAL_LABEL",
    "SPURIOUS_LABEL",
    "SADDLE_LABEL",
    "FAILED_LABEL",
    "SMALL_SHARE",
    "POINT_TOL",
    "GLOBAL_LOSS",
]

REGIMES = ("gradient_flow", "finite_lr")
#: Largest number of starts per regime (gradient flow: about half an hour at K = M = 10 on two cores;
#: finite lr: minutes per start beyond K = 5, the four-point term is costly).
MAX_STARTS = {"gradient_flow": 20_000, "finite_lr": 500}
#: Student units whose directions differ by less than this angle (radians) are tried as one ray: the
#: angle between split units is a degenerate (quartic) direction, so polishing leaves them up to
#: ~1e-3 apart; the merge is kept only if Newton's method, keeping the units identical, converges
#: to a point with the same loss.
PARALLEL_ANGLE = 1e-2
#: Units shorter than this (relative to the largest teacher norm) are tried on a nearby ray (cosine > 0.9).
SMALL_SHARE = 1e-3
#: Tolerance on overlaps when comparing points (deduplication, canonical forms, orbit sizes).
POINT_TOL = 1e-6
#: A realisable point (K >= M) with loss below this is a global minimum.
GLOBAL_LOSS = 1e-9
_ANSATZ_PER_PARTITION = 4
_MAX_PARTITIONS = 10
_FIXED_POINT_TOL = 1e-9
_GRADIENT_TOL = 1e-10
_ANSATZ_MAX_STEPS = 3000


class PointKind(enum.Enum):
    """Kind of a critical point, from the index of the Hessian of ``L``."""

    MINIMUM = "minimum"
    SADDLE = "saddle"


class CatalogueStatus(enum.Enum):
    """Outcome of a catalogue; the value is a sentence, ``code`` a short name."""

    COMPLETE = "every start converged to a critical point"
    PARTIAL = "some starts did not converge (counted by reason in failures)"
    FAILED = "no start converged to a critical point"

    @property
    def code(self):
        """``complete``, ``partial`` or ``failed``."""
        return self.name.lower()


@dataclass(frozen=True)
class FlatManifold:
    """A continuum of critical points through split units (exact zero modes of the Hessian).

    Attributes
    ----------
    groups : tuple of tuple of int
        Students (indices in the canonical order of the point) that lie on one ray.
    teachers : tuple of int
        For each group, the teacher its ray is aligned with (cosine above 0.9), or -1.
    dimension : int
        Dimension of the continuum: ``sum(len(group) - 1)``.
    """

    groups: tuple
    teachers: tuple
    dimension: int

    @property
    def description(self):
        """One sentence, e.g. ``students 3, 8 split teacher 7 (1 flat direction)``."""
        parts = []
        for group, teacher in zip(self.groups, self.teachers):
            target = f"teacher {teacher}" if teacher >= 0 else "one ray"
            parts.append(f"students {', '.join(map(str, group))} split {target}")
        plural = "s" if self.dimension != 1 else ""
        return f"{'; '.join(parts)} ({self.dimension} flat direction{plural})"

    def to_dict(self):
        """JSON-ready dictionary."""
        return {"groups": [list(g) for g in self.groups], "teachers": list(self.teachers),
                "dimension": self.dimension, "description": self.description}

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(tuple(int(i) for i in g) for g in data["groups"]),
                   tuple(int(t) for t in data["teachers"]), int(data["dimension"]))


@dataclass(frozen=True, eq=False)
class CriticalPoint:
    """One distinct critical point (or ODE fixed point) of a catalogue, in canonical form.

    Attributes
    ----------
    kind : PointKind
        ``minimum`` if the Hessian of ``L`` has no negative eigenvalue in dimension ``d``, else ``saddle``.
    loss : float
    index : int
        Negative Hessian eigenvalues, with multiplicity.
    n_zero : int
        Zero eigenvalues, with multiplicity (rotations and flat directions).
    n_symmetry_zero : int
        Zero modes that are rotations of the input space (they leave ``(Q, R)`` unchanged).
    min_eigenvalue : float
    eigenvalues, multiplicities : tuple
        Distinct Hessian eigenvalues (ascending) and their multiplicities in dimension ``d``.
    family : str
        Label of the family (:func:`landscape.families.classify_point`).
    is_global : bool
        A global minimum (``loss < GLOBAL_LOSS`` when ``K >= M``; the lowest minimum found otherwise).
    count : int
        Random starts whose dynamics ended here (its basin, in starts).
    orbit_size : int
        Number of distinct ``(Q, R)`` among its images under the symmetries.
    gradient_norm : float
        ``|grad L|`` (gradient flow) or the ODE residual (finite lr), checked after canonicalisation.
    Q : ndarray, shape (K, K)
    R : ndarray, shape (K, M)
    found_by : tuple of str
        ``flow`` (random starts) and/or ``ansatz`` (symmetric ansatz search).
    manifold : FlatManifold or None
    """

    kind: PointKind
    loss: float
    index: int
    n_zero: int
    n_symmetry_zero: int
    min_eigenvalue: float
    eigenvalues: tuple
    multiplicities: tuple
    family: str
    is_global: bool
    count: int
    orbit_size: int
    gradient_norm: float
    Q: np.ndarray
    R: np.ndarray
    found_by: tuple
    manifold: FlatManifold | None = None

    def to_dict(self):
        """JSON-ready dictionary (the format of a point in ``landscape catalogue``)."""
        return {
            "kind": self.kind.value, "loss": float(self.loss), "index": int(self.index), "n_zero": int(self.n_zero),
            "n_symmetry_zero": int(self.n_symmetry_zero), "min_eigenvalue": float(self.min_eigenvalue),
            "eigenvalues": [float(v) for v in self.eigenvalues], "multiplicities": [int(m) for m in self.multiplicities],
            "family": self.family, "is_global": bool(self.is_global), "count": int(self.count),
            "orbit_size": int(self.orbit_size), "gradient_norm": float(self.gradient_norm),
            "Q": np.asarray(self.Q).tolist(), "R": np.asarray(self.R).tolist(), "found_by": list(self.found_by),
            "manifold": None if self.manifold is None else self.manifold.to_dict(),
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
                kind=PointKind(data["kind"]), loss=float(data["loss"]), index=int(data["index"]),
                n_zero=int(data["n_zero"]), n_symmetry_zero=int(data["n_symmetry_zero"]),
                min_eigenvalue=float(data["min_eigenvalue"]), eigenvalues=tuple(float(v) for v in data["eigenvalues"]),
                multiplicities=tuple(int(m) for m in data["multiplicities"]), family=str(data["family"]),
                is_global=bool(data["is_global"]), count=int(data["count"]), orbit_size=int(data["orbit_size"]),
                gradient_norm=float(data["gradient_norm"]), Q=np.array(data["Q"], dtype=float),
                R=np.array(data["R"], dtype=float), found_by=tuple(data["found_by"]),
                manifold=None if data.get("manifold") is None else FlatManifold.from_dict(data["manifold"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a critical point record: {error!r}") from None


@dataclass(frozen=True, eq=False)
class Catalogue:
    """Distinct critical points found from seeded random starts, sorted by loss.

    Attributes
    ----------
    points : tuple of CriticalPoint
    starts : int
        Random starts run.
    seed : int
    config : RunConfig
    regime : str
        ``gradient_flow`` or ``finite_lr``.
    d : int
        Input dimension of the Hessian spectra.
    n_converged : int
        Starts that ended at a polished point (the sum of the points' counts).
    failures : dict
        ``{reason code: number of starts}`` for the others (codes of :class:`~landscape.batch_flow.EndReason`).
    ansatz_starts : int
        Extra starts of the symmetric-ansatz saddle search (not part of ``starts`` or the counts).
    success : bool
        False only if no start converged.
    status : CatalogueStatus
    message : str
    """

    points: tuple
    starts: int
    seed: int
    config: RunConfig
    regime: str
    d: int
    n_converged: int
    failures: dict
    ansatz_starts: int
    success: bool
    status: CatalogueStatus
    message: str

    def to_dict(self):
        """JSON-ready dictionary (what ``landscape catalogue`` prints)."""
        return {
            "points": [p.to_dict() for p in self.points], "starts": self.starts, "seed": self.seed,
            "config": self.config.to_dict(), "regime": self.regime, "d": self.d, "n_converged": self.n_converged,
            "failures": dict(self.failures), "ansatz_starts": self.ansatz_starts, "success": self.success,
            "status": self.status.code, "message": self.message,
        }

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            If the dictionary is not a catalogue.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a catalogue must be a JSON object, got {type(data).__name__}")
        try:
            return cls(
                points=tuple(CriticalPoint.from_dict(p) for p in data["points"]), starts=int(data["starts"]),
                seed=int(data["seed"]), config=RunConfig.from_dict(data["config"]), regime=str(data["regime"]),
                d=int(data["d"]), n_converged=int(data["n_converged"]),
                failures={str(k): int(v) for k, v in data["failures"].items()},
                ansatz_starts=int(data["ansatz_starts"]), success=bool(data["success"]),
                status=CatalogueStatus[str(data["status"]).upper()], message=str(data["message"]),
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a catalogue: missing or malformed {error!r}") from None

    def save_json(self, path):
        """Write :meth:`to_dict` as JSON to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load_json(cls, path):
        """Read a catalogue written by :meth:`save_json`.

        Raises
        ------
        ValueError
            If the file is not JSON or not a catalogue.
        """
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
        return cls.from_dict(data)

    def to_frame(self):
        """One row per point (no matrices): kind, loss, index, zero modes, family, basin count, ...

        Returns
        -------
        pandas.DataFrame
        """
        import pandas as pd

        rows = []
        for p in self.points:
            rows.append({
                "kind": p.kind.value, "loss": p.loss, "index": p.index, "n_zero": p.n_zero,
                "n_symmetry_zero": p.n_symmetry_zero, "min_eigenvalue": p.min_eigenvalue, "family": p.family,
                "is_global": p.is_global, "count": p.count, "orbit_size": p.orbit_size,
                "gradient_norm": p.gradient_norm, "found_by": "+".join(p.found_by),
                "flat_dimension": 0 if p.manifold is None else p.manifold.dimension,
                "manifold": "" if p.manifold is None else p.manifold.description,
            })
        columns = ["kind", "loss", "index", "n_zero", "n_symmetry_zero", "min_eigenvalue", "family", "is_global",
                   "count", "orbit_size", "gradient_norm", "found_by", "flat_dimension", "manifold"]
        return pd.DataFrame(rows, columns=columns)

    def save_csv(self, path):
        """Write :meth:`to_frame` as CSV to ``path``."""
        self.to_frame().to_csv(path, index=False)


# ----------------------------------------------------------------------------- building


def _check_build(config, starts, seed, regime, progress):
    if not isinstance(config, RunConfig):
        raise ValueError(f"config must be a RunConfig, got {type(config).__name__}")
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
    cap = MAX_STARTS[regime]
    if isinstance(starts, bool) or not isinstance(starts, (int, np.integer)) or starts <= 0:
        raise ValueError(f"starts must be a positive whole number, got {starts!r}")
    if starts > cap:
        raise ValueError(f"starts = {starts} is more than the limit {cap} for regime {regime!r}; "
                         "split the work into several catalogues with different seeds")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    if config.init.kind != "random":
        raise ValueError("a catalogue needs random starts: config.init.kind must be 'random' (with d and scale), "
                         f"got {config.init.kind!r}")
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be callable as progress(done, total), got {progress!r}")
    return int(starts), int(seed)


def _span_weights(config, starts, rng):
    """Random students ``w ~ N(0, scale^2 I_d) / sqrt(d)`` in coordinates of the span of all units.

    Returns ``(starts, K, n)`` and the teacher ``(M, n)`` with ``n = t + min(K, d - t)``, ``t`` the
    rank of ``T``: the flow never leaves this span, so it is exact for any ``d``.
    """
    K, d, scale = config.K, config.init.d, config.init.scale
    teacher = teacher_weights(config.teacher_matrix(), d)
    t = int(np.flatnonzero(np.any(teacher != 0, axis=0)).max()) + 1
    n = t + min(K, d - t)
    chunk = max(1, 4_000_000 // (K * d))
    pieces = []
    for first in range(0, starts, chunk):
        draw = scale * rng.standard_normal((min(chunk, starts - first), K, d)) / np.sqrt(d)
        outside = draw[..., t:]
        if outside.shape[-1]:
            # W_out = R^T Q^T with Q orthonormal columns: R^T holds the same overlaps in min(K, d - t) coordinates.
            outside = np.swapaxes(np.linalg.qr(np.swapaxes(outside, 1, 2))[1], 1, 2)
        pieces.append(np.concatenate([draw[..., :t], outside], axis=2))
    return np.concatenate(pieces), teacher[:, :n]


def _permutation_invariant(T):
    off = T[~np.eye(len(T), dtype=bool)]
    return np.ptp(np.diag(T)) <= 1e-12 and (off.size == 0 or np.ptp(off) <= 1e-12)


def _ansatz_families(K, M, T):
    """(paired, blocks) of the ansatz search: the most symmetric paired ansatzes (these need a
    permutation-invariant teacher) and the least merged student-only ones (split-unit saddles)."""
    families = []
    if _permutation_invariant(T) and np.linalg.matrix_rank(T) == M:
        paired = [b for b in integer_partitions(min(K, M)) if max(b) > 1 or K - M >= 2]  # else no symmetry
        families += [(True, b) for b in paired[:_MAX_PARTITIONS]]
    merged = [b for b in integer_partitions(K) if max(b) > 1]
    families += [(False, b) for b in sorted(merged, key=lambda b: (-len(b), b))[: _MAX_PARTITIONS // 2]]
    return families


def _ansatz_search(config, W_teacher, rng, workers):
    """Saddle search: flows in fixed-point subspaces of symmetric ansatzes, then Newton (all batched)."""
    K, M = config.K, config.M
    found = []
    families = _ansatz_families(K, M, config.teacher_matrix())
    for paired in (True, False):
        teacher = W_teacher[:, :M] if paired else W_teacher
        chosen = [blocks for is_paired, blocks in families if is_paired == paired]
        if not chosen:
            continue
        draws = [ansatz_starts(K, M, blocks, _ANSATZ_PER_PARTITION, rng, teacher, paired=paired) for blocks in chosen]
        starts = np.concatenate([w for w, _ in draws])
        projectors = np.repeat(np.array([p for _, p in draws]), _ANSATZ_PER_PARTITION, axis=0)
        result = search_critical_points(starts, teacher, projector=projectors, workers=workers, chunk_size=16,
                                        max_steps=_ANSATZ_MAX_STEPS)
        for W in result.W[result.converged]:
            padded = np.zeros((K, W_teacher.shape[1]))
            padded[:, : W.shape[1]] = W
            found.append(padded)
    if _permutation_invariant(config.teacher_matrix()) and W_teacher.shape[1] >= M + K and np.linalg.matrix_rank(W_teacher) == M:
        # The Saad-Solla plateau: students alike, none specialised (needs room outside the teacher span).
        projector = plateau_projector(K, W_teacher)
        starts = _project_starts(rng.standard_normal((_ANSATZ_PER_PARTITION, K, W_teacher.shape[1])), projector)
        result = search_critical_points(starts, W_teacher, projector=projector, workers=workers, chunk_size=16,
                                        max_steps=_ANSATZ_MAX_STEPS)
        found.extend(result.W[result.converged])
        families = families + [("plateau", ())]
    return found, len(families) * _ANSATZ_PER_PARTITION


def _project_starts(draws, projector):
    """Random starts ``N(0, 1 / n)`` per entry, projected into an ansatz subspace."""
    flat = draws.reshape(len(draws), -1) / np.sqrt(draws.shape[-1])
    return (flat @ projector.T).reshape(draws.shape)


def _parallel_groups(W, W_teacher):
    """Groups (of two or more) of student units on one ray, and the teacher each ray is aligned with."""
    from scipy.sparse.csgraph import connected_components

    norms = np.linalg.norm(W, axis=1)
    directions = W / norms[:, None]
    cosine = np.clip(directions @ directions.T, -1.0, 1.0)
    # A unit with a tiny share barely changes the function whatever its direction, so polishing
    # fixes its direction only loosely: near the end of a continuum (share -> 0) test it too.
    small = norms < SMALL_SHARE * np.sqrt(np.max(np.sum(W_teacher**2, axis=1)))
    loose = (small[:, None] | small[None, :]) & (cosine > 0.9)
    _, labels = connected_components((cosine > math.cos(PARALLEL_ANGLE)) | loose, directed=False)
    groups = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    groups = [g for g in groups if g.size >= 2]
    teacher_cosine = directions @ W_teacher.T / np.linalg.norm(W_teacher, axis=1)[None, :]
    teachers = [int(np.argmax(teacher_cosine[g[0]])) if teacher_cosine[g[0]].max() > 0.9 else -1 for g in groups]
    return groups, teachers


def _merged(W, groups):
    """Equal shares on every ray: each unit of a group becomes the group's sum divided by its size."""
    W = W.copy()
    for group in groups:
        W[group] = W[group].sum(axis=0) / group.size
    return W


@dataclass
class _Candidate:
    W: np.ndarray
    W_teacher: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    loss: float
    residual: float
    groups: list
    teachers: list
    reduced: tuple
    count: int = 0
    found_by: tuple = ()


def _candidate(W, W_teacher, residual, source, repolish):
    """Canonicalise the flat directions of one polished point and wrap it.

    ``repolish(W_merged, W_teacher, groups, loss)`` returns the merged point made critical again and
    its residual, or None: equal shares move the point along the continuum, where the loss and the
    gradient do not change, but the directions inside a group agree only to ``PARALLEL_ANGLE``.
    """
    groups, teachers = _parallel_groups(W, W_teacher)
    if groups:
        repolished = repolish(_merged(W, groups), W_teacher, groups, loss_from_weights(W, W_teacher))
        if repolished is not None:
            W, residual = repolished
        else:
            groups, teachers = [], []  # no continuum through this point (finite lr): keep it as found
    Q, R = W @ W.T, W @ W_teacher.T
    return _Candidate(W, W_teacher, Q, R, loss_from_weights(W, W_teacher), residual, groups, teachers,
                      _reduced(W, W_teacher, groups), count=int(source == "flow"), found_by=(source,))


def _reduced(W, W_teacher, groups):
    """Overlaps of the network with one unit per ray (the sum of the units on it): the function."""
    keep = np.ones(W.shape[0], dtype=bool)
    rays = W.copy()
    for group in groups:
        rays[group[0]] = W[group].sum(axis=0)
        keep[group[1:]] = False
    rays = rays[keep]
    return rays @ rays.T, rays @ W_teacher.T


def _group_projector(K, n, groups):
    """Projector keeping the units of each group identical (a fixed subspace of student swaps)."""
    labels = np.arange(K)
    for group in groups:
        labels[group] = group[0]
    labels = np.unique(labels, return_inverse=True)[1]
    onehot = np.eye(labels.max() + 1)[labels]
    return np.kron(onehot @ np.diag(1.0 / onehot.sum(axis=0)) @ onehot.T, np.eye(n))


def _gradient_repolish(W, W_teacher, groups, loss):
    norm = float(np.linalg.norm(gradient_from_weights(W, W_teacher)))
    if norm < _GRADIENT_TOL:  # the units were exactly on one ray already (polished on rays)
        return W, norm
    polished = newton_polish(W, W_teacher, projector=_group_projector(W.shape[0], W.shape[1], groups))
    if not polished.success or abs(loss_from_weights(polished.W, W_teacher) - loss) > 1e-9 * max(1.0, loss):
        return None
    return polished.W, polished.gradient_norm


def _finite_lr_repolish(config):
    T = config.teacher_matrix()

    def repolish(W, W_teacher, groups, loss):
        # A continuum exists at finite lr only where the lr^2 term vanishes along it (a noiseless
        # global minimum); elsewhere the shares are fixed and merging would leave the fixed point.
        residual = ode_residual(W @ W.T, W @ W_teacher.T, T, config.lr, config.eta2, config.noise)
        return (W, residual) if residual < _FIXED_POINT_TOL else None

    return repolish


def _same_point(a, b, T):
    """Same orbit of the function: units on one ray are merged first, so that the points of a flat
    continuum, and the continua joined through a unit of norm zero moving between rays, are one."""
    (Qa, Ra), (Qb, Rb) = a.reduced, b.reduced
    if abs(a.loss - b.loss) > 1e-9 * max(1.0, a.loss) or Qa.shape != Qb.shape:
        return False
    scale = max(1.0, float(np.max(np.abs(Qa))), float(np.max(np.abs(Qb))))
    for x, y in ((Qa, Qb), (Ra, Rb)):
        if np.max(np.abs(np.sort(x, axis=None) - np.sort(y, axis=None))) > POINT_TOL * scale:
            return False
    return same_orbit((Qa, Ra), (Qb, Rb), T, tol=POINT_TOL)


def _deduplicate(candidates, T):
    distinct = []
    for candidate in candidates:
        for known in distinct:
            if _same_point(known, candidate, T):
                known.count += candidate.count
                known.found_by = tuple(m for m in ("flow", "ansatz") if m in known.found_by + candidate.found_by)
                break
        else:
            distinct.append(candidate)
    return distinct


def _point(candidate, T, d):
    """The catalogue entry of a distinct candidate: spectrum, canonical form, family, orbit, manifold."""
    W, W_teacher = candidate.W, candidate.W_teacher
    singular = np.linalg.svd(np.concatenate([W, W_teacher]), compute_uv=False)
    rank = int(np.sum(singular > 1e-9 * singular[0]))
    spectrum = hessian_spectrum(candidate.Q, candidate.R, T, max(d, rank), W=W, W_teacher=W_teacher)
    canonical = canonical_form(candidate.Q, candidate.R, T, tol=POINT_TOL)
    manifold = None
    if candidate.groups:
        student_position = np.argsort(canonical.student_order)
        teacher_position = np.argsort(canonical.teacher_order)
        manifold = FlatManifold(
            groups=tuple(tuple(sorted(int(student_position[k]) for k in g)) for g in candidate.groups),
            teachers=tuple(int(teacher_position[m]) if m >= 0 else -1 for m in candidate.teachers),
            dimension=int(sum(len(g) - 1 for g in candidate.groups)),
        )
    return CriticalPoint(
        kind=PointKind.MINIMUM if spectrum.index == 0 else PointKind.SADDLE, loss=float(candidate.loss),
        index=spectrum.index, n_zero=spectrum.n_zero, n_symmetry_zero=spectrum.n_symmetry_zero,
        min_eigenvalue=spectrum.min_eigenvalue, eigenvalues=tuple(float(v) for v in spectrum.eigenvalues),
        multiplicities=tuple(int(m) for m in spectrum.multiplicities),
        family=classify_point(canonical.Q, canonical.R, T).label, is_global=False, count=candidate.count,
        orbit_size=orbit_size(candidate.Q, candidate.R, T, tol=POINT_TOL), gradient_norm=float(candidate.residual),
        Q=canonical.Q, R=canonical.R, found_by=candidate.found_by, manifold=manifold,
    )


def _mark_global(points, realisable):
    minima = [p.loss for p in points if p.kind is PointKind.MINIMUM]
    lowest = min(minima) if minima else np.inf
    marked = []
    for p in points:
        is_global = p.kind is PointKind.MINIMUM and (p.loss < GLOBAL_LOSS if realisable else p.loss <= lowest + GLOBAL_LOSS)
        marked.append(replace(p, is_global=bool(is_global)))
    return tuple(marked)


def _gradient_flow_candidates(config, starts, seed, workers, progress):
    """Polished end points of the random starts and of the ansatz search, and the starts' end reasons."""
    starts_rng, ansatz_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    W0, W_teacher = _span_weights(config, starts, starts_rng)
    found = search_critical_points(W0, W_teacher, workers=workers, progress=progress)
    candidates = []
    for W, reason, norm in zip(found.W, found.reasons, found.gradient_norm):
        if reason is EndReason.CONVERGED:
            # Checked independently of the flow's batched gradient.
            norm = float(np.linalg.norm(gradient_from_weights(W, W_teacher)))
            candidates.append(_candidate(W, W_teacher, norm, "flow", _gradient_repolish))
    ansatz_points, ansatz_count = _ansatz_search(config, W_teacher, ansatz_rng, workers)
    for W in ansatz_points:
        norm = float(np.linalg.norm(gradient_from_weights(W, W_teacher)))
        candidates.append(_candidate(W, W_teacher, norm, "ansatz", _gradient_repolish))
    return candidates, found.reasons, ansatz_count


def _finite_lr_candidates(config, starts, seed, workers, progress):
    """ODE fixed points from the random starts, and the ansatz points continued to ``config.lr``."""
    T = config.teacher_matrix()
    candidates = []
    starts_rng, ansatz_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    W0, W_teacher = _span_weights(config, starts, starts_rng)
    Q0 = W0 @ np.swapaxes(W0, 1, 2)
    R0 = W0 @ W_teacher.T
    lr, eta2, noise = config.lr, config.eta2, config.noise
    results = ode_fixed_points(Q0, R0, T, lr, eta2, noise, workers=workers, progress=progress)
    repolish = _finite_lr_repolish(config)
    for result in results:
        if result.success:
            candidates.append(_candidate(result.W, result.W_teacher, result.residual, "flow", repolish))
    # Saddles: the gradient-flow ansatz saddles, continued to this learning rate by Newton's method.
    saddles, ansatz_count = _ansatz_search(config, W_teacher, ansatz_rng, workers)
    seeds = _deduplicate([_candidate(W, W_teacher, 0.0, "ansatz", _gradient_repolish) for W in saddles], T)
    if seeds:
        continued = ode_fixed_points(np.array([c.Q for c in seeds]), np.array([c.R for c in seeds]), T, lr, eta2,
                                     noise, flow=False, workers=workers)
        for result in continued:
            if result.success:
                candidates.append(_candidate(result.W, result.W_teacher, result.residual, "ansatz", repolish))
    return candidates, tuple(r.status for r in results), ansatz_count


def build_catalogue(config, starts, seed, regime="gradient_flow", progress=None, workers=None):
    """Distinct critical points reached from seeded random starts, with spectra, families and basins.

    Parameters
    ----------
    config : RunConfig
        ``K``, ``M``, teacher, and the random initialisation (``init.kind = "random"``: ``d``,
        ``scale``); ``lr``, ``eta2`` and ``noise`` matter for ``regime="finite_lr"`` only.
    starts : int
        Number of random starts, ``1 <= starts <= MAX_STARTS[regime]``.
    seed : int
        Seed of the starts and of the ansatz search; same seed, same catalogue.
    regime : {"gradient_flow", "finite_lr"}
        Critical points of ``L`` (``lr -> 0``) or fixed points of the full ODE at ``config.lr``.
    progress : callable, optional
        ``progress(done, total)`` as random starts finish.
    workers : int, optional
        Processes for the starts (default: 2 where that helps; see
        :func:`landscape.critical.search_critical_points`). The result does not depend on it.

    Returns
    -------
    Catalogue
        Points sorted by loss.

    Raises
    ------
    ValueError
        If ``config`` is not a RunConfig with a random initialisation, ``starts`` is not in
        ``[1, MAX_STARTS[regime]]``, ``seed`` is negative, or ``regime`` or ``progress`` is invalid.
    """
    starts, seed = _check_build(config, starts, seed, regime, progress)
    T = config.teacher_matrix()
    build = _gradient_flow_candidates if regime == "gradient_flow" else _finite_lr_candidates
    candidates, reasons, ansatz_count = build(config, starts, seed, workers, progress)
    distinct = _deduplicate(candidates, T)
    d = config.init.d if regime == "gradient_flow" else max(config.init.d, config.K + config.M)
    points = sorted((_point(c, T, d) for c in distinct), key=lambda p: (p.loss, p.index))
    points = _mark_global(points, config.K >= config.M)
    failures = {}
    for reason in reasons:
        if reason is not EndReason.CONVERGED:
            failures[reason.code] = failures.get(reason.code, 0) + 1
    n_converged = starts - sum(failures.values())
    if n_converged == 0:
        status = CatalogueStatus.FAILED
    else:
        status = CatalogueStatus.PARTIAL if failures else CatalogueStatus.COMPLETE
    spurious = sum(p.count for p in points if not p.is_global)
    message = (f"{len(points)} distinct points from {starts} starts ({n_converged} converged, "
               f"{spurious} ended away from a global minimum) and {ansatz_count} ansatz starts")
    if failures:
        message += "; not converged: " + ", ".join(f"{count} {code}" for code, count in sorted(failures.items()))
    return Catalogue(points=points, starts=starts, seed=seed, config=config, regime=regime, d=int(d),
                     n_converged=n_converged, failures=failures, ansatz_starts=ansatz_count,
                     success=status is not CatalogueStatus.FAILED, status=status, message=message)


# ----------------------------------------------------------------------------- reachability

GLOBAL_LABEL = "global minimum"
SADDLE_LABEL = "saddle"
FAILED_LABEL = "not converged"


def wilson_interval(successes, n, confidence=0.95):
    """Wilson score interval for a binomial proportion.

    Parameters
    ----------
    successes : array_like of int
    n : int
        Number of trials (positive).
    confidence : float, optional
        Two-sided confidence level in (0, 1).

    Returns
    -------
    lower, upper : ndarray
        Same shape as ``successes``.

    Raises
    ------
    ValueError
        If ``n`` is not positive, a count is outside ``[0, n]`` or ``confidence`` is not in (0, 1).
    """
    from scipy.special import ndtri

    successes = np.asarray(successes, dtype=float)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n must be a positive whole number, got {n!r}")
    if np.any(successes < 0) or np.any(successes > n):
        raise ValueError(f"counts must be between 0 and n = {n}, got {successes.tolist()}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    z = float(ndtri(0.5 + confidence / 2.0))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # The bounds are exactly 0 and 1 at the extreme counts (rounding would leave ~1e-18).
    lower = np.where(successes == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    upper = np.where(successes == n, 1.0, np.clip(centre + half, 0.0, 1.0))
    return lower, upper


@dataclass(frozen=True, eq=False)
class Reachability:
    """Where the random starts of one catalogue ended, with confidence intervals.

    Attributes
    ----------
    labels : tuple of str
        Outcomes: ``global minimum``, then each spurious family of minima (by lowest loss), then
        ``saddle`` and ``not converged`` when they occur.
    counts : ndarray of int, shape (c,)
    fractions, lower, upper : ndarray, shape (c,)
        Fraction of the starts and its Wilson interval.
    starts : int
    confidence : float
    K, M : int
    lr : float or None
        The learning rate of a ``finite_lr`` catalogue, None for gradient flow.
    """

    labels: tuple
    counts: np.ndarray
    fractions: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    starts: int
    confidence: float
    K: int
    M: int
    lr: float | None

    def _interval(self, mask):
        count = int(self.counts[mask].sum())
        lower, upper = wilson_interval(count, self.starts, self.confidence)
        return count / self.starts, float(lower), float(upper)

    @property
    def global_fraction(self):
        """``(fraction, lower, upper)`` of starts ending at a global minimum."""
        return self._interval(np.array([label == GLOBAL_LABEL for label in self.labels]))

    @property
    def spurious_fraction(self):
        """``(fraction, lower, upper)`` of starts ending at a spurious minimum (any family)."""
        return self._interval(np.array([label not in (GLOBAL_LABEL, SADDLE_LABEL, FAILED_LABEL) for label in self.labels]))

    def to_dict(self):
        """JSON-ready dictionary."""
        return {"labels": list(self.labels), "counts": self.counts.tolist(), "fractions": self.fractions.tolist(),
                "lower": self.lower.tolist(), "upper": self.upper.tolist(), "starts": self.starts,
                "confidence": self.confidence, "K": self.K, "M": self.M, "lr": self.lr}


def _check_catalogue(catalogue):
    if not isinstance(catalogue, Catalogue):
        raise ValueError(f"expected a Catalogue, got {type(catalogue).__name__}")
    return catalogue


def reachability(catalogue, confidence=0.95):
    """Fractions of a catalogue's random starts ending at the global minimum and at each spurious family.

    Parameters
    ----------
    catalogue : Catalogue
    confidence : float, optional
        Level of the Wilson intervals.

    Returns
    -------
    Reachability

    Raises
    ------
    ValueError
        If ``catalogue`` is not a Catalogue or ``confidence`` is not in (0, 1).
    """
    catalogue = _check_catalogue(catalogue)
    counts, lowest = {GLOBAL_LABEL: 0}, {}
    for point in catalogue.points:
        if point.is_global:
            label = GLOBAL_LABEL
        elif point.kind is PointKind.SADDLE:
            label = SADDLE_LABEL
        else:
            label = point.family
            lowest[label] = min(lowest.get(label, np.inf), point.loss)
        counts[label] = counts.get(label, 0) + point.count
    order = [GLOBAL_LABEL] + sorted((l for l in counts if l in lowest), key=lambda l: (lowest[l], l))
    order += [SADDLE_LABEL] if SADDLE_LABEL in counts else []
    failed = int(sum(catalogue.failures.values()))
    values = [counts[label] for label in order] + ([failed] if failed else [])
    labels = tuple(order + ([FAILED_LABEL] if failed else []))
    values = np.array(values, dtype=int)
    lower, upper = wilson_interval(values, catalogue.starts, confidence)
    config = catalogue.config
    return Reachability(labels=labels, counts=values, fractions=values / catalogue.starts, lower=lower, upper=upper,
                        starts=catalogue.starts, confidence=float(confidence), K=config.K, M=config.M,
                        lr=config.lr if catalogue.regime == "finite_lr" else None)


@dataclass(frozen=True, eq=False)
class ReachabilityCurve:
    """Reachability across several catalogues (e.g. over K at fixed M, or over lr).

    Attributes
    ----------
    parameter : str
        ``K`` or ``lr``.
    values : ndarray, shape (n,)
        The parameter of each catalogue.
    labels : tuple of str
        Outcomes (union over catalogues), ``global minimum`` first, ``spurious (all families)`` second.
    fractions, lower, upper : ndarray, shape (c, n)
        Ready for :func:`landscape.figures.reachability_figure`.
    starts : ndarray of int, shape (n,)
    """

    parameter: str
    values: np.ndarray
    labels: tuple
    fractions: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    starts: np.ndarray

    def to_frame(self):
        """Long table: one row per catalogue and outcome."""
        import pandas as pd

        rows = []
        for i, value in enumerate(self.values):
            for c, label in enumerate(self.labels):
                rows.append({self.parameter: value, "outcome": label, "fraction": self.fractions[c, i],
                             "lower": self.lower[c, i], "upper": self.upper[c, i], "starts": int(self.starts[i])})
        return pd.DataFrame(rows)


SPURIOUS_LABEL = "spurious (all families)"


def reachability_curve(catalogues, parameter="K", confidence=0.95):
    """:func:`reachability` for a list of catalogues, as curves over ``K`` or ``lr``.

    Parameters
    ----------
    catalogues : sequence of Catalogue
    parameter : {"K", "lr"}
    confidence : float, optional

    Returns
    -------
    ReachabilityCurve
        Sorted by the parameter.

    Raises
    ------
    ValueError
        If ``catalogues`` is empty, ``parameter`` is unknown, or an element is not a Catalogue.
    """
    catalogues = [_check_catalogue(c) for c in catalogues]
    if not catalogues:
        raise ValueError("catalogues must hold at least one catalogue")
    if parameter not in ("K", "lr"):
        raise ValueError(f"parameter must be 'K' or 'lr', got {parameter!r}")
    catalogues.sort(key=lambda c: getattr(c.config, parameter))
    reaches = [reachability(c, confidence) for c in catalogues]
    labels = [GLOBAL_LABEL, SPURIOUS_LABEL]
    for reach in reaches:
        labels += [label for label in reach.labels if label not in labels]
    counts = np.zeros((len(labels), len(reaches)), dtype=int)
    for i, reach in enumerate(reaches):
        for label, count in zip(reach.labels, reach.counts):
            counts[labels.index(label), i] = count
        counts[1, i] = int(round(reach.spurious_fraction[0] * reach.starts))
    starts = np.array([r.starts for r in reaches])
    lower, upper = np.empty(counts.shape), np.empty(counts.shape)
    for i, n in enumerate(starts):
        lower[:, i], upper[:, i] = wilson_interval(counts[:, i], int(n), confidence)
    return ReachabilityCurve(parameter=parameter, values=np.array([getattr(c.config, parameter) for c in catalogues]),
                             labels=tuple(labels), fractions=counts / starts[None, :], lower=lower, upper=upper,
                             starts=starts)
