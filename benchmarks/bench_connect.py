"""Cost of ``--connect`` (:func:`landscape.catalogues.connections.connect_catalogue`) against the catalogue itself.

Run: ``python benchmarks/bench_connect.py [--starts N] [--sizes 6,8]``. For each ``K = M`` (Safran &
Shamir's protocol, ``d = M``, unit variance) it builds the catalogue, then connects it with the
default of ``landscape catalogue --connect`` (``max_index = 2``, no climbing) and with the settings of
the dashboard's Landscape map (``max_index = 6``, two softest modes of every minimum climbed), and prints a Markdown table:
seconds of each, saddles
followed, descents that ended at a critical point, points added, and the groups of minima of the
disconnectivity tree (every saddle used).

The target of the issue: ``--connect`` on ``K = M = 8``, 500 starts, adds less than the
catalogue's own time.
"""

from __future__ import annotations

import argparse
import os
import time

from landscape.catalogues.build import build_catalogue
from landscape.catalogues.connections import ConnectOptions, connect_catalogue
from landscape.catalogues.disconnectivity import disconnectivity_tree
from landscape.dashboard.catalogues import MAP_CLIMB_MODES, MAP_MAX_INDEX
from landscape.model.config import InitSpec, RunConfig


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=500, help="random starts per catalogue (default 500)")
    parser.add_argument("--sizes", default="6,8", help="comma-separated K = M (default 6,8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
    print("| K = M | starts | catalogue s | max_index, climb_modes | connect s | connect / catalogue | saddles (directions) "
          "| descents ended | points added | tree roots |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for K in (int(x) for x in args.sizes.split(",")):
        config = RunConfig(K=K, M=K, eta2=False, init=InitSpec(kind="random", d=K, scale=1.0))
        start = time.perf_counter()
        catalogue = build_catalogue(config, starts=args.starts, seed=args.seed)
        built = time.perf_counter() - start
        for max_index, climb in ((2, 0), (MAP_MAX_INDEX, MAP_CLIMB_MODES)):
            start = time.perf_counter()
            connected = connect_catalogue(catalogue, ConnectOptions(max_index=max_index, climb_modes=climb))
            seconds = time.perf_counter() - start
            ends = [e for c in connected.connections for e in c.ends]
            tree = disconnectivity_tree(connected)
            print(f"| {K} | {args.starts} | {built:.1f} | {max_index}, {climb} | {seconds:.2f} | {seconds / built:.3f} "
                  f"| {len({c.saddle for c in connected.connections})} ({len(connected.connections)}) "
                  f"| {sum(e is not None for e in ends)} / {len(ends)} | {connected.added} | {len(tree.roots)} |",
                  flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
