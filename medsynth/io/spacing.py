"""The spacing rule: a scan's pixel spacing is known, or given, never assumed.

Every millimetre-based step (ROI size, lesion size and merge distance, calcification specks, the
model's patch spacing) is wrong without a word when the spacing is wrong. A DICOM file without
PixelSpacing, ImagerPixelSpacing or NominalScannedPixelSpacing, or a PNG without DPI, is read with
an *unknown* spacing ((nan, nan), ``spacing_source`` "unknown"). :func:`resolve_spacing` then fills it
in from, in this order:

1. the spacing the user gives (``--spacing-mm``, a ``data.spacing_mm`` / ``spacing_mm`` setting, the
   ``spacing_mm=`` argument of :func:`medsynth.load_dataset`);
2. a per-case value the dataset lists (a ``spacing_mm`` column of a folder's ``cases.csv``; the
   per-case spacing a ``medsynth generate`` PNG output records in its manifest);
3. a documented default of the layout (CBIS-DDSM: :data:`~medsynth.io.layouts.cbis_ddsm.DEFAULT_SPACING_MM`);

and otherwise refuses the dataset with an :class:`~medsynth.errors.InvalidImageError` naming the
first such file. ``load_dataset`` applies it by default, so training, generation, evaluation and the
audit all refuse such scans; ``medsynth info`` lists them instead. A spacing stated in the file is
never overridden.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from medsynth.errors import ConfigError, InvalidImageError

SPACING_ATTRIBUTES = ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing")
#: Case metadata keys a layout fills for scans without a spacing of their own (mm, one number or a pair).
LISTED_KEY = "listed_spacing_mm"
DEFAULT_KEY = "layout_default_spacing_mm"
DEFAULT_WHY_KEY = "layout_default_spacing_why"


def parse_spacing(value: Any, what: str = "spacing_mm") -> tuple[float, float] | None:
    """``value`` as a (row, col) spacing in mm: one number for square pixels, or two; None stays None.

    Raises:
        ConfigError: not one or two positive finite numbers.
    """
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").replace(" ", ",").split(",") if p]
    else:
        parts = list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        numbers = [float(p) for p in parts]
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what} must be one or two numbers in mm (e.g. 0.05 or 0.05,0.05), got {value!r}") from e
    if len(numbers) == 1:
        numbers = numbers * 2
    if len(numbers) != 2 or not all(math.isfinite(n) and n > 0 for n in numbers):
        raise ConfigError(f"{what} must be one or two positive numbers in mm, got {value!r}")
    return numbers[0], numbers[1]


def _scans(case: Any) -> Iterable[Any]:
    yield case.image
    if getattr(case, "mask", None) is not None:
        yield case.mask


def resolve_spacing(cases: Iterable[Any], spacing_mm: Any = None, require: bool = True) -> dict[str, int]:
    """Fill in the spacing of every scan whose file states none, or refuse (see the module docstring).

    A mask without a spacing of its own takes its image's. Scans are changed in place.

    Args:
        cases: the cases of a dataset.
        spacing_mm: the spacing the user gives (one number or a (row, col) pair), or None.
        require: refuse when a spacing stays unknown (False: leave it unknown, as ``medsynth info`` does).

    Returns:
        How many images got their spacing from each source (``given``, ``listed``, ``layout default``)
        and how many stay ``unknown``.

    Raises:
        InvalidImageError: ``require`` and an image's spacing stays unknown (names the first file).
        ConfigError: ``spacing_mm`` is not one or two positive numbers.
    """
    given = parse_spacing(spacing_mm)
    counts = {"given": 0, "listed": 0, "layout default": 0, "unknown": 0}
    missing: list[Any] = []
    for case in cases:
        image = case.image
        if not image.spacing_known:
            meta = getattr(case, "metadata", None) or {}
            listed = parse_spacing(meta.get(LISTED_KEY), f"the listed spacing of case {case.case_id}")
            default = parse_spacing(meta.get(DEFAULT_KEY))
            if given is not None:
                image.set_spacing(given, "given")
                counts["given"] += 1
            elif listed is not None:
                image.set_spacing(listed, "listed")
                counts["listed"] += 1
            elif default is not None:
                image.set_spacing(default, f"layout default ({meta.get(DEFAULT_WHY_KEY, 'see medsynth info')})")
                counts["layout default"] += 1
            else:
                counts["unknown"] += 1
                missing.append(image)
        mask = getattr(case, "mask", None)
        if mask is not None and not mask.spacing_known and image.spacing_known:
            mask.set_spacing(image.spacing, "its image's")
    if missing and require:
        more = f" ({len(missing) - 1} more image(s) lack it too)" if len(missing) > 1 else ""
        raise InvalidImageError(
            "states no pixel spacing (none of " + ", ".join(SPACING_ATTRIBUTES) + "; for PNG, no DPI), and "
            "every step in millimetres needs it: give it with --spacing-mm, data.spacing_mm in the config, "
            f"or a spacing_mm column in cases.csv{more}",
            missing[0].path,
        )
    return counts
