"""Symmetries of the problem: canonical forms, orbit tests and orbit sizes of points ``(Q, R)``.

Methods
-------
Canonical forms, deduplication, orbit sizes
    A point ``(Q, R)`` with teacher ``T`` is the complete graph on ``K + M`` vertices (students and
    teachers) with edge colours ``Omega = [[Q, R], [R^T, T]]`` (values equal within ``tol`` share a
    colour). The symmetries of the problem -- permutations of the students and the permutations of
    the teachers that leave ``T`` invariant -- are the colour-preserving relabellings of this graph.
    Two points are the same orbit if an isomorphism exists (colour refinement plus backtracking
    search, exact up to ``tol``); the orbit size is ``K! |Aut(T)| / |Aut(Omega)|`` with the
    automorphism groups counted exactly along a stabiliser chain. The canonical form orders units
    by their refined colours, individualising the first vertex of the smallest ambiguous cell
    until every cell is a single unit; deduplication does not rely on it (it uses the isomorphism
    test, after a fast sufficient test: a symmetry found by aligning the units, :func:`aligned_symmetry`).
    Results for the teacher alone are computed once per teacher.

Eq. (6.1) of docs/theory.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..kernels.overlaps import validate_overlaps

__all__ = [
    "CanonicalForm",
    "same_orbit",
    "aligned_symmetry",
    "canonical_form",
    "automorphism_count",
    "orbit_size",
    "orbit_partition",
]

_SEARCH_BUDGET = 200_000
# Results for the teacher alone (|Aut(T)| and its orbits) are asked for every point of a catalogue,
# with one T: kept here (keyed by the bytes of T and tol), they cost the points of a K = M = 20
# catalogue ~1.4 of 4 CPU s otherwise. Small: one entry per teacher and tolerance.
_TEACHER_CACHE: dict = {}
_TEACHER_CACHE_SIZE = 32


def _teacher_cached(kind, T, tol, compute):
    key = (kind, T.shape, T.tobytes(), tol)
    if key not in _TEACHER_CACHE:
        if len(_TEACHER_CACHE) >= _TEACHER_CACHE_SIZE:
            _TEACHER_CACHE.pop(next(iter(_TEACHER_CACHE)))
        _TEACHER_CACHE[key] = compute()
    return _TEACHER_CACHE[key]


@dataclass(frozen=True)
class CanonicalForm:
    """A point in canonical form modulo the symmetries of the problem.

    Attributes
    ----------
    Q : ndarray, shape (K, K)
    R : ndarray, shape (K, M)
    student_order : ndarray of int, shape (K,)
        ``Q = Q_in[student_order][:, student_order]``.
    teacher_order : ndarray of int, shape (M,)
        ``R = R_in[student_order][:, teacher_order]``; a permutation that leaves ``T`` invariant.
    """

    Q: np.ndarray
    R: np.ndarray
    student_order: np.ndarray
    teacher_order: np.ndarray


def _colour_values(matrices, tol):
    """Integer classes of the entries of several matrices: values closer than ``tol`` (in a chain) share one."""
    values = np.concatenate([m.ravel() for m in matrices])
    order = np.argsort(values, kind="stable")
    scale = max(1.0, float(np.max(np.abs(values))))
    breaks = np.concatenate([[0], np.diff(values[order]) > tol * scale]).cumsum()
    classes = np.empty(values.size, dtype=np.int64)
    classes[order] = breaks
    pieces, offset = [], 0
    for m in matrices:
        pieces.append(classes[offset:offset + m.size].reshape(m.shape))
        offset += m.size
    return pieces


def _structures(points, T, tol):
    """Edge colours ``E`` (n, n) and initial vertex colours of each point ``(Q, R)``."""
    omegas = [np.block([[Q, R], [R.T, T]]) for Q, R in points]
    edges = _colour_values(omegas, tol)
    K = points[0][0].shape[0]
    sort = np.arange(omegas[0].shape[0]) >= K
    result = []
    for E in edges:
        result.append((E, (np.diagonal(E) * 2 + sort).astype(np.int64)))
    return result


def _refine(structures):
    """Colour refinement run jointly on several coloured complete graphs.

    A vertex's new colour is its old colour with the sorted multiset of (edge colour, neighbour
    colour) pairs; the ids are the ranks of these signatures (as bytes), so they depend only on
    the structures, never on the labelling of their vertices.
    """
    colours = [c for _, c in structures]
    classes = len(set(np.concatenate(colours).tolist()))
    while True:
        width = max(int(c.max()) for c in colours) + 1
        keys = []
        for (E, _), c in zip(structures, colours):
            signature = np.ascontiguousarray(np.concatenate([c[:, None], np.sort(E * width + c[None, :], axis=1)], axis=1))
            keys.append([row.tobytes() for row in signature])
        ranks = {key: rank for rank, key in enumerate(sorted(set(k for part in keys for k in part)))}
        colours = [np.array([ranks[k] for k in part], dtype=np.int64) for part in keys]
        if len(ranks) == classes:
            return colours
        classes = len(ranks)


def _individualise(colours, vertex, new_colour):
    colours = colours.copy()
    colours[vertex] = new_colour
    return colours


def _target_cell(colours):
    counts = np.bincount(colours)
    sizes = np.where(counts > 1, counts, np.iinfo(np.int64).max)
    return int(np.argmin(sizes)), int(counts.max())


class _Budget:
    def __init__(self):
        self.left = _SEARCH_BUDGET

    def spend(self):
        self.left -= 1
        if self.left < 0:
            raise RuntimeError("the symmetry search exceeded its budget (a highly degenerate point?)")


def _isomorphism(EA, EB, cA, cB, budget):
    """A colour-preserving bijection ``p`` with ``EA[i, j] == EB[p[i], p[j]]``, or None."""
    budget.spend()
    cA, cB = _refine([(EA, cA), (EB, cB)])
    size = int(max(cA.max(), cB.max())) + 1
    if not np.array_equal(np.bincount(cA, minlength=size), np.bincount(cB, minlength=size)):
        return None
    cell, largest = _target_cell(cA)
    if largest == 1:
        mapping = np.empty(cA.size, dtype=int)
        mapping[np.argsort(cA)] = np.argsort(cB)
        return mapping if np.array_equal(EA, EB[np.ix_(mapping, mapping)]) else None
    v = int(np.flatnonzero(cA == cell)[0])
    for w in np.flatnonzero(cB == cell):
        found = _isomorphism(EA, EB, _individualise(cA, v, size), _individualise(cB, int(w), size), budget)
        if found is not None:
            return found
    return None


def _orbit(vertex, generators):
    orbit, frontier = {vertex}, [vertex]
    while frontier:
        image = [int(g[x]) for x in frontier for g in generators]
        frontier = [x for x in set(image) if x not in orbit]
        orbit.update(frontier)
    return orbit


def _automorphism_count(E, colours, generators=None):
    """Order of the group of colour-preserving automorphisms, along a stabiliser chain.

    The chain (individualise the first vertex of the smallest ambiguous cell, refine) is built
    first, then its levels are searched from the deepest up, as in Schreier-Sims: the orbit of a
    level's vertex is taken under every automorphism found so far (those of the deeper levels fix
    it but, composed with this level's, move it further), so a symmetric group ``S_n`` costs one
    isomorphism search per level instead of ``n - 1``. The automorphisms found generate the
    group; they are appended to ``generators`` when it is a list.
    """
    budget, chain = _Budget(), []
    while True:
        colours = _refine([(E, colours)])[0]
        cell, largest = _target_cell(colours)
        if largest == 1:
            break
        members = np.flatnonzero(colours == cell)
        fresh = int(colours.max()) + 1
        chain.append((colours, members, fresh))
        colours = _individualise(colours, int(members[0]), fresh)
    found, total = [], 1
    for colours, members, fresh in reversed(chain):
        v = int(members[0])
        fixed = _individualise(colours, v, fresh)
        orbit = _orbit(v, found)
        for w in members[1:]:
            if int(w) in orbit:
                continue
            automorphism = _isomorphism(E, E, fixed, _individualise(colours, int(w), fresh), budget)
            if automorphism is not None:
                found.append(automorphism)
                orbit = _orbit(v, found)
        total *= len(orbit)
    if generators is not None:
        generators.extend(found)
    return total


def _check_tol(tol):
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.integer, np.floating)) or not 0 < tol < 1:
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    return float(tol)


def same_orbit(point_a, point_b, T, tol=1e-6, check_input=True):
    """Whether two points are images of each other under the symmetries of the problem.

    Parameters
    ----------
    point_a, point_b : tuple of array_like
        ``(Q, R)`` of each point, shapes (K, K) and (K, M).
    T : array_like, shape (M, M)
    tol : float, optional
        Overlaps closer than ``tol`` (relative to ``max(1, max |overlap|)``) count as equal.
    check_input : bool, optional
        Validate the overlaps (positive semi-definite, consistent). False skips it for overlaps
        known to be valid, e.g. computed from weights (deduplicating a catalogue compares
        thousands of pairs, where the checks took a third of the time).

    Returns
    -------
    bool

    Raises
    ------
    ValueError
        If the overlaps are invalid or the points have different shapes.
    """
    if check_input:
        (Qa, Ra, T), (Qb, Rb, _) = validate_overlaps(*point_a, T), validate_overlaps(*point_b, T)
        tol = _check_tol(tol)
    else:
        (Qa, Ra), (Qb, Rb) = point_a, point_b
    if Qa.shape != Qb.shape:
        raise ValueError(f"the points have different widths K: {Qa.shape[0]} and {Qb.shape[0]}")
    (EA, cA), (EB, cB) = _structures([(Qa, Ra), (Qb, Rb)], T, tol)
    return _isomorphism(EA, EB, cA, cB, _Budget()) is not None


def _assignment(A, B):
    """Permutation ``p`` minimising ``sum_i |A_i - B_p(i)|^2`` over the rows (Hungarian method)."""
    from scipy.optimize import linear_sum_assignment

    cost = np.sum((A[:, None, :] - B[None, :, :]) ** 2, axis=2)
    return linear_sum_assignment(cost)[1]


def aligned_symmetry(point_a, point_b, T, tol=1e-6):
    """A symmetry mapping ``point_b`` onto ``point_a`` found by aligning units, or None.

    A fast sufficient test for :func:`same_orbit` (deduplicating a catalogue compares ~1,000
    polished copies of a few points): students are matched by their sorted overlap patterns,
    teachers by their overlap columns, students again by their rows against the matched teachers
    (each an assignment problem), and the candidate symmetry is checked entry by entry. Every
    overlap it maps is within ``tol`` (relative to ``max(1, max |overlap|)``, as the edge colours
    of :func:`same_orbit`), so the isomorphism search would find it; None says nothing (units
    that only the search tells apart, or different points).

    Parameters
    ----------
    point_a, point_b : tuple of ndarray
        ``(Q, R)`` of each point, shapes (K, K) and (K, M); not validated (overlaps from weights).
    T : ndarray, shape (M, M)
    tol : float, optional

    Returns
    -------
    (student_order, teacher_order) or None
        ``Q_a = Q_b[s][:, s]``, ``R_a = R_b[s][:, t]`` and ``T = T[t][:, t]`` within the tolerance.
    """
    (Qa, Ra), (Qb, Rb) = point_a, point_b
    if Qa.shape != Qb.shape or Ra.shape != Rb.shape:
        return None
    scale = max(1.0, float(np.max(np.abs(np.concatenate([m.ravel() for m in (Qa, Ra, Qb, Rb, T)])))))

    def pattern(Q, R):
        return np.concatenate([np.diagonal(Q)[:, None], np.sort(Q, axis=1), np.sort(R, axis=1)], axis=1)

    students = _assignment(pattern(Qa, Ra), pattern(Qb, Rb))
    teachers = _assignment(Ra.T, Rb[students].T)
    students = _assignment(Ra, Rb[:, teachers])
    error = max(np.max(np.abs(Qb[students][:, students] - Qa)), np.max(np.abs(Rb[students][:, teachers] - Ra)),
                np.max(np.abs(T[teachers][:, teachers] - T)))
    return (students, teachers) if error <= tol * scale else None


def automorphism_count(Q, R, T, tol=1e-6):
    """Number of symmetries that fix the point: pairs (student permutation, teacher permutation
    leaving ``T`` invariant) mapping ``(Q, R)`` to itself.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)
    tol : float, optional

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If the overlaps are invalid.
    """
    Q, R, T = validate_overlaps(Q, R, T)
    ((E, colours),) = _structures([(Q, R)], T, _check_tol(tol))
    return _automorphism_count(E, colours)


def orbit_size(Q, R, T, tol=1e-6):
    """Number of distinct points ``(Q, R)`` obtained from this one by the symmetries of the problem.

    ``K! |Aut(T)| / |Stab(Q, R)|``, where ``Aut(T)`` is the group of teacher permutations leaving
    ``T`` invariant (``M!`` for an orthonormal teacher) and the stabiliser is counted by
    :func:`automorphism_count`.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)
    tol : float, optional

    Returns
    -------
    int
        Exact (a Python integer, possibly large).

    Raises
    ------
    ValueError
        If the overlaps are invalid.
    """
    Q, R, T = validate_overlaps(Q, R, T)
    tol = _check_tol(tol)
    ((E, colours),) = _structures([(Q, R)], T, tol)

    def teacher_group():
        teacher_edges = _colour_values([T], tol)[0]
        return _automorphism_count(teacher_edges, np.diagonal(teacher_edges).astype(np.int64))

    teacher_group = _teacher_cached("group", T, tol, teacher_group)
    return math.factorial(Q.shape[0]) * teacher_group // _automorphism_count(E, colours)


def orbit_partition(Q, R, T, tol=1e-6):
    """Orbits of the students and of the teachers under the symmetries that fix the point.

    The isotropy group of ``(Q, R)`` -- pairs (student permutation, teacher permutation leaving
    ``T`` invariant) mapping the point to itself -- is generated by the automorphisms found along
    the stabiliser chain of :func:`automorphism_count`; its orbits are the connected components of
    those generators acting on the ``K + M`` units.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)
    tol : float, optional
        Overlaps closer than ``tol`` (relative to ``max(1, max |overlap|)``) count as equal.

    Returns
    -------
    students : ndarray of int, shape (K,)
        Orbit number of each student (orbits numbered from 0 in order of first appearance).
    teachers : ndarray of int, shape (M,)
        Orbit number of each teacher (numbered separately, from 0).

    Raises
    ------
    ValueError
        If the overlaps are invalid or ``tol`` is not in (0, 1).
    """
    Q, R, T = validate_overlaps(Q, R, T)
    tol = _check_tol(tol)
    if Q.shape == R.shape == T.shape and np.array_equal(Q, T) and np.array_equal(R, T):  # the orbits of Aut(T)
        students, teachers = _teacher_cached("orbits", T, tol, lambda: _orbit_partition(T, T, T, tol))
        return students.copy(), teachers.copy()
    return _orbit_partition(Q, R, T, tol)


def _orbit_partition(Q, R, T, tol):
    ((E, colours),) = _structures([(Q, R)], T, tol)
    generators = []
    _automorphism_count(E, colours, generators)
    K = Q.shape[0]
    label = np.full(E.shape[0], -1)
    for vertex in range(E.shape[0]):
        if label[vertex] < 0:
            label[sorted(_orbit(vertex, generators))] = vertex

    def numbered(labels):
        return np.unique(labels, return_index=True)[1].argsort().argsort()[np.unique(labels, return_inverse=True)[1]]

    return numbered(label[:K]), numbered(label[K:])


def canonical_form(Q, R, T, tol=1e-6, check_input=True):
    """The point relabelled into a canonical order of students and teachers.

    Colour refinement orders the units by their overlap patterns; ambiguous cells are split by
    individualising their first unit. Teachers come in that order; each student is then placed by
    the teacher it overlaps most (ties in refined order), so aligned pairs sit on the diagonal.
    The teachers are reordered only when ``T`` is invariant under all their permutations
    (orthonormal, equicorrelated); otherwise they keep their order, and the form is canonical for
    the student permutations (deduplication uses :func:`same_orbit`, which allows every symmetry).

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)
    tol : float, optional
    check_input : bool, optional
        Validate the overlaps; False for overlaps known to be valid (see :func:`same_orbit`).

    Returns
    -------
    CanonicalForm

    Raises
    ------
    ValueError
        If the overlaps are invalid.
    """
    if check_input:
        Q, R, T = validate_overlaps(Q, R, T)
        tol = _check_tol(tol)
    ((E, colours),) = _structures([(Q, R)], T, tol)
    K, M = R.shape
    off = T[~np.eye(M, dtype=bool)]
    symmetric = np.ptp(np.diag(T)) <= tol and (off.size == 0 or np.ptp(off) <= tol)
    if not symmetric:
        colours[K:] = colours.max() + 1 + np.arange(M)  # teachers fixed in their order
    while True:
        colours = _refine([(E, colours)])[0]
        cell, largest = _target_cell(colours)
        if largest == 1:
            break
        colours = _individualise(colours, int(np.flatnonzero(colours == cell)[0]), int(colours.max()) + 1)
    teacher_order = np.argsort(colours[K:], kind="stable") if symmetric else np.arange(M)
    best = np.argmax(E[:K, K:][:, teacher_order], axis=1)
    student_order = np.lexsort((colours[:K], best))
    return CanonicalForm(Q=Q[np.ix_(student_order, student_order)], R=R[np.ix_(student_order, teacher_order)],
                         student_order=student_order, teacher_order=teacher_order)
