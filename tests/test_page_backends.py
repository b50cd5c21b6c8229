"""Backend functions that the pages used to compute themselves (moved out of views/ with these tests)."""

import numpy as np
import pytest

from landscape.critical_points.fixed_points import unspecialised_fixed_point
from landscape.dynamics.sgd import simulate_sgd_from_initial_overlaps
from landscape.model.config import InitSpec, RunConfig, TeacherSpec
from landscape.model.initialisation import initial_overlaps
from landscape.model.loss import gradient_norm_from_overlaps, loss_from_overlaps


def test_sgd_from_initial_overlaps_starts_where_the_ode_starts():
    config = RunConfig(K=3, M=2, t_max=0.5, init=InitSpec(d=200, seed=3))
    run = simulate_sgd_from_initial_overlaps(config, d=150, seed=1)
    Q0, R0 = initial_overlaps(config)
    assert np.allclose(run.Q[0], Q0, atol=1e-12) and np.allclose(run.R[0], R0, atol=1e-12)
    assert np.allclose(run.T, config.teacher_matrix(), atol=1e-12)
    # The data stream depends on the seed only: the same seed gives the same run.
    again = simulate_sgd_from_initial_overlaps(config, d=150, seed=1)
    assert np.array_equal(run.Q, again.Q)


def test_sgd_from_initial_overlaps_needs_the_rank():
    config = RunConfig(K=3, M=2, t_max=0.5, init=InitSpec(d=200, seed=3))
    with pytest.raises(ValueError, match="smaller than the rank 5"):
        simulate_sgd_from_initial_overlaps(config, d=4, seed=1)


def test_unspecialised_fixed_point_is_a_symmetric_saddle():
    config = RunConfig(K=3, M=3, eta2=False, t_max=5000.0, init=InitSpec(d=1000, seed=0))
    point = unspecialised_fixed_point(config)
    assert point is not None
    # Independent checks: the gradient of the loss vanishes there, all R_km are equal, and the loss
    # agrees with the closed form of the overlaps; a symmetric point of K = M = 3 is no minimum.
    assert gradient_norm_from_overlaps(point.Q, point.R, point.T) < 1e-5
    assert np.ptp(point.R) < 1e-6
    assert point.loss == pytest.approx(float(loss_from_overlaps(point.Q, point.R, point.T)), rel=1e-12)
    assert point.index is not None and point.index > 0 and point.is_minimum is False


def test_unspecialised_fixed_point_only_for_orthonormal_teachers():
    config = RunConfig(K=2, M=2, teacher=TeacherSpec(kind="equicorrelated", rho=0.3))
    assert unspecialised_fixed_point(config) is None


def test_shipped_defaults_are_found_from_the_package():
    # Regression: after the move into subpackages, DEFAULT_SPEC and DEFAULT_STORE still went one
    # folder up from their module, to landscape/assets, which does not exist.
    from landscape.catalogues.sweep_spec import DEFAULT_SPEC
    from landscape.catalogues.sweep_store import DEFAULT_STORE

    assert DEFAULT_SPEC.is_file() and DEFAULT_STORE.is_dir()


def test_the_theory_page_quotes_the_published_k_equals_m_plus_one_rates():
    # The Theory page says one more student makes spurious minima rarer, not absent, quoting
    # Safran & Shamir's counts at M = 19; they must be the published ones.
    import csv
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    reference = root.parent / "shared" / "reference" / "safran_shamir_2018_rates.csv"
    if not reference.is_file():
        pytest.skip("the shared reference folder is not beside this checkout")
    with reference.open() as handle:
        rates = {(int(r["teacher_units_M"]), int(r["student_units_K"])): int(r["runs_ending_at_spurious_points"])
                 for r in csv.DictReader(handle)}
    text = (root / "views" / "theory.py").read_text()
    assert f"{rates[19, 19]} to {rates[19, 20]} runs in 1000 at M = 19" in text
