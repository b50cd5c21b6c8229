"""The landscape as a graph of connections, and its disconnectivity tree (Becker & Karplus 1997).

Nodes of the graph are the points of a connected catalogue; every descent path of a
:class:`~landscape.catalogues.connections.Connection` is an edge from its saddle to the point where
it ends. Two minima are joined at level ``E`` when a chain of edges links them through points with
loss at most ``E``; the lowest such ``E`` is their merge level. :func:`disconnectivity_tree`
computes all merge levels at once: saddles are taken in increasing order of loss, each joins the
groups its descents end in (union-find), and a tree node is made wherever two or more groups that
contain minima meet, at the loss of that saddle. Index-1 saddles give the barriers of the
landscape; a higher-index saddle whose descents end in two groups joins them through its own
unstable manifold, so its loss is an upper bound on their barrier (``max_index`` chooses which
saddles are used).

The tree is data: levels, children, the minima below each node, and a layout (``x``: leaves
evenly spaced, ordered so that branches do not cross, lowest minimum first; ``width``: the basin
fraction, drawn as the width of a leaf's branch). :func:`landscape.dashboard.figures.disconnectivity_figure` draws it.

The disconnectivity graph of Becker & Karplus (1997) as drawn by energy-landscape tools (Wales 2003).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..status import StatusEnum, counted
from .connections import ConnectedCatalogue
from .records import PointKind

__all__ = ["LandscapeGraph", "landscape_graph", "TreeNode", "SaddleMark", "TreeStatus", "DisconnectivityTree",
           "disconnectivity_tree"]

@dataclass(frozen=True)
class LandscapeGraph:
    """Points and the descents between them.

    Attributes
    ----------
    nodes : tuple of int
        Catalogue indices of the points that are minima or take part in a connection.
    loss : dict
        Loss of every node.
    edges : tuple of (int, int, float)
        ``(saddle, end, barrier)``, one per descent that ended at a point (repeats kept).
    kind : dict
        ``minimum`` or ``saddle`` for every node.
    family : dict
        Family label of every node.
    """

    nodes: tuple
    loss: dict
    edges: tuple

    kind: dict
    family: dict

    def neighbours(self, node):
        """Points linked to ``node`` by an edge (either way)."""
        return sorted({b for a, b, _ in self.edges if a == node} | {a for a, b, _ in self.edges if b == node})

    def to_networkx(self):
        """The graph as a ``networkx.MultiGraph`` (nodes: ``loss``, ``kind``, ``family``; edges: ``barrier``).

        Returns
        -------
        networkx.MultiGraph
            One edge per descent, from the saddle to its end (a saddle whose two descents end at
            the same point has two parallel edges to it).
        """
        import networkx as nx

        graph = nx.MultiGraph()
        for node in self.nodes:
            graph.add_node(node, loss=self.loss[node], kind=self.kind[node], family=self.family[node])
        for saddle, end, barrier in self.edges:
            graph.add_edge(saddle, end, barrier=barrier)
        return graph


def _check_connected(connected, max_index):
    if not isinstance(connected, ConnectedCatalogue):
        raise ValueError(f"connected must be a ConnectedCatalogue (connect_catalogue), got {type(connected).__name__}")
    if max_index is not None and (isinstance(max_index, bool) or not isinstance(max_index, (int, np.integer))
                                  or max_index < 1):
        raise ValueError(f"max_index must be a whole number >= 1 or None (every saddle), got {max_index!r}")


def landscape_graph(connected: ConnectedCatalogue, max_index: int | None = None) -> LandscapeGraph:
    """The graph of a connected catalogue: minima and saddles as nodes, descents as edges.

    Parameters
    ----------
    connected : ConnectedCatalogue
    max_index : int, optional
        Use the connections of saddles of index at most this (default: all).

    Returns
    -------
    LandscapeGraph

    Raises
    ------
    ValueError
        If ``connected`` is not a ConnectedCatalogue or ``max_index`` is not a whole number >= 1.
    """
    _check_connected(connected, max_index)
    points = connected.catalogue.points
    edges: list = []
    for c in connected.connections:
        if max_index is not None and points[c.saddle].index > max_index:
            continue
        edges.extend((c.saddle, end, barrier) for end, barrier in zip(c.ends, c.barriers) if end is not None)
    nodes = sorted({i for i, p in enumerate(points) if p.kind is PointKind.MINIMUM}
                   | {a for a, _, _ in edges} | {b for _, b, _ in edges})
    return LandscapeGraph(nodes=tuple(nodes), loss={i: float(points[i].loss) for i in nodes}, edges=tuple(edges),
                          kind={i: points[i].kind.value for i in nodes}, family={i: points[i].family for i in nodes})


@dataclass(frozen=True)
class TreeNode:
    """One node of the disconnectivity tree.

    Attributes
    ----------
    level : float
        Loss: a leaf's minimum, or the saddle where the children merge.
    children : tuple of int
        Positions of the child nodes in ``DisconnectivityTree.nodes`` (empty for a leaf).
    minima : tuple of int
        Catalogue indices of the minima below (one for a leaf).
    point : int
        The leaf's minimum, or the merging saddle (catalogue indices).
    parent : int or None
        Position of the parent node (None for a root).
    top : float
        Level where the branch above this node ends (its parent's level, or the tree's top).
    x : float
        Horizontal position in ``[0, 1]``.
    width : float
        Leaves: the basin fraction (starts that ended there over converged starts). Inner nodes: the sum.
    """

    level: float
    children: tuple
    minima: tuple
    point: int
    parent: int | None
    top: float
    x: float
    width: float

    @property
    def is_leaf(self):
        """True for a minimum."""
        return not self.children


@dataclass(frozen=True)
class SaddleMark:
    """Where a saddle sits on the tree: on the branch of the group it joined at its loss.

    Attributes
    ----------
    saddle : int
        Catalogue index.
    node : int
        Position of the tree node it merged (``merges``) or whose branch it sits on.
    level : float
        Its loss.
    x : float
    merges : bool
        True if it joined two groups of minima (a branching point of the tree).
    """

    saddle: int
    node: int
    level: float
    x: float
    merges: bool


class TreeStatus(StatusEnum):
    """Whether all minima are joined; the value is a sentence, ``code`` a short name."""

    CONNECTED = "every minimum is joined to every other through the known saddles"
    DISCONNECTED = "some minima are joined to no other through the known saddles (several roots)"
    EMPTY = "the catalogue has no minimum"



@dataclass(frozen=True)
class DisconnectivityTree:
    """Merge levels of the minima of a connected catalogue, with a layout.

    Attributes
    ----------
    nodes : tuple of TreeNode
        Leaves first (in drawing order, left to right), then inner nodes in increasing level.
    roots : tuple of int
        Positions of the roots (one per group of minima joined by the known saddles).
    top : float
        Upper end of the vertical axis (above the highest saddle used).
    saddles : tuple of SaddleMark
        Every saddle with a descent in the graph, on its branch.
    families : dict
        Family label of every minimum (catalogue index -> label).
    success : bool
        True when the tree has a single root.
    status : TreeStatus
    message : str
    """

    nodes: tuple
    roots: tuple
    top: float
    saddles: tuple
    families: dict
    success: bool
    status: TreeStatus
    message: str

    def merge_level(self, a, b):
        """Level where the minima ``a`` and ``b`` (catalogue indices) join, ``inf`` if they never do."""
        above = {}
        for number, node in enumerate(self.nodes):
            for m in node.minima:
                above.setdefault(m, []).append(number)
        common = set(above[a]) & set(above[b])
        return min((self.nodes[n].level for n in common), default=float("inf"))

    def to_dict(self):
        """JSON-ready dictionary (what ``landscape map`` prints)."""
        return {
            "nodes": [{"level": n.level, "children": list(n.children), "minima": list(n.minima), "point": n.point,
                       "parent": n.parent, "top": n.top, "x": n.x, "width": n.width, "leaf": n.is_leaf}
                      for n in self.nodes],
            "roots": list(self.roots), "top": self.top,
            "saddles": [{"saddle": s.saddle, "node": s.node, "level": s.level, "x": s.x, "merges": s.merges}
                        for s in self.saddles],
            "families": {str(k): v for k, v in self.families.items()},
            "success": self.success, "status": self.status.code, "message": self.message,
        }


def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _merges(graph, minima):
    """Union-find over saddles in increasing loss: (inner nodes as (saddle, child groups)), marks, final groups."""
    parent = {i: i for i in graph.nodes}
    holder = {m: ("leaf", m) for m in minima}  # group root -> tree node key of the group (if it has minima)
    ends = {}
    for saddle, end, _ in graph.edges:
        ends.setdefault(saddle, set()).add(end)
    inner, marks = [], []
    for saddle in sorted(ends, key=lambda s: (graph.loss[s], s)):
        roots = {_find(parent, e) for e in ends[saddle]} | {_find(parent, saddle)}
        with_minima = sorted({r for r in roots if r in holder}, key=lambda r: holder[r])
        merged = len(with_minima) >= 2
        if merged:
            inner.append((saddle, tuple(holder[r] for r in with_minima)))
            key = ("inner", len(inner) - 1)
        elif with_minima:
            key = holder[with_minima[0]]
        else:
            key = None
        if key is not None:
            marks.append((saddle, key, merged))
        new_root = min(roots)
        for r in roots:
            parent[r] = new_root
            holder.pop(r, None)
        if key is not None:
            holder[new_root] = key
    return inner, marks, list(holder.values())


def disconnectivity_tree(connected: ConnectedCatalogue, max_index: int | None = None) -> DisconnectivityTree:
    """The disconnectivity tree of a connected catalogue.

    Parameters
    ----------
    connected : ConnectedCatalogue
    max_index : int, optional
        Join minima only through saddles of index at most this (1: transition states only, exact
        barriers; default: every saddle with connections, higher ones giving upper bounds).

    Returns
    -------
    DisconnectivityTree

    Raises
    ------
    ValueError
        If ``connected`` is not a ConnectedCatalogue or ``max_index`` is not a whole number >= 1.
    """
    graph = landscape_graph(connected, max_index)
    catalogue = connected.catalogue
    points = catalogue.points
    minima = [i for i in graph.nodes if points[i].kind is PointKind.MINIMUM]
    families = {m: points[m].family for m in minima}
    if not minima:
        return DisconnectivityTree((), (), 0.0, (), {}, False, TreeStatus.EMPTY, TreeStatus.EMPTY.value)
    inner, marks, root_keys = _merges(graph, minima)
    below = {("leaf", m): (m,) for m in minima}
    for number, (_saddle, children) in enumerate(inner):
        below[("inner", number)] = tuple(m for child in children for m in below[child])
    lowest = {key: min(points[m].loss for m in ms) for key, ms in below.items()}
    children_of = {("inner", n): tuple(sorted(ch, key=lambda k: (lowest[k], k))) for n, (_, ch) in enumerate(inner)}
    roots = sorted(root_keys, key=lambda k: (lowest[k], k))
    leaves = [k for r in roots for k in _leaf_order(r, children_of)]
    keys = leaves + [("inner", n) for n in range(len(inner))]
    position = {key: number for number, key in enumerate(keys)}
    parent_of = {child: key for key, children in children_of.items() for child in children}
    levels = {("leaf", m): float(points[m].loss) for m in minima}
    levels.update({("inner", n): float(points[s].loss) for n, (s, _) in enumerate(inner)})
    used = [graph.loss[s] for s, _, _ in graph.edges]
    highest = max(used + [levels[k] for k in keys])
    span = highest - min(levels.values())
    top = highest + 0.15 * (span if span > 0 else max(abs(highest), 1e-3))
    total = max(catalogue.n_converged, 1)
    fractions = {("leaf", m): points[m].count / total for m in minima}
    # Leaves evenly spaced (a basin fraction of 0.9 next to ones of 0 would squeeze the labels);
    # the figure shows the fraction as the width of the leaf's branch.
    x = {k: (i + 0.5) / len(leaves) for i, k in enumerate(leaves)}
    for n in range(len(inner)):  # children merge before their parents: increasing level
        key = ("inner", n)
        x[key] = float(np.mean([x[c] for c in children_of[key]]))
        fractions[key] = sum(fractions[c] for c in children_of[key])
    nodes = tuple(TreeNode(
        level=levels[k], children=tuple(position[c] for c in children_of.get(k, ())), minima=below[k],
        point=k[1] if k[0] == "leaf" else inner[k[1]][0],
        parent=position[parent_of[k]] if k in parent_of else None,
        top=levels[parent_of[k]] if k in parent_of else top, x=float(x[k]), width=float(fractions[k]),
    ) for k in keys)
    saddle_marks = tuple(SaddleMark(saddle=s, node=position[k], level=float(points[s].loss), x=float(x[k]),
                                    merges=merged) for s, k, merged in marks)
    status = TreeStatus.CONNECTED if len(roots) == 1 else TreeStatus.DISCONNECTED
    message = (f"{counted(len(minima), 'minimum', 'minima')}, {counted(len(inner), 'merge', 'merges')} through "
               f"{counted(len(saddle_marks), 'saddle', 'saddles')}; {counted(len(roots), 'group', 'groups')} of minima")
    return DisconnectivityTree(nodes=nodes, roots=tuple(position[r] for r in roots), top=float(top),
                               saddles=saddle_marks, families=families, success=len(roots) == 1, status=status,
                               message=message)



def _leaf_order(key, children_of):
    if key not in children_of:
        return [key]
    return [leaf for child in children_of[key] for leaf in _leaf_order(child, children_of)]
