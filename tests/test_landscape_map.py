"""The Landscape map: shipped connections, figure builders, CLI (catalogue --connect, map) and the page (AppTest)."""

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from landscape.catalogues.connections import ConnectedCatalogue, ConnectOptions, connect_catalogue
from landscape.catalogues.disconnectivity import disconnectivity_tree
from landscape.catalogues.records import Catalogue
from landscape.commands.main import main
from landscape.dashboard import SIDEBAR_SETTINGS, catalogue_key, config_from_settings
from landscape.dashboard.catalogues import MAP_CLIMB_MODES, MAP_MAX_INDEX
from landscape.dashboard.map_figures import SADDLE_TRACE, disconnectivity_figure, pass_figure

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "assets" / "catalogue_default.json"
CONNECTIONS = ROOT / "assets" / "connections_default.json"


@pytest.fixture(scope="module")
def shipped():
    return ConnectedCatalogue.from_dict(json.loads(CONNECTIONS.read_text()))


def test_the_shipped_connections_are_those_of_the_default_catalogue_and_reproducible(shipped):
    catalogue = Catalogue.load_json(CATALOGUE)
    defaults = {s.key: s.default for s in SIDEBAR_SETTINGS}
    assert catalogue_key(shipped.catalogue.config, "gradient_flow") == catalogue_key(config_from_settings({}), "gradient_flow")
    assert (shipped.catalogue.starts, shipped.catalogue.seed) == (defaults["starts"], defaults["cseed"])
    # Regenerated from the shipped catalogue with the page's settings: same links, same barriers.
    again = connect_catalogue(catalogue, ConnectOptions(max_index=MAP_MAX_INDEX, climb_modes=MAP_CLIMB_MODES))
    assert [(c.saddle, c.direction, c.ends) for c in again.connections] == \
        [(c.saddle, c.direction, c.ends) for c in shipped.connections]
    assert np.allclose([c.barriers for c in again.connections], [c.barriers for c in shipped.connections],
                       rtol=1e-6, atol=1e-12)
    assert [p.loss for p in again.catalogue.points] == pytest.approx([p.loss for p in shipped.catalogue.points])
    # The page shows the shipped message: it read "1 index-1 saddles" until counts took the singular.
    assert again.message == shipped.message


def test_tree_figure_draws_levels_saddles_and_basin_widths(shipped):
    tree = disconnectivity_tree(shipped)
    figure = disconnectivity_figure(tree, selected=tree.saddles[0].saddle)
    saddles = next(t for t in figure.data if t.name == SADDLE_TRACE)
    points = shipped.catalogue.points
    assert list(saddles.y) == [points[s.saddle].loss for s in tree.saddles]
    assert [row[0] for row in saddles.customdata] == [s.saddle for s in tree.saddles]
    leaves = [n for n in tree.nodes if n.is_leaf]
    assert list(figure.layout.xaxis.ticktext) == [tree.families[n.point] for n in leaves]
    # The global minimum's branch is drawn wider than a zero-basin branch would be.
    widths = [t.line.width for t in figure.data if t.mode == "lines" and t.x[0] == t.x[1]]
    assert max(widths) == pytest.approx(2 + 16 * max(n.width for n in leaves))


