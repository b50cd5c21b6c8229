"""Property-based tests (Hypothesis) of every parser of user input: configs, points, sweep specs, links.

The property: any input gives a valid object or a ValueError with a one-line message, never
another exception (TypeError, OverflowError, RecursionError, MemoryError...).
"""

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from landscape import RunConfig
from landscape.catalogues.sweep_spec import SweepSpec
from landscape.commands.common import parse_json_text, point_from_dict
from landscape.dashboard import check_query, config_from_settings, parse_block_sizes, parse_matrix, parse_rows
from landscape.dashboard.settings import PAGE_SETTINGS, SIDEBAR_SETTINGS

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

numbers = st.one_of(st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 1, 2, 4, -1, 0.5, 1e400, 2**63, 65]))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=8))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=12)
matrices = st.lists(st.lists(numbers, min_size=0, max_size=3), min_size=0, max_size=3)
loose = st.one_of(json_values, matrices, numbers)

teachers = st.fixed_dictionaries({}, optional={
    "kind": st.one_of(st.sampled_from(["orthonormal", "equicorrelated", "block", "random", "matrix", "x"]), loose),
    "rho": loose, "norm": loose, "block_sizes": st.one_of(st.lists(numbers, max_size=3), loose),
    "rho_between": loose, "seed": loose, "T": st.one_of(matrices, loose)})
inits = st.fixed_dictionaries({}, optional={
    "kind": st.one_of(st.sampled_from(["random", "overlaps"]), loose), "d": loose, "seed": loose, "scale": loose,
    "Q": st.one_of(matrices, loose), "R": st.one_of(matrices, loose)})
configs = st.fixed_dictionaries({}, optional={
    "K": st.one_of(st.integers(0, 70), loose), "M": st.one_of(st.integers(0, 70), loose), "teacher": st.one_of(teachers, loose),
    "lr": loose, "eta2": loose, "noise": loose, "t_max": loose, "init": st.one_of(inits, loose), "extra": loose})


def _one_line_value_error(function, *args):
    """Call ``function``; a ValueError must be one line; any other exception fails the test."""
    try:
        return function(*args)
    except ValueError as error:
        assert "\n" not in str(error) and str(error), repr(error)
        return None


@FAST
@given(configs)
def test_a_config_is_valid_or_one_error(data):
    config = _one_line_value_error(RunConfig.from_dict, data)
    if config is not None:
        # A valid config survives its own JSON and share string unchanged.
        assert RunConfig.from_json(config.to_json()) == config
        assert RunConfig.from_share_string(config.to_share_string()) == config
        assert 1 <= config.K <= 64 and math.isfinite(config.t_max) and config.lr > 0


@FAST
@given(st.one_of(st.text(max_size=60), st.binary(max_size=60).map(lambda b: "v1." + b.hex())))
def test_any_text_as_config_json_or_share_string(text):
    _one_line_value_error(RunConfig.from_json, text)
    _one_line_value_error(RunConfig.from_share_string, text)
    _one_line_value_error(RunConfig.from_share_string, "v1." + text)


@FAST
@given(st.one_of(st.fixed_dictionaries({}, optional={"Q": matrices, "R": matrices, "T": matrices, "W": matrices,
                                                      "W_teacher": matrices, "x": loose}), loose))
def test_a_point_is_valid_or_one_error(data):
    point = _one_line_value_error(point_from_dict, data)
    if point is not None:
        assert point.Q.shape[0] == point.R.shape[0] and point.R.shape[1] == point.T.shape[0]
        assert np.all(np.isfinite(point.Q))


@FAST
@given(st.text(alphabet="[]{}\",:0123456789.e- truefalsn", max_size=80))
def test_any_json_text_parses_or_is_one_error(text):
    _one_line_value_error(parse_json_text, text, "point file 'p.json'")


grids = st.one_of(st.dictionaries(st.sampled_from(["K", "M", "lr", "teacher.rho", "init.d", "seed", "starts", "regime",
                                                    "colour", "init.Q"]), st.one_of(st.lists(loose, max_size=3), loose),
                                  max_size=3), st.lists(st.dictionaries(st.sampled_from(["K", "lr"]),
                                                                        st.lists(numbers, max_size=2)), max_size=2), loose)
specs = st.fixed_dictionaries({}, optional={
    "base": st.one_of(configs, st.just({"K": 2, "M": 2, "eta2": False})), "grid": grids,
    "starts": st.one_of(st.integers(-1, 30_000), loose), "seed": st.one_of(st.integers(-1, 10), loose),
    "regime": st.one_of(st.sampled_from(["gradient_flow", "finite_lr"]), loose), "description": loose, "x": loose})


@FAST
@given(specs)
def test_a_sweep_spec_is_valid_or_one_error(data):
    spec = _one_line_value_error(SweepSpec.from_dict, data)
    if spec is not None:
        assert spec.tasks and SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict()))).tasks == spec.tasks


link_values = st.one_of(st.text(max_size=40), st.sampled_from(["1e400", "9" * 400, "nan", "-inf", "\u00b2", "1,2;3",
                                                                "0x10", "1_000", " 4 ", "true"]))
KEYS = [item.key for item in SIDEBAR_SETTINGS] + [item.key for group in PAGE_SETTINGS.values() for item in group]


@FAST
@given(st.dictionaries(st.sampled_from(KEYS), st.one_of(link_values, st.lists(link_values, max_size=2)), max_size=6))
def test_any_link_gives_values_and_one_line_warnings(params):
    every = SIDEBAR_SETTINGS + tuple(item for group in PAGE_SETTINGS.values() for item in group)
    check = check_query(params, every)
    assert set(check.rejected) | set(check.values) == set(params)
    assert all("\n" not in warning and len(warning) < 400 for warning in check.warnings)
    sidebar = {item.key: check.values.get(item.key, item.default) for item in SIDEBAR_SETTINGS}
    _one_line_value_error(config_from_settings, sidebar)  # a valid config or the page's one error


@FAST
@given(st.text(max_size=40), st.integers(0, 50))
def test_text_parsers_of_the_sidebar(text, count):
    rows, ignored = parse_rows(text, count)
    assert all(0 <= row < count for row in rows) and len(rows) == len(set(rows))
    _one_line_value_error(parse_matrix, text)
    _one_line_value_error(parse_block_sizes, text)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_many_configs(data):
    test_a_config_is_valid_or_one_error.hypothesis.inner_test(data)
