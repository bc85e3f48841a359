"""medsynth.metrics: how good and how useful is a synthetic image set?

- :func:`medsynth.metrics.evaluate.evaluate` -- the C2ST realism test (:mod:`.realism`), lesion
  statistics at full resolution (:mod:`.lesion_stats`), FID, KID, precision/recall/density/coverage
  and MS-SSIM diversity (on lesion ROIs where both sets have masks, each beside its real-vs-real
  floor: :mod:`.fidelity`) of a synthetic set against a real one (an ``EvaluationResult`` with
  ``to_json``, ``save_html`` and ``_repr_html_``).
- :func:`medsynth.metrics.utility.evaluate_utility` -- Dice and detection of segmentation networks
  (lesion crops; whole images) trained on real, real + synthetic and synthetic data at several data
  regimes, on a patient-disjoint real test set, with paired intervals per class and margin.
- :func:`medsynth.metrics.features.get_extractor` -- the feature extractors ("random", "domain",
  "inception:PATH" or an ``nn.Module``); the audit reuses the invariant "domain" for copy detection.

Submodules are imported on use (torch, torchmetrics and MONAI are heavy).
"""
