"""Critical points: Newton and gradient-flow searches, exact Hessian spectra, symmetry, families.

May import :mod:`landscape.kernels`, :mod:`landscape.model` and :mod:`landscape.dynamics`.
:mod:`hessian` (section 5 of docs/theory.md), :mod:`search` and :mod:`batch_flow` (batched gradient
flow and Newton polish), :mod:`parallel` (chunks over both cores), :mod:`ansatz` (symmetric saddle
searches), :mod:`fixed_points` (fixed points of the full ODE), :mod:`symmetry` (permutation
orbits), :mod:`flat` (flat manifolds for ``K > M``), :mod:`families` (section 6).
"""
