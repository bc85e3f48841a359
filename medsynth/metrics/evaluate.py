"""``evaluate(real, synthetic)``: fidelity and diversity of a synthetic set, as one JSON-able result.

Reads both sets (dataset paths, Datasets or arrays), preprocesses them to a fixed size
(:mod:`medsynth.metrics.images`), embeds them with one feature extractor
(:mod:`medsynth.metrics.features`) and computes, each as a top-level key of the result:

- ``fid``, ``kid`` (mean, std over subsets), ``precision``, ``recall``, ``density``, ``coverage``
  on whole images;
- ``ms_ssim``: mean pairwise MS-SSIM within the synthetic set (lower = more diverse), with the real
  set's own value as the baseline to compare to;
- ``roi_fid``: FID on lesion-centred crops, when both sets carry lesion masks;
- ``fid_inception``: FID with the standard Inception features when a weights file is given (or the
  features themselves are ``inception:PATH``); otherwise a note saying how to provide it.

Every metric records the feature extractor and the sample counts, since FID in particular depends
on both (it is biased and unstable with few samples).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.errors import InvalidImageError
from medsynth.io.writers.atomic import atomic_write_text
from medsynth.utils import jsonable


@dataclass
class EvaluationResult:
    """The metrics of one synthetic set against one real set.

    Attributes:
        metrics: one entry per metric name (``fid``, ``kid``, ...), each a dict with at least
            ``value``, ``feature_extractor``, ``n_real``, ``n_synthetic``.
        meta: sources, settings, extractor facts and timings.
        real_features, synthetic_features: the whole-image embeddings (for the report's PCA).
        real_samples, synthetic_samples: a few preprocessed images (for the report's sample sheets).
    """

    metrics: dict[str, dict[str, Any]]
    meta: dict[str, Any]
    real_features: np.ndarray | None = field(default=None, repr=False)
    synthetic_features: np.ndarray | None = field(default=None, repr=False)
    real_samples: np.ndarray | None = field(default=None, repr=False)
    synthetic_samples: np.ndarray | None = field(default=None, repr=False)

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self.metrics[name]

    def value(self, name: str) -> float | None:
        """The headline number of metric ``name``."""
        return self.metrics[name]["value"]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: one top-level key per metric, plus ``meta``."""
        return {**self.metrics, "meta": self.meta}

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomically); returns the path."""
        return atomic_write_text(Path(path), json.dumps(jsonable(self.to_dict()), indent=2))

    def save_html(self, path: str | Path, utility: Any = None) -> Path:
        """Write the self-contained HTML report (images inlined as base64 PNG); returns the path."""
        from medsynth.metrics.report import evaluation_html

        return atomic_write_text(Path(path), evaluation_html(self, utility=utility))

    def _repr_html_(self) -> str:
        from medsynth.metrics.report import evaluation_html

        return evaluation_html(self, full_page=False)


def _check_same_geometry(real: Any, synthetic: Any) -> None:
    """Arrays given directly must share their image size: a mismatch is almost always a mistake
    (e.g. crops against whole images), and silently resizing would hide it."""
    if isinstance(real, np.ndarray) and isinstance(synthetic, np.ndarray):
        if real.ndim == 3 and synthetic.ndim == 3 and real.shape[1:] != synthetic.shape[1:]:
            raise InvalidImageError(
                f"real images are {real.shape[1]}x{real.shape[2]} px but synthetic images are "
                f"{synthetic.shape[1]}x{synthetic.shape[2]} px; resample them to one size first"
            )


def evaluate(
    real: Any,
    synthetic: Any,
    features: Any = None,
    *,
    inception_weights: str | Path | None = None,
    cache_dir: str | Path | None = None,
    config: str | Path | dict[str, Any] | None = None,
    progress: bool = True,
    device: str | None = None,
) -> EvaluationResult:
    """Compare a synthetic image set with a real one.

    Args:
        real: the real set: a dataset path (anything ``load_dataset`` reads), a Dataset / list of
            Cases, or an (N, H, W) array in [0, 1].
        synthetic: the synthetic set, in any of the same forms.
        features: ``"domain"``, ``"random"``, ``"inception:PATH"``, an ``nn.Module`` or a
            :class:`~medsynth.metrics.features.FeatureExtractor`; None: ``features`` of the config
            (``domain`` in ``configs/evaluate.yaml``).
        inception_weights: the FID Inception weights file, to add ``fid_inception`` beside the main
            features (never downloaded); None: ``inception_weights`` of the config.
        cache_dir: cache of domain encoders and real-set features; None: ``cache_dir`` of the config,
            else ``~/.cache/medsynth/features``.
        config: a path or dict laid over ``configs/evaluate.yaml`` (unknown keys are refused); the
            arguments above, when given, win over it.
        progress: show progress bars.
        device: where features are computed and the domain encoder trained (``"auto"``: CUDA when
            present, ``"cpu"``, ``"cuda"``, ``"cuda:N"``); None: ``device`` of the config.

    Returns:
        An :class:`EvaluationResult`.

    Raises:
        InvalidDatasetError: a set is empty or unreadable.
        InvalidImageError: arrays of different image sizes, values outside [0, 1], too few images.
        MissingWeightsError: ``inception:`` features without a weights file.
        ConfigError: an unknown setting in ``config``.
    """
    from medsynth.config import load_config
    from medsynth.metrics import fidelity
    from medsynth.metrics.features import FID_WEIGHTS_FILE, default_cache_dir, get_extractor, inception_extractor
    from medsynth.metrics.images import load_image_set

    # 1. Settings: configs/evaluate.yaml, the user's config over it, the arguments given over both
    cfg = load_config(config, kind="evaluate",
                      overrides={"inception_weights": inception_weights, "cache_dir": cache_dir, "device": device})
    from medsynth.runtime import resolve_device

    device = resolve_device(cfg["device"])
    features = cfg["features"] if features is None else features
    cache_dir = Path(cfg["cache_dir"] or default_cache_dir()).expanduser()
    t0 = time.perf_counter()

    # 2. Check and read the inputs
    _check_same_geometry(real, synthetic)
    read = dict(image_px=cfg["image_px"], roi_mm=cfg["roi_mm"], roi_px=cfg["roi_px"], progress=progress)
    real_set = load_image_set(real, what="real", **read)
    syn_set = load_image_set(synthetic, what="synthetic", **read)
    for name, s in (("real", real_set), ("synthetic", syn_set)):
        if len(s) < 2:
            raise InvalidImageError(f"the {name} set has {len(s)} image(s); evaluation needs at least 2", s.source)
    n_real, n_syn = len(real_set), len(syn_set)

    # 3. Features (real-set features cached by extractor fingerprint + content hash)
    extractor = get_extractor(features, real=real_set.images, cache_dir=cache_dir,
                              config=_extractor_config(features, cfg), progress=progress, device=device)
    cache = fidelity.RealFeatureCache(cache_dir)
    f_real = cache.get(extractor, real_set.images, batch_size=cfg["batch_size"], progress=progress)
    f_syn = extractor.embed(syn_set.images, batch_size=cfg["batch_size"], progress=progress)
    base = {"feature_extractor": extractor.name, "n_real": n_real, "n_synthetic": n_syn}

    # 4. Whole-image metrics
    metrics: dict[str, dict[str, Any]] = {}
    metrics["fid"] = {"value": fidelity.fid(f_real, f_syn), **base, "feature_dim": int(f_real.shape[1])}
    kid_mean, kid_std, kid_size = fidelity.kid(f_real, f_syn, subsets=cfg["kid_subsets"], seed=cfg["seed"])
    metrics["kid"] = {
        "value": kid_mean,
        "std": kid_std,
        "subset_size": kid_size,
        "subsets": cfg["kid_subsets"],
        **base,
    }
    k = min(cfg["prdc_k"], n_real - 1, n_syn - 1)
    scores = fidelity.prdc(f_real, f_syn, k=k)
    for name in ("precision", "recall", "density", "coverage"):
        metrics[name] = {"value": scores[name], "k": k, **base}
    div_syn = fidelity.ms_ssim_diversity(syn_set.images, n_pairs=cfg["ms_ssim_pairs"], seed=cfg["seed"])
    div_real = fidelity.ms_ssim_diversity(real_set.images, n_pairs=cfg["ms_ssim_pairs"], seed=cfg["seed"])
    metrics["ms_ssim"] = {
        **div_syn,
        "real_value": div_real["value"],
        "real_ci95": div_real["ci95"],
        "feature_extractor": "pixels (MONAI MS-SSIM)",
        "n_real": n_real,
        "n_synthetic": n_syn,
        "note": "mean MS-SSIM over random pairs within a set; lower = more diverse; compare with real_value",
    }

    # 5. Lesion ROIs, when both sets have masks
    roi_extractor_name = None
    if real_set.rois is not None and syn_set.rois is not None and min(len(real_set.rois), len(syn_set.rois)) >= 2:
        # The domain encoder learns whole images; ROIs get their own, trained on the real ROIs.
        roi_extractor = get_extractor(
            features,
            real=real_set.rois,
            cache_dir=cache_dir,
            config=_extractor_config(features, cfg),
            progress=progress,
            device=device,
        )
        roi_extractor_name = roi_extractor.name
        fr = cache.get(roi_extractor, real_set.rois, batch_size=cfg["batch_size"], progress=progress)
        fs = roi_extractor.embed(syn_set.rois, batch_size=cfg["batch_size"], progress=progress)
        metrics["roi_fid"] = {
            "value": fidelity.fid(fr, fs),
            "feature_extractor": roi_extractor.name,
            "n_real": int(len(fr)),
            "n_synthetic": int(len(fs)),
            "roi_mm": cfg["roi_mm"],
            "roi_px": cfg["roi_px"],
        }

    # 6. The standard Inception FID, when its weights were given
    inception_path = cfg["inception_weights"]
    if isinstance(features, str) and features.lower().startswith("inception"):
        metrics["fid_inception"] = {**metrics["fid"], "computed": True}
    elif inception_path:
        inc = inception_extractor(inception_path).to(device)
        fi_real = cache.get(inc, real_set.images, batch_size=cfg["batch_size"], progress=progress)
        fi_syn = inc.embed(syn_set.images, batch_size=cfg["batch_size"], progress=progress)
        metrics["fid_inception"] = {
            "value": fidelity.fid(fi_real, fi_syn), "feature_extractor": inc.name, "n_real": n_real,
            "n_synthetic": n_syn, "computed": True,
        }
    else:
        metrics["fid_inception"] = {
            "value": None, "feature_extractor": "fid-inception-v3", "n_real": n_real, "n_synthetic": n_syn,
            "computed": False,
            "note": f"FID-Inception was not computed: no weights file given. Pass --features inception:PATH "
            f"(or inception_weights=PATH) with the standard {FID_WEIGHTS_FILE}; medsynth never downloads it.",
        }

    meta = {
        "real": real_set.source,
        "synthetic": syn_set.source,
        "feature_extractor": {
            "name": extractor.name,
            "fingerprint": extractor.fingerprint,
            **jsonable(extractor.info),
        },
        "roi_feature_extractor": roi_extractor_name,
        "image_px": cfg["image_px"],
        "n_real_rois": 0 if real_set.rois is None else int(len(real_set.rois)),
        "n_synthetic_rois": 0 if syn_set.rois is None else int(len(syn_set.rois)),
        "real_feature_cache": {"hits": cache.hits, "misses": cache.misses},
        "seconds": round(time.perf_counter() - t0, 2),
        "device": str(device),
        "warning": "FID is biased upward and unstable with few samples; compare values only at equal n "
        "and with the same feature extractor."
        if min(n_real, n_syn) < 1000
        else None,
    }
    n_show = cfg["report_samples"]
    return EvaluationResult(
        metrics=metrics,
        meta=meta,
        real_features=f_real,
        synthetic_features=f_syn,
        real_samples=real_set.images[:n_show].copy(),
        synthetic_samples=syn_set.images[:n_show].copy(),
    )


def _extractor_config(features: Any, cfg: dict[str, Any]) -> dict[str, Any] | None:
    if isinstance(features, str):
        kind = features.split(":", 1)[0].strip().lower()
        if kind == "domain":
            return dict(cfg.get("domain") or {})
        if kind == "random":
            return {"seed": int(cfg["random_seed"])}
    return None


__all__ = ["EvaluationResult", "evaluate"]
