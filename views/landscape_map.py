"""Landscape map: the disconnectivity tree of the catalogue, and the pass over a chosen saddle."""

import json
import os
from pathlib import Path

import streamlit as st

from landscape.catalogues.connections import ConnectedCatalogue, ConnectOptions, connect_catalogue
from landscape.catalogues.costs import connection_cost
from landscape.catalogues.disconnectivity import disconnectivity_tree
from landscape.dashboard import catalogue_key
from landscape.dashboard.catalogues import MAP_CLIMB_MODES, MAP_MAX_INDEX
from landscape.dashboard.figures import overlap_heatmaps_figure, presentation_figure
from landscape.dashboard.map_figures import disconnectivity_figure, pass_figure
from landscape.status import Stopped
from views import common

CONNECTIONS_FILE = common.ROOT / "assets" / "connections_default.json"
_SELECTED = "map_saddle"


def connections_file():
    """Path of the shipped connections (LANDSCAPE_CONNECTIONS overrides it, for tests and deployments)."""
    return Path(os.environ.get("LANDSCAPE_CONNECTIONS", CONNECTIONS_FILE))


@st.cache_data(max_entries=4, show_spinner=False)
def _read_connections(path, modified):
    return ConnectedCatalogue.from_dict(json.loads(Path(path).read_text()))


def _shipped(config, starts, seed):
    path = connections_file()
    if not path.is_file():
        return None
    try:
        connected = _read_connections(str(path), path.stat().st_mtime)
    except (ValueError, OSError):
        return None
    catalogue = connected.catalogue
    same = catalogue_key(catalogue.config, catalogue.regime) == catalogue_key(config, "gradient_flow")
    return connected if same and (catalogue.starts, catalogue.seed) == (starts, seed) else None


@st.cache_data(max_entries=16, show_spinner=False)
def _connect(key, _catalogue, _should_stop=None):
    # Stops when the visitor leaves (landscape.status.Stopped: nothing is cached then).
    return connect_catalogue(_catalogue, ConnectOptions(max_index=MAP_MAX_INDEX, climb_modes=MAP_CLIMB_MODES),
                             should_stop=_should_stop)


def _connected(current, starts, seed):
    shipped = _shipped(current.config, starts, seed)
    if shipped is not None:
        st.caption(f"Connections shipped with the app: {shipped.message}.")
        return shipped
    catalogue = common.catalogue(current, "gradient_flow", starts, seed, key="map_catalogue")
    if catalogue is None:
        return None
    over = current.caps.over_budget(f"connecting a catalogue of {len(catalogue.points)} points at K = "
                                    f"{catalogue.config.K}, M = {catalogue.config.M}",
                                    connection_cost(catalogue, MAP_MAX_INDEX, MAP_CLIMB_MODES))
    if over:
        st.error(" ".join(over))
        return None
    with st.spinner("Climbing from the minima to the saddles around them and following the descent paths out of "
                    "every saddle (seconds; about 10 s at K = M = 8)..."):
        try:
            connected = common.call(_connect, (catalogue_key(current.config, "gradient_flow"), starts, seed), catalogue,
                                    _should_stop=common.visitor_left())
        except Stopped:
            return None
    if connected is not None:
        st.caption(f"Connections: {connected.message}.")
    return connected


def _clicked():
    event = st.session_state.get("map_tree")
    points = getattr(getattr(event, "selection", None), "points", None) or []
    for point in points:
        data = point.get("customdata")
        if data is not None and point.get("curve_number") is not None:
            st.session_state[_SELECTED] = int(data[0])
            return


def _end_label(connected, end):
    if end is None:
        return "no critical point"
    point = connected.catalogue.points[end]
    return f"#{end} {point.kind.value}, {point.family}"


def _pass(connected, saddle):
    points = connected.catalogue.points
    # Directions whose two descents end at different points first: they are the ones that join groups.
    options = sorted((c for c in connected.connections if c.saddle == saddle),
                     key=lambda c: (len(set(c.ends)) == 1, c.direction))
    if len(options) > 1:
        number = st.selectbox("unstable direction", range(len(options)), key="map_direction",
                              format_func=lambda i: f"direction {options[i].direction + 1} of {len(options)}: to "
                              + " and ".join("nowhere" if e is None else f"#{e}" for e in options[i].ends))
        connection = options[min(number, len(options) - 1)]
    else:
        connection = options[0]
    point = points[saddle]
    barriers = ", ".join("—" if b is None else f"{b:.3e}" for b in connection.barriers)
    st.subheader(f"Saddle #{saddle}: index {point.index}, L = {point.loss:.4e}")
    st.caption(f"Family: {point.family}. Barriers (saddle loss minus end loss): {barriers}.")
    left, right = st.columns(2)
    with left:
        labels = [_end_label(connected, end) for end in connection.ends]
        common.chart(pass_figure(connection.arclength, connection.paths, labels, point.loss), key="map_pass")
        st.caption("Loss along the gradient-flow paths down from the saddle, both ways along its unstable "
                   "Hessian eigenvector; arclength in the weights u = w/√d.")
    with right:
        common.chart(overlap_heatmaps_figure(point.Q, point.R), key="map_heatmaps")
        st.caption("Overlaps Q and R at the top of the pass (the saddle).")


def main():
    st.title("Landscape map")
    current = common.state()
    if not common.ready(current):
        return
    starts, seed, regime = common.catalogue_settings(current)
    if regime != "gradient_flow":
        st.info("The map follows gradient flow of the loss: choose the gradient_flow regime under "
                "'Catalogue' in the sidebar.", icon=":material/info:")
        return
    connected = _connected(current, starts, seed)
    if connected is None:
        return
    joins = common.page_widget("landscape-map", "joins", horizontal=True)
    tree = common.call(disconnectivity_tree, connected, 1 if joins == "index-1 saddles" else None)
    if tree is None or not tree.nodes:
        st.warning("The catalogue has no minimum: there is no tree to draw.")
        return
    points = connected.catalogue.points
    saddles = sorted({mark.saddle for mark in tree.saddles})
    if saddles and st.session_state.get(_SELECTED) not in saddles:
        st.session_state[_SELECTED] = saddles[0]
    selected = st.session_state.get(_SELECTED)
    figure = disconnectivity_figure(tree, {i: points[i].index for i in saddles}, selected=selected)
    if st.session_state.get(common.PRESENT_KEY):  # clickable, so not common.chart: enlarge it the same way
        figure = presentation_figure(figure)
    st.plotly_chart(figure, key="map_tree", on_select=_clicked, selection_mode="points", theme="streamlit",
                    config={"displaylogo": False})
    st.caption(f"{tree.message}. Leaves are minima (line width: basin fraction, the share of random starts "
               "that ended there), labelled by family; branches join at the loss of the saddle that links them "
               "(orange diamonds); blue diamonds are saddles whose descents stay within one group. "
               "Click a saddle to see its pass.")
    if not saddles:
        st.info("No saddle of this catalogue has a descent that ended at a known point.")
        return
    st.selectbox("saddle", saddles, key=_SELECTED,
                 format_func=lambda i: f"#{i}: index {points[i].index}, L = {points[i].loss:.4e}, {points[i].family}")
    _pass(connected, selected if selected in saddles else saddles[0])
    st.download_button("connections and tree (JSON)", json.dumps({"tree": tree.to_dict(),
                       "connections": [c.to_dict() for c in connected.connections]}),
                       file_name="landscape_map.json", mime="application/json", icon=":material/download:")


main()
