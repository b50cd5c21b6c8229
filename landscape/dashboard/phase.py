"""The phase-portrait reduction of a run: numbers in, numbers out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["PhasePath", "phase_path", "phase_point"]


@dataclass(frozen=True)
class PhasePath:
    """A run reduced to two numbers per time (the phase-portrait coordinates).

    Attributes
    ----------
    matched : ndarray, shape (n,)
        Mean of ``R_k,pi(k)`` over the student-teacher pairs of the matching ``pi``.
    other : ndarray, shape (n,)
        Mean of all other entries of ``R``.
    assignment : ndarray of int, shape (min(K, M), 2)
        The matched pairs ``(k, m)``.
    """

    matched: np.ndarray
    other: np.ndarray
    assignment: np.ndarray


def _reduce(R, rows, cols):
    K, M = R.shape[-2:]
    mask = np.zeros((K, M), dtype=bool)
    mask[rows, cols] = True
    matched = R[..., mask].mean(axis=-1)
    other = R[..., ~mask].mean(axis=-1) if (~mask).any() else np.zeros_like(matched)
    return matched, other


def phase_path(R, match_at=-1):
    """Project a run of ``R`` onto (matched overlap, other overlaps).

    Each student is matched to one teacher (Hungarian assignment maximising the matched
    overlaps at time index ``match_at``, by default the end of the run), so that a student
    that specialises moves along the first coordinate; the unspecialised, permutation-symmetric
    states lie on the diagonal.

    Parameters
    ----------
    R : array_like, shape (n, K, M)
        Student-teacher overlaps over time.
    match_at : int, optional
        Time index whose overlaps define the matching.

    Returns
    -------
    PhasePath

    Raises
    ------
    ValueError
        If ``R`` is not a 3-D array of finite numbers.
    """
    R = np.asarray(R, dtype=float)
    if R.ndim != 3 or R.shape[0] == 0:
        raise ValueError(f"R must have shape (n, K, M) with n >= 1, got {R.shape}")
    rows, cols = linear_sum_assignment(R[match_at], maximize=True)
    matched, other = _reduce(R, rows, cols)
    return PhasePath(matched=matched, other=other, assignment=np.stack([rows, cols], axis=1))


def phase_point(R):
    """Phase-portrait coordinates of one point, with its own best matching.

    Parameters
    ----------
    R : array_like, shape (K, M)

    Returns
    -------
    PhasePath
        With arrays of length one.
    """
    R = np.asarray(R, dtype=float)
    if R.ndim != 2:
        raise ValueError(f"R must have shape (K, M), got {R.shape}")
    return phase_path(R[None])
