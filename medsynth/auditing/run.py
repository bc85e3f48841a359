"""``audit(train, synthetic, holdout, model=None)``: may this synthetic set leave the hospital?

Runs every check of the privacy audit in order and returns an :class:`AuditResult` whose
``verdict`` is "pass" only when every check passed and none was inconclusive, "fail" when a check
failed (with ``inconclusive: fail`` also when one could not tell), else "inconclusive"
(:func:`medsynth.auditing.result.verdict_of`):

1. patient overlap (train and holdout must be disjoint; otherwise :class:`AuditInputError`),
2. memorization / copies on whole images and lesion ROIs (:mod:`medsynth.auditing.memorization`),
   with thresholds calibrated on how close the holdout comes to train (:mod:`medsynth.auditing.calibration`),
3. holdout baseline (:mod:`medsynth.auditing.baseline`) and leaked patients: samples closer to a
   training patient than fresh data comes (:mod:`medsynth.auditing.leaks`),
4. membership inference against the model (base + adapter when an adapter is given: the training
   set is then the adapter's), when one is given (:mod:`medsynth.auditing.mia`),
5. differential privacy from the model's (and adapter's) card or the synthetic set's manifest, ε
   recomputed (:mod:`medsynth.auditing.dp`),
6. PHI in the synthetic files, and text burned into their pixels by OCR (:mod:`medsynth.auditing.phi`).

A check that could not run (OCR without the ``medsynth[ocr]`` extra) keeps the verdict and has
``status`` "not checked": every report says so, never "pass".

The result (:mod:`medsynth.auditing.result`) writes itself as JSON (``to_json``) and as a one-file
HTML report (``save_html``), and renders itself in Jupyter.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.auditing.baseline import holdout_baseline
from medsynth.auditing.calibration import Threshold, calibrate_thresholds
from medsynth.auditing.dp import dp_budget, dp_check
from medsynth.auditing.leaks import PatientLeaks, SampleLeaks, per_patient_leaks, per_sample_leaks
from medsynth.auditing.memorization import ScopeResult, make_embedder, nearest_training
from medsynth.auditing.patients import check_disjoint, check_patient_ids
from medsynth.auditing.phi import check_phi, check_pixel_text, training_identifiers
from medsynth.auditing.prepare import PreparedSet, as_dataset, prepare
from medsynth.auditing.result import AuditResult, check_record, verdict_of
from medsynth.config import load_config
from medsynth.errors import ConfigError, InvalidModelError
from medsynth.utils import progress_bar

OCR_NOT_CHECKED = "Text burned into the pixels was NOT CHECKED ({reason}): an image with burned-in text would pass."


def audit(
    train: Any,
    synthetic: Any,
    holdout: Any,
    model: Any = None,
    config: str | Path | dict[str, Any] | None = None,
    progress: bool = True,
    adapter: str | Path | None = None,
    device: str | None = None,
    spacing_mm: Any = None,
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
        device: where the model's losses (membership inference) and the embeddings are computed
            (``"auto"``: CUDA when present, ``"cpu"``, ``"cuda"``, ``"cuda:N"``); None: ``device``
            of the config. A model object given is moved there.
        spacing_mm: pixel spacing (mm) of images whose files state none (never assumed: without it
            such images are refused); None: ``spacing_mm`` of the config.

    Returns:
        The :class:`AuditResult`.

    Raises:
        AuditInputError: train and holdout share a patient or an image.
        InvalidDatasetError, InvalidModelError, ConfigError: unreadable inputs.
    """
    t0 = time.perf_counter()
    # 1. Check inputs: config, datasets, model.
    cfg = load_config(config, kind="audit", overrides={"device": device, "spacing_mm": spacing_mm})
    from medsynth.runtime import resolve_device

    device = resolve_device(cfg["device"])
    given = cfg["spacing_mm"]
    ds = {"train": as_dataset(train, "train", given), "synthetic": as_dataset(synthetic, "synthetic", given),
          "holdout": as_dataset(holdout, "holdout", given)}
    # Shared patient IDs are refused before any pixel is read (identical pixels are checked below).
    check_patient_ids(ds["train"], ds["holdout"], getattr(ds["holdout"], "root", None))
    model_obj, model_dir, adapter_dir = _load_model(model, adapter)
    if model_obj is not None and hasattr(model_obj, "to"):
        model_obj.to(device)
    notes: list[str] = []
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

        # 4. Memorization on each scope: the synthetic set and (for calibration) the holdout against train.
        mcfg = cfg["memorization"]
        scopes: dict[str, ScopeResult] = {}
        holdout_nn: dict[str, ScopeResult] = {}
        arrays = {"image": (sy.images, tr.images, ho.images), "roi": (sy.rois, tr.rois, ho.rois)}
        for scope in mcfg["scopes"]:
            if scope not in arrays:
                raise ConfigError(f"unknown memorization scope {scope!r}; use 'image' and/or 'roi'")
            s_arr, t_arr, h_arr = arrays[scope]
            if len(s_arr) == 0 or len(t_arr) == 0:
                notes.append(f"memorization on {scope}s skipped: the "
                             f"{'synthetic' if len(s_arr) == 0 else 'training'} set has no lesion masks")
                continue
            embedder = None
            if mcfg["embedding"] not in (None, "none"):
                task = bar.add_task(f"embedding ({scope}s, {mcfg['embedding']})", total=None)
                embedder = make_embedder(mcfg["embedding"], t_arr, mcfg["embedding_cache_dir"],
                                         mcfg["embedding_options"], device=device)
                bar.update(task, total=1, completed=1)
            task = bar.add_task(f"searching {scope}s ({len(s_arr)} x {len(t_arr)})", total=len(s_arr))
            scopes[scope] = nearest_training(s_arr, t_arr, mcfg, scope, embedder,
                                             on_progress=lambda n, t=task: bar.advance(t, n))
            if mcfg["calibration"]["enabled"] and len(h_arr) >= int(mcfg["calibration"]["min_holdout"]):
                task = bar.add_task(f"calibrating on the holdout ({len(h_arr)} {scope}s)", total=len(h_arr))
                holdout_nn[scope] = nearest_training(h_arr, t_arr, mcfg, scope, embedder,
                                                     on_progress=lambda n, t=task: bar.advance(t, n))
        thresholds, fits = _calibrate(scopes, holdout_nn, arrays, mcfg)
        memo = _memorization_summary(scopes, tr, sy, mcfg)
        memo["thresholds"] = {sc: {k: t.to_dict() for k, t in th.items()} for sc, th in thresholds.items()}
        memo["calibration"] = {sc: {k: f.to_dict() for k, f in fs.items()} for sc, fs in fits.items()}
        for scope in scopes:
            if scope not in holdout_nn:
                notes.append(f"copy thresholds for {scope}s not calibrated (fixed numbers used): "
                             f"the holdout has {len(arrays[scope][2])} {scope}(s), fewer than "
                             f"min_holdout={mcfg['calibration']['min_holdout']}" if mcfg["calibration"]["enabled"]
                             else f"copy thresholds for {scope}s not calibrated: calibration switched off")
        plots["pairs"] = _closest_pairs(scopes, tr, sy, int(mcfg["report_pairs"]))
        n_flag = len(memo["flagged"])
        checks.append(check_record("memorization", n_flag, int(mcfg["max_flagged"]),
                                   n_flag <= int(mcfg["max_flagged"]), n_synthetic=len(sy),
                                   thresholds={sc: {k: t.value for k, t in th.items()}
                                               for sc, th in thresholds.items()},
                                   rules={sc: {k: t.rule for k, t in th.items()} for sc, th in thresholds.items()},
                                   scopes={k: v["n_flagged"] for k, v in memo["scopes"].items()}))

        # 5. Holdout baseline and leaked patients on each scope.
        bcfg = cfg["baseline"]
        baseline: dict[str, Any] = {}
        leaks: dict[str, Any] = {}
        for scope in scopes:
            s_arr, t_arr, h_arr = arrays[scope]
            if len(h_arr) < 2:
                notes.append(f"holdout baseline on {scope}s skipped: the holdout has {len(h_arr)} {scope}(s)")
                checks += _leak_checks(scope, None, None, sy, tr, cfg, len(h_arr))
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
            # Leaked patients: each synthetic sample against the holdout's tail; each training patient's count.
            task = bar.add_task(f"leaked patients ({scope}s)", total=None)
            lcfg = cfg["leaks"]
            fit = fits.get(scope, {}).get("ncc")
            sample = patient = None
            if fit is not None:
                sample = per_sample_leaks(fit, scopes[scope].ncc, float(lcfg["sample_alpha"]))
                t_pat = _train_patients(tr, scope)
                patient = per_patient_leaks(sample.pvalues, t_pat[scopes[scope].nn_index],
                                            float(lcfg["patient_alpha"]), int(lcfg["patient_max_repeats"]),
                                            n_holdout=len(h_arr))
            bar.update(task, total=1, completed=1)
            leaks[scope] = _leak_summary(scope, sample, patient, scopes[scope], tr, sy)
            checks += _leak_checks(scope, sample, patient, sy, tr, cfg, len(h_arr), leaks[scope])
        memo["leaks"] = leaks

        # 6. Membership inference against the model.
        mia_out = None
        if model_obj is not None:
            from medsynth.auditing.mia import membership_inference

            icfg = cfg["mia"]
            task = bar.add_task("membership inference (patches scored)", total=None)
            res = membership_inference(model_obj, ds["train"], ds["holdout"], icfg,
                                       on_batch=lambda n: bar.advance(task, n))
            mia_out, mia_checks = _mia_checks(res, icfg, cfg["inconclusive"])
            mia_out["target"] = "base model + LoRA adapter" if adapter_dir else "model"
            notes += res.notes
            checks += mia_checks
            if adapter_dir:
                notes.append("membership inference attacked base + adapter with --train as members: it must be "
                             "the adapter's training data (the base model's data is audited with the base alone)")
            for a in res.attacks:
                plots[f"roc_{a.name}"] = (a.fpr, a.tpr, a.auc)
        else:
            notes.append("membership inference skipped: no --model given")

        # 7. Differential privacy budget.
        dp = dp_budget(model_obj, model_dir, ds["synthetic"], adapter_dir)
        checks.append(dp_check(dp, cfg["dp"]))

        # 8. PHI in the synthetic files and, by OCR, in their pixels.
        pcfg = cfg["phi"]
        task = bar.add_task("PHI in synthetic files", total=None)
        # Only sets read from disk have files to check (an in-memory list of cases has no root).
        syn_root = getattr(ds["synthetic"], "root", None)
        tr_root = getattr(ds["train"], "root", None)
        if syn_root is None:
            notes.append("PHI check of files skipped: the synthetic set was given in memory, not as files")
        idents = training_identifiers(ds["train"], None if tr_root is None else Path(tr_root), pcfg)
        phi = check_phi(None if syn_root is None else Path(syn_root), idents, pcfg)
        bar.update(task, total=1, completed=1)
        task = bar.add_task("text in pixels (OCR)", total=len(ds["synthetic"]))
        pixel_text = check_pixel_text(ds["synthetic"], idents, pcfg["ocr"], on_case=lambda n: bar.advance(task, n))
        if pixel_text.status != "checked":
            notes.append(OCR_NOT_CHECKED.format(reason=pixel_text.reason))
        phi_out = {"n_dicom": phi.n_dicom, "n_files": phi.n_files, "counts": phi.counts,
                   "findings": [f.to_dict() for f in phi.findings[:500]], "n_findings": len(phi.findings),
                   "identifiers_searched": phi.n_identifiers, "identifiers_not_searched": phi.skipped_identifiers,
                   "ocr": pixel_text.status == "checked", "pixel_text": pixel_text.to_dict()}
        checks.append(check_record("phi", len(phi.findings), 0, not phi.findings, n_dicom=phi.n_dicom,
                                   counts=phi.counts, identifiers=phi.n_identifiers))
        # Without OCR the check keeps the verdict but is shown as "not checked", never as a pass.
        read = pixel_text.status == "checked"
        checks.append(check_record(
            "phi_pixel_text", pixel_text.n_images_with_text if read else None, 0,
            not pixel_text.findings, status=None if read else "not checked",
            n_images=pixel_text.n_images, n_findings=len(pixel_text.findings),
            note=pixel_text.reason or "OCR of every synthetic image; any text but laterality/view markers fails"))

    inconclusive = [c["name"] for c in checks if c.get("status") == "inconclusive"]
    verdict = verdict_of(checks)
    if inconclusive and verdict != "fail":
        notes.insert(0, f"{len(inconclusive)} check(s) could not tell and are inconclusive, not passed: "
                        f"{', '.join(inconclusive)} (see each check's details)")
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


