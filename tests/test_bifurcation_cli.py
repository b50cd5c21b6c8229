"""``landscape bifurcation``: the issue's output format, the fold of the lecture example, bad input."""

import json

import numpy as np
import pytest

from landscape.commands.main import main


def _write(path, data):
    path.write_text(json.dumps(data))
    return str(path)


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def config(tmp_path):
    return _write(tmp_path / "c.json", {"K": 2, "M": 2, "lr": 0.5, "noise": 0.1})


def test_prints_branches_and_events_and_saves_them(tmp_path, capsys, config):
    out_file = tmp_path / "o.json"
    code, out, err = _run(capsys, "bifurcation", "--config", config, "--lr-max", "1.5", "--max-steps", "150",
                          "--out", str(out_file))
    assert code == 0, err
    result = json.loads(out)
    assert json.loads(out_file.read_text()) == result
    (branch,) = result["branches"]
    assert {"lr", "loss", "stable", "Q", "R", "max_real_eigenvalue"} <= set(branch)
    n = len(branch["lr"])
    assert all(len(branch[key]) == n for key in ("loss", "stable", "Q", "R", "max_real_eigenvalue"))
    assert np.array(branch["Q"]).shape == (n, 2, 2) and np.array(branch["R"]).shape == (n, 2, 2)
    fold = [e for e in result["events"] if e["kind"] == "fold"]
    assert len(fold) == 1 and 1.2 < fold[0]["lr"] < 1.5 and fold[0]["branch"] == 0  # the bracket
    # The stable flag is the sign of the largest real part, point by point.
    assert branch["stable"] == [v < 0 for v in branch["max_real_eigenvalue"]]


def test_a_point_file_of_a_fixed_point_continues_from_there(tmp_path, capsys, config):
    from landscape.critical_points.fixed_points import ode_fixed_point

    fixed = ode_fixed_point(np.eye(2), np.eye(2), np.eye(2), 0.5, True, 0.1)
    point = _write(tmp_path / "p.json", {"Q": fixed.Q.tolist(), "R": fixed.R.tolist(), "T": np.eye(2).tolist()})
    code, out, err = _run(capsys, "bifurcation", "--config", config, "--point", point, "--lr-max", "0.7")
    assert code == 0, err
    (branch,) = json.loads(out)["branches"]
    assert branch["lr"][0] == 0.5 and branch["lr"][-1] == pytest.approx(0.7) and np.allclose(branch["Q"][0], fixed.Q)


def test_without_label_noise_the_realisable_minimum_prints_its_exact_branch(tmp_path, capsys):
    # Loss 0 at every lr and one stability change, inside the bracket where flows from the perturbed
    # minimum switch from settling to running away (tests/test_realisable.py: 1.25 .. 1.29).
    config = _write(tmp_path / "c.json", {"K": 2, "M": 2, "lr": 0.5, "noise": 0.0})
    code, out, err = _run(capsys, "bifurcation", "--config", config, "--lr-max", "2")
    assert code == 0, err
    printed = json.loads(out)
    (branch,) = printed["branches"]
    (event,) = printed["events"]
    assert event["kind"] == "stability_change" and 1.25 < event["lr"] < 1.29
    assert set(branch["loss"]) == {0.0} and branch["stable"][0] and not branch["stable"][-1]


@pytest.mark.parametrize("case, expected", [
    ({"lr_max": "0.3"}, "must be above"),
    ({"lr_max": "abc"}, "lr-max"),
    ({"noise": 0.0, "K": 3}, "boundary"),  # K > M without noise: the split minimum is on the cone's boundary
    ({"eta2": False}, "eta2"),
    ({"K": 1}, "K >= M"),
    ({"point": {"Q": [[1, 0], [0, 1]], "R": [[0.5, 0], [0, 1]], "T": [[1, 0], [0, 1]]}}, "neither a fixed point"),
    ({"point": {"Q": [[1]], "R": [[1]], "T": [[1]]}}, "teacher"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, case, expected):
    settings = {"K": 2, "M": 2, "lr": 0.5, "noise": 0.1}
    settings.update({k: v for k, v in case.items() if k in ("noise", "eta2", "K")})
    argv = ["bifurcation", "--config", _write(tmp_path / "c.json", settings), "--lr-max", case.get("lr_max", "1.0")]
    if "point" in case:
        argv += ["--point", _write(tmp_path / "p.json", case["point"])]
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and expected in err and "Traceback" not in err
