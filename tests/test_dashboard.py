"""The dashboard's backend helpers: settings <-> links <-> configs, presets, caps, phase reduction."""

import json
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import pytest

from landscape.dashboard import (
    MAX_SERIES,
    PAGE_SETTINGS,
    PRESETS,
    SIDEBAR_SETTINGS,
    DemoCaps,
    apply_symmetric_edits,
    catalogue_key,
    check_query,
    config_from_settings,
    default_block_sizes,
    format_matrix,
    leaf_counts,
    parse_block_sizes,
    parse_matrix,
    phase_path,
    phase_point,
    preset_values,
    query_string,
    resize_matrix_text,
    series_configs,
    setting,
    settings_from_config,
)
from landscape.dynamics.ode import run_flow
from landscape.model.config import InitSpec, RunConfig, TeacherSpec

ALL_SETTINGS = SIDEBAR_SETTINGS + tuple(s for group in PAGE_SETTINGS.values() for s in group)


def test_setting_keys_are_unique_and_defaults_are_valid():
    for page, group in PAGE_SETTINGS.items():
        keys = [s.key for s in SIDEBAR_SETTINGS + group]
        assert len(keys) == len(set(keys)), page
    shared = {}
    for item in ALL_SETTINGS:  # a key on several pages means one setting
        assert shared.setdefault(item.key, item) == item, item.key
    for item in ALL_SETTINGS:
        if item.kind in ("int", "float"):
            assert item.low <= item.default <= item.high, item.key
        if item.kind == "choice":
            assert item.default in item.choices


def test_defaults_describe_the_documented_default_run():
    expected = RunConfig(K=4, M=4, teacher=TeacherSpec(), lr=0.5, eta2=False, noise=0.0, t_max=1000.0,
                         init=InitSpec(kind="random", d=1000, seed=0, scale=1.0))
    assert config_from_settings({}) == expected
    assert query_string(settings_from_config(expected)) == ""


def test_a_link_round_trips_through_the_query_string():
    values = {"K": 7, "M": 5, "teacher": "block", "rho": 0.25, "rho_between": -0.1, "blocks": "3,2", "lr": 0.125,
              "eta2": True, "noise": 0.01, "scale": 0.5, "d": 12345, "seed": 9, "tmax": 250.0}
    params = {key: value[-1] for key, value in parse_qs(query_string(values)).items()}
    check = check_query(params)
    assert check.success and check.values == values


@pytest.mark.parametrize(
    "key, raw, words",
    [
        ("K", "abc", "not a whole number"),
        ("K", "4.5", "not a whole number"),
        ("M", "100", "outside the allowed range"),
        ("lr", "nan", "outside the allowed range"),
        ("lr", "-1", "outside the allowed range"),
        ("teacher", "spiral", "not one of"),
        ("eta2", "maybe", "not true or false"),
        ("T", "1,2;3", "malformed"),
        ("blocks", "2,x", "malformed"),
    ],
)
def test_a_bad_link_parameter_is_rejected_with_a_warning_naming_it_and_the_default(key, raw, words):
    check = check_query({key: raw, "seed": "3"})
    assert check.rejected == (key,) and not check.success
    assert check.values == {"seed": 3}
    (warning,) = check.warnings
    assert key in warning and words in warning and "default" in warning


def test_unknown_and_repeated_parameters():
    check = check_query({"embed": "true", "K": ["3", "5"]})
    assert check.success and check.values == {"K": 5}


def test_matrix_text():
    matrix = np.array([[1.0, 0.25], [0.25, 2.0]])
    assert np.array_equal(parse_matrix(format_matrix(matrix)), matrix)
    assert np.array_equal(parse_matrix("1 0\n0 1"), np.eye(2))
    for bad, words in (("", "empty"), ("1,2;3", "different lengths"), ("1,2;3,x", "not a number"), ("1,2", "square")):
        with pytest.raises(ValueError, match=words):
            parse_matrix(bad)