def _calibrate(scopes: dict[str, ScopeResult], holdout_nn: dict[str, ScopeResult],
               arrays: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
               mcfg: dict[str, Any]) -> tuple[dict[str, dict[str, Threshold]], dict[str, dict[str, Any]]]:
    """Each scope's thresholds (calibrated on the holdout, or fixed), and the synthetic samples flagged again.

    The false-alarm rate is shared by every synthetic sample, space and scope (Bonferroni)."""
    n_spaces = {sc: sum(v is not None for v in r.scores().values()) for sc, r in scopes.items()}
    n_tests = sum(len(r.ncc) * n_spaces[sc] for sc, r in scopes.items())
    thresholds: dict[str, dict[str, Threshold]] = {}
    fits: dict[str, dict[str, Any]] = {}
    for scope, r in scopes.items():
        h = holdout_nn.get(scope)
        n_h = len(arrays[scope][2])
        h_scores = {k: (None if v is None else (h.scores()[k] if h is not None else np.full(n_h, np.nan)))
                    for k, v in r.scores().items()}
        thresholds[scope], fits[scope] = calibrate_thresholds(h_scores, mcfg["thresholds"], mcfg["calibration"],
                                                              n_tests)
        r.reflag({k: t.value for k, t in thresholds[scope].items()})
    return thresholds, fits


