"""``evaluate(real, synthetic)``: fidelity, diversity and realism of a synthetic set, as one JSON-able result.

Reads both sets (dataset paths, Datasets or arrays), preprocesses them to a fixed size
(:mod:`medsynth.metrics.images`), embeds them with one feature extractor
(:mod:`medsynth.metrics.features`) and computes, each as a top-level key of the result:

- ``fid``, ``kid`` (mean, std over subsets -- None when every subset is the whole set),
  ``precision``, ``recall``, ``density``, ``coverage``: on lesion ROIs when both sets carry lesion
  masks (whole-image metrics mostly measure the backgrounds, which are real images), else on whole
  images (``scope`` says which); each beside its real-vs-real ``floor`` (two patient-disjoint halves
  of the real set, :func:`medsynth.metrics.fidelity.distances_with_floor`);
- ``image_fid``: with ROI scope, FID on whole images too, with its floor;
- ``ms_ssim``: mean pairwise MS-SSIM within the synthetic set (lower = more diverse), with the real
  set's own value as the baseline to compare to;
- ``fid_inception``: FID with the standard Inception features when a weights file is given (or the
  features themselves are ``inception:PATH``); otherwise a note saying how to provide it;
- ``realism``: the classifier two-sample test on lesion ROIs (:mod:`medsynth.metrics.realism`):
  ``c2st_auc``, ``c2st_ci95``, ``by_class``, ``by_margin``, the most obviously synthetic ROIs;
- ``lesion_stats``: lesion contrast, high-frequency power and calcification specks, real against
  synthetic, measured on the full-resolution images (:mod:`medsynth.metrics.lesion_stats`).

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

from medsynth.errors import ConfigError, InvalidImageError
from medsynth.io.writers.atomic import atomic_write_text
from medsynth.utils import jsonable


@dataclass
class EvaluationResult:
    """The metrics of one synthetic set against one real set.

    Attributes:
        metrics: one entry per metric name (``fid``, ``kid``, ...), each a dict with at least
            ``value``, ``feature_extractor``, ``n_real``, ``n_synthetic``.
        meta: sources, settings, extractor facts and timings.
        real_features, synthetic_features: the embeddings the fidelity metrics used (lesion ROIs or whole
            images, as ``meta["fidelity_scope"]`` says; for the report's PCA).
        real_samples, synthetic_samples: a few preprocessed images (for the report's sample sheets).
        realism: the C2ST's JSON part (``c2st_auc``, ``c2st_ci95``, ``by_class``, ...), or None.
        lesion_stats: the lesion statistics' JSON part, or None.
        realism_examples: the most obviously synthetic ROIs and as many real ones, for the report.
        roi_groups: per lesion class and mass margin ("mass / spiculated", "calcification", ...) a few
            real and synthetic lesion ROIs ({"real": (k, S, S), "synthetic": (k, S, S)}), for the
            report's sample sheet; None without lesion masks.
    """

    metrics: dict[str, dict[str, Any]]
    meta: dict[str, Any]
    real_features: np.ndarray | None = field(default=None, repr=False)
    synthetic_features: np.ndarray | None = field(default=None, repr=False)
    real_samples: np.ndarray | None = field(default=None, repr=False)
    synthetic_samples: np.ndarray | None = field(default=None, repr=False)
    realism: dict[str, Any] | None = None
    lesion_stats: dict[str, Any] | None = field(default=None, repr=False)
    realism_examples: dict[str, np.ndarray] | None = field(default=None, repr=False)
    roi_groups: dict[str, dict[str, np.ndarray]] | None = field(default=None, repr=False)

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self.metrics[name]

    def value(self, name: str) -> float | None:
        """The headline number of metric ``name``."""
        return self.metrics[name]["value"]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: one top-level key per metric, ``realism`` and ``lesion_stats`` when computed,
        plus ``meta``."""
        out: dict[str, Any] = dict(self.metrics)
        if self.realism is not None:
            out["realism"] = self.realism
        if self.lesion_stats is not None:
            out["lesion_stats"] = self.lesion_stats
        return {**out, "meta": self.meta}

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
    realism: bool | None = None,
    progress: bool = True,
    device: str | None = None,
    spacing_mm: Any = None,
) -> EvaluationResult:
    """Compare a synthetic image set with a real one.

    Args:
        real: the real set: a dataset path (anything ``load_dataset`` reads), a Dataset / list of
            Cases, or an (N, H, W) array in [0, 1].
        synthetic: the synthetic set, in any of the same forms.
        features: ``"random"``, ``"domain"``, ``"inception:PATH"``, an ``nn.Module`` or a
            :class:`~medsynth.metrics.features.FeatureExtractor`; None: ``features`` of the config
            (``random`` in ``configs/evaluate.yaml``; ``domain`` is invariant to flips, shifts and
            intensity by design and so blind to copies -- see :mod:`medsynth.metrics.features`).
        inception_weights: the FID Inception weights file, to add ``fid_inception`` beside the main
            features (never downloaded); None: ``inception_weights`` of the config.
        cache_dir: cache of domain encoders and real-set features; None: ``cache_dir`` of the config,
            else ``~/.cache/medsynth/features``.
        config: a path or dict laid over ``configs/evaluate.yaml`` (unknown keys are refused); the
            arguments above, when given, win over it.
        realism: run the C2ST and the lesion statistics (they need lesion masks in both sets); None:
            ``realism.enabled`` and ``lesion_stats.enabled`` of the config.
        progress: show progress bars.
        device: where features are computed and the domain encoder trained (``"auto"``: CUDA when
            present, ``"cpu"``, ``"cuda"``, ``"cuda:N"``); None: ``device`` of the config.
        spacing_mm: pixel spacing (mm; one number or (row, col)) of images whose files state none;
            never assumed: without it such images are refused. None: ``spacing_mm`` of the config.

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
    from medsynth.metrics.lesion_stats import LesionStatSettings
    from medsynth.metrics.realism import C2STSettings

    # 1. Settings: configs/evaluate.yaml, the user's config over it, the arguments given over both
    cfg = load_config(
        config,
        kind="evaluate",
        overrides={"inception_weights": inception_weights, "cache_dir": cache_dir,
                   "realism.enabled": realism, "lesion_stats.enabled": realism,
                   "device": device, "spacing_mm": spacing_mm},
    )
    from medsynth.runtime import resolve_device

    device = resolve_device(cfg["device"])
    features = cfg["features"] if features is None else features
    cache_dir = Path(cfg["cache_dir"] or default_cache_dir()).expanduser()
    c2st_settings = C2STSettings.from_config(cfg["realism"])
    stat_settings = LesionStatSettings.from_config(cfg["lesion_stats"])
    t0 = time.perf_counter()

    # 2. Check and read the inputs (ROIs on one mm grid; lesions measured at full resolution)
    _check_same_geometry(real, synthetic)
    read = dict(image_px=cfg["image_px"], roi_mm=cfg["roi_mm"], roi_px=cfg["roi_px"], progress=progress,
                roi_fit=False, lesion_stats=stat_settings if cfg["lesion_stats"]["enabled"] else None,
                spacing_mm=cfg["spacing_mm"])
    real_set = load_image_set(real, what="real", **read)
    syn_set = load_image_set(synthetic, what="synthetic", **read)
    for name, s in (("real", real_set), ("synthetic", syn_set)):
        if len(s) < 2:
            raise InvalidImageError(f"the {name} set has {len(s)} image(s); evaluation needs at least 2", s.source)
    n_real, n_syn = len(real_set), len(syn_set)

    # 3. Fidelity scope: lesion ROIs where both sets have them (whole images mostly show the backgrounds)
    scope = _fidelity_scope(cfg["fidelity"]["scope"], real_set, syn_set)
    if scope == "lesion-rois":
        real_x, syn_x, real_groups = real_set.rois, syn_set.rois, real_set.roi_groups
    else:
        real_x, syn_x, real_groups = real_set.images, syn_set.images, real_set.image_groups
    assert real_x is not None and syn_x is not None

    # 4. Features (real-set features cached by extractor fingerprint + content hash)
    extractor = get_extractor(
        features, real=real_x, cache_dir=cache_dir, config=_extractor_config(features, cfg, real_x.shape[-1]),
        progress=progress, device=device,
    )
    cache = fidelity.RealFeatureCache(cache_dir)
    f_real = cache.get(extractor, real_x, batch_size=cfg["batch_size"], progress=progress)
    f_syn = extractor.embed(syn_x, batch_size=cfg["batch_size"], progress=progress)
    base = {"feature_extractor": extractor.name, "scope": scope, "n_real": int(len(real_x)),
            "n_synthetic": int(len(syn_x))}

    # 5. FID / KID / PRDC, each beside its real-vs-real floor; MS-SSIM diversity
    metrics: dict[str, dict[str, Any]] = {}
    dist = fidelity.distances_with_floor(f_real, f_syn, real_groups, kid_subsets=cfg["kid_subsets"],
                                         k=cfg["prdc_k"], seed=cfg["seed"])
    for name, entry in dist.items():
        metrics[name] = {**entry, **base}
    metrics["fid"]["feature_dim"] = int(f_real.shape[1])
    div_syn = fidelity.ms_ssim_diversity(syn_x, n_pairs=cfg["ms_ssim_pairs"], seed=cfg["seed"])
    div_real = fidelity.ms_ssim_diversity(real_x, n_pairs=cfg["ms_ssim_pairs"], seed=cfg["seed"])
    metrics["ms_ssim"] = {
        **div_syn,
        "real_value": div_real["value"],
        "real_ci95": div_real["ci95"],
        **base,
        "feature_extractor": "pixels (MONAI MS-SSIM)",
        "note": "mean MS-SSIM over random pairs within a set; lower = more diverse; compare with real_value",
    }
    if scope == "lesion-rois":
        # Whole images as well, for comparison: mostly the (real) backgrounds.
        img_extractor = get_extractor(
            features, real=real_set.images, cache_dir=cache_dir,
            config=_extractor_config(features, cfg, real_set.images.shape[-1]), progress=progress,
            device=device,
        )
        fi_real = cache.get(img_extractor, real_set.images, batch_size=cfg["batch_size"], progress=progress)
        fi_syn = img_extractor.embed(syn_set.images, batch_size=cfg["batch_size"], progress=progress)
        whole = fidelity.distances_with_floor(fi_real, fi_syn, real_set.image_groups,
                                              kid_subsets=cfg["kid_subsets"], k=cfg["prdc_k"], seed=cfg["seed"])
        metrics["image_fid"] = {
            **whole["fid"], "feature_extractor": img_extractor.name, "scope": "whole-images", "n_real": n_real,
            "n_synthetic": n_syn,
            "note": "whole images: mostly measures the backgrounds, which are real images in an inpainted set",
        }

    # 6. The standard Inception FID, when its weights were given
    inception_path = cfg["inception_weights"]
    if isinstance(features, str) and features.lower().startswith("inception"):
        metrics["fid_inception"] = {**metrics["fid"], "computed": True}
    elif inception_path:
        inc = inception_extractor(inception_path).to(device)
        fi_real = cache.get(inc, real_x, batch_size=cfg["batch_size"], progress=progress)
        fi_syn = inc.embed(syn_x, batch_size=cfg["batch_size"], progress=progress)
        metrics["fid_inception"] = {
            **fidelity.distances_with_floor(fi_real, fi_syn, real_groups, kid_subsets=cfg["kid_subsets"],
                                            k=cfg["prdc_k"], seed=cfg["seed"])["fid"],
            **base, "feature_extractor": inc.name, "computed": True,
        }
    else:
        metrics["fid_inception"] = {
            "value": None, "feature_extractor": "fid-inception-v3", "n_real": n_real, "n_synthetic": n_syn,
            "computed": False,
            "note": f"FID-Inception was not computed: no weights file given. Pass --features inception:PATH "
            f"(or inception_weights=PATH) with the standard {FID_WEIGHTS_FILE}; medsynth never downloads it.",
        }

    # 7. Realism: can a classifier tell the lesions apart? And the lesion statistics, side by side
    realism_json, examples = None, None
    if cfg["realism"]["enabled"]:
        realism_json, examples = _run_c2st(real_set, syn_set, c2st_settings, float(cfg["roi_mm"]), progress, device)
    stats_json = None
    if cfg["lesion_stats"]["enabled"]:
        stats_json = _compare_lesions(real_set, syn_set, stat_settings)

    meta = {
        "real": real_set.source,
        "synthetic": syn_set.source,
        "feature_extractor": {
            "name": extractor.name,
            "fingerprint": extractor.fingerprint,
            **jsonable(extractor.info),
        },
        "fidelity_scope": scope,
        "image_px": cfg["image_px"],
        "roi_mm": cfg["roi_mm"],
        "roi_px": cfg["roi_px"],
        "n_real_images": n_real,
        "n_synthetic_images": n_syn,
        "n_real_rois": 0 if real_set.rois is None else int(len(real_set.rois)),
        "n_synthetic_rois": 0 if syn_set.rois is None else int(len(syn_set.rois)),
        "real_feature_cache": {"hits": cache.hits, "misses": cache.misses},
        "seconds": round(time.perf_counter() - t0, 2),
        "device": str(device),
        "warning": "FID is biased upward and unstable with few samples; compare values only at equal n "
        "and with the same feature extractor (the floor's synthetic_at_floor_n is at the floor's n)."
        if min(len(real_x), len(syn_x)) < 1000
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
        realism=realism_json,
        lesion_stats=stats_json,
        realism_examples=examples,
        roi_groups=roi_groups(real_set, syn_set, min(6, int(cfg["report_samples"]))),
    )


def roi_groups(real_set: Any, syn_set: Any, k: int) -> dict[str, dict[str, np.ndarray]] | None:
    """Up to ``k`` lesion ROIs of each set per class and mass margin (the first ones, in set order)."""
    from medsynth.metrics.realism import class_names

    if real_set.rois is None or syn_set.rois is None:
        return None

    def keys(s: Any) -> list[str]:
        classes = class_names(s.roi_labels, len(s.rois))
        margins = s.roi_margins or [None] * len(s.rois)
        return [f"{c} / {m}" if c == "mass" and m else c for c, m in zip(classes, margins)]

    real_keys, syn_keys = keys(real_set), keys(syn_set)
    out: dict[str, dict[str, np.ndarray]] = {}
    for key in sorted(set(real_keys) | set(syn_keys)):
        pick = {name: np.flatnonzero(np.asarray(ks) == key)[:k] for name, ks in (("real", real_keys),
                                                                                  ("synthetic", syn_keys))}
        out[key] = {"real": real_set.rois[pick["real"]], "synthetic": syn_set.rois[pick["synthetic"]]}
    return out


def _fidelity_scope(setting: str, real_set: Any, syn_set: Any) -> str:
    """"lesion-rois" or "whole-images" for the fidelity metrics (see ``fidelity.scope`` in the config)."""
    setting = str(setting).lower()
    if setting not in ("auto", "roi", "image"):
        raise ConfigError(f"fidelity.scope must be auto, roi or image, got {setting!r}")
    n_roi = min(0 if real_set.rois is None else len(real_set.rois), 0 if syn_set.rois is None else len(syn_set.rois))
    if setting == "image":
        return "whole-images"
    if n_roi >= 2:
        return "lesion-rois"
    if setting == "roi":
        raise InvalidImageError(
            f"fidelity.scope is roi but the sets hold {n_roi} lesion ROI(s) in common (both need lesion masks)"
        )
    return "whole-images"


def _run_c2st(real_set: Any, syn_set: Any, settings: Any, roi_mm: float,
              progress: bool, device: Any = "cpu") -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    """The C2ST's JSON part and the ROIs the report shows (see :mod:`medsynth.metrics.realism`)."""
    from medsynth.metrics.realism import c2st, central_crop, class_names

    out: dict[str, Any] = {"c2st_auc": None, "c2st_ci95": None, "by_class": {}, "by_margin": {}}
    if real_set.rois is None or syn_set.rois is None:
        missing = [n for n, s in (("real", real_set), ("synthetic", syn_set)) if s.rois is None]
        out["note"] = f"C2ST not run: no lesion masks in the {' and '.join(missing)} set"
        return out, None
    r_rois = central_crop(real_set.rois, roi_mm, settings.crop_mm)
    s_rois = central_crop(syn_set.rois, roi_mm, settings.crop_mm)
    res = c2st(
        r_rois, s_rois, real_set.roi_groups, syn_set.roi_groups, settings,
        class_names(real_set.roi_labels, len(r_rois)), class_names(syn_set.roi_labels, len(s_rois)),
        real_set.roi_margins, syn_set.roi_margins, progress=progress, device=device,
    )
    out.update(c2st_auc=res.auc, c2st_ci95=res.ci95, by_class=res.by_class, by_margin=res.by_margin)
    syn_classes = class_names(syn_set.roi_labels, len(s_rois))
    assert syn_set.roi_case_index is not None
    out["most_synthetic"] = [
        {"case_id": syn_set.case_ids[int(syn_set.roi_case_index[i])], "class": syn_classes[i],
         "margin": (syn_set.roi_margins or [None] * len(s_rois))[i], "score": float(res.scores[len(r_rois) + i])}
        for i in res.most_synthetic
    ]
    out.update({k: v for k, v in res.info.items() if k != "settings"})
    out["roi"] = {"crop_mm": min(settings.crop_mm, roi_mm), "px": int(r_rois.shape[-1]),
                  "mm_per_px": round(roi_mm / real_set.rois.shape[-1], 4)}
    out["ci_method"] = "percentile bootstrap over patients (synthetic: backgrounds), per arm; classifier fixed"
    out["reading"] = "AUC 0.5: the classifier cannot tell synthetic lesions from real ones; 1.0: it always can"
    out["settings"] = res.info.get("settings")
    examples = None
    if res.auc is not None:
        rng = np.random.default_rng(settings.seed)
        real_pick = rng.choice(len(r_rois), size=min(len(res.most_synthetic), len(r_rois)), replace=False)
        examples = {"synthetic": s_rois[res.most_synthetic], "synthetic_scores": res.scores[len(r_rois):][
            res.most_synthetic], "synthetic_classes": np.asarray([syn_classes[i] for i in res.most_synthetic]),
            "real": r_rois[np.sort(real_pick)]}
    return out, examples


def _compare_lesions(real_set: Any, syn_set: Any, settings: Any) -> dict[str, Any]:
    from medsynth.metrics.lesion_stats import compare_lesion_stats

    if not real_set.lesion_records or not syn_set.lesion_records:
        missing = [n for n, s in (("real", real_set), ("synthetic", syn_set)) if not s.lesion_records]
        return {"note": f"no lesions measured in the {' and '.join(missing)} set (lesion masks needed)"}
    return compare_lesion_stats(real_set.lesion_records, syn_set.lesion_records, settings)


def _extractor_config(features: Any, cfg: dict[str, Any], input_px: int | None = None) -> dict[str, Any] | None:
    if isinstance(features, str):
        kind = features.split(":", 1)[0].strip().lower()
        if kind == "domain":
            return dict(cfg.get("domain") or {})
        if kind == "random":
            # The random CNN sees the images at their own size (ROIs and whole images alike).
            return {"seed": int(cfg["random_seed"]), **({"input_px": int(input_px)} if input_px else {})}
    return None


__all__ = ["EvaluationResult", "evaluate"]
