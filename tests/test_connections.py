"""Connections of saddles and the disconnectivity tree, checked against independent computations.

The descents are redone with scipy's ``solve_ivp`` on ``gradient_from_weights`` from an embedding
of the saddle made by ``embed_overlaps`` (not the package's teacher-aligned one), pushed along the
lowest eigenvector of a finite-difference Hessian; the tree's merge levels against a brute-force
minimax over the graph (connectivity below each threshold, by breadth-first search).
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import minimize

from landscape.catalogues.build import build_catalogue
from landscape.catalogues.connections import ConnectedCatalogue, ConnectionStatus, ConnectOptions, connect_catalogue
from landscape.catalogues.disconnectivity import disconnectivity_tree, landscape_graph
from landscape.catalogues.records import Catalogue, PointKind
from landscape.critical_points.hessian import embed_overlaps
from landscape.critical_points.symmetry import same_orbit
from landscape.model.config import InitSpec, RunConfig
from landscape.model.loss import gradient_from_weights, loss_from_weights

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "assets" / "catalogue_default.json"


@pytest.fixture(scope="module")
def catalogue6():
    """K = M = 6, Safran & Shamir's protocol, a few starts (the ansatz search supplies the saddles)."""
    config = RunConfig(K=6, M=6, eta2=False, init=InitSpec(d=6, seed=0, scale=1.0))
    return build_catalogue(config, starts=12, seed=0)


@pytest.fixture(scope="module")
def connected6(catalogue6):
    return connect_catalogue(catalogue6, ConnectOptions(max_index=4, climb_modes=2))


def _fd_hessian(W, W_teacher, h=1e-5):
    """Central differences of the gradient (independent of the closed-form Hessian)."""
    size = W.size
    columns = []
    for i in range(size):
        step = np.zeros(size)
        step[i] = h
        plus = gradient_from_weights(W + step.reshape(W.shape), W_teacher).ravel()
        minus = gradient_from_weights(W - step.reshape(W.shape), W_teacher).ravel()
        columns.append((plus - minus) / (2 * h))
    H = np.array(columns).T
    return 0.5 * (H + H.T)


def _independent_paths(point, T, d, push=1e-3, t_end=3000.0):
    """Gradient flows (scipy RK45 on gradient_from_weights) from the saddle pushed both ways along the
    lowest eigenvector of a finite-difference Hessian, in an embedding of its own: (W_teacher, runs)."""
    embedding = embed_overlaps(point.Q, point.R, T)
    # One spare coordinate (when the input dimension d has room) so the flow is not confined to the span.
    spare = int(d > embedding.rank)
    W = np.pad(embedding.student, ((0, 0), (0, spare)))
    W_teacher = np.pad(embedding.teacher, ((0, 0), (0, spare)))
    eigenvalues, eigenvectors = np.linalg.eigh(_fd_hessian(W, W_teacher))
    assert eigenvalues[0] < -1e-6 and eigenvalues[1] > -1e-6  # index 1 in the finite-difference Hessian too
    direction = eigenvectors[:, 0].reshape(W.shape)

    def slope(t, y):
        return -gradient_from_weights(y.reshape(W.shape), W_teacher).ravel()

    def settled(t, y):
        return np.linalg.norm(slope(t, y)) - 1e-7

    settled.terminal = True
    runs = []
    for sign in (1.0, -1.0):
        start = W + sign * push * np.linalg.norm(W) * direction
        runs.append(solve_ivp(slope, (0.0, t_end), start.ravel(), rtol=1e-8, atol=1e-11, events=settled,
                              dense_output=False))
    return W.shape, W_teacher, runs


def _reaches(shape, W_teacher, run, p, T):
    """Whether a scipy descent reaches the listed point: a minimum after BFGS polishing of its end;
    a saddle (a descent kept in a symmetric subspace) by passing it with a vanishing gradient."""
    if p.kind is PointKind.MINIMUM:
        end = minimize(lambda x: loss_from_weights(x.reshape(shape), W_teacher), run.y[:, -1],
                       jac=lambda x: gradient_from_weights(x.reshape(shape), W_teacher).ravel(),
                       method="BFGS", options={"gtol": 1e-11}).x.reshape(shape)
        loss = loss_from_weights(end, W_teacher)
        return abs(loss - p.loss) < 1e-9 and same_orbit((end @ end.T, end @ W_teacher.T), (p.Q, p.R), T, tol=1e-5)
    for y in run.y.T[::-1]:
        X = y.reshape(shape)
        if (abs(loss_from_weights(X, W_teacher) - p.loss) < 1e-7 and np.linalg.norm(gradient_from_weights(X, W_teacher)) < 1e-4
                and same_orbit((X @ X.T, X @ W_teacher.T), (p.Q, p.R), T, tol=1e-3)):
            return True
    return False


def _assert_same_ends(connected, connection, T):
    points = connected.catalogue.points
    shape, W_teacher, runs = _independent_paths(points[connection.saddle], T, connected.catalogue.d)
    listed = [points[e] for e in connection.ends]
    for run in runs:
        assert any(_reaches(shape, W_teacher, run, p, T) for p in listed), \
            (loss_from_weights(run.y[:, -1].reshape(shape), W_teacher), [p.loss for p in listed])


