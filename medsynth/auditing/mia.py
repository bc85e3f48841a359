"""Membership inference against the inpainting model: can an attacker tell training ROIs from holdout ones?

Three attacks, all label-free (nothing is fitted on who is a member, so the AUC is not inflated):

- **loss**: the model's denoising loss (``LesionInpainter.per_sample_loss``) at one mid-range
  timestep, averaged over a few fixed noise draws (Matsumoto et al.; a member has a lower loss).
- **multi_t**: the loss at several fixed small-to-mid timesteps with the same fixed noise for every
  sample; each timestep's losses are standardised over all samples and averaged.
- **pia**: the Proximal Initialisation Attack (Kong et al., ICLR 2024). The model's own noise
  prediction at t = 0, ε₀ = ε_θ(x₀, 0), replaces random noise: x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε₀ is a
  deterministic point on the model's trajectory, and a member's prediction there returns to ε₀:
  the score is ‖ε_θ(x_t, t) − ε₀‖₄ (ℓ4, as in the paper), two model queries per sample and
  timestep. For the inpainter the error is weighted like its training loss (up inside the dilated
  mask), where the lesion the model learnt lies, and ε₀ is normalised per sample as in the paper's
  PIAN variant: the inpainter's raw ε₀ varies in scale from patch to patch, and on the test's
  overfit model plain PIA scored below chance (AUC 0.36) where PIAN scored 0.92. Two timesteps
  are standardised and averaged like ``multi_t``, at the signal-to-noise ratios of PIA's t = 100
  and t = 200 on a linear DDPM schedule. It draws no noise at all.

Each is reported as ROC AUC with a stratified bootstrap confidence interval, and TPR at 1% FPR (the
standard of the diffusion-MIA literature) only when there are at least 1 / 0.01 = 100 non-members:
with fewer, the lowest non-zero FPR is above 1% and the number would be TPR at 0% FPR. The ROC and
AUC are torchmetrics' ``binary_roc`` / ``binary_auroc``, checked against brute-force definitions in
the tests. An attack fails the check when its AUC is above the configured maximum and significantly
above 0.5 (one-sided Mann–Whitney U, the same statistic as the AUC, at ``alpha`` shared by the
attacks: Bonferroni). :func:`detection_power` says how likely that rule is to fail a model whose
true AUC is a given value at the sample sizes at hand, so a pass on too few samples is reported as
inconclusive, not as a pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy import special, stats
from torchmetrics.functional.classification import binary_auroc, binary_roc

from medsynth.errors import InvalidMaskError
from medsynth.models.patches import crop_at, lesion_crop_centres, lesion_rule_of


def _roc_inputs(scores: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Scores and labels as torchmetrics takes them, and the numbers of members and non-members.

    torchmetrics applies a sigmoid to scores outside [0, 1], which rounds large scores to ties (a
    loss-based score of 40 and one of 41 both become 1.0). A ROC depends only on the order of the
    scores, so their dense ranks, scaled into (0, 1], are passed instead: same order, same ties.

    Raises:
        ValueError: lengths differ or one class is missing.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be 1-D of the same length")
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC needs both classes; got {n_pos} member(s) and {n_neg} non-member(s)")
    ranks = stats.rankdata(scores, method="dense")
    return torch.from_numpy(ranks / ranks.max()), torch.from_numpy(labels.astype(np.int64)), n_pos, n_neg


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve of ``scores`` (higher = more likely a member) for binary ``labels`` (1 = member),
    by torchmetrics' ``binary_roc``.

    Returns:
        (fpr, tpr) float64, starting at (0, 0); tied scores form one point.

    Raises:
        ValueError: lengths differ or one class is missing.
    """
    preds, target, n_pos, n_neg = _roc_inputs(scores, labels)
    fpr, tpr, _ = binary_roc(preds, target)
    # torchmetrics divides its counts in float32; each point is a count over n, restored exactly here.
    return np.round(fpr.double().cpu().numpy() * n_neg) / n_neg, np.round(tpr.double().cpu().numpy() * n_pos) / n_pos


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve, by torchmetrics' ``binary_auroc`` (ties get the 0.5 credit of a
    diagonal step; float32, so within ~1e-7 of the exact pairwise probability).

    Raises:
        ValueError: lengths differ or one class is missing.
    """
    preds, target, _, _ = _roc_inputs(scores, labels)
    return float(binary_auroc(preds, target))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    """The largest TPR among the ROC points (:func:`roc_curve`) whose FPR is at most ``max_fpr`` (no interpolation)."""
    ok = fpr <= max_fpr + 1e-12
    return float(tpr[ok].max())


@dataclass
class AttackResult:
    """One attack's scores and ROC."""

    name: str
    auc: float
    tpr_at_fpr: float | None  # None ("n/a") with fewer than 1 / max_fpr non-members
    max_fpr: float
    pvalue: float  # one-sided Mann–Whitney U: members score higher than non-members
    auc_ci: tuple[float, float]  # stratified bootstrap percentile interval
    tpr_at_zero_fpr: float  # TPR before the first non-member is called a member
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)
    member_scores: np.ndarray = field(repr=False)
    nonmember_scores: np.ndarray = field(repr=False)


