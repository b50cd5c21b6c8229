"""The records of a catalogue: its points, its outcome, and their JSON and CSV forms.

:class:`Catalogue` and :class:`CriticalPoint` are what :func:`landscape.catalogues.build.build_catalogue`
returns and what ``landscape catalogue`` writes; :meth:`Catalogue.load_json` reads them back
(the dashboard's shipped catalogue, the results of a sweep).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from typing_extensions import Self

import enum
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..critical_points.flat import FlatManifold
from ..critical_points.stability import Stability
from ..model.config import RunConfig
from ..status import StatusEnum

__all__ = ["PointKind", "CatalogueStatus", "CriticalPoint", "Catalogue"]


class PointKind(enum.Enum):
    """Kind of a critical point, from the index of the Hessian of ``L``."""

    MINIMUM = "minimum"
    SADDLE = "saddle"


class CatalogueStatus(StatusEnum):
    """Outcome of a catalogue; the value is a sentence, ``code`` a short name."""

    COMPLETE = "every start converged to a critical point"
    PARTIAL = "some starts did not converge (counted by reason in failures)"
    FAILED = "no start converged to a critical point"



@dataclass(frozen=True, eq=False)
class CriticalPoint:
    """One distinct critical point (or ODE fixed point) of a catalogue, in canonical form.

    Attributes
    ----------
    kind : PointKind
        ``minimum`` if the Hessian of ``L`` has no negative eigenvalue in dimension ``d``, else ``saddle``.
    loss : float
    index : int
        Negative Hessian eigenvalues, with multiplicity.
    n_zero : int
        Zero eigenvalues, with multiplicity (rotations and flat directions).
    n_symmetry_zero : int
        Zero modes that are rotations of the input space (they leave ``(Q, R)`` unchanged).
    min_eigenvalue : float
    eigenvalues, multiplicities : tuple
        Distinct Hessian eigenvalues (ascending) and their multiplicities in dimension ``d``.
    family : str
        Label of the family (:func:`landscape.critical_points.families.classify_point`).
    is_global : bool
        A global minimum (``loss < GLOBAL_LOSS`` when ``K >= M``; the lowest minimum found otherwise).
    count : int
        Random starts whose dynamics ended here (its basin, in starts).
    orbit_size : int
        Number of distinct ``(Q, R)`` among its images under the symmetries.
    gradient_norm : float
        ``|grad L|`` (gradient flow) or the ODE residual (finite lr), checked after canonicalisation.
    Q : ndarray, shape (K, K)
    R : ndarray, shape (K, M)
    found_by : tuple of str
        ``flow`` (random starts) and/or ``ansatz`` (symmetric ansatz search); points added by
        :func:`~landscape.catalogues.connections.connect_catalogue`: ``connection`` (where a descent
        from a saddle ended) or ``climb`` (an index-1 saddle reached from a minimum).
    manifold : FlatManifold or None
    stability : Stability or None
        Linear stability as a fixed point of the ODE of one-pass SGD
        (:func:`landscape.critical_points.stability.fixed_point_stability`): in the gradient-flow regime
        per unit of ``lr`` (rates in ``lr t``), in the finite-lr regime at the catalogue's ``lr``.
        None only in records written before it existed.
    """

    kind: PointKind
    loss: float
    index: int
    n_zero: int
    n_symmetry_zero: int
    min_eigenvalue: float
    eigenvalues: tuple
    multiplicities: tuple
    family: str
    is_global: bool
    count: int
    orbit_size: int
    gradient_norm: float
    Q: np.ndarray
    R: np.ndarray
    found_by: tuple
    manifold: FlatManifold | None = None
    stability: Stability | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (the format of a point in ``landscape catalogue``)."""
        return {
            "kind": self.kind.value, "loss": float(self.loss), "index": int(self.index), "n_zero": int(self.n_zero),
            "n_symmetry_zero": int(self.n_symmetry_zero), "min_eigenvalue": float(self.min_eigenvalue),
            "eigenvalues": [float(v) for v in self.eigenvalues], "multiplicities": [int(m) for m in self.multiplicities],
            "family": self.family, "is_global": bool(self.is_global), "count": int(self.count),
            "orbit_size": int(self.orbit_size), "gradient_norm": float(self.gradient_norm),
            "Q": np.asarray(self.Q).tolist(), "R": np.asarray(self.R).tolist(), "found_by": list(self.found_by),
            "manifold": None if self.manifold is None else self.manifold.to_dict(),
            "stability": None if self.stability is None else self.stability.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            If a key is missing or a value has the wrong type.
        """
        try:
            return cls(
                kind=PointKind(data["kind"]), loss=float(data["loss"]), index=int(data["index"]),
                n_zero=int(data["n_zero"]), n_symmetry_zero=int(data["n_symmetry_zero"]),
                min_eigenvalue=float(data["min_eigenvalue"]), eigenvalues=tuple(float(v) for v in data["eigenvalues"]),
                multiplicities=tuple(int(m) for m in data["multiplicities"]), family=str(data["family"]),
                is_global=bool(data["is_global"]), count=int(data["count"]), orbit_size=int(data["orbit_size"]),
                gradient_norm=float(data["gradient_norm"]), Q=np.array(data["Q"], dtype=float),
                R=np.array(data["R"], dtype=float), found_by=tuple(data["found_by"]),
                manifold=None if data.get("manifold") is None else FlatManifold.from_dict(data["manifold"]),
                stability=None if data.get("stability") is None else Stability.from_dict(data["stability"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a critical point record: {error!r}") from None


@dataclass(frozen=True, eq=False)
class Catalogue:
    """Distinct critical points found from seeded random starts, sorted by loss.

    Attributes
    ----------
    points : tuple of CriticalPoint
    starts : int
        Random starts run.
    seed : int
    config : RunConfig
    regime : str
        ``gradient_flow`` or ``finite_lr``.
    d : int
        Input dimension of the Hessian spectra.
    n_converged : int
        Starts that ended at a polished point (the sum of the points' counts).
    failures : dict
        ``{reason code: number of starts}`` for the others (codes of :class:`~landscape.critical_points.batch_flow.EndReason`).
    ansatz_starts : int
        Extra starts of the symmetric-ansatz saddle search (not part of ``starts`` or the counts).
    success : bool
        False only if no start converged.
    status : CatalogueStatus
    message : str
    """

    points: tuple
    starts: int
    seed: int
    config: RunConfig
    regime: str
    d: int
    n_converged: int
    failures: dict
    ansatz_starts: int
    success: bool
    status: CatalogueStatus
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (what ``landscape catalogue`` prints)."""
        return {
            "points": [p.to_dict() for p in self.points], "starts": self.starts, "seed": self.seed,
            "config": self.config.to_dict(), "regime": self.regime, "d": self.d, "n_converged": self.n_converged,
            "failures": dict(self.failures), "ansatz_starts": self.ansatz_starts, "success": self.success,
            "status": self.status.code, "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            If the dictionary is not a catalogue.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a catalogue must be a JSON object, got {type(data).__name__}")
        try:
            return cls(
                points=tuple(CriticalPoint.from_dict(p) for p in data["points"]), starts=int(data["starts"]),
                seed=int(data["seed"]), config=RunConfig.from_dict(data["config"]), regime=str(data["regime"]),
                d=int(data["d"]), n_converged=int(data["n_converged"]),
                failures={str(k): int(v) for k, v in data["failures"].items()},
                ansatz_starts=int(data["ansatz_starts"]), success=bool(data["success"]),
                status=CatalogueStatus[str(data["status"]).upper()], message=str(data["message"]),
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a catalogue: missing or malformed {error!r}") from None

    def save_json(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load_json(cls, path: str | Path) -> Catalogue:
        """Read a catalogue written by :meth:`save_json`.

        Raises
        ------
        ValueError
            If the file is not JSON or not a catalogue.
        """
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
        return cls.from_dict(data)

    def to_frame(self) -> pd.DataFrame:
        """One row per point (no matrices): kind, loss, index, zero modes, family, basin count, ...

        Returns
        -------
        pandas.DataFrame
        """
        import pandas as pd

        rows = []
        for p in self.points:
            rows.append({
                "kind": p.kind.value, "loss": p.loss, "index": p.index, "n_zero": p.n_zero,
                "n_symmetry_zero": p.n_symmetry_zero, "min_eigenvalue": p.min_eigenvalue, "family": p.family,
                "is_global": p.is_global, "count": p.count, "orbit_size": p.orbit_size,
                "gradient_norm": p.gradient_norm, "found_by": "+".join(p.found_by),
                "flat_dimension": 0 if p.manifold is None else p.manifold.dimension,
                "manifold": "" if p.manifold is None else p.manifold.description,
                "attractive": None if p.stability is None else p.stability.attractive,
                "max_real_eigenvalue": np.nan if p.stability is None else p.stability.max_real_eigenvalue,
            })
        columns = ["kind", "loss", "index", "n_zero", "n_symmetry_zero", "min_eigenvalue", "family", "is_global",
                   "count", "orbit_size", "gradient_norm", "found_by", "flat_dimension", "manifold", "attractive",
                   "max_real_eigenvalue"]
        return pd.DataFrame(rows, columns=columns)

    def save_csv(self, path: str | Path) -> None:
        """Write :meth:`to_frame` as CSV to ``path``."""
        self.to_frame().to_csv(path, index=False)