def test_block_sizes_and_resizing():
    assert parse_block_sizes("3, 1") == (3, 1)
    assert default_block_sizes(5) == (3, 2) and default_block_sizes(1) == (1,)
    with pytest.raises(ValueError, match="positive whole"):
        parse_block_sizes("2,0")
    grown = parse_matrix(resize_matrix_text("1, 0.5; 0.5, 1", 3))
    assert np.array_equal(grown, [[1, 0.5, 0], [0.5, 1, 0], [0, 0, 1]])
    assert np.array_equal(parse_matrix(resize_matrix_text(format_matrix(grown), 1)), [[1.0]])
    assert resize_matrix_text("", 4) == ""


def test_custom_teacher_errors_name_the_smallest_eigenvalue():
    T = np.array([[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]])
    smallest = np.linalg.eigvalsh(T)[0]
    assert smallest < 0
    with pytest.raises(ValueError, match="smallest eigenvalue") as error:
        config_from_settings({"M": 3, "teacher": "custom", "T": format_matrix(T)})
    assert f"{smallest:.3g}" in str(error.value)
    with pytest.raises(ValueError, match="shape"):
        config_from_settings({"M": 2, "teacher": "custom", "T": format_matrix(np.eye(3))})
    assert np.array_equal(config_from_settings({"M": 3, "teacher": "custom"}).teacher_matrix(), np.eye(3))


def test_every_teacher_kind_round_trips_through_the_settings():
    for values in (
        {"teacher": "equicorrelated", "rho": 0.3},
        {"teacher": "block", "M": 5, "K": 5},
        {"teacher": "random", "tseed": 4},
        {"teacher": "custom", "M": 2, "K": 3, "T": "1, 0.5; 0.5, 1"},
    ):
        config = config_from_settings(values)
        assert config_from_settings(settings_from_config(config)) == config
    block = config_from_settings({"teacher": "block", "M": 5, "rho": 0.2})
    assert np.allclose(block.teacher_matrix()[:3, :3], 0.8 * np.eye(3) + 0.2)
    assert np.allclose(block.teacher_matrix()[:3, 3:], 0.0)


def test_invalid_combinations_raise_value_error():
    with pytest.raises(ValueError, match="add up"):
        config_from_settings({"teacher": "block", "M": 4, "blocks": "3,3"})
    with pytest.raises(ValueError, match="rho"):
        config_from_settings({"teacher": "equicorrelated", "M": 4, "rho": -0.9})


def test_presets_are_valid_and_named_once():
    assert len({p.name for p in PRESETS}) == len(PRESETS) == 5
    for preset in PRESETS:
        config = config_from_settings(preset_values(preset.name))
        assert DemoCaps().violations(config) == ()
        check = check_query({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in preset.changes.items()})
        assert check.success
    with pytest.raises(ValueError, match="no preset"):
        preset_values("nope")


def _preset_run(name):
    return run_flow(config_from_settings(preset_values(name)))


def test_spurious_and_overparameterised_presets_show_the_phenomenon():
    stuck = _preset_run("spurious minimum K = M = 8")
    assert stuck.success and stuck.loss[-1] > 1e-2
    freed = _preset_run("over-parameterised K = M + 1")
    assert freed.loss[-1] < 1e-6
    # Same start: the first eight rows of the K = 9 student are the K = 8 student.
    assert np.allclose(freed.Q[0][:8, :8], stuck.Q[0])


def test_plateau_preset_shows_a_plateau():
    run = _preset_run("Saad-Solla plateau")
    loss, t = run.loss, run.t
    early = np.interp(8.0, t, loss)
    late = np.interp(40.0, t, loss)
    assert abs(late / early - 1) < 0.05  # flat over a factor 5 in time
    assert loss[0] > 2 * early and loss[-1] < 1e-6  # and it is a plateau, not the end


