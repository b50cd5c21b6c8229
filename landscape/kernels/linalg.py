"""Symmetric eigendecomposition that does not fail on matrices with many repeated eigenvalues.

``numpy.linalg.eigh`` calls LAPACK's divide-and-conquer routine (``?syevd``), which can stop with
"Eigenvalues did not converge" on a finite symmetric matrix: with OpenBLAS 0.3.31 it did on a
400 x 400 weight Hessian at ``K = M = 20`` (a near-global minimum, one eigenvalue repeated about
200 times), during Newton polishing, and took the whole 1,000-start catalogue down with it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["symmetric_eigh"]

# Fallbacks, in order: relatively robust representations (MRRR), then the QR algorithm.
_FALLBACK_DRIVERS = ("evr", "ev")


def symmetric_eigh(matrix):
    """Eigenvalues (ascending) and eigenvectors (columns) of a real symmetric matrix.

    ``numpy.linalg.eigh``, and only if that does not converge, LAPACK's other symmetric drivers
    through ``scipy.linalg.eigh`` (the result is then equally exact, from another algorithm).

    Parameters
    ----------
    matrix : ndarray, shape (n, n)
        Symmetric (the lower triangle is read, as by ``numpy.linalg.eigh``).

    Returns
    -------
    eigenvalues : ndarray, shape (n,)
    eigenvectors : ndarray, shape (n, n)

    Raises
    ------
    numpy.linalg.LinAlgError
        If no driver converges (or the matrix is not finite).
    """
    try:
        return np.linalg.eigh(matrix)
    except np.linalg.LinAlgError as error:
        import scipy.linalg

        for driver in _FALLBACK_DRIVERS:
            try:
                return scipy.linalg.eigh(matrix, lower=True, driver=driver)
            except (np.linalg.LinAlgError, ValueError):
                continue
        raise error