def evaluate_attack(name: str, member: np.ndarray, nonmember: np.ndarray, max_fpr: float,
                    n_boot: int = 1000, ci_level: float = 0.95, seed: int = 0) -> AttackResult:
    """ROC AUC with its bootstrap interval, TPR at ``max_fpr`` (None with fewer than 1 / max_fpr
    non-members) and the one-sided rank test of one attack's scores."""
    member, nonmember = np.asarray(member, dtype=np.float64), np.asarray(nonmember, dtype=np.float64)
    scores = np.r_[member, nonmember]
    labels = np.r_[np.ones(len(member), bool), np.zeros(len(nonmember), bool)]
    fpr, tpr = roc_curve(scores, labels)
    p = float(stats.mannwhitneyu(member, nonmember, alternative="greater").pvalue)
    tpr_at = tpr_at_fpr(fpr, tpr, max_fpr) if len(nonmember) >= min_nonmembers(max_fpr) else None
    ci = bootstrap_auc_ci(member, nonmember, n_boot, ci_level, seed)
    return AttackResult(name, roc_auc(scores, labels), tpr_at, max_fpr, p, ci, tpr_at_fpr(fpr, tpr, 0.0),
                        fpr, tpr, member, nonmember)


def min_nonmembers(max_fpr: float) -> int:
    """Non-members needed before "TPR at ``max_fpr`` FPR" means what it says: 1 / max_fpr."""
    return int(np.ceil(1.0 / max_fpr - 1e-9))


def pairwise_auc(member: np.ndarray, nonmember: np.ndarray) -> np.ndarray:
    """AUC = P(member score > non-member score) + P(tie) / 2, from ranks; batched over leading axes.

    Args:
        member: (..., n1); nonmember: (..., n0).
    """
    n1, n0 = member.shape[-1], nonmember.shape[-1]
    ranks = stats.rankdata(np.concatenate([member, nonmember], axis=-1), axis=-1)
    u = ranks[..., :n1].sum(axis=-1) - n1 * (n1 + 1) / 2.0
    return u / (n1 * n0)


def bootstrap_auc_ci(member: np.ndarray, nonmember: np.ndarray, n_boot: int = 1000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the AUC over ``n_boot`` stratified bootstrap resamples (members and
    non-members resampled separately, so each resample keeps both sample sizes)."""
    rng = np.random.default_rng(seed)
    m, n = np.asarray(member, dtype=np.float64), np.asarray(nonmember, dtype=np.float64)
    aucs = np.empty(n_boot)
    for s0 in range(0, n_boot, 200):
        b = min(200, n_boot - s0)
        aucs[s0 : s0 + b] = pairwise_auc(m[rng.integers(0, len(m), (b, len(m)))],
                                         n[rng.integers(0, len(n), (b, len(n)))])
    lo, hi = np.quantile(aucs, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _auc_se(auc: float, n1: int, n0: int) -> float:
    """Standard error of an empirical AUC (Hanley & McNeil 1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n0 - 1) * (q2 - auc**2)) / (n1 * n0)
    return float(np.sqrt(max(var, 1e-12)))


