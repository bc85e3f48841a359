"""Who and what is in a dataset: each image's patient and a hash of its pixels.

:func:`image_digest` is the one content identity of an image: SHA-256 over its shape and its
``Scan.unit_pixels()`` as float32. ``medsynth generate`` salts exactly this digest into its manifest
(``HMAC-SHA256(salt, digest)`` per background), and the utility test compares it across real-train,
real-test and synthetic sets to refuse splits that share an image. :func:`dataset_identities` lists
it with the patient of every case of a dataset.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np


def image_digest(pixels: np.ndarray) -> str:
    """SHA-256 (hex) of an image's shape and float32 pixels, as ``medsynth generate`` computes it.

    Args:
        pixels: the image as ``Scan.unit_pixels()`` returns it (float32 in [0, 1]).
    """
    a = np.ascontiguousarray(pixels, dtype=np.float32)
    return hashlib.sha256(str(a.shape).encode() + a.tobytes()).hexdigest()


@dataclass(frozen=True)
class CaseIdentity:
    """One case of a dataset as the split checks see it.

    Attributes:
        case_id: the case's id in its dataset.
        patient_id: the layout's patient id, or None when the layout records none.
        relpath: the image's path relative to the dataset root (how messages name it).
        digest: :func:`image_digest` of its pixels.
    """

    case_id: str
    patient_id: str | None
    relpath: str
    digest: str


def case_identity(case: Any, pixels: np.ndarray | None = None) -> CaseIdentity:
    """The identity of one :class:`~medsynth.io.scan.Case` (``pixels``: its unit pixels, if already read)."""
    px = case.image.unit_pixels() if pixels is None else pixels
    pid = case.patient_id
    return CaseIdentity(str(case.case_id), None if pid in (None, "") else str(pid),
                        case.image_relpath or str(case.image.path), image_digest(px))


def dataset_identities(cases: Iterable[Any]) -> list[CaseIdentity]:
    """:func:`case_identity` of every case (reads each image once and releases its pixels)."""
    out = []
    for case in cases:
        out.append(case_identity(case))
        case.image.release()
    return out


__all__ = ["CaseIdentity", "case_identity", "dataset_identities", "image_digest"]