def test_the_shipped_saddle_descends_to_the_points_an_independent_flow_finds():
    connected = connect_catalogue(Catalogue.load_json(SHIPPED))
    T = connected.catalogue.config.teacher_matrix()
    (connection,) = [c for c in connected.connections if connected.catalogue.points[c.saddle].index == 1]
    assert connection.status is ConnectionStatus.CONNECTED
    _assert_same_ends(connected, connection, T)


def _index1(connected):
    return [i for i, p in enumerate(connected.catalogue.points) if p.kind is PointKind.SADDLE and p.index == 1]


def test_every_index1_saddle_of_a_six_unit_catalogue_is_connected(connected6):
    assert len(_index1(connected6)) >= 2
    for saddle in _index1(connected6):
        (connection,) = [c for c in connected6.connections if c.saddle == saddle]
        assert connection.status is ConnectionStatus.CONNECTED, connection.message
    assert connected6.success


def test_the_saddle_out_of_the_spurious_minimum_descends_where_an_independent_flow_goes(connected6):
    # The short version of the next test: the index-1 saddle whose descents reach the spurious minimum.
    points = connected6.catalogue.points
    spurious = next(i for i, p in enumerate(points) if p.kind is PointKind.MINIMUM and p.family.startswith("type A"))
    connection = next(c for c in connected6.connections if spurious in c.ends and points[c.saddle].index == 1)
    _assert_same_ends(connected6, connection, connected6.catalogue.config.teacher_matrix())


@pytest.mark.slow
def test_every_index1_saddle_of_a_six_unit_catalogue_descends_where_an_independent_flow_goes(connected6):
    T = connected6.catalogue.config.teacher_matrix()
    for saddle in _index1(connected6):
        (connection,) = [c for c in connected6.connections if c.saddle == saddle]
        _assert_same_ends(connected6, connection, T)


def test_climbed_saddles_are_index1_critical_points_that_join_the_spurious_minimum_to_the_global_one(connected6):
    points = connected6.catalogue.points
    T = connected6.catalogue.config.teacher_matrix()
    climbed = [i for i, p in enumerate(points) if p.found_by == ("climb",)]
    assert climbed
    for i in climbed:
        embedding = embed_overlaps(points[i].Q, points[i].R, T)  # d = 6 = M: no room beyond the span
        W, W_teacher = embedding.student, embedding.teacher
        assert np.linalg.norm(gradient_from_weights(W, W_teacher)) < 1e-6
        eigenvalues = np.linalg.eigvalsh(_fd_hessian(W, W_teacher))
        assert np.sum(eigenvalues < -1e-6) == 1 and points[i].index == 1
    # Safran & Shamir's spurious minimum (one teacher missed) is not isolated: an index-1 saddle
    # leads from it to the global minimum, and the tree joins the two at that saddle's loss.
    spurious = next(i for i, p in enumerate(points) if p.kind is PointKind.MINIMUM and p.family.startswith("type A"))
    tree = disconnectivity_tree(connected6, max_index=1)
    level = tree.merge_level(0, spurious)
    assert np.isfinite(level) and points[spurious].loss < level
    assert any(points[c.saddle].loss == level and set(c.ends) == {0, spurious} for c in connected6.connections)


def test_barriers_are_positive_and_paths_run_downhill_from_the_saddle(connected6):
    points = connected6.catalogue.points
    assert connected6.connections
    for c in connected6.connections:
        for end, barrier, s, loss in zip(c.ends, c.barriers, c.arclength, c.paths):
            assert end is not None and barrier > 0
            assert barrier == pytest.approx(points[c.saddle].loss - points[end].loss, abs=1e-15)
            assert loss[0] == pytest.approx(points[c.saddle].loss, abs=1e-10)
            assert loss[-1] == pytest.approx(points[end].loss, abs=1e-8)
            assert np.all(np.diff(s) >= 0) and s[-1] > 0
            assert np.all(np.diff(loss) <= 1e-12)  # gradient flow never climbs


def test_connected_catalogue_round_trips_through_json(connected6):
    again = ConnectedCatalogue.from_dict(connected6.to_dict())
    assert [c.to_dict() for c in again.connections] == [c.to_dict() for c in connected6.connections]
    assert [p.loss for p in again.catalogue.points] == [p.loss for p in connected6.catalogue.points]
    losses = [p.loss for p in again.catalogue.points]
    assert losses == sorted(losses)


def _brute_merge_level(graph, a, b):
    """Lowest saddle loss h such that a and b are joined in the networkx graph cut to saddles of loss <= h."""
    import networkx as nx

    G = graph.to_networkx()
    for h in sorted({graph.loss[s] for s, _, _ in graph.edges}):
        kept = [n for n in G if G.nodes[n]["kind"] == "minimum" or G.nodes[n]["loss"] <= h]
        if nx.has_path(G.subgraph(kept), a, b):
            return h
    return np.inf


