"""Explicit weights for a configuration: the teacher embedded in ``d`` dimensions and a random student.

Section 1 of docs/theory.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import RunConfig

import numpy as np

from ..kernels.overlaps import validate_teacher

__all__ = ["teacher_weights", "random_student_weights", "initial_weights", "initial_overlaps"]


def teacher_weights(T, d):
    """Normalised teacher rows ``u*_m`` in ``d`` dimensions with overlaps ``T``.

    Parameters
    ----------
    T : array_like, shape (M, M)
        Teacher overlap matrix (validated).
    d : int
        Embedding dimension, at least the rank of ``T``.

    Returns
    -------
    ndarray, shape (M, d)
        Rows spanning the first coordinates; ``result @ result.T == T`` up to rounding.

    Raises
    ------
    ValueError
        If ``T`` is invalid or ``d`` is smaller than its rank.
    """
    T = validate_teacher(T)
    eigenvalues, eigenvectors = np.linalg.eigh(T)
    keep = eigenvalues > 1e-12 * eigenvalues.max()
    factor = eigenvectors[:, keep] * np.sqrt(eigenvalues[keep])
    if d < factor.shape[1]:
        raise ValueError(f"d = {d} is smaller than the rank {factor.shape[1]} of the teacher")
    weights = np.zeros((T.shape[0], d))
    weights[:, : factor.shape[1]] = factor
    return weights


def random_student_weights(K, d, scale, rng):
    """Student rows ``u_k = w_k / sqrt(d)`` with ``w_k ~ N(0, scale^2 I_d)``.

    Parameters
    ----------
    K, d : int
        Width and input dimension.
    scale : float
        Standard deviation of the raw weights; ``Q_kk`` is close to ``scale^2``.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, shape (K, d)
    """
    return scale * rng.standard_normal((K, d)) / np.sqrt(d)


def initial_weights(config, d=None, seed=None):
    """Teacher and student weights of a configuration with a random initialisation.

    Parameters
    ----------
    config : RunConfig
    d : int, optional
        Input dimension (default ``config.init.d``).
    seed : int or numpy.random.Generator, optional
        Randomness for the student (default ``config.init.seed``).

    Returns
    -------
    W : ndarray, shape (K, d)
    W_teacher : ndarray, shape (M, d)

    Raises
    ------
    ValueError
        If the configuration's initialisation is not random.
    """
    if config.init.kind != "random":
        raise ValueError("explicit weights need init kind 'random' (overlaps do not fix the weights)")
    d = config.init.d if d is None else int(d)
    rng = np.random.default_rng(config.init.seed if seed is None else seed)
    W_teacher = teacher_weights(config.teacher_matrix(), d)
    return random_student_weights(config.K, d, config.init.scale, rng), W_teacher


def initial_overlaps(config: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """Initial ``(Q, R)`` of a configuration.

    Parameters
    ----------
    config : RunConfig

    Returns
    -------
    Q : ndarray, shape (K, K)
    R : ndarray, shape (K, M)
    """
    if config.init.kind == "overlaps":
        return np.array(config.init.Q, dtype=float), np.array(config.init.R, dtype=float)
    W, W_teacher = initial_weights(config)
    return W @ W.T, W @ W_teacher.T
