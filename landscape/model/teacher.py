"""Teacher overlap structures ``T`` (M x M); their validation is :mod:`landscape.kernels.overlaps`.

Eq. (1.3) of docs/theory.md.
"""

from __future__ import annotations

import numpy as np

from ..kernels.overlaps import check_units, validate_teacher

__all__ = ["orthonormal_teacher", "equicorrelated_teacher", "block_teacher", "random_teacher"]


def orthonormal_teacher(M):
    """Orthonormal teacher: ``T = I_M``.

    Parameters
    ----------
    M : int
        Number of teacher units, ``1 <= M <= MAX_UNITS``.

    Returns
    -------
    ndarray, shape (M, M)

    Raises
    ------
    ValueError
        If ``M`` is out of range.
    """
    return np.eye(check_units("M", M))


def equicorrelated_teacher(M, rho, norm=1.0):
    """Teacher units of equal squared norm ``norm`` and pairwise correlation ``rho``.

    Parameters
    ----------
    M : int
        Number of teacher units.
    rho : float
        Pairwise correlation, in ``[-1/(M-1), 1]`` so that ``T`` is positive semi-definite.
    norm : float, optional
        Squared norm ``T_mm`` of every unit (positive).

    Returns
    -------
    ndarray, shape (M, M)

    Raises
    ------
    ValueError
        If ``M``, ``rho`` or ``norm`` is out of range.
    """
    M = check_units("M", M)
    if not np.isfinite(norm) or norm <= 0:
        raise ValueError(f"norm must be a positive number, got {norm!r}")
    lower = -1.0 / (M - 1) if M > 1 else -1.0
    if not np.isfinite(rho) or not lower <= rho <= 1.0:
        raise ValueError(f"rho must be in [{lower:.4g}, 1] for M = {M}, got {rho!r}")
    return norm * ((1.0 - rho) * np.eye(M) + rho * np.ones((M, M)))


def block_teacher(block_sizes, rho_within, rho_between=0.0):
    """Teacher of unit-norm units in groups: correlation ``rho_within`` inside a group.

    Parameters
    ----------
    block_sizes : sequence of int
        Sizes of the groups; ``M = sum(block_sizes)``.
    rho_within, rho_between : float
        Correlation of two units in the same group, and in different groups.

    Returns
    -------
    ndarray, shape (M, M)

    Raises
    ------
    ValueError
        If the sizes are not positive integers or the result is not positive semi-definite.
    """
    sizes = [check_units("block size", size) for size in block_sizes]
    if not sizes:
        raise ValueError("block_sizes must name at least one block")
    labels = np.repeat(np.arange(len(sizes)), sizes)
    same = labels[:, None] == labels[None, :]
    T = np.where(same, float(rho_within), float(rho_between))
    np.fill_diagonal(T, 1.0)
    return validate_teacher(T)


def random_teacher(M, seed, dimension=None):
    """Overlaps of ``M`` random Gaussian teacher vectors in ``dimension`` dimensions.

    Parameters
    ----------
    M : int
        Number of teacher units.
    seed : int or numpy.random.Generator
        Source of randomness.
    dimension : int, optional
        Dimension of the vectors (default ``2 M``); the vectors are normalised by
        ``sqrt(dimension)`` so that ``T_mm`` is close to one.

    Returns
    -------
    ndarray, shape (M, M)

    Raises
    ------
    ValueError
        If ``M`` or ``dimension`` is out of range.
    """
    M = check_units("M", M)
    dimension = 2 * M if dimension is None else check_units("dimension", dimension, 100_000)
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((M, dimension)) / np.sqrt(dimension)
    return weights @ weights.T
