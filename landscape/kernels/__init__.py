"""Gaussian kernels: expectations of ReLU units under a Gaussian law, as pure functions of overlaps.

The lowest layer (imports nothing else of the package). The arc-cosine kernel and the orthant
probabilities of :mod:`gaussian` (section 2 of docs/theory.md), the four-variable orthant probability by
Plackett's identity in :mod:`orthant`, the four-point ReLU expectations of the ``eta^2`` term in
:mod:`fourpoint` (section 4), and the checks that overlap matrices are Gram matrices in
:mod:`overlaps`.
"""
