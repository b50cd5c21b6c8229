"""Families of critical points: a discrete label from the overlaps, and the K -> family -> point tree.

The rule
--------
With the cosines ``c_km = R_km / sqrt(Q_kk T_mm)`` between student ``k`` and teacher ``m``:

1. Student ``k`` is *aligned* with teacher ``m`` when ``m`` is its most similar teacher and
   ``c_km > ALIGNED_COSINE`` (0.9). Its *share* of the teacher is ``R_km / T_mm`` (1 for a perfect copy).
2. A teacher with at least one aligned student is *recovered*; with none it is *missed*; with two
   or more it is *split* (their shares add up).
3. A student aligned with no teacher is *opposing* if it points away from some teacher
   (``min_m c_km < OPPOSING_COSINE = -0.5``; at the spurious minima of Safran & Shamir the student
   left over points away from the missed teacher), else *averaging* if it overlaps two or more
   teachers with ``c_km > AVERAGING_COSINE`` (0.3), else *other*.
4. A point is *exact* when every teacher is recovered, every student is aligned, the aligned
   cosines are 1 and the shares of every teacher add up to 1 (all within ``EXACT_TOL``): the
   student computes the teacher's function, a global minimum.

The family is the tuple of counts ``(missed, split, opposing, averaging, other)`` plus ``exact``;
its label reads e.g. ``global minimum``, ``global minimum, 1 teacher split`` or
``1 teacher missed, 1 student opposing``. Critical points of one family share their pattern of
recovery, not their loss: a family may hold several points (minima and saddles).

The tree (:func:`family_tree`) has a root per catalogue (labelled by ``K`` or by ``lr``), a node per
family and a leaf per point, with basin counts as values and the loss as colour, ready for
``plotly`` sunburst or icicle charts (``branchvalues="total"``).

Eq. (6.5) of docs/theory.md (Safran & Shamir 2018 for the spurious families).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels.overlaps import validate_overlaps

__all__ = [
    "ALIGNED_COSINE",
    "OPPOSING_COSINE",
    "AVERAGING_COSINE",
    "EXACT_TOL",
    "Family",
    "classify_point",
    "FamilyTree",
    "family_tree",
]

ALIGNED_COSINE = 0.9
OPPOSING_COSINE = -0.5
AVERAGING_COSINE = 0.3
EXACT_TOL = 1e-6


@dataclass(frozen=True)
class Family:
    """The family of a critical point (see the module notes for the rule).

    Attributes
    ----------
    label : str
        Readable name, e.g. ``"1 teacher missed, 1 student opposing"``.
    missed, split, opposing, averaging, other : int
        Teachers with no aligned student; teachers with two or more; unaligned students pointing
        away from a teacher; unaligned students overlapping several teachers; other unaligned students.
    exact : bool
        The student computes the teacher's function (a global minimum).
    assignment : tuple of int
        For each student the teacher it is aligned with, or -1.
    """

    label: str
    missed: int
    split: int
    opposing: int
    averaging: int
    other: int
    exact: bool
    assignment: tuple

    @property
    def key(self):
        """Tuple identifying the family: ``(not exact, missed, split, opposing, averaging, other)``."""
        return (not self.exact, self.missed, self.split, self.opposing, self.averaging, self.other)


def _plural(count, noun):
    return f"{count} {noun}" + ("s" if count != 1 else "")


def _label(exact, missed, split, opposing, averaging, other):
    if exact:
        return "global minimum" + (f", {_plural(split, 'teacher')} split" if split else "")
    parts = []
    if missed:
        parts.append(f"{_plural(missed, 'teacher')} missed")
    if split:
        parts.append(f"{_plural(split, 'teacher')} split")
    for count, word in ((opposing, "opposing"), (averaging, "averaging"), (other, "unaligned")):
        if count:
            parts.append(f"{_plural(count, 'student')} {word}")
    return ", ".join(parts) if parts else "all teachers recovered, inexactly"


def classify_point(Q, R, T):
    """Family of the point ``(Q, R)`` for teacher ``T``.

    Parameters
    ----------
    Q : array_like, shape (K, K)
    R : array_like, shape (K, M)
    T : array_like, shape (M, M)

    Returns
    -------
    Family

    Raises
    ------
    ValueError
        If the overlaps are invalid.
    """
    Q, R, T = validate_overlaps(Q, R, T)
    K, M = R.shape
    norms = np.sqrt(np.maximum(np.diag(Q), 0.0))
    teacher_norms = np.sqrt(np.diag(T))
    alive = norms > 0
    cosine = np.where(alive[:, None], R / np.where(alive, norms, 1.0)[:, None] / teacher_norms[None, :], 0.0)
    best = np.argmax(cosine, axis=1)
    aligned = cosine[np.arange(K), best] > ALIGNED_COSINE
    assignment = np.where(aligned, best, -1)
    per_teacher = np.bincount(assignment[aligned], minlength=M)
    unaligned = ~aligned
    opposing = unaligned & (cosine.min(axis=1) < OPPOSING_COSINE)
    averaging = unaligned & ~opposing & ((cosine > AVERAGING_COSINE).sum(axis=1) >= 2)
    shares = np.zeros(M)
    np.add.at(shares, assignment[aligned], R[aligned, best[aligned]] / np.diag(T)[best[aligned]])
    exact = bool(
        np.all(per_teacher >= 1) and np.all(aligned)
        and np.all(cosine[np.arange(K), best] > 1.0 - EXACT_TOL) and np.all(np.abs(shares - 1.0) < EXACT_TOL)
    )
    counts = dict(missed=int(np.sum(per_teacher == 0)), split=int(np.sum(per_teacher >= 2)),
                  opposing=int(opposing.sum()), averaging=int(averaging.sum()),
                  other=int((unaligned & ~opposing & ~averaging).sum()))
    return Family(label=_label(exact, **counts), exact=exact, assignment=tuple(int(a) for a in assignment), **counts)


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


def family_tree(catalogues, by="K"):
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
        families = {}
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
