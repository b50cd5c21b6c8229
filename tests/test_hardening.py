"""Hostile input (issue 18, items 1-7): every one ends in one clear line, never a traceback.

Each test reproduces an input that used to crash or be silently misread, and says what went wrong.
"""

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from landscape import RunConfig
from landscape.catalogues.sweep_claims import TaskClaims
from landscape.catalogues.sweep_spec import SweepSpec
from landscape.catalogues.sweep_store import load_store, open_store
from landscape.commands.main import main
from landscape.dashboard import check_query, parse_rows
from landscape.dashboard.settings import PAGE_SETTINGS, SIDEBAR_SETTINGS
from landscape.dynamics.sgd import sgd_cost, simulate_sgd
from landscape.model.config import InitSpec, TeacherSpec

REPO = Path(__file__).resolve().parent.parent
SPEC = {"base": {"K": 2, "M": 2, "eta2": False, "t_max": 5.0, "init": {"kind": "random", "d": 4, "seed": 0, "scale": 0.5}},
        "grid": {"K": [2, 3]}, "starts": 2, "seed": 7}


def _cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _one_line_error(capsys, message, *argv):
    code, out, err = _cli(capsys, *argv)
    assert code == 2 and out == "", (code, out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert message in err, err


# ------------------------------------------------------------------ 1-4, 7: the command line


@pytest.mark.parametrize("argv, files, message", [
    # 1. block_sizes as a number: TypeError traceback from tuple(4).
    (["flow", "--config", "{c}"], {"c": '{"M": 4, "teacher": {"kind": "block", "block_sizes": 4}}'},
     "block_sizes must be a list"),
    # 2. 100,000 brackets: RecursionError traceback from the JSON decoder.
    (["loss", "--point", "{p}"], {"p": "[" * 100_000}, "nested too deeply"),
    (["flow", "--config", "{c}"], {"c": "{\"K\": " + "[" * 100_000}, "nested too deeply"),
    # 3. Sizes: OverflowError (hessian), 149 GiB (simulate), 60 GiB after 50 s (flow --points 1e9).
    (["hessian", "--point", "{p}", "--d", "1e30"], {"p": '{"Q": [[1]], "R": [[0]], "T": [[1]]}'}, "from 1 to"),
    (["hessian", "--point", "{p}", "--d", "1" + "0" * 30], {"p": '{"Q": [[1]], "R": [[0]], "T": [[1]]}'}, "from 1 to"),
    (["simulate", "--config", "{c}", "--d", "1e10"], {"c": '{"t_max": 1e-6}'}, "from 1 to 10,000,000"),
    (["flow", "--config", "{c}", "--points", "1e9"], {"c": "{}"}, "from 2 to 100,000"),
    (["catalogue", "--config", "{c}", "--starts", "1e12"], {"c": "{}"}, "from 1 to 20,000"),
    # 4. Keys that were silently ignored.
    (["flow", "--config", "{c}"], {"c": '{"teacher": {"kind": "orthonormal", "rho": 0.5}}'}, "does not use ['rho']"),
    (["flow", "--config", "{c}"], {"c": '{"teacher": {"kind": "orthonormal", "T": [[1]]}}'}, "does not use ['T']"),
    (["flow", "--config", "{c}"], {"c": '{"teacher": {"kind": "equicorrelated", "rho": 0.3, "block_sizes": [1, 1]}}'},
     "does not use ['block_sizes']"),
    (["flow", "--config", "{c}"], {"c": '{"teacher": {"rho": 0.3}}'}, "teacher needs a 'kind'"),
    (["flow", "--config", "{c}"], {"c": '{"init": {"kind": "random", "Q": [[1]]}}'}, "does not use ['Q']"),
    (["loss", "--point", "{p}"], {"p": '{"Q": [[1]], "R": [[0]], "T": [[1]], "W": [[1]], "W_teacher": [[1]]}'},
     "mixes the two forms"),
    (["loss", "--point", "{p}"], {"p": '{"Q": [[1]], "R": [[0]], "T": [[1]], "extra": 1}'}, "unknown key(s) ['extra']"),
    (["loss", "--point", "{p}"], {"p": '{"W": [[true, 0]], "W_teacher": [[1, 0]]}'}, "numbers only, got True"),
    (["loss", "--point", "{p}"], {"p": '{"W": [["1", 0]], "W_teacher": [[1, 0]]}'}, "numbers only, got '1'"),
    # 7. argparse leaked "invalid _positive_int value"; numpy said only "expected non-negative integer".
    (["flow", "--config", "{c}", "--points", "x"], {"c": "{}"}, "argument --points: must be a whole number, got 'x'"),
    (["simulate", "--config", "{c}", "--d", "10", "--seed", "-1"], {"c": "{}"}, "argument --seed: must be a whole number from 0"),
])
def test_hostile_cli_input_is_one_line(tmp_path, capsys, argv, files, message):
    paths = {key: _write(tmp_path, f"{key}.json", text) for key, text in files.items()}
    _one_line_error(capsys, message, *[arg.format(**paths) for arg in argv])


def test_no_internal_names_in_any_usage_error(tmp_path, capsys):
    # Every argparse type of the CLI, fed a word: the message must not name a Python function.
    config = _write(tmp_path, "c.json", "{}")
    point = _write(tmp_path, "p.json", '{"Q": [[1]], "R": [[0]], "T": [[1]]}')
    for argv in (["flow", "--config", config, "--tol", "x"], ["simulate", "--config", config, "--d", "x"],
                 ["hessian", "--point", point, "--d", "x"], ["catalogue", "--config", config, "--starts", "x"],
                 ["sweep", "--store", str(tmp_path / "s"), "--workers", "x"]):
        code, _, err = _cli(capsys, *argv)
        assert code == 2 and "invalid" not in err and "_" not in err.split(":", 2)[-1].split("(see")[0], err


def test_weights_and_overlaps_give_the_same_loss(tmp_path, capsys):
    # The stricter point reader still reads both forms: W W^T agrees with the overlaps form.
    W, W_teacher = np.array([[0.6, 0.8, 0.0]]), np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    weights = _write(tmp_path, "w.json", json.dumps({"W": W.tolist(), "W_teacher": W_teacher.tolist()}))
    overlaps = _write(tmp_path, "o.json", json.dumps({"Q": (W @ W.T).tolist(), "R": (W @ W_teacher.T).tolist(),
                                                       "T": (W_teacher @ W_teacher.T).tolist()}))
    by_weights = json.loads(_cli(capsys, "loss", "--point", weights)[1])
    by_overlaps = json.loads(_cli(capsys, "loss", "--point", overlaps)[1])
    assert by_weights["loss"] == pytest.approx(by_overlaps["loss"], rel=1e-12)


def test_sgd_work_and_memory_are_bounded_before_anything_is_allocated():
    # 2,000 steps at d = 1e6 passed the step cap and took 237 s and 8.1 GB.
    config = RunConfig(K=4, M=4, t_max=0.002, init=InitSpec(d=10))
    operations, memory = sgd_cost(4, 4, 1_000_000, 2_000)
    assert operations == 2_000 * 8 * 1_000_000  # steps x (K + M) x d, counted by hand
    with pytest.raises(ValueError, match="operations"):
        simulate_sgd(config.replace(t_max=0.2), d=1_000_000, seed=0)
    # Memory: weights (2K + M rows of d) plus one block of inputs, 8 bytes each.
    assert memory == 8 * 1_000_000 * (12 + 4)


def test_the_hessian_refuses_a_dimension_beyond_exact_integers():
    from landscape.critical_points.hessian import hessian_spectrum

    with pytest.raises(ValueError, match="largest input dimension"):
        hessian_spectrum(np.eye(1), np.zeros((1, 1)), np.eye(1), 10**30)


def test_a_damaged_or_inflating_share_string_is_one_error():
    import base64
    import zlib

    bomb = "v1." + base64.urlsafe_b64encode(zlib.compress(b" " * 20_000_000, 9)).decode()
    for text in (bomb, "v1.!!!", "v1." + "A" * 300_000, "nope"):
        with pytest.raises(ValueError):
            RunConfig.from_share_string(text)


def test_teacher_and_init_accept_what_their_kind_uses():
    assert TeacherSpec.from_dict({"kind": "block", "block_sizes": [1, 2], "rho": 0.2}).matrix(3)[0, 1] == 0.0
    assert InitSpec.from_dict({"kind": "random", "d": 7}).d == 7
    assert TeacherSpec.from_dict({}).kind == "orthonormal"


# ------------------------------------------------------------------ 5: links


@pytest.mark.parametrize("params, key", [
    ({"K": "9" * 400}, "K"),        # OverflowError in math.isfinite
    ({"K": "1e400"}, "K"),
    ({"tmax": "1e400"}, "tmax"),
    ({"lr": "nan"}, "lr"),
    ({"T": "1," * 20_000}, "T"),
])
def test_hostile_link_values_are_rejected_with_a_warning(params, key):
    check = check_query(params, SIDEBAR_SETTINGS)
    assert check.rejected == (key,) and len(check.warnings) == 1 and len(check.warnings[0]) < 300


def test_rows_to_compare_are_ascii_numbers_of_the_table():
    # '²'.isdigit() is True but int('²') raises: the page showed a traceback.
    assert parse_rows("\u00b2", 5) == ([], ["\u00b2"])
    assert parse_rows("3, 1;3, 9, x", 5) == ([3, 1], ["9", "x"])
    assert parse_rows("9" * 400, 5)[0] == []
    check = check_query({"compare": "\u00b2"}, PAGE_SETTINGS["hessian-spectra"])
    assert check.success  # free text: the page names the rows it ignores


# ------------------------------------------------------------------ 6: sweeps


def test_a_nan_in_a_grid_names_its_key():
    with pytest.raises(ValueError, match="grid 'lr' holds NaN"):
        SweepSpec.from_dict({**SPEC, "grid": {"lr": [0.5, float("nan")]}})


def test_a_bad_grid_point_refuses_the_spec_before_anything_runs():
    # The README and the code now agree: an invalid config at a grid point refuses the whole sweep.
    with pytest.raises(ValueError, match=r"grid point K=99 gives an invalid config"):
        SweepSpec.from_dict({**SPEC, "grid": {"K": [2, 99]}})


def test_many_threads_creating_one_store_all_succeed(tmp_path):
    # Two processes starting on one new store raced 1 in 5: the second saw records/ before
    # sweep.json and refused the folder as "not a sweep store". flock serialises open file
    # descriptions, so threads with their own open() contend like processes.
    spec = SweepSpec.from_dict(SPEC)
    for attempt in range(5):
        root, errors = tmp_path / f"store{attempt}", []

        def open_it():
            try:
                open_store(root, spec)
            except ValueError as error:
                errors.append(str(error))

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [] and load_store(root).n_total == 2


def test_a_live_claim_is_respected_and_a_dead_one_taken_over(tmp_path):
    spec = SweepSpec.from_dict(SPEC)
    root = open_store(tmp_path / "store", spec)
    first, second = TaskClaims(root, "a" * 32), TaskClaims(root, "b" * 32)
    mine, _ = first.claim(spec.tasks, lambda task: False)
    theirs, elsewhere = second.claim(spec.tasks, lambda task: False)
    assert len(mine) == 2 and theirs == [] and len(elsewhere) == 2
    first._alive.close()  # the first run dies: the kernel drops its lock
    taken, _ = second.claim(spec.tasks, lambda task: False)
    assert len(taken) == 2
    second.release()
    assert not list((root / "claims").glob("*.claim"))


_TWO_RUNS = """
import sys
from distributed import Client
sys.path.insert(0, {tests!r})
from test_sweep import counting_task
from functools import partial
from landscape.catalogues.sweep import run_sweep
with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as client:
    result = run_sweep({spec!r}, {store!r}, client=client, function=partial(counting_task, counter={counter!r}, pause=0.5))
print(result.computed, result.claimed_elsewhere)
"""


@pytest.mark.slow
def test_two_processes_on_one_store_compute_every_task_once(tmp_path):
    # Two sweeps on one store computed every task twice (no claim or lock).
    spec = {**SPEC, "grid": {"K": [2, 3], "lr": [0.5, 1.0]}}
    code = _TWO_RUNS.format(tests=str(REPO / "tests"), spec=spec, store=str(tmp_path / "store"),
                            counter=str(tmp_path / "counter"))
    runs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    seeds = (tmp_path / "counter").read_text().split()
    assert len(seeds) == len(set(seeds)) == 4
    computed = sorted(int(out.split()[0]) for out, _ in outputs)
    assert sum(computed) == 4
    assert load_store(tmp_path / "store").n_done == 4


def test_an_sgd_run_stops_when_nobody_waits_for_it():
    # A visitor who closed the tab left the server computing SGD for minutes: the dashboard now
    # passes a should_stop callback checked between blocks of inputs.
    from landscape.dynamics.sgd import SimulationStopped

    config = RunConfig(K=2, M=2, t_max=100.0, eta2=False, init=InitSpec(d=50, seed=1))  # 5000 steps, 10 blocks
    calls = []

    def leave_after_three():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(SimulationStopped):
        simulate_sgd(config, d=50, seed=0, should_stop=leave_after_three)
    assert len(calls) == 4
    # A callback that never fires changes nothing: the same run as without it, bit for bit.
    quiet = simulate_sgd(config.replace(t_max=2.0), d=50, seed=0, should_stop=lambda: False)
    plain = simulate_sgd(config.replace(t_max=2.0), d=50, seed=0)
    assert np.array_equal(quiet.Q, plain.Q) and np.array_equal(quiet.t, plain.t)