def detection_power(true_auc: float, n_members: int, n_nonmembers: int, auc_max: float, alpha: float) -> float:
    """Probability that the check fails a model whose attack has AUC ``true_auc``, at these sample sizes.

    The check fails when the AUC is above ``auc_max`` and the one-sided Mann–Whitney p-value is below
    ``alpha``, i.e. when the AUC is above c = max(auc_max, 0.5 + z_(1-alpha) σ₀), σ₀ being its null
    standard deviation (√((n1 + n0 + 1) / (12 n1 n0))). The AUC is taken as normal around ``true_auc``
    with Hanley & McNeil's standard error. (At AUC 0.64 with 40 members and 30 non-members the old
    check, alpha 0.05, failed 62 % of the time; tests/auditing/test_mia_power.py checks the formula by
    simulation.)
    """
    n1, n0 = int(n_members), int(n_nonmembers)
    sigma0 = np.sqrt((n1 + n0 + 1) / (12.0 * n1 * n0))
    c = max(float(auc_max), 0.5 + float(special.ndtri(1 - alpha)) * sigma0)
    return float(special.ndtr((true_auc - c) / _auc_se(true_auc, n1, n0)))


def detectable_auc(n_members: int, n_nonmembers: int, auc_max: float, alpha: float, power: float) -> float:
    """The smallest true AUC the check fails with probability ``power`` at these sample sizes (bisection)."""
    lo, hi = 0.5, 0.9999
    if detection_power(hi, n_members, n_nonmembers, auc_max, alpha) < power:
        return 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if detection_power(mid, n_members, n_nonmembers, auc_max, alpha) < power else (lo, mid)
    return hi


def samples_needed(target_auc: float, ratio: float, auc_max: float, alpha: float, power: float) -> int | None:
    """Members needed (non-members = ``ratio`` x members) for the check to fail AUC ``target_auc``
    with probability ``power``; None when no sample size does (``target_auc`` <= ``auc_max``)."""
    if target_auc <= auc_max:
        return None
    n = 2
    while detection_power(target_auc, n, max(2, int(round(ratio * n))), auc_max, alpha) < power:
        n = int(np.ceil(n * 1.25))
        if n > 10**7:
            return None
    lo = max(2, int(n / 1.25))
    while lo < n:  # smallest n that reaches the power (monotone in n)
        mid = (lo + n) // 2
        if detection_power(target_auc, mid, max(2, int(round(ratio * mid))), auc_max, alpha) >= power:
            n = mid
        else:
            lo = mid + 1
    return n


def lesion_patches(
    cases: Sequence[Any],
    roi_mm: float,
    out_px: int,
    max_patches: int,
    seed: int,
    lesion_rule: dict[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Lesion-centred ROI patches cut the way the model was trained, one per lesion.

    The lesions and crop centres are training's (:func:`medsynth.models.patches.lesion_crop_centres`:
    nearby parts merged, specks dropped, lesions too large for the ROI skipped), without the
    training's random shift; each patch's mask holds every lesion pixel inside it, as in training.

    Args:
        cases: dataset cases with masks (cases without a mask are skipped).
        roi_mm: the model's ROI side in mm.
        out_px: the model's patch side in pixels.
        max_patches: at most this many (a seeded random subset of the lesions).
        seed: for the subset.
        lesion_rule: ``merge_mm``, ``min_lesion_mm2`` and ``margin_mm`` of the training data
            (:func:`medsynth.models.patches.lesion_rule_of`); None: the configs/train.yaml defaults.

    Returns:
        (patches (n, px, px) float32 in [0, 1], masks (n, px, px) bool, number of lesions skipped
        because they do not fit in the model's ROI).
    """
    rule = lesion_rule_of(lesion_rule)
    patches, masks, skipped = [], [], 0
    for case in cases:
        if case.mask is None:
            continue
        mask = np.asarray(case.mask.pixels) > 0
        case.mask.release()
        if not mask.any():
            continue
        image = np.asarray(case.image.unit_pixels(), dtype=np.float32)
        spacing = (float(case.image.spacing[0]), float(case.image.spacing[1]))
        case.image.release()
        centres, too_large = lesion_crop_centres(mask, spacing, roi_mm, **rule)
        skipped += too_large  # a lesion larger than the model's ROI was not trained on either
        for centre, _ in centres:
            patch, pmask, _ = crop_at(image, spacing, centre, roi_mm, out_px, mask=mask)
            if pmask is None or not pmask.any():
                continue
            patches.append(patch)
            masks.append(pmask)
    if len(patches) > max_patches:
        keep = np.sort(np.random.default_rng(seed).choice(len(patches), max_patches, replace=False))
        patches = [patches[i] for i in keep]
        masks = [masks[i] for i in keep]
    if not patches:
        return np.zeros((0, out_px, out_px), np.float32), np.zeros((0, out_px, out_px), bool), skipped
    return np.clip(np.stack(patches), 0, 1).astype(np.float32), np.stack(masks), skipped


def attributed_patches(model: Any, cases: Sequence[Any], max_patches: int, seed: int,
                       lesion_rule: dict[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The lesion patches of an attribute-conditioned model, cut as its training cut them (each class
    at its own spacing, masses with room for the band; :func:`medsynth.models.data.build_patch_bank`
    without the random shift, one crop per lesion) with the attribute codes training gave each.

    Returns:
        (patches (n, px, px) float32, masks (n, px, px) bool, codes (n, n_attributes) int64, number of
        lesions skipped as too large).
    """
    from medsynth.errors import InvalidDatasetError
    from medsynth.models.data import build_patch_bank
    from medsynth.models.training import bank_options

    cfg = model.config
    px = int(cfg["image_size"])
    data_cfg = {**lesion_rule, "jitter_mm": 0.0, "lesion_crops_per_lesion": 1, "healthy_crops_per_case": 0}
    try:
        bank = build_patch_bank(list(cases), px, float(cfg["spacing_mm"]), data_cfg, seed=seed, **bank_options(cfg))
    except InvalidDatasetError:
        return (np.zeros((0, px, px), np.float32), np.zeros((0, px, px), bool), np.zeros((0, 1), np.int64), 0)
    keep = np.flatnonzero(~bank.healthy.cpu().numpy())
    if len(keep) > max_patches:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_patches, replace=False))
    skipped = int(bank.info.get("n_lesions_too_large") or 0)
    return (bank.images[keep].cpu().numpy().astype(np.float32), bank.masks[keep].cpu().numpy().astype(bool),
            bank.codes[keep].cpu().numpy().astype(np.int64), skipped)


