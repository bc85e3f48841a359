"""Downstream utility: does adding a synthetic set help a segmentation model on real test data?

Two tasks, each trained on ``real``, ``real+synthetic`` and ``synthetic`` data at several data
regimes (fractions of the real training patients), with several seeds, the same steps for every arm:

- ``crops``: a small MONAI UNet on lesion-centred crops (:mod:`.crops`);
- ``full``: a MONAI DynUNet (nnU-Net's architecture) on whole images, lesion-free ones included,
  with foreground oversampling and sliding-window inference (:mod:`.full`).

Scored on a patient-disjoint real test set (checked, :mod:`.splits`): Dice (empty on empty = 1),
lesion-level detection sensitivity at 0.5 / 1 / 2 false positives per image, per lesion class and per
margin; each arm-vs-real difference with a 95 % interval and p-value from a bootstrap that resamples
test patients and training seeds (:mod:`.stats`). Downstream performance is what users of synthetic
data care about; it is the "gold standard" next to the distribution metrics of
:mod:`medsynth.metrics.fidelity`. Settings come from the ``utility`` section of ``configs/evaluate.yaml``.
"""

from __future__ import annotations

from medsynth.metrics.utility.protocol import ARMS, TASKS, evaluate_utility, regime_key
from medsynth.metrics.utility.result import UtilityResult
from medsynth.metrics.utility.stats import bootstrap_ci, dice_per_case

__all__ = ["ARMS", "TASKS", "UtilityResult", "bootstrap_ci", "dice_per_case", "evaluate_utility", "regime_key"]
