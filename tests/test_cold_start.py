"""No compiler wait: the numpy solver stands in for the compiled one until numba's cache is filled.

Checks that the two solvers give the same runs, that the readiness probe agrees with what numba
itself does (loads from its cache, or compiles), and that the app serves a complete Flows page
without the compiled solver.
"""

import fcntl
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import landscape.dynamics.ode as ode
from landscape.dynamics import warmup
from landscape.dynamics.ode import integrate_ode, run_flow
from landscape.model.config import InitSpec, RunConfig
from landscape.model.initialisation import initial_overlaps

ROOT = Path(__file__).resolve().parent.parent


def _pair(config, **options):
    Q0, R0 = initial_overlaps(config)
    args = (Q0, R0, config.teacher_matrix(), config.lr, config.t_max)
    kwargs = dict(eta2=config.eta2, noise=config.noise, **options)
    return integrate_ode(*args, solver="compiled", **kwargs), integrate_ode(*args, solver="numpy", **kwargs)


def _assert_same_run(compiled, numpy_run, overlap_atol):
    assert compiled.status == numpy_run.status
    assert compiled.t[-1] == pytest.approx(numpy_run.t[-1], rel=1e-4)
    assert compiled.t.shape == numpy_run.t.shape
    np.testing.assert_allclose(compiled.t, numpy_run.t, rtol=1e-4)
    np.testing.assert_allclose(compiled.R, numpy_run.R, atol=overlap_atol, rtol=0)
    np.testing.assert_allclose(compiled.Q, numpy_run.Q, atol=overlap_atol, rtol=0)
    visible = numpy_run.loss > 1e-6  # below, the loss is a difference of overlaps near 1
    np.testing.assert_allclose(compiled.loss[visible], numpy_run.loss[visible], rtol=1e-4)


def test_numpy_and_compiled_solvers_agree_on_the_default_dashboard_run():
    # Gradient flow of the dashboard's default settings, to convergence: two implementations of
    # DOP853 (the compiled loop and scipy's solve_ivp) on two right-hand sides (compiled, numpy).
    compiled, numpy_run = _pair(RunConfig(K=4, M=4, lr=0.5, eta2=False, t_max=1000.0))
    assert compiled.status.code == "converged"
    # The run leaves a plateau (an unstable fixed point) around t = 50, which amplifies the two
    # integrators' different rounding (each within rtol 1e-9): up to 1.4e-6 there, in the overlaps
    # integrated as student rows.
    _assert_same_run(compiled, numpy_run, overlap_atol=5e-6)


def test_numpy_and_compiled_solvers_agree_with_the_eta2_term():
    # Compiled: the four-point term carried along the run; numpy: the quadrature at every step.
    config = RunConfig(K=3, M=3, lr=0.5, eta2=True, t_max=15.0, init=InitSpec(d=1000, seed=2, scale=1.0))
    compiled, numpy_run = _pair(config)
    _assert_same_run(compiled, numpy_run, overlap_atol=1e-6)


def test_auto_uses_the_numpy_solver_and_starts_compiling_while_not_ready(monkeypatch):
    started = []
    monkeypatch.setattr(ode, "compiled_solver_ready", lambda: False)
    monkeypatch.setattr(ode, "start_background_compilation", lambda: started.append(True) or True)

    def no_compiler(*args, **kwargs):
        raise AssertionError("the compiled solver ran although it was not ready")

    monkeypatch.setattr(ode, "solve_compiled", no_compiler)
    config = RunConfig(K=3, M=3, lr=0.5, eta2=False, t_max=50.0)
    served = run_flow(config)
    assert started == [True]
    monkeypatch.undo()
    compiled = run_flow(config, solver="compiled")
    np.testing.assert_allclose(served.R, compiled.R, atol=1e-6, rtol=0)


def test_bad_solver_arguments_are_one_clear_error():
    Q0, R0 = np.eye(2) * 0.5, np.full((2, 2), 0.1)
    with pytest.raises(ValueError, match="solver must be one of auto, compiled, numpy; got 'fast'"):
        integrate_ode(Q0, R0, np.eye(2), 0.5, 1.0, solver="fast")
    with pytest.raises(ValueError, match="four_point='carried' needs the compiled solver"):
        integrate_ode(Q0, R0, np.eye(2), 0.5, 1.0, four_point="carried", solver="numpy")