def training_lesion_rule(model: Any) -> dict[str, float]:
    """The lesion rule the model's training data was cut with, as its model card recorded it
    (``data.lesion_rule``; with a LoRA adapter loaded, the adapter's data, whose patches are then the
    members); the configs/train.yaml defaults for a card that does not say."""
    card = getattr(model, "model_card", None)
    if isinstance(card, dict) and isinstance(card.get("adapter"), dict) and card["adapter"].get("data"):
        card = card["adapter"]
    data = card.get("data") if isinstance(card, dict) else None
    return lesion_rule_of(data.get("lesion_rule") if isinstance(data, dict) else None)


def model_losses(
    model: Any,
    patches: np.ndarray,
    masks: np.ndarray,
    timesteps: Sequence[int],
    seeds: Sequence[int],
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
    codes: np.ndarray | None = None,
) -> np.ndarray:
    """Per-sample losses, shape (n, len(timesteps), len(seeds)): the same noise for every sample
    (seeded per timestep and draw, not per sample) so differences come from the sample alone.
    ``codes``: each sample's attribute codes, for an attribute-conditioned model."""
    n = len(patches)
    out = np.empty((n, len(timesteps), len(seeds)), dtype=np.float64)
    with torch.no_grad():
        for a, t in enumerate(timesteps):
            for b, seed in enumerate(seeds):
                for s0 in range(0, n, batch_size):
                    sl = slice(s0, min(s0 + batch_size, n))
                    tt = torch.full((sl.stop - sl.start,), int(t), dtype=torch.long)
                    extra = {} if codes is None else {"codes": torch.from_numpy(codes[sl])}
                    loss = model.per_sample_loss(
                        torch.from_numpy(patches[sl]), torch.from_numpy(masks[sl]), tt, int(seed), **extra
                    )
                    out[sl, a, b] = np.asarray(loss.detach().cpu().numpy() if hasattr(loss, "detach") else loss,
                                               dtype=np.float64).reshape(-1)
                    if on_batch is not None:
                        on_batch(sl.stop - sl.start)
    return out


def supports_pia(model: Any) -> bool:
    """PIA needs the noise predictor itself (a ``LesionInpainter``: ``unet``, ``noise_scheduler``,
    an epsilon- or v-predicting config), not only a loss."""
    cfg = getattr(model, "config", None)
    return (hasattr(model, "unet") and hasattr(model, "noise_scheduler") and isinstance(cfg, dict)
            and cfg.get("prediction_type", "epsilon") in ("epsilon", "v_prediction"))


