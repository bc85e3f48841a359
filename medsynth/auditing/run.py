"""``audit(train, synthetic, holdout, model=None)``: may this synthetic set leave the hospital?

Runs every check of the privacy audit in order and returns an :class:`AuditResult` whose
``verdict`` is "pass" only when every check passed:

1. patient overlap (train and holdout must be disjoint; otherwise :class:`AuditInputError`),
2. memorization / copies on whole images and lesion ROIs (:mod:`medsynth.auditing.memorization`),
3. holdout baseline (:mod:`medsynth.auditing.baseline`),
4. membership inference against the model (base + adapter when an adapter is given: the training
   set is then the adapter's), when one is given (:mod:`medsynth.auditing.mia`),
5. differential privacy from the model's (and adapter's) card or the synthetic set's manifest, ε
   recomputed (:mod:`medsynth.auditing.dp`),
6. PHI in the synthetic files (:mod:`medsynth.auditing.phi`).

The result (:mod:`medsynth.auditing.result`) writes itself as JSON (``to_json``) and as a one-file
HTML report (``save_html``), and renders itself in Jupyter.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.auditing.baseline import holdout_baseline
from medsynth.auditing.dp import dp_budget, dp_check
from medsynth.auditing.memorization import ScopeResult, make_embedder, nearest_training
from medsynth.auditing.patients import check_disjoint, check_patient_ids
from medsynth.auditing.phi import check_phi
from medsynth.auditing.prepare import PreparedSet, as_dataset, prepare
from medsynth.auditing.result import AuditResult, check_record
from medsynth.config import load_config
from medsynth.errors import ConfigError, InvalidModelError
from medsynth.utils import progress_bar

OCR_NOTE = (
    "Text burned into the pixels is not read (no OCR is done); BurnedInAnnotation is checked, "
    "but an image with unflagged burned-in text would pass. OCR of pixel text is a later step."
)


def audit(
    train: Any,
    synthetic: Any,
    holdout: Any,
    model: Any = None,
    config: str | Path | dict[str, Any] | None = None,
    progress: bool = True,
    adapter: str | Path | None = None,
) -> AuditResult:
    """Audit a synthetic set against the training set it came from and a holdout of other patients.

    Args:
        train: the real images the model was trained on (a path ``load_dataset`` reads, or a dataset).
        synthetic: the set to be released (same).
        holdout: real images of other patients the model never saw (same).
        model: a model directory (``LesionInpainter.from_pretrained``) or a loaded model with
            ``per_sample_loss``; None skips membership inference.
        adapter: the LoRA adapter directory the set was generated with (``model`` must then be a
            directory). Membership inference attacks base + adapter with ``train`` as members, so
            ``train`` must be the **adapter's** training data; the DP check composes both cards.
        config: a YAML path or a dict laid over ``configs/audit.yaml``.
        progress: show rich progress bars on reading, embedding and search.

    Returns:
        The :class:`AuditResult`.

    Raises:
        AuditInputError: train and holdout share a patient or an image.
        InvalidDatasetError, InvalidModelError, ConfigError: unreadable inputs.
    """
    t0 = time.perf_counter()
    # 1. Check inputs: config, datasets, model.
    cfg = load_config(config, kind="audit")
    ds = {"train": as_dataset(train, "train"), "synthetic": as_dataset(synthetic, "synthetic"),
          "holdout": as_dataset(holdout, "holdout")}
    # Shared patient IDs are refused before any pixel is read (identical pixels are checked below).
    check_patient_ids(ds["train"], ds["holdout"], getattr(ds["holdout"], "root", None))
    model_obj, model_dir, adapter_dir = _load_model(model, adapter)
    notes: list[str] = [OCR_NOTE]
    plots: dict[str, Any] = {}
    checks: list[dict[str, Any]] = []

    with progress_bar(progress) as bar:
        # 2. Read every set once: thumbnails, lesion crops, pixel hashes.
        prep: dict[str, PreparedSet] = {}
        for name, d in ds.items():
            task = bar.add_task(f"reading {name}", total=len(d))
            prep[name] = prepare(d, name, cfg["preprocess"], on_case=lambda n, t=task: bar.advance(t, n))
        tr, sy, ho = prep["train"], prep["synthetic"], prep["holdout"]

        # 3. Patient overlap: refuse, the baseline would be meaningless.
        check_disjoint(tr, ho)
        checks.append(check_record("patient_overlap", 0, 0, True,
                                   note="train and holdout share no patient ID and no identical image"))

        # 4. Memorization on each scope.
        mcfg = cfg["memorization"]
        scopes: dict[str, ScopeResult] = {}
        arrays = {"image": (sy.images, tr.images, ho.images), "roi": (sy.rois, tr.rois, ho.rois)}
        for scope in mcfg["scopes"]:
            if scope not in arrays:
                raise ConfigError(f"unknown memorization scope {scope!r}; use 'image' and/or 'roi'")
            s_arr, t_arr, _ = arrays[scope]
            if len(s_arr) == 0 or len(t_arr) == 0:
                notes.append(f"memorization on {scope}s skipped: the "
                             f"{'synthetic' if len(s_arr) == 0 else 'training'} set has no lesion masks")
                continue
            embedder = None
            if mcfg["embedding"] not in (None, "none"):
                task = bar.add_task(f"embedding ({scope}s, {mcfg['embedding']})", total=None)
                embedder = make_embedder(mcfg["embedding"], t_arr, mcfg["embedding_cache_dir"],
                                         mcfg["embedding_options"])
                bar.update(task, total=1, completed=1)
            task = bar.add_task(f"searching {scope}s ({len(s_arr)} x {len(t_arr)})", total=len(s_arr))
            scopes[scope] = nearest_training(s_arr, t_arr, mcfg, scope, embedder,
                                             on_progress=lambda n, t=task: bar.advance(t, n))
        memo = _memorization_summary(scopes, tr, sy, mcfg)
        plots["pairs"] = _closest_pairs(scopes, tr, sy, int(mcfg["report_pairs"]))
        n_flag = len(memo["flagged"])
        checks.append(check_record("memorization", n_flag, int(mcfg["max_flagged"]),
                                   n_flag <= int(mcfg["max_flagged"]), n_synthetic=len(sy),
                                   thresholds=mcfg["thresholds"],
                                   scopes={k: v["n_flagged"] for k, v in memo["scopes"].items()}))

        # 5. Holdout baseline on each scope.
        bcfg = cfg["baseline"]
        baseline: dict[str, Any] = {}
        for scope in scopes:
            s_arr, t_arr, h_arr = arrays[scope]
            if len(h_arr) < 2:
                notes.append(f"holdout baseline on {scope}s skipped: the holdout has {len(h_arr)} {scope}(s)")
                continue
            task = bar.add_task(f"holdout baseline ({scope}s)", total=None)
            t_groups, h_groups = _patient_groups(tr, ho, scope)
            b = holdout_baseline(s_arr, t_arr, h_arr, bcfg, mcfg, scope, seed=int(bcfg["seed"]),
                                 train_groups=t_groups, holdout_groups=h_groups)
            bar.update(task, total=1, completed=1)
            plots[f"baseline_{scope}"] = (b.synthetic_to_train, b.holdout_to_train)
            baseline[scope] = {
                "n_synthetic": len(s_arr), "n_holdout": len(h_arr),
                "dcr_share_closer_to_train": b.dcr_share, "dcr_pvalue": b.dcr_pvalue,
                "dcr_overfitting_protection": b.dcr_protection,
                "mannwhitney_u": b.mw_statistic, "mannwhitney_pvalue": b.mw_pvalue,
                "p_synthetic_closer_than_holdout": b.auc_closer,
                "median_synthetic_to_train": float(np.median(b.synthetic_to_train)),
                "median_holdout_to_train": float(np.median(b.holdout_to_train)),
            }
            dcr_fail = b.dcr_share > float(bcfg["dcr_share_max"]) and b.dcr_pvalue < float(bcfg["dcr_alpha"])
            checks.append(
                check_record(
                    f"baseline_dcr_{scope}",
                    b.dcr_share,
                    float(bcfg["dcr_share_max"]),
                    not dcr_fail,
                    pvalue=b.dcr_pvalue,
                    alpha=float(bcfg["dcr_alpha"]),
                    note="share of synthetic samples closer to train than to holdout; ~0.5 for fresh data",
                )
            )
            checks.append(check_record(f"baseline_mannwhitney_{scope}", b.mw_pvalue,
                                       float(bcfg["mannwhitney_alpha"]),
                                       b.mw_pvalue >= float(bcfg["mannwhitney_alpha"]),
                                       p_synthetic_closer_than_holdout=b.auc_closer,
                                       note="one-sided: synthetic->train distances smaller than holdout->train"))

        # 6. Membership inference against the model.
        mia_out = None
        if model_obj is not None:
            from medsynth.auditing.mia import membership_inference

            icfg = cfg["mia"]
            task = bar.add_task("membership inference (patches scored)", total=None)
            res = membership_inference(model_obj, ds["train"], ds["holdout"], icfg,
                                       on_batch=lambda n: bar.advance(task, n))
            mia_out = {"n_members": res.n_members, "n_nonmembers": res.n_nonmembers,
                       "skipped_lesions": res.skipped_lesions, "attacks": {},
                       "target": "base model + LoRA adapter" if adapter_dir else "model"}
            if adapter_dir:
                notes.append("membership inference attacked base + adapter with --train as members: it must be "
                             "the adapter's training data (the base model's data is audited with the base alone)")
            for a in res.attacks:
                mia_out["attacks"][a.name] = {"auc": a.auc, f"tpr_at_{a.max_fpr:g}_fpr": a.tpr_at_fpr,
                                              "pvalue": a.pvalue}
                plots[f"roc_{a.name}"] = (a.fpr, a.tpr, a.auc)
                fail = a.auc > float(icfg["auc_max"]) and a.pvalue < float(icfg["alpha"])
                checks.append(check_record(f"mia_{a.name}", a.auc, float(icfg["auc_max"]), not fail,
                                           tpr_at_fpr=a.tpr_at_fpr, max_fpr=a.max_fpr, pvalue=a.pvalue,
                                           n_members=res.n_members, n_nonmembers=res.n_nonmembers))
        else:
            notes.append("membership inference skipped: no --model given")

        # 7. Differential privacy budget.
        dp = dp_budget(model_obj, model_dir, ds["synthetic"], adapter_dir)
        checks.append(dp_check(dp, cfg["dp"]))

        # 8. PHI in the synthetic files.
        task = bar.add_task("PHI in synthetic files", total=None)
        # Only sets read from disk have files to check (an in-memory list of cases has no root).
        syn_root = getattr(ds["synthetic"], "root", None)
        tr_root = getattr(ds["train"], "root", None)
        if syn_root is None:
            notes.append("PHI check of files skipped: the synthetic set was given in memory, not as files")
        if tr_root is None:
            notes.append("training DICOM identifiers not collected: the training set was given in memory")
        phi = check_phi(None if syn_root is None else Path(syn_root), None if tr_root is None else Path(tr_root),
                        tr.patient_ids, tr.relpaths, cfg["phi"])
        bar.update(task, total=1, completed=1)
        phi_out = {"n_dicom": phi.n_dicom, "n_files": phi.n_files, "counts": phi.counts,
                   "findings": [f.to_dict() for f in phi.findings[:500]], "n_findings": len(phi.findings),
                   "identifiers_not_searched": phi.skipped_identifiers, "ocr": False, "ocr_note": OCR_NOTE}
        checks.append(check_record("phi", len(phi.findings), 0, not phi.findings, n_dicom=phi.n_dicom,
                                   counts=phi.counts, ocr=False))

    verdict = "pass" if all(c["passed"] for c in checks) else "fail"
    return AuditResult(
        verdict=verdict,
        checks=checks,
        memorization=memo,
        baseline=baseline,
        mia=mia_out,
        dp=dp,
        phi=phi_out,
        inputs={name: {"root": str(p.root), "n_images": len(p), "n_rois": int(len(p.rois)),
                       "layout": getattr(ds[name], "layout", None)} for name, p in prep.items()}
        | ({"model": {"root": str(model_dir)}} if model_dir else {})
        | ({"adapter": {"root": str(adapter_dir)}} if adapter_dir else {}),
        config=cfg,
        notes=notes,
        seconds=time.perf_counter() - t0,
        plots=plots,
    )


def _patient_groups(tr: PreparedSet, ho: PreparedSet, scope: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Patient of each image (or ROI) of the training and holdout sets; (None, None) unless every
    case of both records its patient ID."""
    if any(p is None for p in tr.patient_ids) or any(p is None for p in ho.patient_ids):
        return None, None
    t, h = np.asarray(tr.patient_ids, dtype=object), np.asarray(ho.patient_ids, dtype=object)
    if scope == "roi":
        return t[tr.roi_case], h[ho.roi_case]
    return t, h