def test_ready_in_this_session():
    # conftest compiled (or loaded) the solver before the first test.
    assert warmup.compiled_solver_ready()


_PROBE = textwrap.dedent("""
    import json, sys, time
    from landscape.dynamics import warmup
    ready = warmup.compiled_solver_ready()
    result = {"ready": ready, "file": warmup.__file__}
    if ready:
        from landscape.dynamics import dop853
        from landscape.dynamics.ode import run_flow
        from landscape.model.config import RunConfig
        start = time.perf_counter()
        run_flow(RunConfig(K=2, M=2, eta2=False, t_max=5.0), solver="compiled")
        result["seconds"] = time.perf_counter() - start
        result["misses"] = sum(dop853.integrate.stats.cache_misses.values())
        result["hits"] = sum(dop853.integrate.stats.cache_hits.values())
    print(json.dumps(result))
""")


def _probe(folder):
    import json

    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=folder, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert Path(result["file"]).resolve().is_relative_to(Path(folder).resolve())
    return result


def test_the_probe_agrees_with_numbas_cache(tmp_path):
    """An empty cache is not ready; a filled one is, and loads without compiling; an edit makes it
    stale, and so does a marker written for another numba or CPU."""
    empty = tmp_path / "empty"
    shutil.copytree(ROOT / "landscape", empty / "landscape", ignore=shutil.ignore_patterns("*.nbi", "*.nbc", "*.ready"))
    assert _probe(empty) == {"ready": False, "file": str(empty / "landscape/dynamics/warmup.py")}
    filled = tmp_path / "filled"
    shutil.copytree(ROOT / "landscape", filled / "landscape")  # copy2 keeps the mtimes numba's index checks
    loaded = _probe(filled)
    assert loaded["ready"] and loaded["hits"] == 1 and loaded["misses"] == 0, loaded
    assert loaded["seconds"] < 5.0, loaded
    # While a process compiles (it holds the lock), the index is not trusted: it fills up one
    # function at a time.
    lock = subprocess.run([sys.executable, "-c", "from landscape.dynamics import warmup; print(warmup._lock_path())"],
                          cwd=filled, env={"PYTHONPATH": str(filled)}, capture_output=True, text=True, check=True)
    lock_file = Path(lock.stdout.strip())
    try:
        with open(lock_file, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            assert not _probe(filled)["ready"]
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        lock_file.unlink(missing_ok=True)
    # The marker records what the cache was compiled for; another key (numba, Python, CPU) is stale.
    marker = filled / "landscape/dynamics/__pycache__/landscape-ode-solver.ready"
    key = marker.read_text()
    marker.write_text("0" * len(key))
    assert not _probe(filled)["ready"]
    marker.write_text(key)
    source = filled / "landscape/dynamics/dop853.py"
    source.write_text(source.read_text() + "\n# edited\n")
    assert not _probe(filled)["ready"]


def test_compile_ode_writes_the_marker_the_probe_reads(tmp_path, monkeypatch):
    # The probe reads no numba internals: compile_ode (foreground, or the background process)
    # writes a marker once every function is in the cache; here into a separate cache folder.
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(warmup, "_ready", False)
    assert not warmup._marker_path().exists() and not warmup.compiled_solver_ready()
    ode.compile_ode()  # compiled in this process already (conftest): writes the marker only
    assert warmup._marker_path().is_relative_to(tmp_path) and warmup.compiled_solver_ready()


def test_flows_page_complete_while_the_compiled_solver_is_not_ready(monkeypatch):
    from streamlit.testing.v1 import AppTest

    import views.common

    for module in (ode, views.common):
        monkeypatch.setattr(module, "compiled_solver_ready", lambda: False)
    monkeypatch.setattr(ode, "start_background_compilation", lambda: False)
    monkeypatch.setattr(views.common, "start_background_compilation", lambda: False)
    monkeypatch.setattr(views.common, "background_compilation_running", lambda: True)
    monkeypatch.setattr(ode, "solve_compiled", None)  # would raise TypeError if called
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["K"], at.query_params["M"], at.query_params["runs"], at.query_params["tmax"] = "3", "3", "2", "300"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 4
    captions = [c.value for c in at.caption]
    assert any("being prepared in the background" in text for text in captions)
    assert any(text.startswith("ode: ") for text in captions), captions


def _fake_cache(monkeypatch, tmp_path, key):
    """Cache files of the solver's two compiled modules and a marker holding ``key``, in a separate
    NUMBA_CACHE_DIR; returns the cache files."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    files = []
    for source in ("dynamics/compiled_flow.py", "dynamics/dop853.py"):
        path = ROOT / "landscape" / source
        folder = warmup._cache_folder(path)
        folder.mkdir(parents=True, exist_ok=True)
        for suffix in ("velocity-1.py311.nbi", "velocity-1.py311.1.nbc"):
            files.append(folder / f"{path.stem}.{suffix}")
            files[-1].write_text("stale")
    warmup._marker_path().write_text(key)
    return files


def test_a_cache_compiled_from_other_sources_is_discarded(tmp_path, monkeypatch):
    # numba checks each cached function against its own file only: after an edit of
    # compiled_flow.py alone it loaded dop853's integrator with the old right-hand side inlined
    # (77 steps where the edited code takes 39; slow test below). A marker with another key means
    # other sources: the solver's cache files go, and so does the marker.
    files = _fake_cache(monkeypatch, tmp_path, "another key")
    assert warmup.discard_stale_cache()
    assert not any(path.exists() for path in files) and not warmup._marker_path().exists()
    # The matching key, or no marker, leaves the cache alone.
    files = _fake_cache(monkeypatch, tmp_path, warmup._build_key())
    assert not warmup.discard_stale_cache() and all(path.exists() for path in files)
    warmup._marker_path().unlink()
    assert not warmup.discard_stale_cache() and all(path.exists() for path in files)


def test_the_cache_folder_is_where_numba_writes(tmp_path):
    # With NUMBA_CACHE_DIR numba names a subfolder after the source's folder; a cached function in
    # a scratch module shows where (no numba internals read).
    module = tmp_path / "scratch" / "cached_module.py"
    module.parent.mkdir()
    module.write_text("from numba import njit\n\n@njit(cache=True)\ndef twice(x):\n    return 2 * x\n")
    cache = tmp_path / "cache"
    code = "import cached_module; print(cached_module.twice(2))"
    env = {"PYTHONPATH": str(module.parent), "PATH": "/usr/bin:/bin", "NUMBA_CACHE_DIR": str(cache)}
    subprocess.run([sys.executable, "-c", code], cwd=module.parent, env=env, check=True, capture_output=True, timeout=120)
    written = {path.parent for path in cache.rglob("cached_module.*.nbi")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NUMBA_CACHE_DIR", str(cache))
        assert written == {warmup._cache_folder(module)}


@pytest.mark.slow
def test_an_edit_of_the_right_hand_side_alone_is_compiled(tmp_path):
    # End to end: compile a copy, then edit compiled_flow.py only (the error norm's term count, so
    # that steps grow): the next run takes the edited code's steps, not the cached ones.
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "landscape", copy / "landscape", ignore=shutil.ignore_patterns("*.nbi", "*.nbc", "*.ready"))
    run = textwrap.dedent("""
        from landscape.dynamics.ode import compile_ode, integrate_ode
        from landscape.model.config import RunConfig
        from landscape.model.initialisation import initial_overlaps
        compile_ode()
        config = RunConfig(K=4, M=4, lr=0.5, eta2=True, t_max=200.0)
        Q0, R0 = initial_overlaps(config)
        print(integrate_ode(Q0, R0, config.teacher_matrix(), 0.5, 200.0, solver="compiled").stats.accepted_steps)
    """)

    def steps():
        env = {"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-c", run], cwd=copy, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.split()[-1])

    before = steps()
    source = copy / "landscape/dynamics/compiled_flow.py"
    text = source.read_text()
    assert text.count("    return total5, total3, n_terms\n") == 1
    source.write_text(text.replace("    return total5, total3, n_terms\n", "    return total5, total3, n_terms * 1000\n"))
    assert steps() < before
