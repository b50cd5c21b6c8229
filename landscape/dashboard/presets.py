"""One-click lecture settings of the sidebar."""

from __future__ import annotations

from dataclasses import dataclass, field

from .settings import _defaults

__all__ = ["Preset", "PRESETS", "preset_values"]


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
    Preset(
        "learning rate too large",
        "K = M = 2, orthonormal teacher, label noise 0.1, eta^2 term on: the fixed point near the global minimum "
        "climbs in loss as lr grows and disappears in a fold at lr = 1.2246; beyond it SGD diverges. See the "
        "Learning rate page.",
        {"K": 2, "M": 2, "noise": 0.1, "eta2": True, "lr": 0.5, "tmax": 1000.0},
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