def test_correlated_preset_plateaus_lower_but_specialises_later():
    values = preset_values("correlated teacher")
    correlated = run_flow(config_from_settings(values))
    orthonormal = run_flow(config_from_settings({**values, "teacher": "orthonormal"}))

    def loss_at(run, time):
        return np.interp(time, run.t, run.loss)

    assert loss_at(correlated, 10.0) < 0.5 * loss_at(orthonormal, 10.0)
    assert loss_at(correlated, 300.0) > 100 * loss_at(orthonormal, 300.0)


def test_learning_rate_preset_settles_below_the_fold_and_diverges_above():
    # Issue 14's measurement: at lr 0.5 the flow ends at loss 0.0204 (direct SGD at d = 2000: 0.0203);
    # above the fold at lr 1.2246 the flow runs away.
    values = preset_values("learning rate too large")
    settled = run_flow(config_from_settings(values))
    assert settled.status.name == "CONVERGED" and settled.loss[-1] == pytest.approx(0.0203, rel=0.02)
    escaped = run_flow(config_from_settings({**values, "lr": 1.3}))
    assert escaped.status.name == "DIVERGED"


def test_caps_from_environment_and_violations():
    demo = {"LANDSCAPE_DEMO": "1"}
    caps = DemoCaps.from_env({**demo, "LANDSCAPE_MAX_K": "8", "LANDSCAPE_MAX_T_MAX": "500.5"})
    assert caps.max_K == 8 and caps.max_t_max == 500.5 and caps.max_starts == DemoCaps().max_starts
    for bad in ("x", "0", "-3", "inf"):
        with pytest.raises(ValueError, match="LANDSCAPE_MAX_D"):
            DemoCaps.from_env({**demo, "LANDSCAPE_MAX_D": bad})
    # Outside demo mode nothing is capped, whatever the LANDSCAPE_MAX_* variables say.
    local = DemoCaps.from_env({"LANDSCAPE_MAX_K": "2", "LANDSCAPE_MAX_D": "x"})
    assert not local.enabled and local.violations(RunConfig(K=20, M=20, t_max=1e9)) == ()
    assert local.clamp_link({"K": 64}) == ({}, ())
    config = RunConfig(K=9, M=2, t_max=1000.0, init=InitSpec(d=3000))
    small = DemoCaps(max_K=8, max_starts=10, max_t_max=100.0, max_d=2000, max_sgd_steps=10_000)
    found = small.violations(config, starts=11, sgd_d=50)
    assert len(found) == 5  # 1000 x 50 steps x 11 x 50 = 2.75e7 operations: within the work budget
    for words in ("K = 9", "t_max = 1000", "init d = 3000", "starts = 11", "SGD steps"):
        assert any(words in sentence for sentence in found), words
    assert all("LANDSCAPE_MAX_" in sentence for sentence in found)
    assert DemoCaps().violations(RunConfig(eta2=False), starts=10, sgd_d=100) == ()


def test_the_sgd_work_budget_counts_steps_units_and_dimension():
    # Counted by hand: t_max 0.5 at d = 1e6 is 5e5 steps, each (K + M) d = 8e6 multiply-adds.
    caps = DemoCaps(max_sgd_steps=10**9, max_sgd_operations=4e12, max_d=10**7)
    config = RunConfig(K=4, M=4, t_max=0.5)
    assert caps.violations(config, sgd_d=1_000_000) == ()
    tighter = DemoCaps(max_sgd_steps=10**9, max_sgd_operations=3.9e12, max_d=10**7)
    (sentence,) = tighter.violations(config, sgd_d=1_000_000)
    assert "4e+12" in sentence and "LANDSCAPE_MAX_SGD_OPERATIONS" in sentence
    # Memory: 2K + M rows of d = 1e6 doubles and a block of 4 inputs: 128 MiB.
    (sentence,) = DemoCaps(max_sgd_steps=10**9, max_sgd_operations=1e13, max_d=10**7,
                           max_sgd_bytes=100 * 2**20).violations(config, sgd_d=1_000_000)
    assert "memory" in sentence and "LANDSCAPE_MAX_SGD_BYTES" in sentence


