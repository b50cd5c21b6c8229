"""Backend side of the dashboard, free of Streamlit: settings, share links, presets and caps.

Every setting of the app is a :class:`Setting` (URL parameter name, widget label, type,
default, range). The same records drive the widgets (``app.py``), the validation of a shared
link (:func:`check_query`) and the conversion to a :class:`~landscape.model.config.RunConfig`
(:func:`config_from_settings`), so a link, the widgets and the computation cannot disagree.
:class:`DemoCaps` bounds the work one interactive request may ask for on a hosted demo.
The phase-portrait reduction (:func:`phase_path`) also lives here: numbers in, numbers out.

Modules: :mod:`.settings` (the settings table, query-string checks), :mod:`.matrices` (matrices
and block sizes as text), :mod:`.configs` (settings <-> configs, share links), :mod:`.presets`,
:mod:`.caps` (hosted-demo caps), :mod:`.phase` (phase portraits), :mod:`.run_summary` (captions
with numbers from the run) and :mod:`.catalogues` (catalogue keys, reachability series, sunburst sizes). Every name is
importable from here.
"""

from .caps import DemoCaps
from .catalogues import MAX_SERIES, catalogue_key, leaf_counts, series_configs
from .configs import config_from_settings, link_from_share_string, query_string, settings_from_config
from .matrices import (
    apply_symmetric_edits,
    default_block_sizes,
    format_matrix,
    parse_block_sizes,
    parse_matrix,
    parse_rows,
    resize_matrix_text,
)
from .phase import PhasePath, phase_path, phase_point
from .presets import PRESETS, Preset, preset_values
from .run_summary import loss_curve_caption
from .settings import (
    CATALOGUE_SETTINGS,
    DIMENSION_CHOICES,
    PAGE_SETTINGS,
    REGIME_CHOICES,
    SERIES_CHOICES,
    SIDEBAR_SETTINGS,
    TEACHER_CHOICES,
    QueryCheck,
    Setting,
    check_query,
    setting,
)

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
    "parse_rows",
    "format_matrix",
    "parse_block_sizes",
    "default_block_sizes",
    "resize_matrix_text",
    "apply_symmetric_edits",
    "config_from_settings",
    "settings_from_config",
    "query_string",
    "link_from_share_string",
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
    "loss_curve_caption",
]
