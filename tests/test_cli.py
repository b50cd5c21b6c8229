"""The command-line contract: JSON out, exit code 2 and one line for bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from landscape.commands.main import main
from landscape.model.loss import loss_from_weights


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_loss_from_weights_and_from_overlaps_agree(tmp_path, capsys):
    rng = np.random.default_rng(5)
    W, W_teacher = rng.standard_normal((3, 4)) / 2, rng.standard_normal((2, 4)) / 2
    code, out, _ = _run(capsys, "loss", "--point", _write(tmp_path, "w.json", {"W": W.tolist(), "W_teacher": W_teacher.tolist()}))
    assert code == 0
    by_weights = json.loads(out)
    overlaps = {"Q": (W @ W.T).tolist(), "R": (W @ W_teacher.T).tolist(), "T": (W_teacher @ W_teacher.T).tolist()}
    code, out, _ = _run(capsys, "loss", "--point", _write(tmp_path, "o.json", overlaps))
    by_overlaps = json.loads(out)
    assert by_weights["loss"] == pytest.approx(loss_from_weights(W, W_teacher), rel=1e-12)
    assert by_overlaps["loss"] == pytest.approx(by_weights["loss"], rel=1e-10)
    assert by_overlaps["gradient_norm"] == pytest.approx(by_weights["gradient_norm"], rel=1e-8)


def test_flow_prints_the_contract_keys(tmp_path, capsys):
    config = {"K": 2, "M": 2, "teacher": {"kind": "orthonormal"}, "lr": 0.5, "eta2": False, "noise": 0.0,
              "t_max": 5.0, "init": {"kind": "random", "d": 50, "seed": 1, "scale": 1.0}}
    code, out, _ = _run(capsys, "flow", "--config", _write(tmp_path, "c.json", config), "--points", "20")
    result = json.loads(out)
    assert code == 0 and result["status"] in {"converged", "diverged", "t_max"}
    assert len(result["t"]) == len(result["loss"]) == len(result["Q"]) == len(result["R"])
    assert np.array(result["Q"]).shape[1:] == (2, 2) and np.array(result["R"]).shape[1:] == (2, 2)
    solver = result["solver"]
    # DOP853: at least 12 right-hand sides per trial step; t = 5 takes a handful of steps.
    assert solver["accepted_steps"] >= 1 and solver["rejected_steps"] >= 0
    assert solver["rhs_evaluations"] >= 12 * solver["accepted_steps"]
    assert solver["handover_time"] is None and solver["variables"] == "span"


def test_simulate_prints_the_same_keys(tmp_path, capsys):
    config = {"K": 2, "M": 1, "lr": 0.3, "t_max": 0.5, "init": {"kind": "random", "d": 40, "seed": 2}}
    code, out, _ = _run(capsys, "simulate", "--config", _write(tmp_path, "c.json", config), "--d", "40", "--seed", "3")
    result = json.loads(out)
    assert code == 0 and {"t", "loss", "Q", "R", "status"} <= set(result)
    assert result["t"][-1] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "argv,files,message",
    [
        (["flow", "--config", "{c}"], {"c": '{"K": 2, "lr": -1}'}, "lr must be in"),
        (["flow", "--config", "{c}"], {"c": '{"K": 2, "M": 2, "teacher": {"kind": "matrix", "T": [[1, 2], [2, 1]]}}'},
         "not positive semi-definite"),
        (["flow", "--config", "{c}"], {"c": "{not json"}, "not valid JSON"),
        (["flow", "--config", "{c}"], {"c": '{"K": 2, "lr": NaN}'}, "lr must be finite"),
        (["flow", "--config", "missing.json"], {}, "cannot read config file"),
        (["flow"], {}, "required"),
        (["loss", "--point", "{p}"], {"p": '{"Q": [[1]], "R": [[0.5, 1]], "T": [[1]]}'}, "R must have shape"),
        (["loss", "--point", "{p}"], {"p": '{"W": [[1, 0]], "W_teacher": [[1, 0, 0]]}'}, "same number of columns"),
        (["loss", "--point", "{p}"], {"p": '{"x": 1}'}, "either exactly Q, R, T"),
        (["simulate", "--config", "{c}", "--d", "abc"], {"c": "{}"}, "--d: must be a whole number"),
        (["frobnicate"], {}, "invalid choice"),
        ([], {}, "a command is required"),
    ],
)
def test_bad_input_gives_exit_2_and_one_line(tmp_path, capsys, argv, files, message):
    paths = {key: _write(tmp_path, f"{key}.json", text) for key, text in files.items()}
    argv = [arg.format(**paths) for arg in argv]
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def test_module_entry_point_and_help():
    result = subprocess.run([sys.executable, "-m", "landscape", "flow", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--config" in result.stdout
    result = subprocess.run([sys.executable, "-m", "landscape", "loss", "--point", "/nonexistent.json"], capture_output=True,
                            text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_reachability_over_K_counts_the_stored_basins(tmp_path, capsys):
    # Independent count: read the shipped store's raw JSON records and add up basin counts by hand.
    from pathlib import Path

    store = Path(__file__).resolve().parent.parent / "assets" / "sweep_default"
    expected = {}
    for path in (store / "records").glob("*.json"):
        record = json.loads(path.read_text())
        config = record["result"]["config"]
        if config["K"] != config["M"]:
            continue
        points, starts = record["result"]["points"], record["result"]["starts"]
        reached_global = sum(p["count"] for p in points if p["kind"] == "minimum" and p["loss"] < 1e-10)
        reached_spurious = sum(p["count"] for p in points if p["kind"] == "minimum" and p["loss"] > 1e-6)
        expected[config["K"]] = (reached_global / starts, reached_spurious / starts)
    out_csv = tmp_path / "reach.csv"
    code, out, _ = _run(capsys, "reachability", "--store", str(store), "--where", "K-M=0", "--out", str(out_csv))
    assert code == 0
    curve = json.loads(out)
    assert curve["values"] == sorted(expected)
    assert curve["labels"][:2] == ["global minimum", "spurious (all families)"]
    assert np.allclose(curve["fractions"][0], [expected[K][0] for K in curve["values"]])
    assert np.allclose(curve["fractions"][1], [expected[K][1] for K in curve["values"]])
    assert np.all(np.array(curve["lower"]) <= np.array(curve["fractions"]))
    assert out_csv.read_text().startswith("K,outcome,fraction")


@pytest.mark.parametrize("argv, message", [
    (["--where", "K-M"], "NAME=VALUE"),
    (["--where", "Z=1"], "unknown selection key"),
    ([], "narrow the selection"),
    (["--confidence", "2"], "in (0, 1)"),
])
def test_reachability_bad_input_is_one_line(capsys, argv, message):
    from pathlib import Path

    store = Path(__file__).resolve().parent.parent / "assets" / "sweep_default"
    code, out, err = _run(capsys, "reachability", "--store", str(store), *argv)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1
