"""Streamlit helpers shared by the pages: the sidebar's state, bound page widgets, cached backend calls.

Not a page itself (``app.py`` registers the pages explicitly with ``st.navigation``). Every
expensive call goes through one ``st.cache_data`` function with a bounded number of entries,
keyed by the config's JSON text, so two users asking for the same view share the work.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st

from landscape.catalogues.build import Catalogue, build_catalogue
from landscape.catalogues.costs import Cost, catalogue_cost
from landscape.catalogues.sweep_store import DEFAULT_STORE, load_store
from landscape.critical_points.fixed_points import unspecialised_fixed_point
from landscape.critical_points.hessian import hessian_spectrum
from landscape.dashboard import PAGE_SETTINGS, DemoCaps, catalogue_key
from landscape.dashboard.figures import presentation_figure
from landscape.dynamics.ode import run_flow
from landscape.dynamics.sgd import simulate_sgd_from_initial_overlaps, simulate_sgd_from_overlaps
from landscape.dynamics.warmup import (
    background_compilation_running,
    compiled_solver_ready,
    start_background_compilation,
)
from landscape.model.config import InitSpec, RunConfig
from landscape.status import Stopped, stop_if_asked

STATE_KEY = "_dashboard_state"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DashboardState:
    """What the sidebar produced on this run.

    Attributes
    ----------
    values : dict
        Sidebar settings by key.
    config : RunConfig or None
        None when the settings do not describe a valid run (``error`` says why).
    error : str
        Why the settings are invalid (empty when valid).
    caps : DemoCaps
    over_cap : tuple of str
        Sentences naming the settings over the hosted-demo caps.
    """

    values: dict
    config: RunConfig | None
    error: str = ""
    caps: DemoCaps = field(default_factory=DemoCaps)
    over_cap: tuple = ()


def state():
    """The sidebar's :class:`DashboardState` (set by ``app.py`` before the page runs)."""
    found = st.session_state.get(STATE_KEY)
    if found is None:
        st.error("Open the dashboard through app.py (streamlit run app.py): the sidebar sets up every page.")
        st.stop()
    return found


def ready(current):
    """Show the one reason the sidebar's settings cannot run, if any; True when they can."""
    if current.config is None:
        st.error(f"Settings: {current.error}")
        return False
    if current.over_cap:
        st.error(" ".join(current.over_cap))
        return False
    return True


#: Session key set by app.py when the link asks for presentation mode (``?present=1``).
PRESENT_KEY = "_present"


def chart(figure, key):
    """Show a Plotly figure in the Streamlit theme; the toolbar's camera saves it as PNG or SVG (sidebar).

    In presentation mode the figure is enlarged for a projector (:func:`presentation_figure`).
    """
    if st.session_state.get(PRESENT_KEY):
        figure = presentation_figure(figure)
    image = st.session_state.get("img", "png")
    config = {"displaylogo": False, "toImageButtonOptions": {"format": image, "filename": key, "scale": 2}}
    st.plotly_chart(figure, key=key, theme="streamlit", config=config)


def call(function, *args, **kwargs):
    """``function(*args, **kwargs)``, or None after one error line if the backend raises ValueError."""
    try:
        return function(*args, **kwargs)
    except ValueError as error:
        st.error(str(error))
        return None


#: Step of the +/- buttons of float inputs (the others step by 1 or by Streamlit's default).
_STEPS = {"lr": 0.05, "rho": 0.05, "rho_between": 0.05, "noise": 0.01, "scale": 0.1, "tmax": 100.0}


def widget(item, container=st, **extra):
    """The widget of a :class:`~landscape.dashboard.Setting`, bound to the URL query string."""
    horizontal = extra.pop("horizontal", False)
    options = dict(key=item.key, help=item.help or None, bind="query-params", **extra)
    if item.kind == "bool":
        return container.toggle(item.label, value=item.default, **options)
    if item.kind == "choice":
        index = item.choices.index(item.default)
        if horizontal:
            return container.radio(item.label, item.choices, index=index, horizontal=True, **options)
        return container.selectbox(item.label, item.choices, index=index, **options)
    if item.kind == "text":
        return container.text_input(item.label, value=item.default, **options)
    if item.kind == "int":
        return container.number_input(item.label, int(item.low), int(item.high), int(item.default), step=1, **options)
    return container.number_input(item.label, item.low, item.high, item.default, step=_STEPS.get(item.key),
                                  format="%g", **options)


