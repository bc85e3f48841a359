"""Which figure each utility task leads with, and its name in words.

A leaf module: the protocol (which computes the figures), the result (its sentences) and the HTML
report all read these, and none of them has to import another for it.
"""

from __future__ import annotations

from typing import Any

# The figure each task leads with (an arm's "Dice", a difference's ``value``). On whole images it is the
# per-image Dice of the test images *with* lesions: on a lesion-free image per-image Dice is 1 or 0 (any
# false-positive lesion zeroes it), so those images turned the mean into a count of clean images that
# swung more from seed to seed than the lesions' Dice (on the phantom benchmark: a seed's share of clean
# lesion-free images 0.14-0.73 at the same data) and ranked 100 % real below 10 %. The lesion-free images
# keep their own figure (``dice_lesion_free``: the share left without a false positive) and detection at
# fixed false positives per image; the all-image ``dice`` stays in the JSON.
HEADLINES = {"crops": "dice", "full": "dice_lesion_images"}
# The figure of each lesion class and margin group: per crop, or per lesion on whole images.
GROUP_HEADLINES = {"crops": "dice", "full": "lesion_dice"}
METRIC_WORDS = {"dice": "Dice", "dice_lesion_images": "Dice of the images with lesions"}


def headline_of(task: str, data: dict[str, Any]) -> str:
    """The key of the task's headline figure in its JSON (older results, without one, led with ``dice``)."""
    return str(data.get("headline") or "dice")


__all__ = ["GROUP_HEADLINES", "HEADLINES", "METRIC_WORDS", "headline_of"]
