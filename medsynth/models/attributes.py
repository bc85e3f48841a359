"""Lesion attributes the inpainter is conditioned on, and where they come from.

Each training patch and each lesion to paint carries a few attributes: its class (healthy tissue,
mass, calcification), the BI-RADS descriptors (mass shape and margin, calcification type and
distribution), its size, and where the data has them the breast density, pathology, BI-RADS
assessment and subtlety (CBIS-DDSM's CSV columns; the phantoms write the same). Every attribute but
the class may be missing: it then takes its *null token*, so a dataset that lacks some columns
trains as well, and classifier-free guidance compares a prediction with all descriptors against
one with all of them null (Ho & Salimans 2022; training drops them at random, ``condition_dropout``).

Encoding: one integer per attribute, an index into one shared embedding table (offset of the
attribute + 0 for null, 1.. for its values), so a batch is a (B, n_attributes) long tensor and the
UNet's class embedding (:class:`SummedEmbedding`) adds the attributes' embeddings to the timestep
embedding. The vocabulary is part of the model config, so a saved model keeps its own.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from medsynth.errors import ConfigError

# The vocabulary, in the one spelling medsynth uses (see medsynth.phantoms.lesions and io/labels.py).
CLASS_VALUES = ("healthy", "mass", "calcification")
LESION_CLASSES = CLASS_VALUES[1:]  # what a painter can paint (its ``classes`` setting chooses among them)
SIZE_EDGES_MM = (4.0, 6.0, 9.0, 13.0, 19.0, 28.0, 40.0)  # extent bins: <4, 4-6, ..., >40 mm
VOCABULARY: dict[str, tuple[str, ...]] = {
    "class": CLASS_VALUES,
    "shape": ("round", "oval", "lobulated", "irregular"),
    "margin": ("circumscribed", "ill_defined", "spiculated"),
    "calc_type": ("punctate", "amorphous", "pleomorphic", "fine_linear_branching"),
    "distribution": ("clustered", "linear", "segmental", "regional"),
    "size": tuple(f"bin{i}" for i in range(len(SIZE_EDGES_MM) + 1)),
    "density": ("a", "b", "c", "d"),
    "pathology": ("benign", "malignant"),
    "birads": ("0", "1", "2", "3", "4", "5"),
    "subtlety": ("1", "2", "3", "4", "5"),
}
ATTRIBUTES: tuple[str, ...] = tuple(VOCABULARY)
# Attributes a user can steer (the class is always given; size comes from the mask).
DESCRIPTORS: tuple[str, ...] = tuple(a for a in ATTRIBUTES if a != "class")


def vocabulary_size(vocabulary: Mapping[str, Sequence[str]] = VOCABULARY) -> int:
    """Rows of the shared embedding table: each attribute's values plus its null token."""
    return sum(len(v) + 1 for v in vocabulary.values())


def offsets(vocabulary: Mapping[str, Sequence[str]] = VOCABULARY) -> dict[str, int]:
    out, at = {}, 0
    for name, values in vocabulary.items():
        out[name] = at
        at += len(values) + 1
    return out


def size_bin(extent_mm: float | None) -> str | None:
    """The size token of a lesion whose larger bounding-box side is ``extent_mm``."""
    if extent_mm is None or not math.isfinite(float(extent_mm)) or extent_mm <= 0:
        return None
    return f"bin{int(np.searchsorted(SIZE_EDGES_MM, float(extent_mm), side='right'))}"


def normalise(name: str, value: Any) -> str | None:
    """``value`` of attribute ``name`` in medsynth's spelling, or None (the null token) when it is
    missing or not in the vocabulary.

    Accepts the spellings of CBIS-DDSM's CSVs: upper case, "ILL_DEFINED" or "ill-defined", two values
    joined by "-" ("CIRCUMSCRIBED-OBSCURED": the first known one is taken), densities 1-4 for a-d,
    "BENIGN_WITHOUT_CALLBACK" as benign, numbers for assessment and subtlety.
    """
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    text = str(value).strip().lower()
    if not text or text in ("none", "nan", "n/a", "null"):
        return None
    known = VOCABULARY[name]
    if name == "density":
        text = {"1": "a", "2": "b", "3": "c", "4": "d"}.get(text.split(".")[0], text)
        return text if text in known else None
    if name in ("birads", "subtlety"):
        try:
            text = str(int(float(text)))
        except ValueError:
            return None
        return text if text in known else None
    if name == "pathology":
        return "malignant" if text.startswith("malignant") else "benign" if text.startswith("benign") else None
    text = text.replace(" ", "_")
    if text in known:
        return text
    # CBIS-DDSM joins two descriptors with "-" ("circumscribed-ill_defined"); "ill-defined" is one.
    spaced = text.replace("ill-defined", "ill_defined").replace("fine-linear", "fine_linear")
    for part in spaced.split("-"):
        if part in known:
            return part
    return None


