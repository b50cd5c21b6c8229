"""Sidebar settings <-> :class:`~landscape.model.config.RunConfig`, and the query string of a share link."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import numpy as np

from ..model.config import InitSpec, RunConfig, TeacherSpec
from .matrices import default_block_sizes, format_matrix, parse_block_sizes, parse_matrix
from .settings import SIDEBAR_SETTINGS, TEACHER_CHOICES, check_query, default_values

__all__ = ["config_from_settings", "settings_from_config", "query_string", "link_from_share_string"]


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
    full = {**default_values(), **dict(values)}
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
    if config.teacher.kind == "equicorrelated" and config.teacher.norm != 1.0:
        raise ValueError(f"the dashboard's equicorrelated teacher has unit norm; this one has norm {config.teacher.norm:g}")
    values = default_values()
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


def link_from_share_string(text: str) -> tuple[dict, tuple]:
    """Link parameters that open the config of a share string (``?config=<RunConfig.to_share_string()>``).

    Parameters
    ----------
    text : str
        A share string (``v1.`` followed by the packed config).

    Returns
    -------
    params : dict of str to str
        Query parameters of the sidebar settings that differ from their defaults and are valid.
    warnings : tuple of str
        One sentence if the string does not open (then ``params`` is empty), or one per setting
        out of the dashboard's range (that setting keeps its default).
    """
    try:
        values = settings_from_config(RunConfig.from_share_string(text))
    except ValueError as error:
        return {}, (f"Link parameter config does not open a run ({error}); using the other parameters.",)
    params = dict(parse_qsl(query_string(values), keep_blank_values=True))
    check = check_query(params)
    return {key: params[key] for key in check.values}, check.warnings
