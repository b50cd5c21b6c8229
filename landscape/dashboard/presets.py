"""One-click lecture settings of the sidebar."""

from __future__ import annotations

from dataclasses import dataclass, field

from .settings import default_values

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


# Each description states qualitative facts and the settings it names; tests/test_presets.py runs
# every preset and checks each statement (and every number in the text) against the run. The
# numbers of a particular run (plateau levels and times, the final loss) are computed from it and
# shown under the loss curve (landscape.dashboard.run_summary), never written here.
PRESETS = (
    Preset(
        "Saad-Solla plateau",
        "K = M = 3, orthonormal teacher, start with overlaps of size 1/sqrt(d) (d = 10^6): the loss stalls "
        "on a plateau near the unspecialised fixed point, where every student overlaps every teacher alike, "
        "before the units specialise and the loss goes to zero. The caption under the loss curve gives the "
        "plateau's level and length; both depend on the seed.",
        {"K": 3, "M": 3, "d": 1_000_000, "tmax": 1000.0},
    ),
    Preset(
        "spurious minimum K = M = 8",
        "K = M = 8, orthonormal teacher, init seed 6: gradient flow converges to a spurious minimum "
        "(one teacher unit not recovered, the loss stays positive) instead of the global minimum at loss 0.",
        {"K": 8, "M": 8, "seed": 6, "tmax": 3000.0},
    ),
    Preset(
        "over-parameterised K = M + 1",
        "The same start plus one student unit (K = 9, M = 8, seed 6): the extra unit removes the spurious "
        "minimum and the loss keeps falling towards zero.",
        {"K": 9, "M": 8, "seed": 6, "tmax": 2000.0},
    ),
    Preset(
        "correlated teacher",
        "K = M = 4, teacher units with correlation 0.6: the students first learn the teachers' common direction, "
        "so the loss drops fast to a plateau several times lower than an orthonormal teacher's, but telling the "
        "teacher units apart is slow: the loss then falls more slowly than with an orthonormal teacher "
        "(switch the teacher to compare).",
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
            return {**default_values(), **preset.changes}
    raise ValueError(f"no preset named {name!r}; presets: {[p.name for p in PRESETS]}")
