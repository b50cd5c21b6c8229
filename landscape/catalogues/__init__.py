"""Catalogues of critical points, reachability and sweeps on Dask.

May import every backend layer below (kernels, model, dynamics, critical_points), never the CLI or
the dashboard. :mod:`build` makes a catalogue from random starts, :mod:`records` holds its result
types, :mod:`reachability` the basin fractions with Wilson intervals (section 7 of
docs/theory.md), :mod:`sweep_spec`, :mod:`sweep_store` and :mod:`sweep` run many catalogues on Dask
into a resumable store.
"""
