"""Catalogues of critical points: many seeded starts, distinct points with spectra, families, basins.

:func:`build_catalogue` runs the dynamics of a :class:`~landscape.model.config.RunConfig` from ``starts``
random initialisations (``config.init``: input dimension ``d`` and ``scale``; the randomness comes
from ``seed``, not from ``config.init.seed``), polishes every end point with Newton's method, adds
saddles from symmetric ansatzes (:mod:`landscape.critical_points.ansatz`), and lists each distinct point once in
canonical form with its exact Hessian spectrum in dimension ``d``, its family
(:mod:`landscape.critical_points.families`), its orbit size and the number of starts whose dynamics ended there.

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
With ``K > M`` minima come in continua of split units (two units on one ray). Such units are
merged into equal shares, points are deduplicated by the function they compute, and a point
carries a :class:`~landscape.critical_points.flat.FlatManifold` (see :mod:`landscape.critical_points.flat`).

Saddles come from flows in fixed-point subspaces of symmetric ansatzes
(:func:`landscape.critical_points.ansatz.ansatz_projector`): the most symmetric ``Delta(S_b1 x ...)`` subspaces
(teachers invariant under all permutations only) and the least merged student-only subspaces (split
units), and for such teachers with ``d >= M + K`` the unspecialised subspace of the Saad-Solla plateau
(:func:`landscape.critical_points.ansatz.plateau_projector`), a few seeded starts each (``ansatz_starts`` in the result). Their
basin count is zero unless
random starts also end there (``found_by``).

Starts that die (a unit shrinks to zero), do not converge or diverge are counted in ``failures``
by reason; they are never dropped silently.

Sections 5-6 of docs/theory.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..model.config import RunConfig

from dataclasses import replace

import numpy as np

from ..critical_points.ansatz import (
    ansatz_starts,
    integer_partitions,
    permutation_invariant,
    plateau_projector,
)
from ..critical_points.batch_flow import EndReason
from ..critical_points.families import classify_point
from ..critical_points.fixed_points import ode_fixed_points
from ..critical_points.flat import (
    PARALLEL_ANGLE,
    POINT_TOL,
    SMALL_SHARE,
    FlatManifold,
    deduplicate,
    finite_lr_repolish,
    gradient_repolish,
    make_candidate,
)
from ..critical_points.hessian import hessian_spectrum
from ..critical_points.search import search_critical_points
from ..critical_points.stability import fixed_point_stability
from ..critical_points.symmetry import canonical_form, orbit_size
from ..model.config import require_run_config
from ..model.initialisation import teacher_weights
from ..model.loss import gradient_from_weights
from .records import Catalogue, CatalogueStatus, CriticalPoint, PointKind

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
    "SMALL_SHARE",
    "POINT_TOL",
    "GLOBAL_LOSS",
]

REGIMES = ("gradient_flow", "finite_lr")
#: Largest number of starts per regime (gradient flow: about half an hour at K = M = 10 on two cores;
#: finite lr: minutes per start beyond K = 5, the four-point term is costly).
MAX_STARTS = {"gradient_flow": 20_000, "finite_lr": 500}
#: A realisable point (K >= M) with loss below this is a global minimum.
GLOBAL_LOSS = 1e-9
_ANSATZ_PER_PARTITION = 4
_MAX_PARTITIONS = 10
# The ansatz search is a fixed cost per catalogue; its time is set by its slowest flows (a batch
# steps until its last start ends), so all starts of one kind share one chunk and the step limit
# is 1500, not 3000: the ansatz search took ~20% of a 1,000-start catalogue at K = M = 6 before.
_ANSATZ_MAX_STEPS = 1500
_ANSATZ_CHUNK = 64
# Saddles are found by flows inside an ansatz subspace, where which saddle a start reaches does not
# matter (every one found is listed, with no basin count): the looser integration of rtol = 1e-2 is enough.


def _check_build(config, starts, seed, regime, progress):
    require_run_config(config)
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


def _ansatz_families(K, M, T):
    """(paired, blocks) of the ansatz search: the most symmetric paired ansatzes (these need a
    permutation-invariant teacher) and the least merged student-only ones (split-unit saddles)."""
    families = []
    if permutation_invariant(T) and np.linalg.matrix_rank(T) == M:
        paired = [b for b in integer_partitions(min(K, M)) if max(b) > 1 or K - M >= 2]  # else no symmetry
        families += [(True, b) for b in paired[:_MAX_PARTITIONS]]
    merged = [b for b in integer_partitions(K) if max(b) > 1]
    families += [(False, b) for b in sorted(merged, key=lambda b: (-len(b), b))[: _MAX_PARTITIONS // 2]]
    return families


def _ansatz_search(config, W_teacher, rng, workers):
    """Saddle search: flows in fixed-point subspaces of symmetric ansatzes, then Newton (all batched)."""
    K, M = config.K, config.M
    found, count = [], 0
    families = _ansatz_families(K, M, config.teacher_matrix())
    # One batched search per teacher width: with d = M (Safran & Shamir's protocol) the paired and
    # student-only ansatzes share the teacher, and one batch steps until its slowest start ends,
    # so two batches cost the sum of their slowest flows, one only the larger (~30% less at K = 6).
    batches = {}
    for paired in (True, False):
        teacher = W_teacher[:, :M] if paired else W_teacher
        for blocks in [blocks for is_paired, blocks in families if is_paired == paired]:
            # The opposing pattern: type A is a saddle of its own subspace at K = M = 4, 5, where random
            # starts in it missed it.
            starts, projector = ansatz_starts(K, M, blocks, _ANSATZ_PER_PARTITION, rng, teacher, paired=paired,
                                              opposing_pattern=True)
            batch = batches.setdefault(teacher.shape[1], (teacher, [], []))
            batch[1].append(starts)
            batch[2].extend([projector] * len(starts))
            count += len(starts)
    for teacher, starts, projectors in batches.values():
        result = search_critical_points(np.concatenate(starts), teacher, projector=np.array(projectors), workers=workers,
                                        chunk_size=_ANSATZ_CHUNK, max_steps=_ANSATZ_MAX_STEPS, rtol=1e-2)
        for W in result.W[result.converged]:
            padded = np.zeros((K, W_teacher.shape[1]))
            padded[:, : W.shape[1]] = W
            found.append(padded)
    full_rank = np.linalg.matrix_rank(W_teacher) == M
    if permutation_invariant(config.teacher_matrix()) and W_teacher.shape[1] >= M + K and full_rank:
        # The Saad-Solla plateau: students alike, none specialised (needs room outside the teacher span).
        projector = plateau_projector(K, W_teacher)
        starts = _project_starts(rng.standard_normal((_ANSATZ_PER_PARTITION, K, W_teacher.shape[1])), projector)
        result = search_critical_points(starts, W_teacher, projector=projector, workers=workers, chunk_size=_ANSATZ_CHUNK,
                                        max_steps=_ANSATZ_MAX_STEPS, rtol=1e-2)
        found.extend(result.W[result.converged])
        count += len(starts)
    return found, count


def _project_starts(draws, projector):
    """Random starts ``N(0, 1 / n)`` per entry, projected into an ansatz subspace."""
    flat = draws.reshape(len(draws), -1) / np.sqrt(draws.shape[-1])
    return (flat @ projector.T).reshape(draws.shape)


def point_record(candidate, T, d, config, regime):
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
        stability=_stability(candidate, T, config, regime),
    )


def _stability(candidate, T, config, regime):
    """Stability as a fixed point of the ODE: per unit lr in the gradient-flow regime, else at ``config.lr``."""
    if regime == "gradient_flow":
        return fixed_point_stability(candidate.Q, candidate.R, T, 1.0, eta2=False, W=candidate.W,
                                     W_teacher=candidate.W_teacher)
    return fixed_point_stability(candidate.Q, candidate.R, T, config.lr, config.eta2, config.noise)


def mark_global(points, realisable):
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
            candidates.append(make_candidate(W, W_teacher, norm, "flow", gradient_repolish))
    ansatz_points, ansatz_count = _ansatz_search(config, W_teacher, ansatz_rng, workers)
    for W in ansatz_points:
        norm = float(np.linalg.norm(gradient_from_weights(W, W_teacher)))
        candidates.append(make_candidate(W, W_teacher, norm, "ansatz", gradient_repolish))
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
    repolish = finite_lr_repolish(config)
    for result in results:
        if result.success:
            candidates.append(make_candidate(result.W, result.W_teacher, result.residual, "flow", repolish))
    # Saddles: the gradient-flow ansatz saddles, continued to this learning rate by Newton's method.
    saddles, ansatz_count = _ansatz_search(config, W_teacher, ansatz_rng, workers)
    seeds = deduplicate([make_candidate(W, W_teacher, 0.0, "ansatz", gradient_repolish) for W in saddles], T)
    if seeds:
        continued = ode_fixed_points(np.array([c.Q for c in seeds]), np.array([c.R for c in seeds]), T, lr, eta2,
                                     noise, flow=False, workers=workers)
        for result in continued:
            if result.success:
                candidates.append(make_candidate(result.W, result.W_teacher, result.residual, "ansatz", repolish))
    return candidates, tuple(r.status for r in results), ansatz_count


def build_catalogue(config: RunConfig, starts: int, seed: int, regime: str = "gradient_flow",
                    progress: Callable[[int, int], None] | None = None, workers: int | None = None) -> Catalogue:
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
        :func:`landscape.critical_points.search.search_critical_points`). The result does not depend on it.

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
    distinct = deduplicate(candidates, T)
    d = config.init.d if regime == "gradient_flow" else max(config.init.d, config.K + config.M)
    points = sorted((point_record(c, T, d, config, regime) for c in distinct), key=lambda p: (p.loss, p.index))
    points = mark_global(points, config.K >= config.M)
    failures: dict[str, int] = {}
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
