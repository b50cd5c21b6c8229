"""landscape: exact loss landscape and one-pass SGD dynamics of two-layer ReLU networks.

The package is layered; each subpackage imports only those below it (checked by import-linter,
see ``[tool.importlinter]`` in pyproject.toml):

- :mod:`landscape.kernels`: Gaussian expectations of ReLU units as pure functions of overlaps.
- :mod:`landscape.model`: teachers, run configurations, initial conditions, the population loss.
- :mod:`landscape.dynamics`: the ODEs of one-pass SGD, their solvers, the direct SGD simulator.
- :mod:`landscape.critical_points`: critical points, exact Hessian spectra, symmetry, families.
- :mod:`landscape.catalogues`: catalogues of critical points, reachability, sweeps on Dask.
- :mod:`landscape.commands` (the CLI) and :mod:`landscape.dashboard` (helpers and figure builders
  of the Streamlit app) sit on top.

Conventions (normalised units ``u = w / sqrt(d)``, ``L = 1/2 E[(f - f*)^2]``, time = steps / d)
are those of docs/theory.md. This module re-exports the public API: one function per job, the
configuration and the result types; everything else is importable from its subpackage.
"""

from .catalogues.build import build_catalogue
from .catalogues.connections import connect_catalogue
from .catalogues.disconnectivity import disconnectivity_tree
from .catalogues.reachability import reachability_curve
from .catalogues.records import Catalogue, CriticalPoint, PointKind
from .catalogues.sweep import run_sweep
from .catalogues.sweep_spec import SweepSpec
from .catalogues.sweep_store import load_store
from .catalogues.widths import families_across_widths
from .critical_points.continuation import continue_fixed_point
from .critical_points.embedding import add_student
from .critical_points.families import family_tree
from .critical_points.hessian import HessianSpectrum, hessian_spectrum
from .critical_points.stability import fixed_point_stability
from .dynamics.ode import integrate_ode, run_flow
from .dynamics.sgd import simulate_sgd
from .dynamics.trajectory import FlowStatus, Trajectory
from .model.config import InitSpec, RunConfig, TeacherSpec
from .model.initialisation import initial_overlaps
from .model.loss import gradient_from_weights, overlaps_from_weights, population_loss

__version__ = "0.1.0"

__all__ = [
    # configuration
    "InitSpec",
    "RunConfig",
    "TeacherSpec",
    "initial_overlaps",
    # the loss
    "population_loss",
    "gradient_from_weights",
    "overlaps_from_weights",
    # dynamics
    "integrate_ode",
    "run_flow",
    "simulate_sgd",
    "Trajectory",
    "FlowStatus",
    # critical points
    "hessian_spectrum",
    "HessianSpectrum",
    "family_tree",
    "add_student",
    "fixed_point_stability",
    "continue_fixed_point",
    # catalogues and sweeps
    "build_catalogue",
    "Catalogue",
    "CriticalPoint",
    "PointKind",
    "reachability_curve",
    "connect_catalogue",
    "disconnectivity_tree",
    "families_across_widths",
    "run_sweep",
    "SweepSpec",
    "load_store",
]
