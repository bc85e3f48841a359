"""The lesion classes of medsynth's label maps: one table, read by the dataset readers, the phantoms,
generation and every writer.

Values are consecutive from 0, as nnU-Net requires, and the writers always declare all of them, so
datasets made with different mask sources share one label space. CBIS-DDSM's two abnormality types
map to ``mass`` and ``calcification`` (a calcification label outlines the cluster region).
"""

from __future__ import annotations

LABELS: dict[str, int] = {"background": 0, "mass": 1, "calcification": 2}
CLASS_NAMES: dict[int, str] = {v: k for k, v in LABELS.items()}
LESION_CLASSES: tuple[str, ...] = tuple(name for name in LABELS if name != "background")
