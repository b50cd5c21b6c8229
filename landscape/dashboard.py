"""Backend side of the dashboard, free of Streamlit: settings, share links, presets and caps.

Every setting of the app is a :class:`Setting` (URL parameter name, widget label, type,
default, range). The same records drive the widgets (``app.py``), the validation of a shared
link (:func:`check_query`) and the conversion to a :class:`~landscape.config.RunConfig`
(:func:`config_from_settings`), so a link, the widgets and the computation cannot disagree.
:class:`DemoCaps` bounds the work one interactive request may ask for on a hosted demo.
The phase-portrait reduction (:func:`phase_path`) also lives here: numbers in, numbers out.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from urllib.parse import urlencode

import numpy as np
from scipy.optimize import linear_sum_assignment

from .config import InitSpec, RunConfig, TeacherSpec
from .teacher import MAX_UNITS

__all__ = [
    "Setting",
    "SIDEBAR_SETTINGS",
    "PAGE_SETTINGS",
    "CATALOGUE_SETTINGS",
    "TEACHER_CHOICES",
    "REGIME_CHOICES",
    "setting",
    "QueryCheck",
    "check_query",
    "parse_matrix",
    "format_matrix",
    "parse_block_sizes",
    "default_block_sizes",
    "resize_matrix_text",
    "apply_symmetric_edits",
    "config_from_settings",
    "settings_from_config",
    "query_string",
    "Preset",
    "PRESETS",
    "preset_values",
    "DemoCaps",
    "PhasePath",
    "phase_path",
    "phase_point",
    "leaf_counts",
    "catalogue_key",
    "series_configs",
    "SERIES_CHOICES",
    "DIMENSION_CHOICES",
    "MAX_SERIES",
]

TEACHER_CHOICES = ("orthonormal", "equicorrelated", "block", "random", "custom")
REGIME_CHOICES = ("gradient_flow", "finite_lr")
SERIES_CHOICES = ("K = M", "K = M + 1", "M fixed")
DIMENSION_CHOICES = ("d = M", "sidebar d")
#: Most catalogues one reachability curve may compute on demand.
MAX_SERIES = 8
_KINDS = ("int", "float", "bool", "choice", "text")
_MAX_SEED = 2**31 - 1


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
        if self.kind == "text":
            check = {"T": parse_matrix, "blocks": parse_block_sizes}.get(self.key)
            if check is not None and text:
                try:
                    check(text)
                except ValueError as error:
                    raise ValueError(f"{self.key}={text!r} is malformed ({error})") from None
            return text
        if self.kind == "choice":
            if text not in self.choices:
                raise ValueError(f"{self.key}={text!r} is not one of {', '.join(self.choices)}")
            return text
        if self.kind == "bool":
            if text.lower() not in ("true", "false"):
                raise ValueError(f"{self.key}={text!r} is not true or false")
            return text.lower() == "true"
        return self._number(text)

    def _number(self, text):
        try:
            value = int(text) if self.kind == "int" else float(text)
        except ValueError:
            wanted = "a whole number" if self.kind == "int" else "a number"
            raise ValueError(f"{self.key}={text!r} is not {wanted}") from None
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise ValueError(f"{self.key}={text} is outside the allowed range [{self.low:g}, {self.high:g}]")
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
            help="Keep the eta^2 term of the SGD ODE (exact, but about 20 times slower). Off: gradient flow."),
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


def _defaults(settings=SIDEBAR_SETTINGS):
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


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_matrix(text):
    """A matrix written as rows separated by ``;`` (or new lines), entries by ``,`` or spaces.

    Parameters
    ----------
    text : str
        For example ``"1, 0.5; 0.5, 1"``.

    Returns
    -------
    ndarray, shape (n, n)

    Raises
    ------
    ValueError
        If an entry is not a number, rows have different lengths, or the matrix is not square.
    """
    rows = [row.strip() for row in re.split(r"[;\n]", str(text)) if row.strip()]
    if not rows:
        raise ValueError("the matrix is empty")
    matrix = []
    for number, row in enumerate(rows, start=1):
        entries = [entry for entry in re.split(r"[,\s]+", row) if entry]
        bad = [entry for entry in entries if not _NUMBER.match(entry)]
        if bad:
            raise ValueError(f"row {number} of the matrix has an entry that is not a number: {bad[0]!r}")
        matrix.append([float(entry) for entry in entries])
    lengths = {len(row) for row in matrix}
    if len(lengths) != 1:
        raise ValueError(f"the rows of the matrix have different lengths {sorted(lengths)}")
    if lengths.pop() != len(matrix):
        raise ValueError(f"the matrix must be square, got {len(matrix)} rows of {len(matrix[0])} entries")
    return np.array(matrix)


def format_matrix(matrix):
    """Inverse of :func:`parse_matrix`: ``"1, 0.5; 0.5, 1"`` (entries to 6 significant digits)."""
    return "; ".join(", ".join(f"{float(x):.6g}" for x in row) for row in np.asarray(matrix))


def parse_block_sizes(text):
    """Block sizes such as ``"2,2"`` or ``"3 1"``.

    Returns
    -------
    tuple of int

    Raises
    ------
    ValueError
        If an entry is not a positive whole number.
    """
    entries = [entry for entry in re.split(r"[,;\s]+", str(text).strip()) if entry]
    if not entries or not all(entry.isdigit() and int(entry) > 0 for entry in entries):
        raise ValueError(f"block sizes must be positive whole numbers such as 2,2, got {text!r}")
    return tuple(int(entry) for entry in entries)


def default_block_sizes(M):
    """Two blocks as equal as possible (one block when ``M = 1``)."""
    return (M,) if M < 2 else (M - M // 2, M // 2)


def resize_matrix_text(text, M):
    """A custom teacher matrix resized to ``M x M``: kept where it fits, identity elsewhere.

    Unparsable text is returned unchanged (its error is reported where the config is built).
    """
    if not str(text).strip():
        return ""
    try:
        old = parse_matrix(text)
    except ValueError:
        return text
    new = np.eye(M)
    n = min(M, old.shape[0])
    new[:n, :n] = old[:n, :n]
    return format_matrix(new)


def apply_symmetric_edits(matrix, edited_rows):
    """A matrix with grid edits applied and mirrored across the diagonal.

    Parameters
    ----------
    matrix : array_like, shape (n, n)
    edited_rows : mapping
        ``{row: {column label: value}}`` as a Streamlit data editor reports it; column labels are
        ``"1"`` .. ``"n"`` (1-based), rows 0-based; ``None`` values (cleared cells) are skipped.

    Returns
    -------
    ndarray, shape (n, n)

    Raises
    ------
    ValueError
        If a row or column is out of range or a value is not a number.
    """
    result = np.array(matrix, dtype=float)
    n = result.shape[0]
    for row, changes in dict(edited_rows).items():
        for column, value in dict(changes).items():
            if value is None:
                continue
            i, j = int(row), int(column) - 1
            if not (0 <= i < n and 0 <= j < n):
                raise ValueError(f"edit at row {row}, column {column} is outside the {n} x {n} matrix")
            result[i, j] = result[j, i] = float(value)
    return result


def _teacher(values):
    kind, M = values["teacher"], int(values["M"])
    if kind == "orthonormal":
        return TeacherSpec()
    if kind == "equicorrelated":
        return TeacherSpec(kind="equicorrelated", rho=values["rho"])
    if kind == "block":
        text = str(values["blocks"]).strip()
        sizes = parse_block_sizes(text) if text else default_block_sizes(M)
        return TeacherSpec(kind="block", block_sizes=sizes, rho=values["rho"], rho_between=values["rho_between"])
    if kind == "random":
        return TeacherSpec(kind="random", seed=int(values["tseed"]))
    text = str(values["T"]).strip()
    return TeacherSpec(kind="matrix", T=parse_matrix(text) if text else np.eye(M))


def config_from_settings(values):
    """The :class:`RunConfig` that the sidebar settings describe.

    Parameters
    ----------
    values : mapping
        Values by setting key; missing keys take their defaults.

    Returns
    -------
    RunConfig

    Raises
    ------
    ValueError
        If the combination is invalid (e.g. block sizes that do not add up to ``M``, a custom
        ``T`` that is not positive semi-definite), with the reason.
    """
    full = {**_defaults(), **dict(values)}
    unknown = [choice for choice in (full["teacher"],) if choice not in TEACHER_CHOICES]
    if unknown:
        raise ValueError(f"teacher must be one of {TEACHER_CHOICES}, got {unknown[0]!r}")
    init = InitSpec(kind="random", d=int(full["d"]), seed=int(full["seed"]), scale=float(full["scale"]))
    return RunConfig(
        K=int(full["K"]), M=int(full["M"]), teacher=_teacher(full), lr=float(full["lr"]),
        eta2=bool(full["eta2"]), noise=float(full["noise"]), t_max=float(full["tmax"]), init=init,
    )


def settings_from_config(config):
    """Sidebar settings (a full dict) that reproduce ``config``.

    Raises
    ------
    ValueError
        If the config has an explicit-overlaps initialisation (the sidebar draws random starts).
    """
    if config.init.kind != "random":
        raise ValueError("the dashboard only describes random initialisations (init kind 'random')")
    values = _defaults()
    teacher = config.teacher
    values.update(
        K=config.K, M=config.M, lr=config.lr, eta2=bool(config.eta2), noise=config.noise, tmax=config.t_max,
        d=config.init.d, seed=config.init.seed, scale=config.init.scale,
        teacher={"matrix": "custom"}.get(teacher.kind, teacher.kind),
    )
    if teacher.kind in ("equicorrelated", "block"):
        values["rho"] = teacher.rho
    if teacher.kind == "block":
        values["rho_between"] = teacher.rho_between
        values["blocks"] = ",".join(str(size) for size in teacher.block_sizes)
    if teacher.kind == "random":
        values["tseed"] = teacher.seed
    if teacher.kind == "matrix":
        values["T"] = format_matrix(teacher.T)
    return values


def _url_value(item, value):
    if item.kind == "bool":
        return "true" if value else "false"
    if item.kind == "float":
        return f"{float(value):.10g}"
    return str(value)


def query_string(values, settings=SIDEBAR_SETTINGS):
    """The query string of a share link: every setting that differs from its default.

    Parameters
    ----------
    values : mapping
        Values by setting key.
    settings : sequence of Setting

    Returns
    -------
    str
        For example ``"K=8&M=8&seed=6"`` (empty when everything is at its default).
    """
    pairs = [
        (item.key, _url_value(item, values[item.key]))
        for item in settings
        if item.key in values and values[item.key] != item.default
    ]
    return urlencode(pairs)


@dataclass(frozen=True)
class Preset:
    """A one-click lecture setting.

    Attributes
    ----------
    name : str
        Button label.
    description : str
        What it shows, one or two sentences.
    changes : dict
        Sidebar settings that differ from the defaults.
    """

    name: str
    description: str
    changes: dict = field(default_factory=dict)


PRESETS = (
    Preset(
        "Saad-Solla plateau",
        "K = M = 3, orthonormal teacher, start with overlaps of size 1/sqrt(d) (d = 10^6): the loss stalls "
        "near 0.16 for a decade of time at the unspecialised fixed point, where every student matches every "
        "teacher equally, before the units specialise.",
        {"K": 3, "M": 3, "d": 1_000_000, "tmax": 1000.0},
    ),
    Preset(
        "spurious minimum K = M = 8",
        "K = M = 8, orthonormal teacher, init seed 6: gradient flow converges to a spurious minimum "
        "(loss about 0.02, one teacher unit not recovered) instead of the global minimum at loss 0.",
        {"K": 8, "M": 8, "seed": 6, "tmax": 3000.0},
    ),
    Preset(
        "over-parameterised K = M + 1",
        "The same start plus one student unit (K = 9, M = 8, seed 6): the extra unit removes the spurious "
        "minimum and the loss goes to zero.",
        {"K": 9, "M": 8, "seed": 6, "tmax": 2000.0},
    ),
    Preset(
        "correlated teacher",
        "K = M = 4, teacher units with correlation 0.6: the students first learn the teachers' common direction, "
        "so the loss drops fast to a low plateau (about 0.05, against 0.25 for an orthonormal teacher), but "
        "telling the teacher units apart is slow: at t = 300 the loss is still about 1e-4 (1e-9 when orthonormal).",
        {"K": 4, "M": 4, "teacher": "equicorrelated", "rho": 0.6, "tmax": 3000.0},
    ),
)


def preset_values(name):
    """Full sidebar settings of a preset (defaults plus its changes).

    Raises
    ------
    ValueError
        If no preset has this name.
    """
    for preset in PRESETS:
        if preset.name == name:
            return {**_defaults(), **preset.changes}
    raise ValueError(f"no preset named {name!r}; presets: {[p.name for p in PRESETS]}")


@dataclass(frozen=True)
class DemoCaps:
    """Largest work one interactive request may ask for (hosted-demo safety).

    Attributes
    ----------
    max_K : int
        Student and teacher widths (env ``LANDSCAPE_MAX_K``).
    max_starts : int
        Random starts of an on-demand catalogue (``LANDSCAPE_MAX_STARTS``).
    max_t_max : float
        Time horizon of a run, steps / d (``LANDSCAPE_MAX_T_MAX``).
    max_d : int
        Input dimension of a random start or an SGD simulation (``LANDSCAPE_MAX_D``).
    max_sgd_steps : int
        Steps of one SGD simulation, ``t_max * d`` (``LANDSCAPE_MAX_SGD_STEPS``).
    """

    max_K: int = 16
    max_starts: int = 200
    max_t_max: float = 20_000.0
    max_d: int = 1_000_000
    max_sgd_steps: int = 500_000

    _ENV = {
        "max_K": "LANDSCAPE_MAX_K",
        "max_starts": "LANDSCAPE_MAX_STARTS",
        "max_t_max": "LANDSCAPE_MAX_T_MAX",
        "max_d": "LANDSCAPE_MAX_D",
        "max_sgd_steps": "LANDSCAPE_MAX_SGD_STEPS",
    }

    def __post_init__(self):
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"cap {item.name} must be a positive number, got {value!r}")

    @classmethod
    def from_env(cls, environ=None):
        """Caps from environment variables (unset ones keep their defaults).

        Parameters
        ----------
        environ : mapping, optional
            Defaults to ``os.environ``.

        Raises
        ------
        ValueError
            Naming the variable, if one is set but is not a positive number.
        """
        environ = os.environ if environ is None else environ
        changes = {}
        for name, variable in cls._ENV.items():
            if variable not in environ:
                continue
            text = environ[variable].strip()
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{variable}={text!r} is not a number") from None
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{variable}={text!r} must be a positive number")
            changes[name] = value if name == "max_t_max" else int(value)
        return cls(**changes)

    def _over(self, what, value, cap, field_name):
        return (
            f"{what} = {value:g} is over the hosted-demo cap of {cap:g} "
            f"(raise it with the environment variable {self._ENV[field_name]})."
        )

    def violations(self, config=None, starts=None, sgd_d=None):
        """Sentences saying which requested amounts are over the caps (empty if none).

        Parameters
        ----------
        config : RunConfig, optional
            Checked for ``K``, ``M``, ``t_max`` and the random start's ``d``.
        starts : int, optional
            Random starts of a catalogue.
        sgd_d : int, optional
            Input dimension of an SGD simulation of ``config`` (also checks ``t_max * d``).

        Returns
        -------
        tuple of str
        """
        found = []
        if config is not None:
            for what, value in (("K", config.K), ("M", config.M)):
                if value > self.max_K:
                    found.append(self._over(what, value, self.max_K, "max_K"))
            if config.t_max > self.max_t_max:
                found.append(self._over("t_max", config.t_max, self.max_t_max, "max_t_max"))
            if config.init.kind == "random" and config.init.d > self.max_d:
                found.append(self._over("init d", config.init.d, self.max_d, "max_d"))
        if starts is not None and starts > self.max_starts:
            found.append(self._over("starts", starts, self.max_starts, "max_starts"))
        if sgd_d is not None:
            if sgd_d > self.max_d:
                found.append(self._over("SGD d", sgd_d, self.max_d, "max_d"))
            if config is not None and config.t_max * sgd_d > self.max_sgd_steps:
                found.append(self._over("SGD steps t_max * d", config.t_max * sgd_d, self.max_sgd_steps, "max_sgd_steps"))
        return tuple(found)


@dataclass(frozen=True)
class PhasePath:
    """A run reduced to two numbers per time (the phase-portrait coordinates).

    Attributes
    ----------
    matched : ndarray, shape (n,)
        Mean of ``R_k,pi(k)`` over the student-teacher pairs of the matching ``pi``.
    other : ndarray, shape (n,)
        Mean of all other entries of ``R``.
    assignment : ndarray of int, shape (min(K, M), 2)
        The matched pairs ``(k, m)``.
    """

    matched: np.ndarray
    other: np.ndarray
    assignment: np.ndarray


def _reduce(R, rows, cols):
    K, M = R.shape[-2:]
    mask = np.zeros((K, M), dtype=bool)
    mask[rows, cols] = True
    matched = R[..., mask].mean(axis=-1)
    other = R[..., ~mask].mean(axis=-1) if (~mask).any() else np.zeros_like(matched)
    return matched, other


def phase_path(R, match_at=-1):
    """Project a run of ``R`` onto (matched overlap, other overlaps).

    Each student is matched to one teacher (Hungarian assignment maximising the matched
    overlaps at time index ``match_at``, by default the end of the run), so that a student
    that specialises moves along the first coordinate; the unspecialised, permutation-symmetric
    states lie on the diagonal.

    Parameters
    ----------
    R : array_like, shape (n, K, M)
        Student-teacher overlaps over time.
    match_at : int, optional
        Time index whose overlaps define the matching.

    Returns
    -------
    PhasePath

    Raises
    ------
    ValueError
        If ``R`` is not a 3-D array of finite numbers.
    """
    R = np.asarray(R, dtype=float)
    if R.ndim != 3 or R.shape[0] == 0:
        raise ValueError(f"R must have shape (n, K, M) with n >= 1, got {R.shape}")
    rows, cols = linear_sum_assignment(R[match_at], maximize=True)
    matched, other = _reduce(R, rows, cols)
    return PhasePath(matched=matched, other=other, assignment=np.stack([rows, cols], axis=1))


def phase_point(R):
    """Phase-portrait coordinates of one point, with its own best matching.

    Parameters
    ----------
    R : array_like, shape (K, M)

    Returns
    -------
    PhasePath
        With arrays of length one.
    """
    R = np.asarray(R, dtype=float)
    if R.ndim != 2:
        raise ValueError(f"R must have shape (K, M), got {R.shape}")
    return phase_path(R[None])


def leaf_counts(ids, parents):
    """Node sizes of a flat tree when every leaf counts one (a parent: the leaves below it).

    Parameters
    ----------
    ids, parents : sequence of str
        Node identifiers and their parents (``""`` for roots), as in a plotly sunburst.

    Returns
    -------
    tuple of int

    Raises
    ------
    ValueError
        If the lengths differ or a parent is not a node.
    """
    ids, parents = list(ids), list(parents)
    if len(ids) != len(parents):
        raise ValueError(f"ids and parents have different lengths ({len(ids)} and {len(parents)})")
    unknown = sorted({p for p in parents if p and p not in ids})
    if unknown:
        raise ValueError(f"parents {unknown} are not nodes of the tree")
    has_children = set(parents)
    counts = dict.fromkeys(ids, 0)
    for node, parent in zip(ids, parents):
        if node in has_children:
            continue
        while node:
            counts[node] += 1
            node = parents[ids.index(node)]
    return tuple(counts[node] for node in ids)


def series_configs(config, series, first, last, d_equals_m=False):
    """Configs of a reachability curve, one per width ``first <= w <= last`` on its x axis.

    Parameters
    ----------
    config : RunConfig
        Everything else (teacher kind and parameters, init ``d`` and ``scale``, lr).
    series : str
        One of ``SERIES_CHOICES``: ``K = M`` (``K = M = w``), ``K = M + 1`` (``M = w``,
        ``K = w + 1``) or ``M fixed`` (``K = w`` with the config's ``M``).
    first, last : int
        Range of the width ``w``: the teacher's ``M``, or the student's ``K`` when ``M`` is fixed.
    d_equals_m : bool, optional
        Draw each start in dimension ``d = M`` (Safran & Shamir's protocol) instead of ``config.init.d``.

    Returns
    -------
    tuple of RunConfig

    Raises
    ------
    ValueError
        If the range is empty or longer than ``MAX_SERIES``, ``series`` is unknown, or a width
        does not suit the teacher (e.g. a custom matrix of another size).
    """
    if series not in SERIES_CHOICES:
        raise ValueError(f"series must be one of {SERIES_CHOICES}, got {series!r}")
    if not 1 <= first <= last:
        raise ValueError(f"the range of widths must have 1 <= from <= to, got {first} to {last}")
    if last - first + 1 > MAX_SERIES:
        raise ValueError(f"at most {MAX_SERIES} widths per curve, got {last - first + 1} ({first} to {last})")
    if series != "M fixed" and config.teacher.kind in ("block", "matrix"):
        raise ValueError(f"a {config.teacher.kind} teacher has a fixed size M = {config.M}: use 'M fixed'")
    configs = []
    for width in range(first, last + 1):
        K, M = {"K = M": (width, width), "K = M + 1": (width + 1, width)}.get(series, (width, config.M))
        init = config.init
        d = M if d_equals_m else init.d
        configs.append(config.replace(K=K, M=M, init=InitSpec(kind="random", d=d, seed=init.seed, scale=init.scale)))
    return tuple(configs)


def catalogue_key(config, regime):
    """The part of a config that a catalogue depends on, as canonical JSON (to match catalogues to views).

    A catalogue draws its own starts (from its ``seed``) with the config's ``d`` and ``scale``:
    ``t_max`` and the init seed never matter, and ``lr``, ``eta2`` and ``noise`` only in the
    ``finite_lr`` regime.

    Parameters
    ----------
    config : RunConfig
    regime : str
        ``gradient_flow`` or ``finite_lr``.

    Returns
    -------
    str
    """
    data = config.to_dict()
    data.pop("t_max")
    data["init"].pop("seed", None)
    if regime == "gradient_flow":
        for name in ("lr", "eta2", "noise"):
            data.pop(name)
    return json.dumps({"config": data, "regime": regime}, sort_keys=True)
