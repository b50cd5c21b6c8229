"""The model: teachers, run configurations, initial conditions and the population loss.

May import :mod:`landscape.kernels` only. :mod:`teacher` builds teacher overlap structures ``T``,
:mod:`config` holds :class:`RunConfig` (one per run, serialisable to JSON and to a share string),
:mod:`initialisation` draws initial weights and overlaps, :mod:`loss` gives the population loss and
its gradient from overlaps or weights (section 2 of docs/theory.md).
"""