def page_widget(page, key, container=st, **extra):
    """The widget of one of a page's settings (see :data:`~landscape.dashboard.PAGE_SETTINGS`)."""
    return widget(next(s for s in PAGE_SETTINGS[page] if s.key == key), container, **extra)


def with_seed(config, seed):
    """The same config with another random-start seed."""
    init = config.init
    return config.replace(init=InitSpec(kind="random", d=init.d, seed=int(seed), scale=init.scale))


@st.cache_resource(show_spinner=False)
def start_compiler():
    """Start compiling the ODE solver in a background process, once per server process.

    Nobody waits for it: until numba's disk cache is filled (once per machine: 30 s on an idle
    2-core machine, minutes on a loaded one) flows are integrated by the numpy solver, with the
    same results.
    """
    return start_background_compilation()


def solver_note():
    """A caption while the numpy solver stands in for the compiled one (nothing once it is ready)."""
    if compiled_solver_ready():
        return
    if background_compilation_running():
        st.caption("The compiled ODE solver is being prepared in the background (once per machine); meanwhile "
                   "scipy's solver integrates, with the same method and tolerances and the same results.")
    else:
        st.caption("The compiled ODE solver could not be prepared (run `python -m landscape.dynamics.warmup` to see "
                   "why); scipy's solver integrates, with the same results, slower with the η² term.")


@st.cache_data(max_entries=64, show_spinner=False)
def flow(config_json):
    """ODE trajectory of a config (cached by its JSON text)."""
    return run_flow(RunConfig.from_json(config_json))


class _VisitorLeft(Exception):
    """Raised from a progress callback to stop work whose visitor has closed the page."""


def visitor_left():
    """A callback for a computation's ``should_stop``: True once this page's visitor has closed the tab
    or the connection is gone."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    context = get_script_run_ctx()
    if context is None or not Runtime.exists():
        return lambda: False
    session_id, runtime = context.session_id, Runtime.instance()
    return lambda: not runtime.is_active_session(session_id)


def sgd(config_json, d, seed):
    """Direct one-pass SGD (cached, :func:`_sgd`); stops early if the visitor leaves (nothing is cached then)."""
    return _sgd(config_json, d, seed, _should_stop=visitor_left())


@st.cache_data(max_entries=8, show_spinner=False)
def _sgd(config_json, d, seed, _should_stop=None):
    """Direct one-pass SGD at input dimension ``d`` from the ODE's own initial overlaps (cached)."""
    return simulate_sgd_from_initial_overlaps(RunConfig.from_json(config_json), int(d), int(seed),
                                              should_stop=_should_stop)


def global_minimum_branch(config_json, lr_max):
    """The global minimum's branch of ODE fixed points from the config's lr to ``lr_max`` (cached,
    :func:`_branch`); None if the visitor left before it was done (nothing is cached then)."""
    try:
        return _branch(config_json, lr_max, _should_stop=visitor_left())
    except Stopped:
        return None


@st.cache_data(max_entries=16, show_spinner=False)
def _branch(config_json, lr_max, _should_stop=None):
    from landscape.catalogues.bifurcation import global_minimum_branch as branch

    return branch(RunConfig.from_json(config_json), float(lr_max), should_stop=_should_stop)


def sgd_from_overlaps(config_json, Q, R, lr, d, seed, t_max):
    """Direct one-pass SGD at ``lr`` and input dimension ``d`` from the overlaps ``(Q, R)`` (nested lists),
    cached (:func:`_sgd_from_overlaps`); stops early if the visitor leaves (nothing is cached then)."""
    return _sgd_from_overlaps(config_json, Q, R, lr, d, seed, t_max, _should_stop=visitor_left())


def catalogue_branches(catalogue, config_json, lr_max, catalogue_settings):
    """Every minimum of a catalogue continued from the config's lr to ``lr_max`` with its label noise
    (cached, :func:`_catalogue_branches`); None if the visitor left before it was done (nothing is
    cached then)."""
    try:
        return _catalogue_branches(catalogue, config_json, lr_max, catalogue_settings, _should_stop=visitor_left())
    except Stopped:
        return None