def test_a_link_over_a_cap_is_clamped_with_a_warning():
    caps = DemoCaps(max_K=6, max_t_max=100.0)
    changes, warnings = caps.clamp_link({"K": 20, "M": 3, "tmax": 1e9, "lr": 5.0})
    assert changes == {"K": 6, "tmax": 100.0} and len(warnings) == 2
    assert isinstance(changes["K"], int) and "LANDSCAPE_MAX_K" in warnings[0]


def test_phase_path_of_known_overlaps():
    permutation = np.eye(3)[[2, 0, 1]]
    R = np.stack([np.full((3, 3), 0.1), 0.5 * permutation + 0.05, permutation])
    path = phase_path(R)
    assert np.allclose(path.matched, [0.1, 0.55, 1.0]) and np.allclose(path.other, [0.1, 0.05, 0.0])
    assert sorted(map(tuple, path.assignment)) == [(0, 2), (1, 0), (2, 1)]
    wide = phase_point(np.array([[0.9, 0.1], [0.2, 0.0], [0.0, 0.7]]))  # K = 3 > M = 2
    assert np.isclose(wide.matched[0], 0.8) and np.isclose(wide.other[0], 0.3 / 4)
    with pytest.raises(ValueError, match="shape"):
        phase_path(np.ones((3, 3)))


def test_setting_lookup():
    assert setting("hd").kind == "int"
    with pytest.raises(ValueError, match="no setting"):
        setting("zz")


def test_leaf_counts():
    ids = ["K = 3", "K = 3/a", "K = 3/a/0", "K = 3/a/1", "K = 3/b", "K = 3/b/2"]
    parents = ["", "K = 3", "K = 3/a", "K = 3/a", "K = 3", "K = 3/b"]
    assert leaf_counts(ids, parents) == (3, 2, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="not nodes"):
        leaf_counts(["a"], ["zz"])


def test_grid_edits_are_mirrored():
    edited = apply_symmetric_edits(np.eye(3), {0: {"3": 0.4}, "2": {"2": -0.1, "1": None}})
    assert np.array_equal(edited, [[1, 0, 0.4], [0, 1, -0.1], [0.4, -0.1, 1]])
    with pytest.raises(ValueError, match="outside"):
        apply_symmetric_edits(np.eye(2), {0: {"3": 1.0}})


def test_series_configs():
    base = config_from_settings({"teacher": "equicorrelated", "rho": 0.2, "d": 50})
    square = series_configs(base, "K = M", 2, 4)
    assert [(c.K, c.M) for c in square] == [(2, 2), (3, 3), (4, 4)]
    assert all(c.teacher == base.teacher and c.init == base.init for c in square)
    assert [(c.K, c.M) for c in series_configs(base, "K = M + 1", 2, 3)] == [(3, 2), (4, 3)]
    assert [(c.K, c.M) for c in series_configs(base, "M fixed", 4, 6)] == [(4, 4), (5, 4), (6, 4)]
    assert [c.init.d for c in series_configs(base, "K = M + 1", 5, 6, d_equals_m=True)] == [5, 6]
    for bad in ((3, 2), (1, MAX_SERIES + 1)):
        with pytest.raises(ValueError, match="range|widths"):
            series_configs(base, "K = M", *bad)
    with pytest.raises(ValueError, match="fixed size"):
        series_configs(config_from_settings({"teacher": "custom"}), "K = M", 2, 3)


def test_series_match_the_shipped_sweep_spec():
    spec = json.loads((Path(__file__).resolve().parent.parent / "assets" / "sweep_default.json").read_text())
    base = RunConfig.from_dict(spec["base"])
    wanted = {catalogue_key(base.replace(K=K, M=M, init=InitSpec(d=d, seed=0, scale=1.0)), spec["regime"])
              for grid in spec["grid"] for M in grid["M"] for K in grid["K"] for d in grid["init.d"]}
    dashboard_default = config_from_settings({})
    defaults = {item.key: item.default for item in PAGE_SETTINGS["families"]}
    for series in ("K = M", "K = M + 1"):
        for config in series_configs(dashboard_default, series, defaults["kmin"], defaults["kmax"], d_equals_m=True):
            assert catalogue_key(config, "gradient_flow") in wanted, (series, config.K)


