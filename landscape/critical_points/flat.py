"""Flat directions of critical points, and the deduplication of polished points.

Two student units on the same ray compute ``a u`` and ``(1 - a) u`` for every share ``a``: with
``K > M`` minima come in such continua. Units whose directions agree within ``PARALLEL_ANGLE`` are
merged into equal shares before deduplication (the loss and the gradient are unchanged along the
continuum), and the point carries a :class:`FlatManifold`: which students share a ray, which teacher
that ray is, and the dimension of the continuum (``sum (g - 1)`` over groups of ``g`` units).
Points are deduplicated by the function they compute (units on one ray summed): continua that
differ only in how many units share each ray are joined through a unit of norm zero and are
listed once, with the representative found first.

:func:`make_candidate` wraps one polished point (merged, made critical again), :func:`deduplicate`
joins candidates on one orbit; :mod:`landscape.catalogues.build` builds catalogues from them.

Eq. (6.4) of docs/theory.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..model.loss import gradient_from_weights, loss_from_weights
from .fixed_points import ode_residual
from .search import newton_polish
from .symmetry import CanonicalForm, aligned_symmetry, canonical_form, same_orbit

__all__ = [
    "PARALLEL_ANGLE",
    "SMALL_SHARE",
    "POINT_TOL",
    "FlatManifold",
    "Candidate",
    "make_candidate",
    "gradient_repolish",
    "finite_lr_repolish",
    "deduplicate",
]

#: Student units whose directions differ by less than this angle (radians) are tried as one ray: the
#: angle between split units is a degenerate (quartic) direction, so polishing leaves them up to
#: ~1e-3 apart; the merge is kept only if Newton's method, keeping the units identical, converges
#: to a point with the same loss.
PARALLEL_ANGLE = 1e-2
#: Units shorter than this (relative to the largest teacher norm) are tried on a nearby ray (cosine > 0.9).
SMALL_SHARE = 1e-3
#: Tolerance on overlaps when comparing points (deduplication, canonical forms, orbit sizes).
POINT_TOL = 1e-6
_FIXED_POINT_TOL = 1e-9
_GRADIENT_TOL = 1e-10


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


def parallel_groups(W, W_teacher):
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
class Candidate:
    """A polished point on its way into a catalogue: weights, overlaps, flat groups, basin count."""

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
    canonical: CanonicalForm | None = None  # of ``reduced``, computed when first compared


def make_candidate(W, W_teacher, residual, source, repolish):
    """Canonicalise the flat directions of one polished point and wrap it.

    ``repolish(W_merged, W_teacher, groups, loss)`` returns the merged point made critical again and
    its residual, or None: equal shares move the point along the continuum, where the loss and the
    gradient do not change, but the directions inside a group agree only to ``PARALLEL_ANGLE``.
    """
    groups, teachers = parallel_groups(W, W_teacher)
    if groups:
        repolished = repolish(_merged(W, groups), W_teacher, groups, loss_from_weights(W, W_teacher))
        if repolished is not None:
            W, residual = repolished
        else:
            groups, teachers = [], []  # no continuum through this point (finite lr): keep it as found
    Q, R = W @ W.T, W @ W_teacher.T
    return Candidate(W, W_teacher, Q, R, loss_from_weights(W, W_teacher), residual, groups, teachers,
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


def gradient_repolish(W, W_teacher, groups, loss):
    """Repolish of gradient flow: Newton's method keeping the units of each group identical."""
    norm = float(np.linalg.norm(gradient_from_weights(W, W_teacher)))
    if norm < _GRADIENT_TOL:  # the units were exactly on one ray already (polished on rays)
        return W, norm
    polished = newton_polish(W, W_teacher, projector=_group_projector(W.shape[0], W.shape[1], groups))
    if not polished.success or abs(loss_from_weights(polished.W, W_teacher) - loss) > 1e-9 * max(1.0, loss):
        return None
    return polished.W, polished.gradient_norm


def finite_lr_repolish(config):
    """Repolish of ``finite_lr``: keep a merged point only if it is still a fixed point of the ODE."""
    T = config.teacher_matrix()

    def repolish(W, W_teacher, groups, loss):
        # A continuum exists at finite lr only where the lr^2 term vanishes along it (a noiseless
        # global minimum); elsewhere the shares are fixed and merging would leave the fixed point.
        residual = ode_residual(W @ W.T, W @ W_teacher.T, T, config.lr, config.eta2, config.noise)
        return (W, residual) if residual < _FIXED_POINT_TOL else None

    return repolish


def _canonical(candidate, T):
    if candidate.canonical is None:
        candidate.canonical = canonical_form(*candidate.reduced, T, tol=POINT_TOL, check_input=False)
    return candidate.canonical


def same_point(a, b, T):
    """Same orbit of the function: units on one ray are merged first, so that the points of a flat
    continuum, and the continua joined through a unit of norm zero moving between rays, are one.

    A symmetry found by aligning the units (:func:`landscape.critical_points.symmetry.aligned_symmetry`)
    settles most pairs (polished copies of one point) without canonical forms, which took nearly all
    of the deduplication of a 1,000-start catalogue at K = 6..10. Canonical forms that agree within
    ``POINT_TOL`` settle it without the isomorphism search (each
    is the point moved by a symmetry, so the symmetry between them maps every overlap to one within
    the tolerance: the search would find it). They may differ for points of the same orbit (the
    canonical form individualises units that only an automorphism tells apart), so the search
    decides the rest. Both overlaps come from weights, so they are not validated again.
    """
    (Qa, Ra), (Qb, Rb) = a.reduced, b.reduced
    if abs(a.loss - b.loss) > 1e-9 * max(1.0, a.loss) or Qa.shape != Qb.shape:
        return False
    scale = max(1.0, float(np.max(np.abs(Qa))), float(np.max(np.abs(Qb))))
    for x, y in ((Qa, Qb), (Ra, Rb)):
        if np.max(np.abs(np.sort(x, axis=None) - np.sort(y, axis=None))) > POINT_TOL * scale:
            return False
    if aligned_symmetry((Qa, Ra), (Qb, Rb), T, tol=POINT_TOL) is not None:
        return True
    first, second = _canonical(a, T), _canonical(b, T)
    if max(np.max(np.abs(first.Q - second.Q)), np.max(np.abs(first.R - second.R))) <= POINT_TOL:
        return True
    return same_orbit((Qa, Ra), (Qb, Rb), T, tol=POINT_TOL, check_input=False)


def deduplicate(candidates, T):
    """Distinct candidates (first representative kept), with the counts and sources of their copies."""
    distinct = []
    for candidate in candidates:
        for known in distinct:
            if same_point(known, candidate, T):
                known.count += candidate.count
                known.found_by = tuple(m for m in ("flow", "ansatz") if m in known.found_by + candidate.found_by)
                break
        else:
            distinct.append(candidate)
    return distinct