@torch.no_grad()
def pia_distances(
    model: Any,
    patches: np.ndarray,
    masks: np.ndarray,
    timesteps: Sequence[int],
    batch_size: int,
    lp: float = 4.0,
    normalize: bool = True,
    on_batch: Callable[[int], None] | None = None,
    codes: np.ndarray | None = None,
) -> np.ndarray:
    """PIA's distance ‖ε_θ(x_t, t) − ε₀‖_p per sample and timestep, shape (n, len(timesteps)).

    ε₀ = ε_θ(x₀, 0) is the model's noise prediction on the clean patch (proximal initialisation);
    x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε₀. The error map is weighted like the model's training loss (1 outside,
    ``mask_loss_weight`` inside the mask dilated by ``mask_dilate_px``) and reduced to the weighted
    mean of |error|^p, raised to 1/p. Deterministic: no noise is drawn. With ``normalize`` (PIAN,
    the paper's normalised variant) ε₀ is first rescaled per sample to the mean absolute value of a
    standard normal.
    """
    from medsynth.models.inpainter import class_labels, dilate, unet_input

    cfg = model.config
    unet = model.unet
    device = next(unet.parameters()).device
    abar = model.noise_scheduler.alphas_cumprod.to(torch.float64)
    v_pred = cfg.get("prediction_type", "epsilon") == "v_prediction"
    conditional = bool(cfg["conditional"])
    was_training = unet.training
    unet.eval()
    n = len(patches)
    out = np.empty((n, len(timesteps)), dtype=np.float64)

    def eps_of(x_t: torch.Tensor, mask: torch.Tensor, x0: torch.Tensor, t: int,
               region: torch.Tensor | None, codes: torch.Tensor | None) -> torch.Tensor:
        tt = torch.full((x_t.shape[0],), int(t), dtype=torch.long, device=device)
        pred = unet(unet_input(x_t, mask, x0, conditional, region), tt,
                    class_labels=class_labels(cfg, x_t.shape[0], device, codes=codes)).sample.float()
        if v_pred:  # ε = √ᾱ v + √(1 − ᾱ) x_t
            a = float(abar[int(t)])
            pred = a**0.5 * pred + (1 - a) ** 0.5 * x_t
        return pred

    try:
        for s0 in range(0, n, batch_size):
            sl = slice(s0, min(s0 + batch_size, n))
            x0 = torch.from_numpy(patches[sl]).to(device, torch.float32)[:, None] * 2.0 - 1.0
            mask = torch.from_numpy(masks[sl].astype(np.float32)).to(device)[:, None]
            # the attribute-conditioned model: a mass with no descriptors, its region the mask grown by the band
            region, batch_codes = (model.scoring_conditioning(mask, None if codes is None else codes[sl])
                                   if hasattr(model, "scoring_conditioning") else (None, None))
            editable = mask if region is None else region
            weight = 1.0 + (float(cfg["mask_loss_weight"]) - 1.0) * dilate(editable, int(cfg["mask_dilate_px"]))
            eps0 = eps_of(x0, mask, x0, 0, region, batch_codes)
            if normalize:  # PIAN: ε₀ rescaled to the mean |.| of a standard normal, √(2/π)
                eps0 = eps0 / (eps0.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-12) * (2.0 / np.pi) ** 0.5
            for a, t in enumerate(timesteps):
                ab = float(abar[int(t)])
                x_t = ab**0.5 * x0 + (1.0 - ab) ** 0.5 * eps0
                err = (eps_of(x_t, mask, x0, int(t), region, batch_codes) - eps0).abs() ** lp
                d = ((err * weight).flatten(1).sum(1) / weight.flatten(1).sum(1)) ** (1.0 / lp)
                out[sl, a] = d.double().cpu().numpy()
            if on_batch is not None:
                on_batch(sl.stop - sl.start)
    finally:
        unet.train(was_training)
    return out


def standardized_mean(values: np.ndarray) -> np.ndarray:
    """(n, k) values standardised per column over all samples, averaged per row (label-free)."""
    z = (values - values.mean(axis=0)) / (values.std(axis=0) + 1e-12)
    return z.mean(axis=1)


@dataclass
class MiaResult:
    """Membership inference evidence."""

    n_members: int
    n_nonmembers: int
    skipped_lesions: int
    attacks: list[AttackResult]
    notes: list[str] = field(default_factory=list)


