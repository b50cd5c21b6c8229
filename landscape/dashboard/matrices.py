"""Matrices and block sizes as text: the teacher matrix ``T`` of a link or a text box, and grid edits."""

from __future__ import annotations

import re

import numpy as np

__all__ = [
    "parse_matrix",
    "format_matrix",
    "parse_block_sizes",
    "default_block_sizes",
    "resize_matrix_text",
    "apply_symmetric_edits",
]

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_matrix(text):
    """A matrix written as rows separated by ``;`` (or new lines), entries by ``,`` or spaces.

    Parameters
    ----------
    text : str
        For example ``"1, 0.5; 0.5, 1"``.

    Returns
    -------
    ndarray, shape (n, n)

    Raises
    ------
    ValueError
        If an entry is not a number, rows have different lengths, or the matrix is not square.
    """
    rows = [row.strip() for row in re.split(r"[;\n]", str(text)) if row.strip()]
    if not rows:
        raise ValueError("the matrix is empty")
    matrix = []
    for number, row in enumerate(rows, start=1):
        entries = [entry for entry in re.split(r"[,\s]+", row) if entry]
        bad = [entry for entry in entries if not _NUMBER.match(entry)]
        if bad:
            raise ValueError(f"row {number} of the matrix has an entry that is not a number: {bad[0]!r}")
        matrix.append([float(entry) for entry in entries])
    lengths = {len(row) for row in matrix}
    if len(lengths) != 1:
        raise ValueError(f"the rows of the matrix have different lengths {sorted(lengths)}")
    if lengths.pop() != len(matrix):
        raise ValueError(f"the matrix must be square, got {len(matrix)} rows of {len(matrix[0])} entries")
    return np.array(matrix)


def format_matrix(matrix):
    """Inverse of :func:`parse_matrix`: ``"1, 0.5; 0.5, 1"`` (entries to 6 significant digits)."""
    return "; ".join(", ".join(f"{float(x):.6g}" for x in row) for row in np.asarray(matrix))


def parse_block_sizes(text):
    """Block sizes such as ``"2,2"`` or ``"3 1"``.

    Returns
    -------
    tuple of int

    Raises
    ------
    ValueError
        If an entry is not a positive whole number.
    """
    entries = [entry for entry in re.split(r"[,;\s]+", str(text).strip()) if entry]
    if not entries or not all(entry.isdigit() and int(entry) > 0 for entry in entries):
        raise ValueError(f"block sizes must be positive whole numbers such as 2,2, got {text!r}")
    return tuple(int(entry) for entry in entries)


def default_block_sizes(M):
    """Two blocks as equal as possible (one block when ``M = 1``)."""
    return (M,) if M < 2 else (M - M // 2, M // 2)


def resize_matrix_text(text, M):
    """A custom teacher matrix resized to ``M x M``: kept where it fits, identity elsewhere.

    Unparsable text is returned unchanged (its error is reported where the config is built).
    """
    if not str(text).strip():
        return ""
    try:
        old = parse_matrix(text)
    except ValueError:
        return text
    new = np.eye(M)
    n = min(M, old.shape[0])
    new[:n, :n] = old[:n, :n]
    return format_matrix(new)


def apply_symmetric_edits(matrix, edited_rows):
    """A matrix with grid edits applied and mirrored across the diagonal.

    Parameters
    ----------
    matrix : array_like, shape (n, n)
    edited_rows : mapping
        ``{row: {column label: value}}`` as a Streamlit data editor reports it; column labels are
        ``"1"`` .. ``"n"`` (1-based), rows 0-based; ``None`` values (cleared cells) are skipped.

    Returns
    -------
    ndarray, shape (n, n)

    Raises
    ------
    ValueError
        If a row or column is out of range or a value is not a number.
    """
    result = np.array(matrix, dtype=float)
    n = result.shape[0]
    for row, changes in dict(edited_rows).items():
        for column, value in dict(changes).items():
            if value is None:
                continue
            i, j = int(row), int(column) - 1
            if not (0 <= i < n and 0 <= j < n):
                raise ValueError(f"edit at row {row}, column {column} is outside the {n} x {n} matrix")
            result[i, j] = result[j, i] = float(value)
    return result


#: Most rows a comparison may name (each is a spectrum in the figure).
MAX_COMPARED_ROWS = 12


def parse_rows(text: str, count: int) -> tuple[list, list]:
    """Row numbers in ``text`` (``"0,1,2"`` or ``"0;1"``) that exist in a table of ``count`` rows.

    Parameters
    ----------
    text : str
        Comma- or semicolon-separated row numbers (ASCII digits only).
    count : int
        Number of rows of the table.

    Returns
    -------
    rows : list of int
        Distinct existing rows in the order given (at most :data:`MAX_COMPARED_ROWS`).
    ignored : list of str
        Entries that are not row numbers of the table (shortened to 12 characters).

    Raises
    ------
    ValueError
        If ``count`` is not a non-negative whole number.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative whole number, got {count!r}")
    rows, ignored = [], []
    for entry in str(text).replace(";", ",").split(","):
        entry = entry.strip()
        # str.isdigit accepts '²' and other digits int() refuses: ASCII digits only, and few of them.
        if entry.isascii() and entry.isdigit() and len(entry) <= 9 and int(entry) < count:
            rows.append(int(entry))
        elif entry:
            ignored.append(entry if len(entry) <= 12 else entry[:12] + "...")
    return list(dict.fromkeys(rows))[:MAX_COMPARED_ROWS], ignored
