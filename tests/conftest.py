"""Shared fixtures: seeded generators and random weights; the compiled ODE solver."""

import numpy as np
import pytest

from landscape.dynamics.ode import compile_ode


@pytest.fixture(scope="session", autouse=True)
def compiled_ode_solver():
    # Compile (or load from numba's disk cache) once, before any test runs: on a clean checkout
    # this takes about 40 seconds, which would otherwise land in the first test that
    # integrates, e.g. inside an AppTest run with a few seconds of timeout, and the CLI and
    # browser tests' subprocesses find the cache written.
    compile_ode()


@pytest.fixture
def rng():
    return np.random.default_rng(20260412)


@pytest.fixture
def random_weights():
    """Factory: student and teacher rows in n dimensions, normalised units (norms of order one)."""

    def draw(rng, K, M, n, scale=1.0):
        W = scale * rng.standard_normal((K, n)) / np.sqrt(n)
        W_teacher = rng.standard_normal((M, n)) / np.sqrt(n)
        return W, W_teacher

    return draw


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A small catalogue standing in for assets/catalogue_default.json (built here, never committed)."""
    from landscape.catalogues.build import build_catalogue
    from landscape.model.config import InitSpec, RunConfig

    config = RunConfig(K=3, M=3, eta2=False, t_max=30.0, init=InitSpec(d=1000, seed=0, scale=1.0))
    catalogue = build_catalogue(config, starts=8, seed=0)
    path = tmp_path_factory.mktemp("assets") / "catalogue.json"
    catalogue.save_json(path)
    return path, catalogue


@pytest.fixture
def with_shipped(shipped, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CATALOGUE", str(shipped[0]))
    return shipped[1]
