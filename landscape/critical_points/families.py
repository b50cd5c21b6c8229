"""Families of critical points: a discrete label from the symmetry of the overlaps, and the K -> family -> point tree.

The rule (no tunable cut-off)
-----------------------------
A point's family is its *isotropy type*: which students and teachers the symmetries fixing the
point (student permutations with the teacher permutations that leave ``T`` invariant) can
exchange, and the role each orbit plays. Every decision is an exact equality or a sign, read
with one resolution ``FAMILY_TOL`` (below):

1. Students of norm zero are *dead*. Students on one ray (equal directions) are one *ray*: a flat
   continuum of shares computes one function, so all its points get the label of the merged network.
2. The *orbits* are those of the isotropy group of the merged network
   (:func:`landscape.critical_points.symmetry.orbit_partition`).
3. Student ``k`` and teacher ``m`` are *partners* when ``m`` is the teacher with which the cosine
   ``c_km = R_km / sqrt(Q_kk T_mm)`` of ``k`` is largest, that maximum being unique (not equal to
   another teacher's), positive and larger than the magnitude of every negative cosine of ``k`` (a
   student pointing away from one teacher more than along any other is not that other's partner),
   and no student has a larger cosine with ``m`` (equal ones may: students splitting a teacher).
   A teacher with no partner is *missed*, with two or more *split*.
4. A student without a partner is *opposing* when its smallest cosine is unique and negative
   (it points away from one teacher), *averaging* when its largest cosine is positive and shared
   by several teachers, else *unaligned*.
5. *Exact* (a global minimum): every teacher has a partner, every live student has one, partners
   lie on their teacher's ray (cosine equal to 1) and the partners' shares of each teacher add up to 1.
6. Orbits beyond one per role (teachers: missed, recovered or split, and their orbit under the
   symmetries of ``T`` alone; students: their partner's role, or opposing, averaging, unaligned)
   mean a less symmetric point of the same pattern; the name says how many.

Names do not depend on ``K``: e.g. ``global minimum``, ``global minimum, one teacher split``,
``type A: one teacher missed, one student opposing`` (Safran & Shamir's spurious minima, isotropy
``Delta(S_{K-1} x S_1)`` at ``K = M``; Arjevani & Field's type A), ``two teachers missed, two
students opposing``.

Why the resolution is not a cut-off
-----------------------------------
Catalogue points are Newton-polished to a gradient norm below ``1e-10``: overlaps that the isotropy
makes equal agree to about ``1e-10`` (relative to ``max(1, max |overlap|)``), while overlaps of
different orbits, and cosines that decide a sign, differ by amounts of order ``1e-3`` to ``1``.
``FAMILY_TOL = 1e-5`` is the geometric middle of that gap (the square root of the polishing
accuracy): any resolution between about ``1e-8`` and ``1e-3`` gives the same labels (tests check
this on the shipped catalogues), points that agree to ``1e-8`` get the same label, and perturbing
a point by ``1e-6`` does not change it. A value inside the gap is therefore not a parameter of the
classification, unlike the former cosine cut-offs (0.9, -0.5, 0.3), which cut through the values
found at saddles (a K = M = 5 saddle has cosine 0.899 with its teachers).

The tree (:func:`family_tree`) has a root per catalogue (labelled by ``K`` or by ``lr``), a node per
family and a leaf per point, with basin counts as values and the loss as colour, ready for
``plotly`` sunburst or icicle charts (``branchvalues="total"``).

Eq. (6.5) of docs/theory.md: families as isotropy types (Safran & Shamir 2018 for the spurious families).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..kernels.overlaps import validate_overlaps
from .symmetry import orbit_partition

__all__ = [
    "FAMILY_TOL",
    "TYPE_A",
    "Family",
    "classify_point",
    "FamilyTree",
    "family_tree",
]

#: Resolution of the equalities and signs of the rule (relative to ``max(1, max |overlap|)``; see the module notes).
FAMILY_TOL = 1e-5
#: Name of Safran & Shamir's family (one teacher missed, one student opposing, all else one orbit per role).
TYPE_A = "type A: one teacher missed, one student opposing"

_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")


@dataclass(frozen=True)
class Family:
    """The family of a critical point (see the module notes for the rule).

    Attributes
    ----------
    label : str
        Readable name, the same at every ``K``, e.g. ``"type A: one teacher missed, one student opposing"``.
    missed, split : int
        Teachers with no partner; teachers with two or more.
    opposing, averaging, other, dead : int
        Students without a partner: pointing away from one teacher; overlapping several teachers
        equally; neither; of norm zero.
    exact : bool
        The student computes the teacher's function (a global minimum).
    extra_orbits : int
        Orbits beyond one per role: 0 for the most symmetric point of its pattern.
    assignment : tuple of int
        For each student its partner teacher, or -1.
    student_orbits, teacher_orbits : tuple of int
        Orbit number of each student (students on one ray share their ray's) and of each teacher.
    """

    label: str
    missed: int
    split: int
    opposing: int
    averaging: int
    other: int
    exact: bool
    assignment: tuple
    dead: int = 0
    extra_orbits: int = 0
    student_orbits: tuple = ()
    teacher_orbits: tuple = ()

    @property
    def key(self):
        """Tuple identifying the family: ``(not exact, missed, split, opposing, averaging, other, dead, extra_orbits)``."""
        return (not self.exact, self.missed, self.split, self.opposing, self.averaging, self.other, self.dead,
                self.extra_orbits)

    @property
    def isotropy(self):
        """Orbit sizes, e.g. ``"students 5 + 1, teachers 5 + 1"`` (depends on ``K``, unlike the label)."""
        def sizes(orbits):
            counts = sorted(np.bincount(np.asarray(orbits, dtype=int)).tolist(), reverse=True) if len(orbits) else []
            return " + ".join(map(str, counts)) or "none"
        return f"students {sizes(self.student_orbits)}, teachers {sizes(self.teacher_orbits)}"


def _count(count, noun, plural=None):
    word = _WORDS[count] if count < len(_WORDS) else str(count)
    return f"{word} {noun if count == 1 else (plural or noun + 's')}"


def _label(K, M, exact, missed, split, opposing, averaging, other, dead, extra_orbits):
    parts = []
    if missed:
        parts.append("every teacher missed" if missed == M > 1 else f"{_count(missed, 'teacher')} missed")
    if split:
        parts.append(f"{_count(split, 'teacher')} split")
    for count, word in ((opposing, "opposing"), (averaging, "averaging"), (other, "unaligned"), (dead, "dead")):
        if count:
            # "every" keeps the name of families whose counts grow with the width the same at every K.
            parts.append(f"every student {word}" if count == K > 1 else f"{_count(count, 'student')} {word}")
    if exact:
        name = ", ".join(["global minimum"] + parts)
    elif (missed, split, opposing, averaging, other, dead) == (1, 0, 1, 0, 0, 0) and not extra_orbits:
        return TYPE_A
    else:
        name = ", ".join(parts) if parts else "every teacher recovered, inexactly"
    if extra_orbits:
        name += f", less symmetric ({_count(extra_orbits, 'more orbit')})"
    return name


def _rays(W_rows, alive, tol):
    """Ray number of each live student (students with equal directions share one), -1 for dead ones."""
    ray = np.full(len(alive), -1)
    directions = W_rows[alive] / np.linalg.norm(W_rows[alive], axis=1)[:, None]
    live = np.flatnonzero(alive)
    for i, k in enumerate(live):
        if ray[k] < 0:
            same = live[(directions @ directions[i] >= 1.0 - tol) & (ray[live] < 0)]
            ray[same] = k
    return ray


def _unique_extremes(cosine, tol, largest):
    """Per row, the index of the unique largest (smallest) entry, or -1 if another entry equals it within ``tol``."""
    best = np.argmax(cosine, axis=1) if largest else np.argmin(cosine, axis=1)
    value = cosine[np.arange(len(cosine)), best]
    ties = (np.abs(cosine - value[:, None]) <= tol).sum(axis=1)
    return np.where(ties == 1, best, -1)


def classify_point(Q, R, T, tol=FAMILY_TOL):
    """Family of the point ``(Q, R)`` for teacher ``T``: its isotropy type and a readable name.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)
    tol : float, optional
        Resolution of equalities and signs (see the module notes: any value between about
        ``1e-8`` and ``1e-3`` gives the same labels for Newton-polished points).

    Returns
    -------
    Family

    Raises
    ------
    ValueError
        If the overlaps are invalid or ``tol`` is not in (0, 1e-2].
    """
    Q, R, T = validate_overlaps(Q, R, T)
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating)) or not 0 < tol <= 1e-2:
        raise ValueError(f"tol must be a number in (0, 1e-2], got {tol!r}")
    K, M = R.shape
    scale = max(1.0, float(np.max(np.abs(np.diag(Q)))), float(np.max(np.diag(T))))
    norms = np.sqrt(np.maximum(np.diag(Q), 0.0))
    teacher_norms = np.sqrt(np.diag(T))
    alive = norms > tol * np.sqrt(scale)  # norm zero, to the resolution
    cosine = np.where(alive[:, None], R / np.where(alive, norms, 1.0)[:, None] / teacher_norms[None, :], 0.0)
    # Rows of an embedding give the students' directions (for the rays): any rows with Gram matrix Q.
    eigenvalues, vectors = np.linalg.eigh(0.5 * (Q + Q.T))
    rows = vectors * np.sqrt(np.maximum(eigenvalues, 0.0))
    ray = _rays(rows, alive, tol)

    partner = np.where(alive, _unique_extremes(cosine, tol, largest=True), -1)
    chosen = cosine[np.arange(K), np.maximum(partner, 0)]
    # Mutual: the teacher's cosine with this student is also its largest over the students (ties
    # allowed: students splitting one teacher all reach it).
    best_student = cosine.max(axis=0)
    # Larger than the magnitude of the most negative cosine: two students that each point away from
    # one of two missed teachers have their largest (small, positive) cosine with the other one,
    # unique and mutual; without this they "recovered" both teachers at cosine 0.09 (K = M = 20).
    dominant = chosen > -cosine.min(axis=1) + tol
    partner = np.where((partner >= 0) & (chosen > tol) & dominant
                       & (chosen >= best_student[np.maximum(partner, 0)] - tol), partner, -1)
    per_teacher = np.bincount(partner[partner >= 0], minlength=M)
    free = alive & (partner < 0)
    low = _unique_extremes(cosine, tol, largest=False)
    opposing = free & (low >= 0) & (cosine[np.arange(K), np.maximum(low, 0)] < -tol)
    top = cosine.max(axis=1)
    averaging = free & ~opposing & (top > tol) & ((np.abs(cosine - top[:, None]) <= tol).sum(axis=1) >= 2)
    other = free & ~opposing & ~averaging

    shares = np.zeros(M)
    paired = partner >= 0
    np.add.at(shares, partner[paired], R[paired, partner[paired]] / np.diag(T)[partner[paired]])
    exact = bool(np.all(per_teacher >= 1) and not np.any(free)
                 and np.all(cosine[paired, partner[paired]] >= 1.0 - tol) and np.all(np.abs(shares - 1.0) <= tol))

    student_orbits, teacher_orbits, extra = _orbits(Q, R, T, ray, partner, opposing, averaging, per_teacher, tol)
    counts = dict(missed=int(np.sum(per_teacher == 0)), split=int(np.sum(per_teacher >= 2)),
                  opposing=int(opposing.sum()), averaging=int(averaging.sum()), other=int(other.sum()),
                  dead=int((~alive).sum()))
    return Family(label=_label(K, M, exact, extra_orbits=extra, **counts), exact=exact,
                  assignment=tuple(int(a) for a in partner), extra_orbits=extra,
                  student_orbits=student_orbits, teacher_orbits=teacher_orbits, **counts)


def _orbits(Q, R, T, ray, partner, opposing, averaging, per_teacher, tol):
    """Orbits of the merged network (one unit per ray), and how many exceed one per role.

    A teacher's role is missed / recovered / split together with its orbit under the symmetries
    of ``T`` alone (teachers that ``T`` itself tells apart never count as broken symmetry); a
    partnered student's role is its partner's role.
    """
    K = len(ray)
    heads = np.unique(ray[ray >= 0])
    _, own = orbit_partition(T, T, T, tol=tol)  # students = teachers: the orbits of Aut(T) (cached per T)
    teacher_role = np.minimum(per_teacher, 2) * (own.max() + 1) + own
    if heads.size == 0:
        return tuple([-1] * K), tuple(int(o) for o in own), 0
    merge = np.zeros((heads.size, K))
    merge[np.searchsorted(heads, ray[ray >= 0]), np.flatnonzero(ray >= 0)] = 1.0
    # Summing the rows of a ray: Q_ray = S Q S^T, R_ray = S R.
    students, teachers = orbit_partition(merge @ Q @ merge.T, merge @ R, T, tol=tol)
    lead = partner[heads]
    role = np.where(lead >= 0, teacher_role[np.maximum(lead, 0)],
                    -1 - np.where(opposing[heads], 0, np.where(averaging[heads], 1, 2)))

    def excess(orbits, roles):
        return len(set(zip(orbits.tolist(), roles.tolist()))) - len(set(roles.tolist()))

    extra = excess(students, role) + excess(teachers, teacher_role)
    per_student = np.full(K, -1)
    per_student[ray >= 0] = students[np.searchsorted(heads, ray[ray >= 0])]
    return tuple(int(o) for o in per_student), tuple(int(o) for o in teachers), int(extra)


@dataclass(frozen=True)
class FamilyTree:
    """Flat tree catalogue -> family -> point, in the format of plotly sunburst / icicle charts.

    Attributes
    ----------
    ids, labels, parents : tuple of str
        Node identifiers, display labels and parent ids (``""`` for the roots).
    values : tuple of int
        Basin counts (starts that ended at the node); a parent's value is the sum of its children's
        (``branchvalues="total"``). Starts that did not converge are a child ``not converged`` of the root.
    colour : tuple of float
        Loss: the point's, the lowest of a family, the lowest of a catalogue (``not converged``
        nodes take the highest loss of their catalogue, so the colour scale stays finite).
    """

    ids: tuple
    labels: tuple
    parents: tuple
    values: tuple
    colour: tuple

    def to_dict(self):
        """JSON-ready dictionary of the five lists."""
        return {"ids": list(self.ids), "labels": list(self.labels), "parents": list(self.parents),
                "values": [int(v) for v in self.values], "colour": [float(c) for c in self.colour]}


def _root_label(catalogue, by):
    config = catalogue.config
    if by == "K":
        return f"K = {config.K}"
    return f"lr = {config.lr:g}" if catalogue.regime == "finite_lr" else "lr -> 0"


def family_tree(catalogues: Iterable[Any], by: str = "K") -> FamilyTree:
    """Tree of families for one or several catalogues (e.g. one per K, or per learning rate).

    Parameters
    ----------
    catalogues : sequence of Catalogue
        Objects with ``points`` (each with ``family``, ``loss``, ``count``, ``kind``, ``index``),
        ``config``, ``regime`` and ``failures``; see :mod:`landscape.catalogues.build`.
    by : {"K", "lr"}
        What labels the roots.

    Returns
    -------
    FamilyTree

    Raises
    ------
    ValueError
        If ``catalogues`` is empty, ``by`` is unknown, or two catalogues get the same root label.
    """
    catalogues = list(catalogues)
    if not catalogues:
        raise ValueError("catalogues must hold at least one catalogue")
    if by not in ("K", "lr"):
        raise ValueError(f"by must be 'K' or 'lr', got {by!r}")
    ids, labels, parents, values, colour = [], [], [], [], []

    def add(node_id, label, parent, value, loss):
        ids.append(node_id)
        labels.append(label)
        parents.append(parent)
        values.append(int(value))
        colour.append(float(loss))

    for catalogue in catalogues:
        root = _root_label(catalogue, by)
        if root in ids:
            raise ValueError(f"two catalogues have the root {root!r}; use by='lr' or one catalogue per {by}")
        losses = [p.loss for p in catalogue.points] or [0.0]
        failed = int(sum(catalogue.failures.values()))
        add(root, root, "", sum(p.count for p in catalogue.points) + failed, min(losses))
        families: dict[str, list] = {}
        for number, point in enumerate(catalogue.points):
            families.setdefault(point.family, []).append((number, point))
        for family, members in families.items():
            family_id = f"{root}/{family}"
            add(family_id, family, root, sum(p.count for _, p in members), min(p.loss for _, p in members))
            for number, point in members:
                add(f"{family_id}/{number}", f"L = {point.loss:.6g} ({point.kind.value}, index {point.index})",
                    family_id, point.count, point.loss)
        if failed:
            add(f"{root}/not converged", "not converged", root, failed, max(losses))
    return FamilyTree(tuple(ids), tuple(labels), tuple(parents), tuple(values), tuple(colour))