@st.cache_data(max_entries=8, show_spinner=False)
def _catalogue_branches(_catalogue, config_json, lr_max, catalogue_settings, _should_stop=None):
    # Cached by the config's JSON and the catalogue's (starts, seed, regime): the catalogue of the sidebar's settings.
    from landscape.catalogues.bifurcation import catalogue_bifurcation

    def progress(done, total):
        # Raising here cancels the branches not yet started (landscape.critical_points.parallel.run_chunks).
        stop_if_asked(_should_stop, "continuation of the catalogue's minima")

    config = RunConfig.from_json(config_json)
    return catalogue_bifurcation(_catalogue, float(lr_max), noise=config.noise, lr=config.lr, progress=progress)


@st.cache_data(max_entries=8, show_spinner=False)
def _sgd_from_overlaps(config_json, Q, R, lr, d, seed, t_max, _should_stop=None):
    config = RunConfig.from_json(config_json).replace(lr=float(lr), t_max=float(t_max))
    return simulate_sgd_from_overlaps(config, np.array(Q), np.array(R), int(d), int(seed), should_stop=_should_stop)


@st.cache_data(max_entries=32, show_spinner=False)
def symmetric_fixed_point(config_json):
    """:func:`landscape.critical_points.fixed_points.unspecialised_fixed_point` of a config (cached)."""
    return unspecialised_fixed_point(RunConfig.from_json(config_json))


def progress_runs(configs, label):
    """Trajectories of several configs, with a progress bar while uncached ones compute."""
    bar = None
    runs = []
    for number, config in enumerate(configs):
        if number == 1 and bar is None:
            bar = st.progress(0.0, text=label)
        if bar is not None:
            bar.progress(number / len(configs), text=f"{label} ({number}/{len(configs)})")
        runs.append(flow(config.to_json()))
    if bar is not None:
        bar.empty()
    return runs


# ----------------------------------------------------------------------------- catalogues

#: The precomputed catalogue shipped with the app (the environment variable LANDSCAPE_CATALOGUE overrides it).
CATALOGUE_FILE = ROOT / "assets" / "catalogue_default.json"


def catalogue_file():
    """Path of the shipped catalogue (read at each call, so tests and deployments can point elsewhere)."""
    return Path(os.environ.get("LANDSCAPE_CATALOGUE", CATALOGUE_FILE))


@st.cache_data(max_entries=4, show_spinner=False)
def _read_catalogue(path, modified):
    return Catalogue.load_json(path)


def shipped_catalogue(config, regime, starts, seed):
    """The shipped catalogue if it was made for these settings, else None."""
    path = catalogue_file()
    if not path.is_file():
        return None
    try:
        catalogue = _read_catalogue(str(path), path.stat().st_mtime)
    except (ValueError, OSError):
        return None
    same = catalogue_key(catalogue.config, catalogue.regime) == catalogue_key(config, regime)
    return catalogue if same and (catalogue.starts, catalogue.seed) == (starts, seed) else None


class _Store:
    """A small thread-safe LRU of computed catalogues, shared by every session of the server."""

    def __init__(self, size):
        self._items, self._size, self._lock = OrderedDict(), size, threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def put(self, key, value):
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


@st.cache_resource
def _catalogue_store():
    # Not st.cache_data: building a catalogue updates a progress bar made outside the function,
    # which cache_data cannot replay.
    return _Store(size=16)


def known_catalogue(current, regime):
    """The catalogue of the sidebar's settings if it is shipped or already computed, else None (never computes)."""
    starts, seed, _ = catalogue_settings(current)
    config = current.config
    return (shipped_catalogue(config, regime, starts, seed)
            or _catalogue_store().get((catalogue_key(config, regime), starts, seed)))