def test_pass_figure_puts_the_two_paths_either_side_of_the_saddle(shipped):
    connection = shipped.connections[0]
    loss = shipped.catalogue.points[connection.saddle].loss
    figure = pass_figure(connection.arclength, connection.paths, ["a", "b"], loss)
    left, right = figure.data[0], figure.data[1]
    assert np.all(np.asarray(left.x) <= 0) and np.all(np.asarray(right.x) >= 0)
    assert left.y[0] == right.y[0] == pytest.approx(loss)
    with pytest.raises(ValueError, match="exactly two"):
        pass_figure(connection.arclength[:1], connection.paths[:1], ["a"], loss)


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_catalogue_connect_and_map(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"K": 3, "M": 3, "eta2": False, "init": {"kind": "random", "d": 3, "scale": 1.0}}))
    out_file = tmp_path / "cat.json"
    code, out, _ = _run(capsys, "catalogue", "--config", str(config), "--starts", "6", "--connect", "--quiet",
                        "--out", str(out_file))
    assert code == 0
    data = json.loads(out)
    assert data["connections"] and json.loads(out_file.read_text())["connections"] == data["connections"]
    for c in data["connections"]:
        saddle = data["points"][c["saddle"]]
        assert saddle["kind"] == "saddle" and len(c["ends"]) == 2 and len(c["paths"]) == 2
        for end, barrier, path in zip(c["ends"], c["barriers"], c["paths"]):
            assert barrier == pytest.approx(saddle["loss"] - data["points"][end]["loss"])
            assert path[0] == pytest.approx(saddle["loss"]) and path[-1] == pytest.approx(data["points"][end]["loss"])
    tree_file = tmp_path / "tree.json"
    code, out, _ = _run(capsys, "map", "--catalogue", str(out_file), "--out", str(tree_file))
    assert code == 0
    tree = json.loads(out)
    assert tree == json.loads(tree_file.read_text())
    assert {n["point"] for n in tree["nodes"] if n["leaf"]} == {i for i, p in enumerate(data["points"]) if p["kind"] == "minimum"}


@pytest.mark.parametrize("argv, words", [
    (["map", "--catalogue", "missing.json"], "cannot read catalogue"),
    (["map", "--catalogue", str(CATALOGUE), "--max-index", "0"], "argument --max-index: must be a whole number"),
    (["catalogue", "--config", "c.json", "--starts", "3", "--connect-max-index", "3"], "need --connect"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, words, capsys):
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == "" and words in err and len(err.strip().splitlines()) == 1


def _app(params):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    at.switch_page("views/landscape_map.py")
    at.run()
    return at


def _figures(at):
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_page_shows_the_shipped_tree_and_the_pass_of_the_chosen_saddle(shipped):
    at = _app({"tmax": "30", "runs": "1"})
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any("Connections shipped with the app" in c.value for c in at.caption)
    tree, profile, heatmaps = _figures(at)[:3]
    marks = next(t for t in tree["data"] if t.get("name") == SADDLE_TRACE)
    saddles = sorted({row[0] for row in marks["customdata"]})
    points = shipped.catalogue.points
    chooser = at.selectbox(key="map_saddle")
    assert chooser.options and len(chooser.options) == len(saddles)
    last = saddles[-1]
    chooser.set_value(last).run()
    assert not at.exception
    _, profile, _ = _figures(at)[:3]
    assert any(f"Saddle #{last}: index {points[last].index}" in h.value for h in at.subheader)
    paths = [t for t in profile["data"] if t.get("mode") == "lines"]
    assert len(paths) == 2
    assert [t["name"] for t in paths][0].startswith("#")


def test_page_in_the_finite_lr_regime_says_what_to_do():
    at = _app({"regime": "finite_lr", "tmax": "30"})
    assert not at.exception
    assert any("gradient_flow" in i.value for i in at.info)


def test_page_computes_catalogue_and_connections_on_a_click():
    at = _app({"K": "3", "M": "3", "starts": "8", "tmax": "30"})
    assert not at.exception
    assert not _figures(at)  # nothing shipped for these settings: a button, no tree yet
    at.button(key="map_catalogue").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any(c.value.startswith("Connections:") for c in at.caption)
    tree = _figures(at)[0]
    leaves = next(t for t in tree["data"] if t.get("name") == "minima")
    assert leaves["text"] and all(text.startswith("#") for text in leaves["text"])


def test_tree_message_counts_agree_in_number(shipped):
    # The page's caption read "1 minima" for a one-minimum tree: counts in the message take the singular for one.
    import re

    singular = {"minima": "minimum", "merges": "merge", "saddles": "saddle", "groups": "group"}
    tree = disconnectivity_tree(shipped)
    minima = sum(p.kind.value == "minimum" for p in shipped.catalogue.points)
    counts = re.findall(r"(\d+) (minimum|minima|merges?|saddles?|groups?)\b", tree.message)
    assert counts[0] == (str(minima), "minima" if minima != 1 else "minimum"), tree.message
    for number, noun in counts:
        assert (number == "1") == (noun in singular.values()), tree.message
