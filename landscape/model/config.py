"""One description of a run: validated, JSON-serialisable, and packable into a share-link string.

A :class:`RunConfig` holds everything that determines a trajectory or a catalogue: the widths
``K`` and ``M``, the teacher overlap structure, the learning rate, the finite-learning-rate
term, label noise, the initialisation and the time horizon.

Conventions of section 1 of docs/theory.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

import base64
import json
import math
import zlib
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..kernels.overlaps import MAX_UNITS, validate_overlaps, validate_teacher
from .teacher import block_teacher, equicorrelated_teacher, orthonormal_teacher, random_teacher

__all__ = ["TeacherSpec", "InitSpec", "RunConfig", "TEACHER_KINDS", "INIT_KINDS", "require_run_config"]

TEACHER_KINDS = ("orthonormal", "equicorrelated", "block", "random", "matrix")
INIT_KINDS = ("random", "overlaps")
_SHARE_PREFIX = "v1."
#: A config with a 64 x 64 custom teacher and overlaps is ~200 kB of JSON; a share string of a
#: valid config is far shorter than these bounds.
_MAX_SHARE_CHARS = 200_000
_MAX_SHARE_JSON = 1_000_000


def _number(name, value, low=-math.inf, high=math.inf, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if value < low or value > high or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low:g}, {high:g}], got {value:g}")
    return value


def _whole(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return int(value)


def _matrix_tuple(name, value):
    if value is None:
        raise ValueError(f"{name} is required")
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a matrix (list of lists of numbers), got {value!r}") from None
    if array.ndim != 2:
        raise ValueError(f"{name} must be a matrix (list of lists), got an array of shape {array.shape}")
    return tuple(tuple(float(x) for x in row) for row in array)


def _unknown_keys(name, data, allowed):
    extra = sorted(set(data) - set(allowed))
    if extra:
        raise ValueError(f"unknown key(s) {extra} in {name}; allowed: {sorted(allowed)}")


def _check_kind_keys(name, data, kinds, used):
    """Refuse a sub-spec without ``kind`` (when it has other keys) or with keys its kind ignores.

    A key the kind does not use would be dropped silently (``{"kind": "orthonormal", "rho": 0.5}``
    is the identity), so the reader would believe in a setting that has no effect.
    """
    if "kind" not in data:
        if data:
            raise ValueError(f"{name} needs a 'kind' ({', '.join(kinds)}) to go with {sorted(data)}")
        return
    kind = data["kind"]
    if not isinstance(kind, str) or kind not in kinds:
        raise ValueError(f"{name} kind must be one of {kinds}, got {kind!r}")
    ignored = sorted(set(data) - {"kind"} - set(used[kind]))
    if ignored:
        allowed = ", ".join(used[kind]) or "no other key"
        raise ValueError(f"{name} kind {kind!r} does not use {ignored} (it takes {allowed})")


@dataclass(frozen=True)
class TeacherSpec:
    """How to build the teacher overlap matrix ``T``.

    Attributes
    ----------
    kind : str
        One of ``TEACHER_KINDS``: ``orthonormal`` (``T = I``), ``equicorrelated`` (``rho``,
        ``norm``), ``block`` (``block_sizes``, ``rho``, ``rho_between``), ``random`` (``seed``)
        or ``matrix`` (``T`` given explicitly).
    """

    kind: str = "orthonormal"
    rho: float = 0.0
    norm: float = 1.0
    block_sizes: tuple = ()
    rho_between: float = 0.0
    seed: int = 0
    T: tuple | None = None

    def __post_init__(self):
        if self.kind not in TEACHER_KINDS:
            raise ValueError(f"teacher kind must be one of {TEACHER_KINDS}, got {self.kind!r}")
        _number("teacher rho", self.rho, -1.0, 1.0)
        _number("teacher norm", self.norm, 0.0, 1e6, low_open=True)
        _number("teacher rho_between", self.rho_between, -1.0, 1.0)
        object.__setattr__(self, "seed", _whole("teacher seed", self.seed, 0, 2**63 - 1))
        object.__setattr__(self, "block_sizes", tuple(_whole("block size", s, 1, MAX_UNITS) for s in self.block_sizes))
        if self.kind == "matrix":
            object.__setattr__(self, "T", _matrix_tuple("teacher T", self.T))
        if self.kind == "block" and not self.block_sizes:
            raise ValueError("a block teacher needs block_sizes, e.g. [2, 2]")

    def matrix(self, M: int) -> np.ndarray:
        """The teacher overlap matrix for ``M`` units.

        Parameters
        ----------
        M : int
            Number of teacher units.

        Returns
        -------
        ndarray, shape (M, M)

        Raises
        ------
        ValueError
            If the spec does not describe a valid ``M x M`` teacher.
        """
        if self.kind == "orthonormal":
            return orthonormal_teacher(M)
        if self.kind == "equicorrelated":
            return equicorrelated_teacher(M, self.rho, self.norm)
        if self.kind == "block":
            if sum(self.block_sizes) != M:
                raise ValueError(f"teacher block_sizes {list(self.block_sizes)} add up to {sum(self.block_sizes)}, not M = {M}")
            return block_teacher(self.block_sizes, self.rho, self.rho_between)
        if self.kind == "random":
            return random_teacher(M, self.seed)
        T = validate_teacher(np.array(self.T))
        if T.shape != (M, M):
            raise ValueError(f"teacher T has shape {T.shape}, but M = {M} needs ({M}, {M})")
        return T

    #: The fields each kind uses (the others keep their defaults).
    USED = {
        "orthonormal": (),
        "equicorrelated": ("rho", "norm"),
        "block": ("block_sizes", "rho", "rho_between"),
        "random": ("seed",),
        "matrix": ("T",),
    }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary holding only the fields this kind uses."""
        used = self.USED[self.kind]
        data: dict[str, Any] = {"kind": self.kind}
        for key in used:
            value = getattr(self, key)
            data[key] = [list(row) for row in value] if key == "T" else (list(value) if key == "block_sizes" else value)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from a dictionary such as ``{"kind": "orthonormal"}``.

        Raises
        ------
        ValueError
            On unknown keys, keys the kind does not use, a missing kind, or invalid values.
        """
        if not isinstance(data, dict):
            raise ValueError(f"teacher must be an object such as {{\"kind\": \"orthonormal\"}}, got {data!r}")
        _unknown_keys("teacher", data, {f.name for f in cls.__dataclass_fields__.values()})
        _check_kind_keys("teacher", data, TEACHER_KINDS, cls.USED)
        data = dict(data)
        sizes = data.get("block_sizes", ())
        if not isinstance(sizes, (list, tuple)):
            raise ValueError(f"teacher block_sizes must be a list of whole numbers such as [2, 2], got {sizes!r}")
        data["block_sizes"] = tuple(sizes)
        return cls(**data)


@dataclass(frozen=True)
class InitSpec:
    """Initial condition of a run.

    Attributes
    ----------
    kind : str
        ``random``: a network drawn in input dimension ``d`` with rows ``w_k ~ N(0, scale^2 I)``
        (so ``Q_kk ~ scale^2``, ``Q_kl`` (k != l) of size ``scale^2 / sqrt(d)`` and ``R_km`` of size ``scale sqrt(T_mm) /
        sqrt(d)``);
        ``overlaps``: given ``Q`` and ``R``.
    """

    kind: str = "random"
    d: int = 1000
    seed: int = 0
    scale: float = 1.0
    Q: tuple | None = None
    R: tuple | None = None

    def __post_init__(self):
        if self.kind not in INIT_KINDS:
            raise ValueError(f"init kind must be one of {INIT_KINDS}, got {self.kind!r}")
        object.__setattr__(self, "d", _whole("init d", self.d, 1, 10_000_000))
        object.__setattr__(self, "seed", _whole("init seed", self.seed, 0, 2**63 - 1))
        _number("init scale", self.scale, 0.0, 1e3, low_open=True)
        if self.kind == "overlaps":
            object.__setattr__(self, "Q", _matrix_tuple("init Q", self.Q))
            object.__setattr__(self, "R", _matrix_tuple("init R", self.R))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary holding only the fields this kind uses."""
        if self.kind == "overlaps":
            return {"kind": "overlaps", "Q": [list(r) for r in self.Q or ()], "R": [list(r) for r in self.R or ()]}
        return {"kind": "random", "d": self.d, "seed": self.seed, "scale": self.scale}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from a dictionary such as ``{"kind": "random", "d": 1000, "seed": 0}``.

        Raises
        ------
        ValueError
            On unknown keys, keys the kind does not use, a missing kind, or invalid values.
        """
        if not isinstance(data, dict):
            raise ValueError(f"init must be an object such as {{\"kind\": \"random\"}}, got {data!r}")
        _unknown_keys("init", data, {f.name for f in cls.__dataclass_fields__.values()})
        _check_kind_keys("init", data, INIT_KINDS, {"random": ("d", "seed", "scale"), "overlaps": ("Q", "R")})
        return cls(**data)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one run of the dynamics.

    Attributes
    ----------
    K, M : int
        Student and teacher widths.
    teacher : TeacherSpec
    lr : float
        Learning rate ``eta`` (positive).
    eta2 : bool
        Keep the ``eta^2`` finite-learning-rate term of the ODE.
    noise : float
        Label-noise variance (non-negative).
    t_max : float
        Time horizon in steps / d.
    init : InitSpec
    """

    K: int = 4
    M: int = 4
    teacher: TeacherSpec = field(default_factory=TeacherSpec)
    lr: float = 0.5
    eta2: bool = True
    noise: float = 0.0
    t_max: float = 1000.0
    init: InitSpec = field(default_factory=InitSpec)

    def __post_init__(self):
        object.__setattr__(self, "K", _whole("K", self.K, 1, MAX_UNITS))
        object.__setattr__(self, "M", _whole("M", self.M, 1, MAX_UNITS))
        _number("lr", self.lr, 0.0, 1e3, low_open=True)
        if not isinstance(self.eta2, (bool, np.bool_)):
            raise ValueError(f"eta2 must be true or false, got {self.eta2!r}")
        _number("noise", self.noise, 0.0, 1e6)
        _number("t_max", self.t_max, 0.0, 1e9, low_open=True)
        if isinstance(self.teacher, dict):
            object.__setattr__(self, "teacher", TeacherSpec.from_dict(self.teacher))
        if isinstance(self.init, dict):
            object.__setattr__(self, "init", InitSpec.from_dict(self.init))
        self.teacher_matrix()  # fails early on a teacher that does not fit M
        if self.init.kind == "overlaps":
            validate_overlaps(self.init.Q, self.init.R, self.teacher_matrix())
            if np.array(self.init.Q).shape[0] != self.K:
                raise ValueError(f"init Q has {np.array(self.init.Q).shape[0]} rows but K = {self.K}")

    def teacher_matrix(self) -> np.ndarray:
        """Teacher overlap matrix ``T``, shape (M, M)."""
        return self.teacher.matrix(self.M)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (the format of ``landscape flow --config``)."""
        data = asdict(self)
        data["teacher"] = self.teacher.to_dict()
        data["init"] = self.init.to_dict()
        data["eta2"] = bool(self.eta2)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build and validate from a dictionary.

        Raises
        ------
        ValueError
            On missing or unknown keys and invalid values, naming the key.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a run config must be a JSON object, got {type(data).__name__}")
        _unknown_keys("config", data, {f.name for f in cls.__dataclass_fields__.values()})
        data = dict(data)
        data["teacher"] = TeacherSpec.from_dict(data.get("teacher", {"kind": "orthonormal"}))
        data["init"] = InitSpec.from_dict(data.get("init", {"kind": "random"}))
        return cls(**data)

    def to_json(self) -> str:
        """Compact JSON text."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        """Parse JSON text.

        Raises
        ------
        ValueError
            If the text is not JSON or not a valid config.
        """
        if not isinstance(text, (str, bytes)):
            raise ValueError(f"config JSON must be text, got {type(text).__name__}")
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"config is not valid JSON: {error}") from None
        except RecursionError:
            # The decoder recurses once per bracket: thousands of them exhaust the stack.
            raise ValueError("config is nested too deeply to be a run config") from None
        return cls.from_dict(data)

    def to_share_string(self) -> str:
        """URL-safe string that :meth:`from_share_string` turns back into this config."""
        packed = zlib.compress(self.to_json().encode(), 9)
        return _SHARE_PREFIX + base64.urlsafe_b64encode(packed).decode().rstrip("=")

    @classmethod
    def from_share_string(cls, text: str) -> RunConfig:
        """Decode a share string.

        Raises
        ------
        ValueError
            If the string is malformed or describes an invalid config.
        """
        if not isinstance(text, str) or not text.startswith(_SHARE_PREFIX):
            raise ValueError(f"a share string starts with {_SHARE_PREFIX!r}; this one does not")
        body = text[len(_SHARE_PREFIX):]
        if len(body) > _MAX_SHARE_CHARS:
            raise ValueError(f"the share string is {len(body)} characters long, more than the {_MAX_SHARE_CHARS} "
                             "a config needs")
        try:
            packed = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
            inflater = zlib.decompressobj()
            # Bounded: a few kilobytes of compressed zeros would otherwise inflate to gigabytes.
            raw = inflater.decompress(packed, _MAX_SHARE_JSON)
            if inflater.unconsumed_tail or not inflater.eof:
                raise ValueError("too long or truncated")
        except (ValueError, zlib.error):
            raise ValueError("the share string is damaged (it does not decode); copy the whole link again") from None
        return cls.from_json(raw.decode("utf-8", errors="replace"))


def require_run_config(config):
    """Return ``config`` if it is a :class:`RunConfig`; the check every run's entry point makes.

    Raises
    ------
    ValueError
        If ``config`` is anything else.
    """
    if not isinstance(config, RunConfig):
        raise ValueError(f"config must be a RunConfig, got {type(config).__name__}")
    return config
