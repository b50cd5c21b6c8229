"""The settings table of the dashboard and the checking of a shared link's query string.

Every setting of the app is a :class:`Setting` (URL parameter name, widget label, type,
default, range). The same records drive the widgets (``app.py``), the validation of a shared
link (:func:`check_query`) and the conversion to a :class:`~landscape.model.config.RunConfig`
(:func:`landscape.dashboard.config_from_settings`), so a link, the widgets and the computation
cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..kernels.overlaps import MAX_UNITS
from .matrices import parse_block_sizes, parse_matrix

__all__ = [
    "Setting",
    "SIDEBAR_SETTINGS",
    "PAGE_SETTINGS",
    "CATALOGUE_SETTINGS",
    "TEACHER_CHOICES",
    "REGIME_CHOICES",
    "SERIES_CHOICES",
    "DIMENSION_CHOICES",
    "JOIN_CHOICES",
    "setting",
    "QueryCheck",
    "check_query",
]

TEACHER_CHOICES = ("orthonormal", "equicorrelated", "block", "random", "custom")
REGIME_CHOICES = ("gradient_flow", "finite_lr")
SERIES_CHOICES = ("K = M", "K = M + 1", "M fixed")
DIMENSION_CHOICES = ("d = M", "sidebar d")
JOIN_CHOICES = ("every saddle followed", "index-1 saddles")
_KINDS = ("int", "float", "bool", "choice", "text")
_MAX_SEED = 2**31 - 1
#: Longest number text a link may hold ("1e-4", "2147483647", "0.30000000000000004").
_MAX_NUMBER_CHARS = 40
_SHOWN_CHARS = 40
#: Longest text setting: a 64 x 64 teacher matrix with 6 characters an entry.
_MAX_TEXT_CHARS = 30_000


@dataclass(frozen=True)
class Setting:
    """One user setting: a widget, a URL query parameter and a field of the computation.

    Attributes
    ----------
    key : str
        Widget key and URL parameter name.
    label : str
        Widget label (units in brackets).
    kind : str
        ``int``, ``float``, ``bool``, ``choice`` or ``text``.
    default : object
        Value used when the parameter is absent or invalid.
    low, high : float or None
        Inclusive range of ``int`` and ``float`` settings.
    choices : tuple of str
        Allowed values of a ``choice`` setting.
    help : str
        Tooltip.
    """

    key: str
    label: str
    kind: str
    default: object
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    help: str = ""

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"setting kind must be one of {_KINDS}, got {self.kind!r}")

    def parse(self, raw):
        """Value of a URL parameter (text), checked against the type and range.

        Parameters
        ----------
        raw : str or list of str
            The parameter as it appears in the query string (the last one if repeated).

        Returns
        -------
        object
            ``int``, ``float``, ``bool`` or ``str``.

        Raises
        ------
        ValueError
            Naming the parameter, the value and what is allowed.
        """
        text = (raw[-1] if raw else "") if isinstance(raw, (list, tuple)) else str(raw)
        text = text.strip()
        shown = text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."  # warnings stay one short line
        if len(text) > _MAX_TEXT_CHARS:
            raise ValueError(f"{self.key}={text[:_SHOWN_CHARS]!r}... is too long ({len(text)} characters, at most "
                             f"{_MAX_TEXT_CHARS})")
        if self.kind == "text":
            check = {"T": parse_matrix, "blocks": parse_block_sizes}.get(self.key)
            if check is not None and text:
                try:
                    check(text)
                except ValueError as error:
                    raise ValueError(f"{self.key}={shown!r} is malformed ({error})") from None
            return text
        if self.kind == "choice":
            if text not in self.choices:
                raise ValueError(f"{self.key}={shown!r} is not one of {', '.join(self.choices)}")
            return text
        if self.kind == "bool":
            if text.lower() not in ("true", "false"):
                raise ValueError(f"{self.key}={shown!r} is not true or false")
            return text.lower() == "true"
        return self._number(text)

    def _number(self, text):
        shown = text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."
        # Length first: int() of thousands of digits is slow, and a 400-digit int overflows
        # math.isfinite (no setting needs more than a few dozen characters).
        if len(text) > _MAX_NUMBER_CHARS:
            raise ValueError(f"{self.key}={shown!r} is too long to be a setting ({len(text)} characters)")
        try:
            value = int(text) if self.kind == "int" else float(text)
        except ValueError:
            wanted = "a whole number" if self.kind == "int" else "a number"
            raise ValueError(f"{self.key}={shown!r} is not {wanted}") from None
        if not (self.low <= value <= self.high) or (self.kind == "float" and not math.isfinite(value)):
            raise ValueError(f"{self.key}={shown} is outside the allowed range [{self.low:g}, {self.high:g}]")
        return value


def _int(key, label, default, low, high, help=""):
    return Setting(key, label, "int", default, low, high, help=help)


def _float(key, label, default, low, high, help=""):
    return Setting(key, label, "float", float(default), float(low), float(high), help=help)


#: How a catalogue is made (in the sidebar: the critical-point, spectrum and family pages share it).
CATALOGUE_SETTINGS = (
    _int("starts", "random starts", 50, 1, 100_000, "Runs from random starts used to find critical points."),
    _int("cseed", "seed of the starts", 0, 0, _MAX_SEED, "A catalogue draws its own starts from this seed."),
    Setting("regime", "regime", "choice", "gradient_flow", choices=REGIME_CHOICES,
            help="gradient_flow: critical points of L. finite_lr: fixed points of the full ODE at this eta."),
)

#: The shared sidebar, in display order.
SIDEBAR_SETTINGS = (
    _int("K", "student units K", 4, 1, MAX_UNITS, "Hidden units of the student network."),
    _int("M", "teacher units M", 4, 1, MAX_UNITS, "Hidden units of the teacher network."),
    Setting("teacher", "teacher overlap structure", "choice", "orthonormal", choices=TEACHER_CHOICES,
            help="T = W* W*^T / d: orthonormal (T = I), equal correlations, blocks, random, or your own matrix."),
    _float("rho", "correlation rho", 0.5, -1.0, 1.0, "Correlation of two teacher units (within a block)."),
    _float("rho_between", "correlation between blocks", 0.0, -1.0, 1.0, "Correlation of units in different blocks."),
    Setting("blocks", "block sizes", "text", "", help="Comma-separated sizes adding up to M, e.g. 2,2. Empty: two halves."),
    _int("tseed", "teacher seed", 0, 0, _MAX_SEED, "Seed of the random teacher."),
    Setting("T", "teacher matrix T", "text", "", help="Rows separated by ';', entries by ','. Empty: the identity."),
    _float("lr", "learning rate eta", 0.5, 1e-4, 100.0, "SGD step size; in the ODE it sets the time scale."),
    Setting("eta2", "finite learning-rate term (eta^2)", "bool", False,
            help="Keep the eta^2 term of the SGD ODE (exact; a flow that converges onto the teacher takes a "
                 "second or two with it, its last stretch by quadrature). Off: gradient flow."),
    _float("noise", "label noise variance", 0.0, 0.0, 100.0, "Variance of Gaussian noise added to the labels."),
    _float("scale", "init scale", 1.0, 1e-3, 100.0, "Raw weights start as N(0, scale^2): Q_kk is close to scale^2."),
    _int("d", "init dimension d", 1000, 1, 10_000_000,
         "The random start is drawn in this dimension: initial overlaps R are of size scale / sqrt(d)."),
    _int("seed", "init seed", 0, 0, _MAX_SEED, "Seed of the random start."),
    _float("tmax", "time horizon t_max (steps / d)", 1000.0, 0.01, 1e9, "The run stops here if it has not converged."),
) + CATALOGUE_SETTINGS + (
    Setting("img", "figure downloads", "choice", "png", choices=("png", "svg"),
            help="Format of the camera button in each figure's toolbar (PNG at twice the screen size, or SVG)."),
)

#: Settings of one page, by page url path.
PAGE_SETTINGS = {
    "flows": (
        _int("runs", "starts in the phase portrait", 4, 1, 12, "Seeds seed, seed + 1, ... drawn the same way."),
        Setting("sgd", "overlay direct SGD", "bool", False, help="Simulate one-pass SGD at a finite d and overlay it."),
        _int("sgd_d", "SGD input dimension d", 500, 2, 10_000_000, "Fluctuations around the ODE shrink like 1/sqrt(d)."),
        _int("sgd_seed", "SGD data seed", 0, 0, _MAX_SEED, "Seed of the stream of training samples."),
    ),
    "critical-points": (
        _int("point", "selected point (row)", 0, 0, 100_000, "Row of the table whose overlaps are shown."),
    ),
    "hessian-spectra": (
        _int("hd", "input dimension d of the spectrum", 100, 1, 1_000_000_000,
             "The exact spectrum for this d: K r outliers plus K bulk eigenvalues of multiplicity d - r."),
        Setting("compare", "points to compare (rows)", "text", "0,1,2", help="Rows of the catalogue table, e.g. 0,1,2."),
    ),
    "families": (
        Setting("size", "box size", "choice", "basin count", choices=("basin count", "one per point"),
                help="Basin count: starts that ended there (saddles have none). One per point: every point shows."),
        Setting("series", "widths", "choice", "K = M", choices=SERIES_CHOICES,
                help="K = M: student as wide as the teacher (Safran & Shamir). K = M + 1: one unit more. "
                     "M fixed: add student units to the sidebar's teacher."),
        Setting("dims", "start dimension", "choice", "d = M", choices=DIMENSION_CHOICES,
                help="d = M: random starts drawn in dimension M with unit variance (Safran & Shamir's protocol, "
                     "that of the shipped sweep). Sidebar d: the init dimension of the sidebar."),
        _int("kmin", "from width", 4, 1, MAX_UNITS, "Smallest width on the x axis: M for K = M and K = M + 1, K for M fixed."),
        _int("kmax", "to width", 8, 1, MAX_UNITS, "Largest width on the x axis."),
        Setting("fseries", "families across", "choice", "K = M", choices=SERIES_CHOICES[:2],
                help="Catalogues of the shipped sweep followed across widths: K = M, or one student more (K = M + 1)."),
        Setting("fsaddles", "also families of saddles", "bool", False,
                help="Off: only families that are a minimum at some width. On: saddles too."),
        _int("addk", "width K of the minimum", 8, 1, MAX_UNITS, "The catalogue (of the series above) holding the minimum."),
        Setting("addfam", "family of the minimum", "text", "type A: one teacher missed, one student opposing",
                help="A family that has a minimum at that width (the list shows them)."),
    ),
    "landscape-map": (
        Setting("joins", "join minima through", "choice", "every saddle followed", choices=JOIN_CHOICES,
                help="Index-1 saddles only: exact barriers, but minima stay apart when the catalogue lacks the "
                     "index-1 saddle between them. Every saddle followed: a higher-index saddle whose descents "
                     "reach two groups joins them at its loss (an upper bound on their barrier)."),
    ),
    "learning-rate": (
        _float("lrmax", "continue up to lr", 2.0, 0.01, 20.0, "End of the branch in the learning rate."),
        _int("bbranch", "selected branch", 0, 0, 1_000, "Branch (minimum of the catalogue) whose point is shown "
             "(click the diagram)."),
        _int("bpoint", "selected branch point", 0, 0, 100_000, "Point of the branch whose overlaps and spectrum are "
             "shown (click the diagram)."),
        Setting("lrsgd", "direct SGD at finite d", "bool", False,
                help="Run one-pass SGD at the selected point's lr and just above the fold, from the branch's start."),
        _int("lrsgd_d", "SGD input dimension d", 500, 2, 10_000_000, "Fluctuations shrink like 1/sqrt(d)."),
    ),
    "theory": (),
}


def setting(key):
    """The :class:`Setting` with this URL key (sidebar or page).

    Raises
    ------
    ValueError
        If no setting has this key.
    """
    for item in SIDEBAR_SETTINGS + tuple(s for group in PAGE_SETTINGS.values() for s in group):
        if item.key == key:
            return item
    raise ValueError(f"no setting has the key {key!r}")


def default_values(settings=SIDEBAR_SETTINGS):
    return {item.key: item.default for item in settings}


@dataclass(frozen=True)
class QueryCheck:
    """Result of checking a query string.

    Attributes
    ----------
    values : dict
        Valid parameters, parsed (absent or invalid ones are left out: their default applies).
    rejected : tuple of str
        Keys of the parameters that were present but invalid.
    warnings : tuple of str
        One sentence per rejected parameter, saying what was wrong and which default is used.
    """

    values: dict
    rejected: tuple
    warnings: tuple

    @property
    def success(self):
        """True when every parameter was valid."""
        return not self.rejected


def _shown(item):
    if item.kind in ("int", "float"):
        return f"{item.default:g}"
    if item.kind == "bool":
        return "on" if item.default else "off"
    return repr(item.default) if item.default != "" else "empty"


def check_query(params, settings=SIDEBAR_SETTINGS):
    """Check the URL parameters that belong to ``settings``; others are ignored.

    Parameters
    ----------
    params : mapping of str to str or list of str
        The query string, e.g. ``st.query_params.to_dict()``.
    settings : sequence of Setting

    Returns
    -------
    QueryCheck
    """
    values, rejected, warnings = {}, [], []
    for item in settings:
        if item.key not in params:
            continue
        try:
            values[item.key] = item.parse(params[item.key])
        except ValueError as error:
            rejected.append(item.key)
            warnings.append(f"Link parameter {error}; using the default ({_shown(item)}).")
    return QueryCheck(values=values, rejected=tuple(rejected), warnings=tuple(warnings))