def _load_model(model: Any, adapter: str | Path | None = None) -> tuple[Any, Path | None, Path | None]:
    """(model object, its directory, the adapter directory); the adapter is loaded onto the model."""
    if model is None:
        if adapter is not None:
            raise ConfigError("--adapter needs --model (the base model the adapter was trained on)")
        return None, None, None
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_dir():
            raise InvalidModelError("model directory not found", path)
        adapter_dir = None
        if adapter is not None:
            adapter_dir = Path(adapter)
            if not adapter_dir.is_dir():
                raise InvalidModelError("adapter directory not found", adapter_dir)
        from medsynth.models.inpainter import LesionInpainter

        return LesionInpainter.from_pretrained(path, adapter=adapter_dir), path, adapter_dir
    if adapter is not None:
        raise ConfigError("adapter= needs the model as a directory path (it is loaded onto the base weights)")
    if not hasattr(model, "per_sample_loss"):
        raise InvalidModelError(f"the model ({type(model).__name__}) has no per_sample_loss method")
    return model, None, None


def _memorization_summary(scopes: dict[str, ScopeResult], tr: PreparedSet, sy: PreparedSet,
                          cfg: dict[str, Any]) -> dict[str, Any]:
    """Per-scope statistics and one object per flagged synthetic case (its strongest match first)."""
    summary: dict[str, Any] = {"scopes": {}, "flagged": []}
    per_case: dict[int, list[dict[str, Any]]] = {}
    for scope, r in scopes.items():
        summary["scopes"][scope] = {
            "n": int(len(r.ncc)), "n_flagged": int(r.flagged.sum()),
            "max_ncc": float(r.ncc.max()), "max_ssim": float(np.nanmax(r.ssim)),
            "min_carlini_ratio": float(r.carlini_ratio.min()),
            "max_embedding_cosine": None if r.embedding_cosine is None else float(r.embedding_cosine.max()),
            "embedding": r.embedding_name,
        }
        for i in np.nonzero(r.flagged)[0]:
            case = int(i) if scope == "image" else int(sy.roi_case[i])
            j = int(r.nn_index[i])
            tcase = j if scope == "image" else int(tr.roi_case[j])
            match = {
                "scope": scope,
                "synthetic": sy.relpaths[case],
                "nearest_train": tr.relpaths[tcase],
                "ncc": float(r.ncc[i]),
                "ssim": float(r.ssim[i]),
                "carlini_ratio": float(r.carlini_ratio[i]),
                "embedding_cosine": None if r.embedding_cosine is None else float(r.embedding_cosine[i]),
                "transform": r.variant[i],
                "shift_px": [int(r.shift[i, 0]), int(r.shift[i, 1])],
                "flagged_by": r.reasons[i],
            }
            if scope == "roi":
                match["synthetic_roi_box"] = [int(v) for v in sy.roi_boxes[i]]
                match["nearest_train_roi_box"] = [int(v) for v in tr.roi_boxes[j]]
            per_case.setdefault(case, []).append(match)
    for case in sorted(per_case):
        matches = sorted(per_case[case], key=lambda m: -m["ncc"])
        top = dict(matches[0])
        top["synthetic_case_id"] = sy.case_ids[case]
        top["matches"] = matches
        summary["flagged"].append(top)
    return summary


def _closest_pairs(scopes: dict[str, ScopeResult], tr: PreparedSet, sy: PreparedSet, n: int) -> list[dict[str, Any]]:
    """The n closest synthetic/train pairs over all scopes (by NCC), with their thumbnails."""
    from medsynth.auditing.memorization import apply_variant

    rows = []
    for scope, r in scopes.items():
        s_arr, t_arr = (sy.images, tr.images) if scope == "image" else (sy.rois, tr.rois)
        for i in np.argsort(-r.ncc)[:n]:
            case = int(i) if scope == "image" else int(sy.roi_case[i])
            j = int(r.nn_index[i])
            tcase = j if scope == "image" else int(tr.roi_case[j])
            rows.append({"scope": scope, "ncc": float(r.ncc[i]), "carlini_ratio": float(r.carlini_ratio[i]),
                         "flagged": bool(r.flagged[i]), "synthetic": sy.relpaths[case],
                         "nearest_train": tr.relpaths[tcase], "transform": r.variant[i],
                         "synthetic_image": apply_variant(s_arr[i], r.variant[i]), "train_image": t_arr[j]})
    rows.sort(key=lambda d: -d["ncc"])
    return rows[:n]
