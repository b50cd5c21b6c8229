"""Families: the labelling rule on constructed points, its invariance, and the sunburst tree.

The points are built by hand (their structure is known by construction), so the expected
labels do not come from the code under test.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from landscape.critical_points.families import Family, classify_point, family_tree


def _overlaps(W, teacher):
    return W @ W.T, W @ teacher.T, teacher @ teacher.T


def test_global_minimum_and_its_permutations():
    teacher = np.eye(4)
    family = classify_point(*_overlaps(teacher[[2, 0, 3, 1]], teacher))
    assert family.label == "global minimum" and family.exact
    assert family.assignment == (2, 0, 3, 1)
    assert (family.missed, family.split, family.opposing, family.averaging, family.other) == (0, 0, 0, 0, 0)


def test_split_teacher_with_shares_adding_to_one_is_a_global_minimum():
    teacher = np.eye(3)
    W = np.vstack([teacher, 0.0 * teacher[:1]])
    W[0], W[3] = 0.3 * teacher[0], 0.7 * teacher[0]
    family = classify_point(*_overlaps(W, teacher))
    assert family.label == "global minimum, 1 teacher split" and family.split == 1 and family.exact
    W[3] = 0.5 * teacher[0]  # shares add up to 0.8: same pattern, not the teacher's function
    family = classify_point(*_overlaps(W, teacher))
    assert not family.exact and family.label == "1 teacher split"


def test_missed_teacher_with_an_opposing_student():
    # The structure of Safran & Shamir's spurious minima: K - 1 students near their teachers,
    # the last one pointing away from the teacher nobody recovers.
    M = 5
    teacher = np.eye(M)
    W = 1.02 * np.eye(M)
    W[4] = 0.15 * np.ones(M)
    W[4, 4] = -0.7
    family = classify_point(*_overlaps(W, teacher))
    assert family.label == "1 teacher missed, 1 student opposing"
    assert (family.missed, family.opposing, family.assignment[4]) == (1, 1, -1)


def test_averaging_and_dead_students():
    teacher = np.eye(3)
    W = np.array([[1.0, 0, 0], [0, 0.7, 0.7], [0, 0, 0]])
    family = classify_point(*_overlaps(W, teacher))
    assert (family.missed, family.averaging, family.other) == (2, 1, 1)
    assert family.label == "2 teachers missed, 1 student averaging, 1 student unaligned"


def test_family_is_invariant_under_the_symmetries(rng):
    teacher = np.eye(6)
    W = rng.standard_normal((6, 6)) * 0.05 + np.eye(6)[[0, 1, 2, 3, 3, 5]]
    reference = classify_point(*_overlaps(W, teacher))
    for _ in range(5):
        s, p = rng.permutation(6), rng.permutation(6)
        Q, R, T = _overlaps(W, teacher)
        family = classify_point(Q[np.ix_(s, s)], R[np.ix_(s, p)], T)
        assert family.key == reference.key and family.label == reference.label


def test_correlated_teacher_uses_normalised_cosines():
    T = np.array([[4.0, 1.0], [1.0, 1.0]])  # norms 2 and 1, correlated
    teacher = np.linalg.cholesky(T)
    family = classify_point(*_overlaps(teacher, teacher))
    assert family.exact and family.label == "global minimum"


def test_classify_rejects_invalid_overlaps():
    with pytest.raises(ValueError):
        classify_point(np.eye(2), 2 * np.eye(2), np.eye(2))


def _fake_catalogue(K, points, failures=None, lr=0.5, regime="gradient_flow"):
    return SimpleNamespace(config=SimpleNamespace(K=K, lr=lr), regime=regime, failures=failures or {},
                           points=tuple(SimpleNamespace(family=f, loss=l, count=c, index=i, kind=SimpleNamespace(value=k))
                                        for f, l, c, i, k in points))


def test_family_tree_is_a_consistent_sunburst():
    first = _fake_catalogue(6, [("global minimum", 0.0, 90, 0, "minimum"), ("1 teacher missed", 0.025, 7, 0, "minimum"),
                                ("1 teacher missed", 0.03, 0, 2, "saddle")], failures={"unit_died": 3})
    second = _fake_catalogue(7, [("global minimum", 0.0, 100, 0, "minimum")])
    tree = family_tree([first, second])
    assert len(set(tree.ids)) == len(tree.ids)
    assert len({len(tree.ids), len(tree.labels), len(tree.parents), len(tree.values), len(tree.colour)}) == 1
    values = dict(zip(tree.ids, tree.values))
    for node, parent in zip(tree.ids, tree.parents):
        assert parent == "" or parent in values
        children = [v for child, p, v in zip(tree.ids, tree.parents, tree.values) if p == node]
        if children:
            assert values[node] == sum(children)  # branchvalues="total"
    assert values["K = 6"] == 100 and values["K = 6/not converged"] == 3 and values["K = 7"] == 100
    assert values["K = 6/1 teacher missed"] == 7
    assert all(np.isfinite(tree.colour))
    colour = dict(zip(tree.ids, tree.colour))
    assert colour["K = 6/1 teacher missed"] == 0.025  # the family's lowest loss
    assert set(tree.to_dict()) == {"ids", "labels", "parents", "values", "colour"}


def test_family_tree_by_learning_rate_and_bad_input():
    slow = _fake_catalogue(3, [("global minimum", 0.0, 5, 0, "minimum")], lr=0.1, regime="finite_lr")
    fast = _fake_catalogue(3, [("global minimum", 0.0, 5, 0, "minimum")], lr=1.0, regime="finite_lr")
    tree = family_tree([slow, fast], by="lr")
    assert [i for i, p in zip(tree.ids, tree.parents) if p == ""] == ["lr = 0.1", "lr = 1"]
    with pytest.raises(ValueError, match="the root"):
        family_tree([slow, fast])
    with pytest.raises(ValueError, match="at least one"):
        family_tree([])
    with pytest.raises(ValueError, match="by"):
        family_tree([slow], by="M")


def test_family_key_orders_exact_points_first():
    exact = Family("global minimum", 0, 0, 0, 0, 0, True, (0,))
    missed = Family("1 teacher missed", 1, 0, 0, 0, 0, False, (-1,))
    assert sorted([missed, exact], key=lambda f: f.key)[0] is exact
