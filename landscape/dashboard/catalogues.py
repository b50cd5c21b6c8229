"""Helpers of the pages built on catalogues: which catalogue a view shows, reachability series, sunburst sizes."""

from __future__ import annotations

import json

from ..model.config import InitSpec
from .settings import SERIES_CHOICES

__all__ = ["MAP_MAX_INDEX", "MAP_CLIMB_MODES", "MAX_SERIES", "MAX_FAMILY_LINES", "leaf_counts", "leading_families",
           "series_configs", "catalogue_key"]

#: Highest saddle index whose unstable directions the Landscape map follows (seconds up to K = M = 8;
#: assets/connections_default.json is made with it).
MAP_MAX_INDEX = 6
#: Softest modes of every minimum climbed by eigenvector-following to find the index-1 saddles around it.
MAP_CLIMB_MODES = 2
#: Most catalogues one reachability curve may compute on demand.
MAX_SERIES = 8
#: Most family lines in one families-across-widths figure: one colour each (the figure's palette has 10);
#: the whole table (K = M = 4..20) has about 30 families, most of them reached at one or two widths.
MAX_FAMILY_LINES = 10


def leading_families(families, limit=MAX_FAMILY_LINES):
    """The families that catch the most random starts, at most ``limit``, in their given order.

    Parameters
    ----------
    families : sequence of dict
        Entries of ``landscape families`` (``FamiliesAcrossWidths.to_dict()["families"]``), each
        with ``fraction`` (per width) and ``K``.
    limit : int, optional

    Returns
    -------
    list of dict
        Ranked by the summed basin fraction over the widths, then by the number of widths (so
        families of saddles, which catch no start, come after every family of minima); shown in
        the order given.

    Raises
    ------
    ValueError
        If ``limit`` is not a positive whole number.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive whole number, got {limit!r}")
    families = list(families)
    ranked = sorted(range(len(families)), key=lambda i: (-float(sum(families[i]["fraction"])), -len(families[i]["K"]), i))
    kept = set(ranked[:limit])
    return [family for i, family in enumerate(families) if i in kept]


def leaf_counts(ids, parents):
    """Node sizes of a flat tree when every leaf counts one (a parent: the leaves below it).

    Parameters
    ----------
    ids, parents : sequence of str
        Node identifiers and their parents (``""`` for roots), as in a plotly sunburst.

    Returns
    -------
    tuple of int

    Raises
    ------
    ValueError
        If the lengths differ or a parent is not a node.
    """
    ids, parents = list(ids), list(parents)
    if len(ids) != len(parents):
        raise ValueError(f"ids and parents have different lengths ({len(ids)} and {len(parents)})")
    unknown = sorted({p for p in parents if p and p not in ids})
    if unknown:
        raise ValueError(f"parents {unknown} are not nodes of the tree")
    has_children = set(parents)
    counts = dict.fromkeys(ids, 0)
    for node in ids:
        if node in has_children:
            continue
        while node:
            counts[node] += 1
            node = parents[ids.index(node)]
    return tuple(counts[node] for node in ids)


def series_configs(config, series, first, last, d_equals_m=False):
    """Configs of a reachability curve, one per width ``first <= w <= last`` on its x axis.

    Parameters
    ----------
    config : RunConfig
        Everything else (teacher kind and parameters, init ``d`` and ``scale``, lr).
    series : str
        One of ``SERIES_CHOICES``: ``K = M`` (``K = M = w``), ``K = M + 1`` (``M = w``,
        ``K = w + 1``) or ``M fixed`` (``K = w`` with the config's ``M``).
    first, last : int
        Range of the width ``w``: the teacher's ``M``, or the student's ``K`` when ``M`` is fixed.
    d_equals_m : bool, optional
        Draw each start in dimension ``d = M`` (Safran & Shamir's protocol) instead of ``config.init.d``.

    Returns
    -------
    tuple of RunConfig

    Raises
    ------
    ValueError
        If the range is empty or longer than ``MAX_SERIES``, ``series`` is unknown, or a width
        does not suit the teacher (e.g. a custom matrix of another size).
    """
    if series not in SERIES_CHOICES:
        raise ValueError(f"series must be one of {SERIES_CHOICES}, got {series!r}")
    if not 1 <= first <= last:
        raise ValueError(f"the range of widths must have 1 <= from <= to, got {first} to {last}")
    if last - first + 1 > MAX_SERIES:
        raise ValueError(f"at most {MAX_SERIES} widths per curve, got {last - first + 1} ({first} to {last})")
    if series != "M fixed" and config.teacher.kind in ("block", "matrix"):
        raise ValueError(f"a {config.teacher.kind} teacher has a fixed size M = {config.M}: use 'M fixed'")
    configs = []
    for width in range(first, last + 1):
        K, M = {"K = M": (width, width), "K = M + 1": (width + 1, width)}.get(series, (width, config.M))
        init = config.init
        d = M if d_equals_m else init.d
        configs.append(config.replace(K=K, M=M, init=InitSpec(kind="random", d=d, seed=init.seed, scale=init.scale)))
    return tuple(configs)


def catalogue_key(config, regime):
    """The part of a config that a catalogue depends on, as canonical JSON (to match catalogues to views).

    A catalogue draws its own starts (from its ``seed``) with the config's ``d`` and ``scale``:
    ``t_max`` and the init seed never matter, and ``lr``, ``eta2`` and ``noise`` only in the
    ``finite_lr`` regime.

    Parameters
    ----------
    config : RunConfig
    regime : str
        ``gradient_flow`` or ``finite_lr``.

    Returns
    -------
    str
    """
    data = config.to_dict()
    data.pop("t_max")
    data["init"].pop("seed", None)
    if regime == "gradient_flow":
        for name in ("lr", "eta2", "noise"):
            data.pop(name)
    return json.dumps({"config": data, "regime": regime}, sort_keys=True)
