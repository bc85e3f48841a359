"""The embedded default data of medsynth: procedural mammography phantoms.

Real DDSM data cannot be shipped, so medsynth renders its own realistic-enough mammograms: a breast
outline (CC or MLO with pectoral muscle), 1/f^3 fibroglandular texture at a BI-RADS density, masses
and calcification clusters with ground-truth masks, and dataset layouts (CBIS-DDSM-like DICOM with
decoy PHI, NIfTI, PNG)::

    from medsynth.phantoms import make_phantoms, render_phantom
    phantom = render_phantom(seed=0, index=3, view="mlo")      # arrays in memory
    root = make_phantoms("phantoms/", n=200, seed=0)          # a dataset load_dataset reads
"""

from __future__ import annotations

from medsynth.phantoms.layouts import LAYOUTS, make_phantoms, make_phantoms_from_config
from medsynth.phantoms.lesions import CALC_LABEL, MASS_LABEL
from medsynth.phantoms.render import Phantom, render_phantom

__all__ = [
    "CALC_LABEL", "LAYOUTS", "MASS_LABEL", "Phantom", "make_phantoms", "make_phantoms_from_config", "render_phantom",
]