def catalogue(current, regime, starts, seed, key):
    """The catalogue for the sidebar's config: shipped, computed earlier, or computed on a click.

    Returns None (after saying why, or offering the button) when there is none yet.
    """
    config = current.config
    shipped = shipped_catalogue(config, regime, starts, seed)
    if shipped is not None:
        st.caption(f"Precomputed catalogue shipped with the app: {shipped.message}.")
        return shipped
    store_key = (catalogue_key(config, regime), int(starts), int(seed))
    found = _catalogue_store().get(store_key)
    if found is not None:
        st.caption(f"Catalogue computed on demand: {found.message}.")
        return found
    over = current.caps.violations(config, starts=starts) or current.caps.over_budget(
        f"a {regime.replace('_', ' ')} catalogue of {starts} starts at K = {config.K}, M = {config.M}",
        catalogue_cost(config, int(starts), regime))
    if over:
        st.error(" ".join(over))
        return None
    slow = " (the finite-lr regime integrates the full ODE from every start: expect minutes)" if regime == "finite_lr" else ""
    st.info(f"No catalogue for these settings yet. Computing one runs {starts} random starts to convergence, "
            f"polishes the end points and searches symmetric saddles{slow}. The number of starts, their seed and "
            "the regime are under 'Catalogue' in the sidebar.", icon=":material/info:")
    if not st.button("Compute the catalogue", key=key, type="primary", icon=":material/play_arrow:"):
        return None
    bar = st.progress(0.0, text=f"0 of {starts} starts")

    left = visitor_left()

    def progress(done, total):
        if left():  # nobody waits for it: stop (landscape.critical_points.parallel cancels the rest)
            raise _VisitorLeft
        bar.progress(done / total, text=f"{done} of {total} starts")

    try:
        with st.spinner("Polishing critical points and computing their Hessian spectra..."):
            built = call(build_catalogue, config, int(starts), int(seed), regime, progress=progress)
    except _VisitorLeft:
        return None
    bar.empty()
    if built is not None:
        _catalogue_store().put(store_key, built)
        st.rerun()  # draw the page again from the store, without the button
    return None


def catalogue_settings(current):
    """``(starts, seed, regime)`` of the catalogue, from the sidebar."""
    values = current.values
    return int(values["starts"]), int(values["cseed"]), values["regime"]


@st.cache_data(max_entries=128, show_spinner=False)
def spectrum(Q, R, T, d):
    """Exact Hessian spectrum of a point in input dimension ``d`` (cached)."""
    return hessian_spectrum(Q, R, T, int(d))


@st.cache_data(max_entries=2, show_spinner=False)
def _sweep_catalogues(path, stamp):
    store = load_store(path)
    return {catalogue_key(record.task.config, record.task.regime): record.catalogue() for record in store.select()}


def sweep_catalogues():
    """Catalogues of the sweep shipped in ``assets/`` (``landscape sweep --default-spec``), by :func:`catalogue_key`."""
    path = Path(os.environ.get("LANDSCAPE_SWEEP", DEFAULT_STORE))
    records = path / "records"
    if not records.is_dir():
        return {}
    stamp = (records.stat().st_mtime, len(list(records.glob("*.json"))))
    try:
        return _sweep_catalogues(str(path), stamp)
    except (ValueError, OSError):
        return {}


def catalogue_series(current, configs, regime, starts, seed, key):
    """Catalogues of several configs: from the shipped sweep, the shared store, or computed on a click.

    Returns the list (in the order of ``configs``) or None while some are missing.
    """
    shipped = sweep_catalogues()
    found, missing = [], []
    for config in configs:
        config_key = catalogue_key(config, regime)
        catalogue = (shipped.get(config_key) or _catalogue_store().get((config_key, starts, seed))
                     or shipped_catalogue(config, regime, starts, seed))
        found.append(catalogue)
        if catalogue is None:
            missing.append(config)
    if not missing:
        sources = sum(c is shipped.get(catalogue_key(c.config, regime)) for c in found)
        if sources:
            st.caption(f"{sources} of the {len(found)} catalogues come from the sweep shipped with the app.")
        return found
    over = sorted({sentence for config in missing for sentence in current.caps.violations(config, starts=starts)})
    total = sum((catalogue_cost(config, int(starts), regime) for config in missing), Cost(0.0, 0.0))
    over = over or list(current.caps.over_budget(f"{len(missing)} catalogues of {starts} starts up to K = "
                                                 f"{max(c.K for c in missing)}", total))
    if over:
        st.error(" ".join(over))
        return None
    widths = ", ".join(f"K = {c.K}" for c in missing)
    st.info(f"Not computed yet: the catalogues for {widths} ({starts} random starts each, seed {seed}). "
            "Larger K takes longer (tens of seconds from K = 8).", icon=":material/info:")
    if not st.button("Compute the missing catalogues", key=key, type="primary", icon=":material/play_arrow:"):
        return None
    bar = st.progress(0.0, text="starting")
    for number, config in enumerate(missing):
        def progress(done, total, number=number, K=config.K):
            bar.progress((number + done / total) / len(missing), text=f"K = {K}: {done} of {total} starts")

        built = call(build_catalogue, config, int(starts), int(seed), regime, progress=progress)
        if built is None:
            return None
        _catalogue_store().put((catalogue_key(config, regime), int(starts), int(seed)), built)
    bar.empty()
    st.rerun()
