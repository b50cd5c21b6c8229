"""Sweeps on Dask: spec validation, task keys, the store, resume, failures, the CLI.

The engine tests run on one real ``LocalCluster`` (2 worker processes) shared by the module.
Task functions used here are module-level so the workers can import them.
"""

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from landscape import InitSpec, RunConfig, run_flow
from landscape.catalogues.sweep import execute_task, run_sweep
from landscape.catalogues.sweep_spec import RECORD_FORMAT, SweepSpec, load_spec
from landscape.catalogues.sweep_store import SweepStatus, TaskStatus, load_store
from landscape.commands.main import main

REPO = Path(__file__).resolve().parent.parent
BASE = {"K": 2, "M": 2, "lr": 1.0, "eta2": False, "t_max": 20.0, "init": {"kind": "random", "d": 4, "seed": 0, "scale": 0.5}}


def _spec(grid=None, starts=2, seed=7, **extra):
    return {"base": BASE, "grid": grid or {"K": [2, 3], "lr": [0.5, 1.0]}, "starts": starts, "seed": seed, **extra}


# ----------------------------------------------------------------- task functions run by the workers


def flow_task(config, starts, seed, regime):
    """A small real computation: final losses of ``starts`` gradient flows from seeded random starts."""
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(starts):
        init = InitSpec(d=config.K + config.M, seed=int(rng.integers(2**31)), scale=0.5)
        losses.append(float(run_flow(config.replace(init=init)).loss[-1]))
    return {"losses": losses, "K": config.K, "regime": regime}


def counting_task(config, starts, seed, regime, counter, pause=0.0, fail_K=None):
    """``flow_task`` that appends its seed to ``counter`` (one line per computation) and can refuse a K."""
    if config.K == fail_K:
        raise ValueError(f"K = {config.K} refused on purpose")
    time.sleep(pause)
    result = flow_task(config, starts, seed, regime)
    with open(counter, "a") as handle:  # O_APPEND: one whole line per write, even from two processes
        handle.write(f"{seed}\n")
    return result


def flaky_task(config, starts, seed, regime, marks, how):
    """Fails (an exception, or the death of its worker process) the first time it sees a task."""
    mark = Path(marks) / str(seed)
    if not mark.exists():
        mark.write_text("tried")
        if how == "crash":
            os._exit(3)
        raise RuntimeError("transient failure")
    return flow_task(config, starts, seed, regime)


def _counts(path):
    lines = Path(path).read_text().split() if Path(path).exists() else []
    return {int(seed): lines.count(seed) for seed in set(lines)}


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as dask_client:
        yield dask_client


# ----------------------------------------------------------------- spec and keys (no cluster)


def test_every_combination_is_a_task_with_its_config():
    spec = SweepSpec.from_dict(_spec())
    points = [task.point for task in spec.tasks]
    assert points == [{"K": 2, "lr": 0.5}, {"K": 2, "lr": 1.0}, {"K": 3, "lr": 0.5}, {"K": 3, "lr": 1.0}]
    for task in spec.tasks:
        assert task.config == RunConfig.from_dict({**BASE, **task.point})
        assert (task.starts, task.seed, task.regime) == (2, 7, "gradient_flow")


def test_a_list_of_grids_is_the_union_of_their_products():
    spec = SweepSpec.from_dict(_spec(grid=[{"M": [2], "K": [2, 3]}, {"M": [3], "K": [3, 4]}]))
    assert [(t.config.M, t.config.K) for t in spec.tasks] == [(2, 2), (2, 3), (3, 3), (3, 4)]


def test_dotted_and_task_level_grid_keys():
    data = {"base": {**BASE, "teacher": {"kind": "equicorrelated", "rho": 0.0}},
            "grid": {"teacher.rho": [0.0, 0.3], "regime": ["gradient_flow", "finite_lr"], "starts": [1, 3]}, "seed": 1}
    spec = SweepSpec.from_dict(data)
    assert len(spec.tasks) == 8
    assert {t.config.teacher.rho for t in spec.tasks} == {0.0, 0.3}
    assert {(t.regime, t.starts) for t in spec.tasks} == {(r, s) for r in ("gradient_flow", "finite_lr") for s in (1, 3)}