def _assert_tree_levels(connected, max_index):
    tree = disconnectivity_tree(connected, max_index)
    graph = landscape_graph(connected, max_index)
    minima = [n.point for n in tree.nodes if n.is_leaf]
    for i, a in enumerate(minima):
        for b in minima[i + 1:]:
            assert tree.merge_level(a, b) == _brute_merge_level(graph, a, b)
    saddle_losses = {graph.loss[s] for s, _, _ in graph.edges}
    for node in tree.nodes:
        if not node.is_leaf:
            assert node.level in saddle_losses and node.level == graph.loss[node.point]
            assert all(tree.nodes[c].level <= node.level for c in node.children)
    return tree


def test_tree_merge_levels_are_saddle_losses_and_the_minimax_of_the_graph(connected6):
    for max_index in (1, None):
        _assert_tree_levels(connected6, max_index)
    tree = disconnectivity_tree(connected6)
    assert sum(n.width for n in tree.nodes if n.is_leaf) == pytest.approx(1.0)  # every start ended at a minimum


def test_tree_of_a_random_graph_matches_the_brute_force_minimax(connected6):
    # A synthetic landscape on the real catalogue's records: 7 minima, 12 saddles, random links.
    rng = np.random.default_rng(3)
    template_min = next(p for p in connected6.catalogue.points if p.kind is PointKind.MINIMUM)
    template_saddle = next(p for p in connected6.catalogue.points if p.kind is PointKind.SADDLE)
    minima = [replace(template_min, loss=float(v), count=int(c)) for v, c in zip(rng.uniform(0, 1, 7), rng.integers(0, 9, 7))]
    saddles = [replace(template_saddle, loss=float(v), index=int(i)) for v, i in zip(rng.uniform(1, 2, 12), rng.integers(1, 3,
                                                                                                                         12))]
    points = tuple(sorted(minima + saddles, key=lambda p: p.loss))
    catalogue = replace(connected6.catalogue, points=points, n_converged=sum(p.count for p in minima))
    minimum_ids = [i for i, p in enumerate(points) if p.kind is PointKind.MINIMUM]
    connections = []
    for s, p in enumerate(points):
        if p.kind is PointKind.SADDLE:
            ends = tuple(int(e) for e in rng.choice(minimum_ids, 2))
            template = connected6.connections[0]
            connections.append(replace(template, saddle=s, ends=ends,
                                       barriers=tuple(p.loss - points[e].loss for e in ends)))
    connected = ConnectedCatalogue(catalogue, tuple(connections), 0, True, ConnectionStatus.CONNECTED, "synthetic")
    for max_index in (1, None):
        tree = _assert_tree_levels(connected, max_index)
        leaves = [n for n in tree.nodes if n.is_leaf]
        assert sorted(n.point for n in leaves) == minimum_ids


def test_bad_input_is_one_clear_error(catalogue6):
    with pytest.raises(ValueError, match="must be a Catalogue"):
        connect_catalogue({"points": []})
    with pytest.raises(ValueError, match="push must be a number"):
        ConnectOptions(push=-1.0)
    with pytest.raises(ValueError, match="regime must be 'gradient_flow'"):
        connect_catalogue(replace(catalogue6, regime="finite_lr"))
    with pytest.raises(ValueError, match="max_index"):
        disconnectivity_tree(connect_catalogue(catalogue6), max_index=0)
    with pytest.raises(ValueError, match="has no connections"):
        ConnectedCatalogue.from_dict(catalogue6.to_dict())


def test_climb_bad_input_is_one_clear_error():
    from landscape.critical_points.transition import ClimbStatus, climb_to_saddle

    W, W_teacher = np.eye(2), np.eye(2)
    for kwargs, words in (({"mode": -1}, "mode must be"), ({"sign": 0.5}, "sign must be"), ({"trust": 0.0}, "trust must be")):
        with pytest.raises(ValueError, match=words):
            climb_to_saddle(W, W_teacher, **kwargs)
    # The global minimum of K = M = 2 has 4 non-zero modes in 2 dimensions: a fifth does not exist.
    assert climb_to_saddle(W, W_teacher, mode=4).status is ClimbStatus.NO_MODE


def test_connecting_stops_when_its_visitor_leaves(catalogue6):
    # Issue 18: a visitor who closed the Landscape map page left the server connecting the catalogue
    # to the end (every climb and every descent). The dashboard passes should_stop, checked between
    # climbs and before every step of the descents.
    from landscape.status import Stopped

    calls = []

    def leave_after(count):
        def should_stop():
            calls.append(1)
            return len(calls) > count
        return should_stop

    with pytest.raises(Stopped):
        connect_catalogue(catalogue6, ConnectOptions(max_index=4, climb_modes=2), should_stop=leave_after(0))
    assert len(calls) == 1  # stopped at the first check, before any climb
    calls.clear()
    with pytest.raises(Stopped):  # no climbs: stopped inside the descents
        connect_catalogue(catalogue6, ConnectOptions(max_index=4), should_stop=leave_after(5))
    assert len(calls) == 6
    with pytest.raises(ValueError, match="should_stop must be callable"):
        connect_catalogue(catalogue6, should_stop="yes")