def membership_inference(
    model: Any,
    train_cases: Sequence[Any],
    holdout_cases: Sequence[Any],
    cfg: dict[str, Any],
    on_batch: Callable[[int], None] | None = None,
) -> MiaResult:
    """Run the loss, multi-timestep and PIA attacks with training ROIs as members, holdout as non-members.

    Args:
        model: anything with ``per_sample_loss(images, masks, timesteps, seed) -> (B,)`` and a
            ``config`` dict with ``image_size`` and ``spacing_mm`` (a ``LesionInpainter``); its
            ``model_card`` says how the training lesions were cut (:func:`training_lesion_rule`).
        train_cases, holdout_cases: dataset cases.
        cfg: the ``mia`` section of the audit config.
        on_batch: progress callback (patches scored).

    Raises:
        InvalidMaskError: fewer than 2 lesion ROIs on either side (no ROC can be drawn).
    """
    px = int(model.config["image_size"])
    roi_mm = float(model.config.get("roi_mm") or px * float(model.config["spacing_mm"]))
    seed = int(cfg["seed"])
    rule = training_lesion_rule(model)
    codes = None
    if getattr(model, "attributed", False):
        # scored as trained: each class at its spacing, with the attributes training gave it
        mem, mem_m, mem_c, sk1 = attributed_patches(model, train_cases, int(cfg["max_samples"]), seed, rule)
        non, non_m, non_c, sk2 = attributed_patches(model, holdout_cases, int(cfg["max_samples"]), seed + 1, rule)
        codes = np.concatenate([mem_c, non_c]) if len(mem) and len(non) else None
    else:
        mem, mem_m, sk1 = lesion_patches(train_cases, roi_mm, px, int(cfg["max_samples"]), seed, rule)
        non, non_m, sk2 = lesion_patches(holdout_cases, roi_mm, px, int(cfg["max_samples"]), seed + 1, rule)
    if len(mem) < 2 or len(non) < 2:
        raise InvalidMaskError(
            f"membership inference needs >= 2 lesion ROIs in train and holdout; got {len(mem)} and {len(non)}"
            " (lesions larger than the model's ROI are skipped)"
        )
    num_t = int(model.config.get("num_train_timesteps", 1000))
    patches = np.concatenate([mem, non])
    masks = np.concatenate([mem_m, non_m])
    seeds = [seed + i for i in range(int(cfg["noise_draws"]))]
    t_loss = [int(round(float(cfg["loss_timestep"]) * (num_t - 1)))]
    t_multi = [int(round(float(f) * (num_t - 1))) for f in cfg["multi_timesteps"]]
    bs = int(cfg["batch_size"])
    loss_l = model_losses(model, patches, masks, t_loss, seeds, bs, on_batch, codes)
    loss_m = model_losses(model, patches, masks, t_multi, seeds[:1], bs, on_batch, codes)

    max_fpr = float(cfg["tpr_at_fpr"])
    n = len(mem)
    boot = dict(n_boot=int(cfg["bootstrap"]), ci_level=float(cfg["ci_level"]), seed=seed)
    # Lower loss (or PIA distance) means "member": the score is its negation.
    s_loss = -loss_l.mean(axis=(1, 2))
    s_multi = -standardized_mean(loss_m[:, :, 0])
    attacks = [
        evaluate_attack("loss", s_loss[:n], s_loss[n:], max_fpr, **boot),
        evaluate_attack("multi_t", s_multi[:n], s_multi[n:], max_fpr, **boot),
    ]
    notes = []
    if supports_pia(model):
        t_pia = [max(1, int(round(float(f) * (num_t - 1)))) for f in cfg["pia_timesteps"]]
        # PIA's ℓp distances are heavy-tailed: their logs are standardised.
        dist = pia_distances(model, patches, masks, t_pia, bs, float(cfg["pia_norm"]), bool(cfg["pia_normalize"]),
                             on_batch, codes)
        s_pia = -standardized_mean(np.log(dist + 1e-12))
        attacks.append(evaluate_attack("pia", s_pia[:n], s_pia[n:], max_fpr, **boot))
    else:
        notes.append(f"PIA not run: the model ({type(model).__name__}) exposes no epsilon-predicting UNet")
    return MiaResult(n_members=n, n_nonmembers=len(non), skipped_lesions=sk1 + sk2, attacks=attacks, notes=notes)