def test_task_key_and_seed_follow_the_documented_recipe():
    task = SweepSpec.from_dict(_spec()).tasks[3]
    config = dict(BASE, K=3, lr=1.0, noise=0.0, teacher={"kind": "orthonormal"})
    content = {"format": RECORD_FORMAT, "config": config, "starts": 2, "seed": 7, "regime": "gradient_flow"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    assert task.key == hashlib.sha256(text.encode()).hexdigest()[:24]
    word = np.random.SeedSequence([7, int(task.key, 16)]).generate_state(1, np.uint64)[0]
    assert task.task_seed == int(word) >> 1


def test_keys_ignore_spelling_and_order_but_not_content():
    keys = {t.key for t in SweepSpec.from_dict(_spec()).tasks}
    respelled = _spec(grid={"lr": [1, 0.5], "K": [3.0, 2]})
    assert {t.key for t in SweepSpec.from_dict(respelled).tasks} == keys
    for changed in (_spec(seed=8), _spec(starts=3), _spec(regime="finite_lr")):
        assert not keys & {t.key for t in SweepSpec.from_dict(changed).tasks}
    seeds = [t.task_seed for t in SweepSpec.from_dict(_spec()).tasks]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**63 for s in seeds)


def test_spec_round_trips_through_json(tmp_path):
    spec = SweepSpec.from_dict(_spec(grid=[{"K": [2]}, {"K": [3], "lr": [0.5]}], description="two grids"))
    path = tmp_path / "s.json"
    path.write_text(json.dumps(spec.to_dict()))
    again = load_spec(path)
    assert again == spec and [t.key for t in again.tasks] == [t.key for t in spec.tasks]