def test_catalogue_key_ignores_what_a_catalogue_does_not_depend_on():
    base = config_from_settings({})
    same = config_from_settings({"tmax": 5.0, "seed": 3, "lr": 0.1, "eta2": True, "noise": 0.2})
    assert catalogue_key(base, "gradient_flow") == catalogue_key(same, "gradient_flow")
    assert catalogue_key(base, "finite_lr") != catalogue_key(same, "finite_lr")
    for changed in ({"K": 5}, {"d": 999}, {"scale": 0.5}, {"teacher": "equicorrelated"}):
        assert catalogue_key(config_from_settings(changed), "gradient_flow") != catalogue_key(base, "gradient_flow")


SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "catalogue_default.json"


@pytest.mark.skipif(not SHIPPED.is_file(), reason="assets/catalogue_default.json is not generated yet")
def test_the_shipped_catalogue_is_the_default_view_and_reproducible():
    from landscape.catalogues.build import Catalogue, build_catalogue

    shipped = Catalogue.load_json(SHIPPED)
    defaults = {s.key: s.default for s in SIDEBAR_SETTINGS}
    assert catalogue_key(shipped.config, shipped.regime) == catalogue_key(config_from_settings({}), defaults["regime"])
    assert (shipped.starts, shipped.seed) == (defaults["starts"], defaults["cseed"])
    again = build_catalogue(shipped.config, shipped.starts, shipped.seed, shipped.regime)
    summary = [(p.kind, p.index, p.count, p.family) for p in again.points]
    assert summary == [(p.kind, p.index, p.count, p.family) for p in shipped.points]
    assert np.allclose([p.loss for p in again.points], [p.loss for p in shipped.points], rtol=1e-6, atol=1e-12)


def test_continuations_in_lr_are_capped_by_width_in_demo_mode_only():
    # Issue 18: a continuation costs hundreds of Jacobians by differences (752 s for K = M = 8),
    # so a hosted demo bounds its width; locally nothing is capped.
    from landscape.model.config import RunConfig

    demo = DemoCaps.from_env({"LANDSCAPE_DEMO": "1"})
    assert demo.branch_violations(RunConfig(K=4, M=4)) == ()
    (sentence,) = demo.branch_violations(RunConfig(K=6, M=5))
    assert "K = 6" in sentence and "LANDSCAPE_MAX_BRANCH_K" in sentence and "continuations in lr" in sentence
    assert DemoCaps.from_env({"LANDSCAPE_DEMO": "1", "LANDSCAPE_MAX_BRANCH_K": "8"}).branch_violations(
        RunConfig(K=6, M=5)) == ()
    assert DemoCaps.from_env({}).branch_violations(RunConfig(K=20, M=20)) == ()


def test_leading_families_keep_the_most_reached_in_their_order():
    # The K = M = 19, 20 catalogues of Safran & Shamir's table hold ~25 families, most reached at one
    # width: drawn all at once, the 10-colour palette repeated and the legend outgrew the figure.
    from landscape.dashboard.catalogues import leading_families

    families = [{"name": "global", "K": [4, 5, 6], "fraction": [1.0, 1.0, 0.9]},
                {"name": "saddle family", "K": [4, 5, 6], "fraction": [0.0, 0.0, 0.0]},
                {"name": "type A", "K": [6], "fraction": [0.1]},
                {"name": "rare", "K": [6], "fraction": [0.001]},
                {"name": "rare saddle", "K": [6], "fraction": [0.0]}]
    assert [f["name"] for f in leading_families(families, limit=3)] == ["global", "type A", "rare"]
    assert [f["name"] for f in leading_families(families, limit=4)] == ["global", "saddle family", "type A", "rare"]
    assert leading_families(families, limit=10) == families
    with pytest.raises(ValueError, match="limit"):
        leading_families(families, limit=0)
