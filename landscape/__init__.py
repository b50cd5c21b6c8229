"""landscape: exact loss landscape and one-pass SGD dynamics of two-layer ReLU networks.

Layers, lowest first: Gaussian kernels (:mod:`gaussian`, :mod:`orthant`, :mod:`fourpoint`)
-> loss and ODE (:mod:`loss`, :mod:`ode`, :mod:`sgd`) -> critical points, Hessian, families
-> catalogue, sweeps, CLI. Conventions are those of THEORY.md (normalised units
``u = w / sqrt(d)``, ``L = 1/2 E[(f - f*)^2]``).
"""

from .config import InitSpec, RunConfig, TeacherSpec
from .fourpoint import finite_lr_expectation, relu_four_point
from .gaussian import relu_kernel, relu_on_hyperplane_density, step_step_probability
from .initialisation import initial_overlaps, initial_weights, teacher_weights
from .loss import (
    GradientCoefficients,
    PairResiduals,
    gradient_coefficients,
    gradient_flow_velocity,
    gradient_from_weights,
    gradient_norm_from_overlaps,
    loss_from_overlaps,
    loss_from_weights,
    loss_gradient_norm,
    overlaps_from_weights,
    population_loss,
)
from .ode import compile_ode, integrate_ode, ode_velocity, run_flow
from .orthant import orthant_probability_4
from .sgd import simulate_sgd
from .teacher import (
    block_teacher,
    equicorrelated_teacher,
    orthonormal_teacher,
    random_teacher,
    validate_overlaps,
    validate_teacher,
)
from .trajectory import FlowStatus, Trajectory
from .hessian import Embedding, HessianSpectrum, embed_overlaps, hessian_spectrum, weight_hessian
from .critical import newton_polish, search_critical_points
from .fixed_points import ode_fixed_point
from .symmetry import canonical_form, orbit_size
from .families import Family, FamilyTree, classify_point, family_tree
from .flat import FlatManifold
from .catalogue_records import Catalogue, CatalogueStatus, CriticalPoint, PointKind
from .catalogue import build_catalogue
from .reachability import Reachability, ReachabilityCurve, reachability, reachability_curve, wilson_interval
from .sweep_spec import SweepSpec, load_spec
from .sweep_store import SweepStore, load_store
from .sweep import SweepResult, run_sweep

__version__ = "0.1.0"

__all__ = [
    "InitSpec",
    "RunConfig",
    "TeacherSpec",
    "finite_lr_expectation",
    "orthant_probability_4",
    "relu_four_point",
    "relu_kernel",
    "relu_on_hyperplane_density",
    "step_step_probability",
    "initial_overlaps",
    "initial_weights",
    "teacher_weights",
    "GradientCoefficients",
    "PairResiduals",
    "gradient_coefficients",
    "gradient_flow_velocity",
    "gradient_from_weights",
    "gradient_norm_from_overlaps",
    "loss_from_overlaps",
    "loss_from_weights",
    "loss_gradient_norm",
    "overlaps_from_weights",
    "population_loss",
    "compile_ode",
    "integrate_ode",
    "ode_velocity",
    "run_flow",
    "simulate_sgd",
    "block_teacher",
    "equicorrelated_teacher",
    "orthonormal_teacher",
    "random_teacher",
    "validate_overlaps",
    "validate_teacher",
    "FlowStatus",
    "Trajectory",
    "Embedding",
    "HessianSpectrum",
    "embed_overlaps",
    "hessian_spectrum",
    "weight_hessian",
    "canonical_form",
    "newton_polish",
    "ode_fixed_point",
    "orbit_size",
    "search_critical_points",
    "Family",
    "FamilyTree",
    "classify_point",
    "family_tree",
    "Catalogue",
    "CatalogueStatus",
    "CriticalPoint",
    "FlatManifold",
    "PointKind",
    "Reachability",
    "ReachabilityCurve",
    "build_catalogue",
    "reachability",
    "reachability_curve",
    "wilson_interval",
    "SweepResult",
    "SweepSpec",
    "SweepStore",
    "load_spec",
    "load_store",
    "run_sweep",
]
