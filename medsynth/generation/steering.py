"""What the painter is asked for, beyond the outline: the attributes of each synthetic lesion.

An attribute-conditioned inpainter (:mod:`medsynth.models.attributes`) paints what it is told: the
lesion's class, its BI-RADS descriptors and size (taken from the outline the mask source drew, so
``--shape spiculated`` steers the mask *and* the painter), and optionally the breast density,
pathology, BI-RADS assessment and subtlety. Each of those four is a list to draw from (one value per
lesion, from the case's own random stream), ``null`` (not asked: the model's null token), or for the
density ``background``: the background image's own density when its dataset records one. The
manifest records every lesion's attributes under ``conditioning``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from medsynth.errors import ConfigError
from medsynth.models.attributes import VOCABULARY, case_density, normalise

STEERED = ("density", "pathology", "birads", "subtlety")


def _choices(name: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, int, float)):
        value = [v for v in str(value).replace(",", " ").split() if v]
    out = []
    for v in value:
        if name == "density" and str(v).strip().lower() == "background":
            out.append("background")
            continue
        key = normalise(name, v)
        if key is None:
            raise ConfigError(f"unknown {name} {v!r}; choose from {', '.join(VOCABULARY[name])}"
                              + (" or background" if name == "density" else ""))
        out.append(key)
    if not out:
        return None
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class Steering:
    """The attributes asked of the painter beyond the outline.

    Attributes:
        density, pathology, birads, subtlety: values to draw from (one per lesion), or None (not asked).
    """

    density: tuple[str, ...] | None = ("background",)
    pathology: tuple[str, ...] | None = None
    birads: tuple[str, ...] | None = None
    subtlety: tuple[str, ...] | None = None

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> "Steering":
        """From the ``conditioning`` section of a generate config (unknown values refused).

        Raises:
            ConfigError: a value outside the attribute's vocabulary.
        """
        return cls(**{name: _choices(name, section.get(name)) for name in STEERED})

    def describe(self) -> dict[str, Any]:
        return {name: list(v) if v else None for name, v in ((n, getattr(self, n)) for n in STEERED)}

    def attributes(self, lesion: Any, background: Any, spacing: Sequence[float],
                   rng: np.random.Generator) -> dict[str, Any]:
        """The attributes of one lesion: its outline's class and descriptors, its size (extent in mm)
        and the steered attributes drawn from ``rng``."""
        info = dict(getattr(lesion, "info", {}) or {})
        klass = info.get("class") or ("calcification" if int(lesion.label) == 2 else "mass")
        out: dict[str, Any] = {"class": klass, "size": round(float(lesion.extent_mm(tuple(spacing))), 3)}
        for key in (("shape", "margin") if klass == "mass" else ("calc_type", "distribution")):
            value = normalise(key, info.get(key))
            if value is not None:
                out[key] = value
        for name in STEERED:
            choices = getattr(self, name)
            if not choices:
                continue
            pick = choices[int(rng.integers(len(choices)))]
            if pick == "background":
                pick = case_density(getattr(background, "metadata", None))
            if pick is not None:
                out[name] = pick
        return out