def _train_patients(tr: PreparedSet, scope: str) -> np.ndarray:
    """The training patient of each sample of a scope: its patient ID, else its image."""
    pats = np.asarray([p if p is not None else f"image {rel}" for p, rel in zip(tr.patient_ids, tr.relpaths)],
                      dtype=object)
    return pats if scope == "image" else pats[tr.roi_case]


def _status(passed: bool, inconclusive: bool, policy: str) -> tuple[bool, str]:
    """(passed, status) of a check that may be inconclusive, by the config's ``inconclusive`` policy."""
    if not passed:
        return False, "fail"
    if inconclusive:
        return policy != "fail", "inconclusive"
    return True, "pass"


def _sample_case(scope: str, i: int, prep: PreparedSet) -> int:
    return int(i) if scope == "image" else int(prep.roi_case[i])


def _leak_summary(scope: str, sample: SampleLeaks | None, patient: PatientLeaks | None, r: ScopeResult,
                  tr: PreparedSet, sy: PreparedSet, max_listed: int = 20) -> dict[str, Any]:
    """The evidence of both leak checks of one scope, JSON-ready."""
    out: dict[str, Any] = {"per_sample": None, "per_patient": None}
    if sample is not None:
        out["per_sample"] = {
            "level": sample.level, "min_pvalue": float(sample.pvalues.min()), "n_flagged": int(len(sample.flagged)),
            "flagged": [{"synthetic": sy.relpaths[_sample_case(scope, i, sy)],
                         "nearest_train": tr.relpaths[_sample_case(scope, r.nn_index[i], tr)],
                         "ncc": float(r.ncc[i]), "pvalue": float(sample.pvalues[i])}
                        for i in sample.flagged[:max_listed]],
        }
    if patient is not None:
        out["per_patient"] = {
            "levels": {str(k): x for k, x in patient.levels.items()}, "n_flagged": len(patient.flagged),
            "flagged": [{"train_patient": pat, "n_samples": len(idx),
                         "synthetic": [sy.relpaths[_sample_case(scope, i, sy)] for i in idx],
                         "pvalues": [float(patient.pvalues[i]) for i in idx]}
                        for pat, idx in list(patient.flagged.items())[:max_listed]],
            "strongest": patient.strongest,
        }
    return out