@pytest.mark.parametrize(
    "data,message",
    [
        (_spec(grid={"width": [2]}), "unknown grid key 'width'"),
        (_spec(grid={"teacher.colour": [1]}), "'teacher' has no field 'colour'"),
        (_spec(grid={"K": []}), "grid 'K' must be a non-empty list"),
        (_spec(grid={"K": 3}), "grid 'K' must be a non-empty list"),
        (_spec(grid={"K": [2, 2]}), "same value twice"),
        (_spec(grid={"M": [2, 3], "teacher": [{"kind": "block", "block_sizes": [1, 1]}]}), "grid point M=3"),
        (_spec(grid={"K": [2, 100]}), "grid point K=100 gives an invalid config: K must be between"),
        (_spec(grid={"lr": [-1]}), "grid point lr=-1"),
        # An orthonormal teacher has no rho: refused by name (it used to be ignored, two equal tasks).
        (_spec(grid={"teacher.rho": [0.1, 0.2]}), "teacher kind 'orthonormal' does not use ['rho']"),
        (_spec(grid=[{"K": [2]}, {"K": [2, 3]}]), "give the same task"),
        ({**_spec(), "grid": []}, "grid list is empty"),
        (_spec(grid={"seed": [1, 2]}), "'seed' is given both"),
        ({"base": BASE, "grid": {"K": [2]}, "seed": 1}, "needs 'starts'"),
        (_spec(starts=0), "starts must be a whole number between 1"),
        (_spec(starts=600, regime="finite_lr"), "starts = 600 is more than the 500 a finite_lr catalogue allows"),
        (_spec(grid={"init": [{"kind": "overlaps", "Q": [[1, 0], [0, 1]], "R": [[0, 0], [0, 0]]}]}),
         "a catalogue needs init kind 'random'"),
        (_spec(grid={"regime": ["finite_lr"]}, regime="finite_lr"), "'regime' is given both"),
        (_spec(regime="adam"), "regime must be one of"),
        (_spec(colour="red"), "unknown key(s) ['colour']"),
        ({"grid": {"K": [2]}, "starts": 1, "seed": 1}, "needs 'base'"),
        ({**_spec(), "base": {"K": 0}}, "base config is invalid: K must be"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_specs_are_refused_with_a_clear_message(data, message):
    with pytest.raises(ValueError) as error:
        SweepSpec.from_dict(data)
    assert message in str(error.value)


# ----------------------------------------------------------------- the store and the engine


def test_sweep_on_two_workers_equals_the_serial_computation_bit_for_bit(client, tmp_path):
    result = run_sweep(_spec(), tmp_path / "store", client=client, function=flow_task)
    assert result.success and result.status is SweepStatus.COMPLETE and result.computed == 4
    store = load_store(tmp_path / "store")
    workers = {record.worker for record in store.records}
    assert len(workers) == 2, "both workers should have run tasks"
    for record in store.records:
        task = record.task
        direct = flow_task(task.config, starts=task.starts, seed=task.task_seed, regime=task.regime)
        assert json.dumps(record.result) == json.dumps(direct)  # same floats, bit for bit
    # The same grid point under another spec seed gives other starts: the seed is really used.
    other = SweepSpec.from_dict(_spec(seed=8)).tasks[0]
    assert flow_task(other.config, 2, other.task_seed, "gradient_flow") != store.records[0].result


def test_store_layout_and_records(client, tmp_path):
    run_sweep(_spec(), tmp_path / "store", client=client, function=flow_task)
    files = sorted(p.name for p in (tmp_path / "store").rglob("*"))
    spec = SweepSpec.from_dict(_spec())
    # .lock and claims/ let two processes share the store (claims are removed when a run ends).
    assert files == sorted(["sweep.json", "records", ".lock", "claims"] + [f"{t.key}.json" for t in spec.tasks])
    record = json.loads((tmp_path / "store" / "records" / f"{spec.tasks[0].key}.json").read_text())
    assert record["status"] == "done" and record["point"] == {"K": 2, "lr": 0.5}
    assert RunConfig.from_dict(record["config"]) == spec.tasks[0].config
    assert record["function"] == "test_sweep:flow_task" and record["seconds"] > 0


def test_a_task_with_bad_input_is_recorded_as_failed_and_the_sweep_goes_on(client, tmp_path):
    counter = tmp_path / "counter"
    function = partial(counting_task, counter=str(counter), fail_K=3)
    result = run_sweep(_spec(), tmp_path / "store", client=client, function=function)
    assert result.status is SweepStatus.FAILURES and not result.success
    assert (result.store.n_done, result.store.n_failed, result.store.n_missing) == (2, 2, 0)
    for record in result.store.records:
        if record.task.config.K == 3:
            assert record.status is TaskStatus.FAILED and record.reason == "invalid input: K = 3 refused on purpose"
            assert record.result is None
            with pytest.raises(ValueError, match="has no catalogue"):
                record.catalogue()
    # Failed tasks are not missing: a rerun computes nothing, unless asked to retry them.
    assert run_sweep(_spec(), tmp_path / "store", client=client, function=function).computed == 0
    again = run_sweep(_spec(), tmp_path / "store", client=client, function=function, retry_failed=True)
    assert again.computed == 2 and again.store.n_failed == 2
    assert sum(_counts(counter).values()) == 2  # the two good tasks ran once each, never again


def test_an_exception_is_retried_and_recorded_when_retries_run_out(client, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    spec = _spec(grid={"K": [2, 3]})
    retried = run_sweep(spec, tmp_path / "a", client=client, function=partial(flaky_task, marks=str(marks), how="raise"))
    assert retried.success
    for path in marks.iterdir():
        path.unlink()
    given_up = run_sweep(spec, tmp_path / "b", client=client, retries=0,
                         function=partial(flaky_task, marks=str(marks), how="raise"))
    assert given_up.store.n_failed == 2
    assert all(r.reason == "RuntimeError: transient failure (after 0 retries)" for r in given_up.store.records)


def test_an_error_of_the_cluster_is_not_recorded_as_a_task_failure():
    # What a scheduler without landscape installed answers (checked by hand with `dask scheduler`).
    from landscape.catalogues import sweep

    class ErredFuture:
        status = "error"

        def result(self):
            raise RuntimeError("Error during deserialization of the task graph.\nThis frequently occurs if ...")

    task = SweepSpec.from_dict(_spec()).tasks[0]
    with pytest.raises(ValueError, match=r"could not run task K=2, lr=0.5: RuntimeError: Error during .* occurs if") as error:
        sweep._collect(ErredFuture(), task, "run", flow_task, 2)
    assert "\n" not in str(error.value)


def test_a_worker_crash_is_retried(client, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    result = run_sweep(_spec(grid={"K": [2]}), tmp_path / "store", client=client,
                       function=partial(flaky_task, marks=str(marks), how="crash"))
    assert result.success and len(list(marks.iterdir())) == 1
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the dead worker for the next tests


def test_an_interrupted_sweep_resumes_without_computing_any_task_twice(client, tmp_path):
    spec = _spec(grid={"K": [2, 3], "lr": [0.5, 1.0], "noise": [0.0, 0.1]})
    first, second = tmp_path / "first", tmp_path / "second"

    def interrupt_after_two(report):
        if report.finished == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, tmp_path / "store", client=client, progress=interrupt_after_two,
                  function=partial(counting_task, counter=str(first), pause=0.3))
    kept = {p.name: p.read_bytes() for p in (tmp_path / "store" / "records").glob("*.json")}
    assert len(kept) == 2
    result = run_sweep(spec, tmp_path / "store", client=client, function=partial(counting_task, counter=str(second)))
    assert result.success and result.computed == 6
    kept_seeds = {json.loads(data)["task_seed"] for data in kept.values()}
    assert set(_counts(second)) == {t.task_seed for t in result.store.spec.tasks} - kept_seeds
    assert set(_counts(second).values()) == {1}
    assert all((tmp_path / "store" / "records" / name).read_bytes() == data for name, data in kept.items())


def test_a_store_refuses_another_spec(client, tmp_path):
    run_sweep(_spec(grid={"K": [2]}), tmp_path / "store", client=client, function=flow_task)
    with pytest.raises(ValueError, match=r"holds a different sweep \(the specs differ in: seed\)"):
        run_sweep(_spec(grid={"K": [2]}, seed=1), tmp_path / "store", client=client, function=flow_task)
    with pytest.raises(ValueError, match=r"differ in: base \(lr\), grid"):
        run_sweep({**_spec(grid={"K": [2, 3]}), "base": {**BASE, "lr": 0.1}}, tmp_path / "store", client=client)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not a sweep store"):
        run_sweep(_spec(), tmp_path / "other", client=client, function=flow_task)


def test_unreadable_records_and_temporary_files_count_as_missing(client, tmp_path):
    run_sweep(_spec(grid={"K": [2, 3]}), tmp_path / "store", client=client, function=flow_task)
    records = sorted((tmp_path / "store" / "records").glob("*.json"))
    records[0].write_text('{"key": "trunc')
    (tmp_path / "store" / "records" / "0123.json").write_text('{"key": "0123", "status": "maybe"}')
    (tmp_path / "store" / "records" / ".abc.123.tmp").write_text("{")
    with pytest.warns(UserWarning, match="unreadable"):
        store = load_store(tmp_path / "store")
    assert (store.n_done, store.n_missing) == (1, 1)
    with pytest.warns(UserWarning):
        result = run_sweep(_spec(grid={"K": [2, 3]}), tmp_path / "store", client=client, function=flow_task)
    assert result.computed == 1 and result.success


def singular_task(config, starts, seed, regime):
    """A computation that fails numerically: the inverse of a singular matrix."""
    return {"inverse": np.linalg.inv(np.zeros((2, 2))).tolist()}


def test_a_numerical_failure_is_recorded_as_the_computations_not_as_invalid_input():
    # Regression: LinAlgError derives from ValueError, so a numerical failure inside the catalogue
    # was recorded as "invalid input: Singular matrix", blaming the user's spec for it.
    spec = SweepSpec.from_dict(_spec(grid={"K": [2]}))
    record = execute_task(singular_task, spec.tasks[0])
    assert record["status"] == "failed"
    assert record["reason"] == "the computation failed: LinAlgError: Singular matrix"
    refused = execute_task(partial(counting_task, counter=os.devnull, fail_K=2), spec.tasks[0])
    assert refused["reason"] == "invalid input: K = 2 refused on purpose"


def test_a_record_write_that_fails_leaves_no_partial_file(tmp_path, monkeypatch):
    from landscape.catalogues import sweep_store as sweep

    spec = SweepSpec.from_dict(_spec(grid={"K": [2]}))
    root = sweep.open_store(tmp_path / "store", spec)
    record = execute_task(flow_task, spec.tasks[0])

    def broken_dump(data, handle, **kwargs):
        handle.write('{"key": ')
        raise OSError("disk full")

    monkeypatch.setattr(sweep.json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        sweep.write_atomic(root / "records" / f"{record['key']}.json", record)
    assert list((root / "records").iterdir()) == []


def test_store_table_and_selection(client, tmp_path):
    run_sweep(_spec(), tmp_path / "store", client=client, function=flow_task)
    store = load_store(tmp_path / "store")
    frame = store.to_frame()
    assert list(frame["K"]) == [2, 2, 3, 3] and set(frame["status"]) == {"done"}
    assert {"key", "M", "lr", "regime", "starts", "reason", "seconds"} <= set(frame.columns)
    chosen = store.select({"lr": 1.0})
    assert [r.task.config.K for r in chosen] == [2, 3] and all(r.task.config.lr == 1.0 for r in chosen)
    assert [r.task.point for r in store.select({"K": 3, "lr": 0.5})] == [{"K": 3, "lr": 0.5}]
    with pytest.raises(ValueError, match="unknown selection key 'colour'"):
        store.select({"colour": 1})


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"workers": 0}, "workers must be a whole number between 1"),
        ({"workers": 2, "scheduler": "tcp://x:1"}, "at most one of"),
        ({"retries": -1}, "retries must be"),
        ({"scheduler": ""}, "scheduler must be an address"),
        ({"progress": "bar"}, "progress must be callable"),
    ],
)
def test_bad_run_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_sweep(_spec(), tmp_path / "store", function=flow_task, **kwargs)


def test_a_running_scheduler_is_used_by_address(client, tmp_path):
    address = client.scheduler.address
    result = run_sweep(_spec(grid={"K": [2, 3]}), tmp_path / "store", scheduler=address, function=flow_task)
    assert result.success and result.computed == 2 and result.engine.startswith(f"Dask scheduler {address} (2 workers")


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("landscape.catalogues.sweep.CONNECT_TIMEOUT", "1s")
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        run_sweep(_spec(), tmp_path / "store", scheduler="tcp://127.0.0.1:9", function=flow_task)


# ----------------------------------------------------------------- the CLI


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_status_json_counts_done_failed_missing(client, tmp_path, capsys):
    counter = tmp_path / "counter"
    run_sweep(_spec(grid={"K": [2, 3]}), tmp_path / "store", client=client,
              function=partial(counting_task, counter=str(counter), fail_K=3))
    records = sorted((tmp_path / "store" / "records").glob("*.json"))
    done = [p for p in records if json.loads(p.read_text())["status"] == "done"]
    done[0].unlink()
    code, out, err = _cli(capsys, "sweep", "--status", tmp_path / "store", "--json")
    summary = json.loads(out)
    assert code == 0 and err == ""
    assert {key: summary[key] for key in ("done", "failed", "missing")} == {"done": 0, "failed": 1, "missing": 1}
    assert summary["failures"][0]["reason"] == "invalid input: K = 3 refused on purpose"
    # Without --json it printed text, against "every command prints JSON": now the same JSON.
    code, out, _ = _cli(capsys, "sweep", "--status", tmp_path / "store")
    assert code == 0 and json.loads(out) == summary and "0 done, 1 failed, 1 missing of 2 tasks" in summary["message"]


@pytest.mark.parametrize(
    "argv,files,message",
    [
        (["--spec", "s.json", "--store", "st"], {"s.json": "{not json"}, "is not valid JSON"),
        (["--spec", "s.json", "--store", "st"], {"s.json": _spec(grid={"K": []})}, "grid 'K' must be a non-empty list"),
        (["--spec", "s.json", "--store", "st"], {"s.json": _spec(grid={"M": [2, 70]})}, "grid point M=70"),
        (["--spec", "missing.json", "--store", "st"], {}, "cannot read sweep spec"),
        (["--spec", "s.json"], {"s.json": _spec()}, "--store DIR is required"),
        (["--store", "st"], {}, "holds no sweep yet"),
        (["--status", "st"], {}, "is not a sweep store"),
        (["--status", "st", "--spec", "s.json"], {}, "do not combine it"),
        (["--spec", "s.json", "--store", "st", "--workers", "0"], {"s.json": _spec()},
         "argument --workers: must be at least 1, got 0"),
        (["--spec", "s.json", "--store", "st", "--workers", "2", "--scheduler", "tcp://a:1"], {"s.json": _spec()},
         "either --workers N"),
        (["--spec", "s.json", "--store", "st", "--json"], {"s.json": _spec()}, "--json goes with --status"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, files, message):
    monkeypatch.chdir(tmp_path)
    for name, content in files.items():
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    code, out, err = _cli(capsys, "sweep", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("landscape") and message in err


def test_cli_dry_run_lists_tasks_and_their_status(client, tmp_path, capsys):
    (tmp_path / "s.json").write_text(json.dumps(_spec()))
    run_sweep(_spec(), tmp_path / "store", client=client, function=flow_task)
    next((tmp_path / "store" / "records").glob("*.json")).unlink()
    code, out, _ = _cli(capsys, "sweep", "--spec", tmp_path / "s.json", "--store", tmp_path / "store", "--dry-run")
    listing = json.loads(out)
    assert code == 0 and (listing["total"], listing["missing"]) == (4, 1)
    assert [t["point"] for t in listing["tasks"]][0] == {"K": 2, "lr": 0.5}


# ----------------------------------------------------------------- the real task: catalogues

REAL = {"base": {"K": 2, "M": 2, "lr": 1.0, "eta2": False, "init": {"kind": "random", "d": 2, "seed": 0, "scale": 1.0}},
        "grid": {"K": [2, 3]}, "starts": 4, "seed": 11}


def test_stored_catalogues_equal_a_direct_computation_bit_for_bit(client, tmp_path):
    from landscape.catalogues.build import Catalogue, build_catalogue
    from landscape.catalogues.reachability import reachability, reachability_curve

    spec = {**REAL, "grid": {"K": [2, 3], "init.scale": [0.5, 1.0]}, "starts": 3}
    result = run_sweep(spec, tmp_path / "store", client=client)
    assert result.success and result.computed == 4
    direct = {}
    for record in result.store.records:
        task = record.task
        direct[task.key] = build_catalogue(task.config, task.starts, task.task_seed, task.regime)
        assert json.dumps(record.result) == json.dumps(direct[task.key].to_dict())
        catalogue = record.catalogue()
        assert isinstance(catalogue, Catalogue) and catalogue.config == task.config and catalogue.starts == 3
        assert record.function == "landscape.catalogues.build:build_catalogue"

    store = load_store(tmp_path / "store")
    chosen = [r.task.key for r in store.records if r.task.config.init.scale == 1.0]
    curve = store.reachability_curve(where={"init.scale": 1.0})
    expected = reachability_curve([direct[key] for key in chosen])
    assert list(curve.values) == [2, 3] and curve.labels == expected.labels
    assert np.array_equal(curve.fractions, expected.fractions) and np.array_equal(curve.upper, expected.upper)
    assert [c.config.K - c.config.M for c in store.catalogues({"K-M": 0})] == [0, 0]
    with pytest.raises(ValueError, match=r"4 catalogues selected for 2 values of K: .*'init.scale'"):
        store.reachability_curve()
    frame = store.to_frame().set_index("key")
    for key, catalogue in direct.items():
        assert frame.loc[key, "global_fraction"] == reachability(catalogue).global_fraction[0]
        assert frame.loc[key, "spurious_upper"] == reachability(catalogue).spurious_fraction[2]
        assert frame.loc[key, "n_points"] == len(catalogue.points)


def _wait_for_records(folder, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the sweep ended before it was killed: {process.stderr.read()}")
        if list(Path(folder).glob("*.json")):
            return
        time.sleep(0.02)
    raise AssertionError("no record appeared in time")


def test_cli_sweep_killed_part_way_resumes_and_computes_only_the_missing_tasks(tmp_path):
    spec = {**REAL, "grid": {"init.scale": [0.5, 1.0, 1.5, 2.0]}, "starts": 2}
    (tmp_path / "s.json").write_text(json.dumps(spec))
    command = [sys.executable, "-m", "landscape", "sweep", "--spec", str(tmp_path / "s.json"),
               "--store", str(tmp_path / "store"), "--workers", "2"]
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    # Its own session, so the kill takes the cluster's processes too, like a power cut: no cleanup.
    process = subprocess.Popen(command, cwd=tmp_path, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for_records(tmp_path / "store" / "records", process)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
    kept = {p.name: p.read_bytes() for p in (tmp_path / "store" / "records").glob("*.json")}
    assert 1 <= len(kept) < 4

    rerun = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert (summary["done"], summary["failed"], summary["missing"]) == (4, 0, 0)
    assert summary["computed"] == 4 - len(kept)
    assert f"{len(kept)} already in the store" in rerun.stderr and "4/4 tasks" in rerun.stderr and "ETA" in rerun.stderr
    records = {p.name: p.read_bytes() for p in (tmp_path / "store" / "records").glob("*.json")}
    assert all(records[name] == data for name, data in kept.items())  # finished tasks were not redone
    run_ids = {json.loads(data)["run_id"] for name, data in records.items() if name not in kept}
    assert run_ids == {summary["run_id"]}
    status = subprocess.run([sys.executable, "-m", "landscape", "sweep", "--status", str(tmp_path / "store"), "--json"],
                            cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60)
    assert {k: json.loads(status.stdout)[k] for k in ("done", "failed", "missing")} == {"done": 4, "failed": 0, "missing": 0}