def encode(attributes: Mapping[str, Any], vocabulary: Mapping[str, Sequence[str]] = VOCABULARY) -> list[int]:
    """One lesion's attributes as indices into the shared table (null where missing or unknown).

    Raises:
        ConfigError: the class is missing or not one of healthy / mass / calcification.
    """
    offs = offsets(vocabulary)
    out = []
    for name, values in vocabulary.items():
        value = attributes.get(name)
        if name == "size" and value is not None and not str(value).startswith("bin"):
            value = size_bin(float(value))
        value = normalise(name, value) if name not in ("size",) else value
        if name == "class" and value is None:
            raise ConfigError(f"a lesion's class must be one of {', '.join(values)}, got {attributes.get('class')!r}")
        out.append(offs[name] + (values.index(value) + 1 if value in values else 0))
    return out


def null_descriptors(codes: torch.Tensor, vocabulary: Mapping[str, Sequence[str]] = VOCABULARY) -> torch.Tensor:
    """``codes`` (B, n_attributes) with every descriptor set to its null token (the class kept):
    the unconditional branch of classifier-free guidance."""
    offs = offsets(vocabulary)
    out = codes.clone()
    for k, name in enumerate(vocabulary):
        if name != "class":
            out[:, k] = offs[name]
    return out


def drop_descriptors(codes: torch.Tensor, p_all: float, p_each: float, generator: torch.Generator,
                     vocabulary: Mapping[str, Sequence[str]] = VOCABULARY) -> torch.Tensor:
    """Condition dropout for classifier-free guidance: with probability ``p_all`` a sample loses all its
    descriptors, and each descriptor is also dropped alone with probability ``p_each`` (so missing
    columns are seen in training). Draws come from ``generator``."""
    B, n = codes.shape
    u_all = torch.rand(B, 1, generator=generator)
    u_each = torch.rand(B, n, generator=generator)
    drop = (u_all < p_all) | (u_each < p_each)
    nulls = torch.tensor(list(offsets(vocabulary).values()), dtype=codes.dtype)[None].expand(B, n)
    keep_class = torch.tensor([name == "class" for name in vocabulary])[None].expand(B, n)
    return torch.where(drop & ~keep_class, nulls, codes)


def decode(codes: Sequence[int], vocabulary: Mapping[str, Sequence[str]] = VOCABULARY) -> dict[str, str | None]:
    """The attributes of one code vector (None for a null token); the inverse of :func:`encode`."""
    offs = offsets(vocabulary)
    out: dict[str, str | None] = {}
    for k, (name, values) in enumerate(vocabulary.items()):
        i = int(codes[k]) - offs[name]
        out[name] = values[i - 1] if i > 0 else None
    return out


class SummedEmbedding(torch.nn.Embedding):
    """An ``nn.Embedding`` over the shared attribute table whose output for a (B, n) index tensor is
    the sum of the n rows, (B, dim): what ``UNet2DModel`` adds to its timestep embedding. Its weights
    keep the plain embedding's name (``class_embedding.weight``)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - nn.Embedding's argument name
        out = super().forward(input)
        return out.sum(-2) if input.ndim == 2 else out


# ----------------------------------------------------------------------------- from dataset metadata
def case_density(metadata: Mapping[str, Any] | None) -> str | None:
    """The breast density of a case (CBIS-DDSM's ``breast_density`` / ``breast density``, a folder's
    ``density`` column), or None."""
    if not metadata:
        return None
    for key in ("breast_density", "breast density", "density"):
        value = normalise("density", metadata.get(key))
        if value is not None:
            return value
    return None


def row_attributes(row: Mapping[str, Any]) -> dict[str, str | None]:
    """The descriptors of one lesion row of a CBIS-DDSM-style CSV (keys in snake case)."""
    return {
        "shape": normalise("shape", row.get("mass_shape")),
        "margin": normalise("margin", row.get("mass_margins")),
        "calc_type": normalise("calc_type", row.get("calc_type")),
        "distribution": normalise("distribution", row.get("calc_distribution")),
        "pathology": normalise("pathology", row.get("pathology")),
        "birads": normalise("birads", row.get("assessment")),
        "subtlety": normalise("subtlety", row.get("subtlety")),
    }


def folder_attributes(metadata: Mapping[str, Any], klass: str) -> dict[str, str | None]:
    """Descriptors from a folder layout's ``cases.csv`` row (the phantoms' columns ``mass_shapes``,
    ``mass_margins``, ``calc_types``, ``calc_distributions``, ``pathologies``: ";"-separated lists).
    Only an unambiguous value is used: a single entry, or entries that all agree."""

    def one(key: str, name: str) -> str | None:
        values = {normalise(name, v) for v in str(metadata.get(key) or "").split(";") if v.strip()}
        values.discard(None)
        return values.pop() if len(values) == 1 else None

    out: dict[str, str | None] = {"pathology": one("pathologies", "pathology")}
    if klass == "mass":
        out.update(shape=one("mass_shapes", "shape"), margin=one("mass_margins", "margin"))
    elif klass == "calcification":
        out.update(calc_type=one("calc_types", "calc_type"), distribution=one("calc_distributions", "distribution"))
    return out