def _leak_checks(scope: str, sample: SampleLeaks | None, patient: PatientLeaks | None, sy: PreparedSet,
                 tr: PreparedSet, cfg: dict[str, Any], n_holdout: int,
                 summary: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The two leak checks of one scope; inconclusive when the holdout is too small to run them."""
    policy = cfg["inconclusive"]
    lcfg = cfg["leaks"]
    out = []
    cal = cfg["memorization"]["calibration"]
    why = (f"the holdout has {n_holdout} {scope}(s), fewer than min_holdout={cal['min_holdout']}, too few to tell "
           "how close fresh data comes to the training set" if cal["enabled"] else
           "calibration is switched off, so there is no model of how close fresh data comes")
    if sample is None:
        passed, status = _status(True, True, policy)
        out.append(check_record(f"leak_sample_{scope}", None, None, passed, status, note=f"not checked: {why}"))
    else:
        passed = len(sample.flagged) == 0
        out.append(check_record(
            f"leak_sample_{scope}", float(sample.pvalues.min()), sample.level, passed,
            n_flagged=int(len(sample.flagged)), alpha=float(lcfg["sample_alpha"]), n_holdout=n_holdout,
            note="p: chance that a fresh sample comes this close to the training set (NCC); "
                 "fails below alpha / n_synthetic"))
    if patient is None:
        passed, status = _status(True, True, policy)
        out.append(check_record(f"leak_patient_{scope}", None, None, passed, status, note=f"not checked: {why}"))
    else:
        passed = not patient.flagged
        strongest = patient.strongest
        out.append(check_record(
            f"leak_patient_{scope}", len(patient.flagged), 0, passed,
            alpha=float(lcfg["patient_alpha"]), levels={str(k): x for k, x in patient.levels.items()},
            flagged_patients=list(patient.flagged)[:10], most_close_samples=strongest.get("n_close"),
            closest_patient=strongest.get("train_patient"),
            note="fails when k >= 2 synthetic samples nearest to one training patient all have p <= x_k "
                 "(union bound over k-subsets: a clean set fails with probability <= alpha)"))
    return out


def _mia_checks(res: Any, icfg: dict[str, Any], policy: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The MIA evidence and one check per attack: fail on a significant AUC above the maximum, else
    inconclusive when the sample sizes cannot detect ``detect_auc`` with the stated power."""
    from medsynth.auditing.mia import detectable_auc, detection_power, min_nonmembers, samples_needed

    n_att = max(1, len(res.attacks))
    alpha = float(icfg["alpha"]) / n_att  # shared by the attacks (Bonferroni)
    auc_max, target, want = float(icfg["auc_max"]), float(icfg["detect_auc"]), float(icfg["power"])
    power = detection_power(target, res.n_members, res.n_nonmembers, auc_max, alpha)
    ratio = res.n_nonmembers / max(1, res.n_members)
    need = samples_needed(target, ratio, auc_max, alpha, want)
    power_info = {
        "detect_auc": target, "power_at_detect_auc": power, "power_wanted": want,
        "detectable_auc": detectable_auc(res.n_members, res.n_nonmembers, auc_max, alpha, want),
        "members_needed": need, "nonmembers_needed": None if need is None else int(round(ratio * need)),
        "alpha_per_attack": alpha,
    }
    underpowered = power < want
    out: dict[str, Any] = {"n_members": res.n_members, "n_nonmembers": res.n_nonmembers,
                           "skipped_lesions": res.skipped_lesions, "power": power_info, "attacks": {}}
    checks = []
    max_fpr = float(icfg["tpr_at_fpr"])
    for a in res.attacks:
        out["attacks"][a.name] = {"auc": a.auc, "auc_ci": list(a.auc_ci), f"tpr_at_{a.max_fpr:g}_fpr": a.tpr_at_fpr,
                                  "tpr_at_0_fpr": a.tpr_at_zero_fpr, "pvalue": a.pvalue}
        failed = a.auc > auc_max and a.pvalue < alpha
        passed, status = _status(not failed, underpowered, policy)
        tpr = a.tpr_at_fpr if a.tpr_at_fpr is not None else (
            f"n/a (needs >= {min_nonmembers(max_fpr)} non-members)")
        checks.append(check_record(
            f"mia_{a.name}", a.auc, auc_max, passed, status, auc_ci=list(a.auc_ci), tpr_at_fpr=tpr,
            max_fpr=a.max_fpr, pvalue=a.pvalue, alpha=alpha, n_members=res.n_members,
            n_nonmembers=res.n_nonmembers, power=round(power, 3),
            note=(f"too few samples: an attack of AUC {target:g} would be caught with probability {power:.2f} "
                  f"(wanted {want:g}; needs ~{need} members / {power_info['nonmembers_needed']} non-members)")
            if underpowered and not failed else
            f"fails when AUC > {auc_max:g} and p < {alpha:.3g}; catches AUC {target:g} with probability {power:.2f}"))
    return out, checks
