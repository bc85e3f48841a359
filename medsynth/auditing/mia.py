"""Membership inference against the inpainting model: can an attacker tell training ROIs from holdout ones?

Two attacks, both label-free (nothing is fitted on who is a member, so the AUC is not inflated):

- **loss**: the model's denoising loss (``LesionInpainter.per_sample_loss``) at one mid-range
  timestep, averaged over a few fixed noise draws (Matsumoto et al.; a member has a lower loss).
- **multi_t** (PIA/SecMI-style): the loss at several fixed small-to-mid timesteps with the same fixed
  noise for every sample; each timestep's losses are standardised over all samples and averaged.
  SecMI and PIA find that members are separated best at small t with deterministic noise.

Each is reported as ROC AUC and TPR at 1% FPR (the standard of the diffusion-MIA literature); the
ROC and AUC are torchmetrics' ``binary_roc`` / ``binary_auroc``, checked against brute-force
definitions in the tests. The check fails when an attack's AUC is above the configured maximum
and significantly above 0.5 (one-sided Mann–Whitney U, which is the same statistic as the AUC).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy import stats
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
    return np.round(fpr.double().numpy() * n_neg) / n_neg, np.round(tpr.double().numpy() * n_pos) / n_pos


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
    tpr_at_fpr: float
    max_fpr: float
    pvalue: float  # one-sided Mann–Whitney U: members score higher than non-members
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)
    member_scores: np.ndarray = field(repr=False)
    nonmember_scores: np.ndarray = field(repr=False)


def evaluate_attack(name: str, member: np.ndarray, nonmember: np.ndarray, max_fpr: float) -> AttackResult:
    """ROC AUC, TPR at ``max_fpr`` and the one-sided rank test of one attack's scores."""
    scores = np.r_[member, nonmember]
    labels = np.r_[np.ones(len(member), bool), np.zeros(len(nonmember), bool)]
    fpr, tpr = roc_curve(scores, labels)
    p = float(stats.mannwhitneyu(member, nonmember, alternative="greater").pvalue)
    return AttackResult(name, roc_auc(scores, labels), tpr_at_fpr(fpr, tpr, max_fpr), max_fpr, p, fpr, tpr,
                        np.asarray(member), np.asarray(nonmember))


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
) -> np.ndarray:
    """Per-sample losses, shape (n, len(timesteps), len(seeds)): the same noise for every sample
    (seeded per timestep and draw, not per sample) so differences come from the sample alone."""
    n = len(patches)
    out = np.empty((n, len(timesteps), len(seeds)), dtype=np.float64)
    with torch.no_grad():
        for a, t in enumerate(timesteps):
            for b, seed in enumerate(seeds):
                for s0 in range(0, n, batch_size):
                    sl = slice(s0, min(s0 + batch_size, n))
                    tt = torch.full((sl.stop - sl.start,), int(t), dtype=torch.long)
                    loss = model.per_sample_loss(
                        torch.from_numpy(patches[sl]), torch.from_numpy(masks[sl]), tt, int(seed)
                    )
                    out[sl, a, b] = np.asarray(loss.detach().cpu().numpy() if hasattr(loss, "detach") else loss,
                                               dtype=np.float64).reshape(-1)
                    if on_batch is not None:
                        on_batch(sl.stop - sl.start)
    return out


@dataclass
class MiaResult:
    """Membership inference evidence."""

    n_members: int
    n_nonmembers: int
    skipped_lesions: int
    attacks: list[AttackResult]


def membership_inference(
    model: Any,
    train_cases: Sequence[Any],
    holdout_cases: Sequence[Any],
    cfg: dict[str, Any],
    on_batch: Callable[[int], None] | None = None,
) -> MiaResult:
    """Run the loss and multi-timestep attacks with training ROIs as members, holdout as non-members.

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
    loss_l = model_losses(model, patches, masks, t_loss, seeds, int(cfg["batch_size"]), on_batch)
    loss_m = model_losses(model, patches, masks, t_multi, seeds[:1], int(cfg["batch_size"]), on_batch)

    max_fpr = float(cfg["tpr_at_fpr"])
    n = len(mem)
    # Lower loss means "member": the score is the negated loss.
    s_loss = -loss_l.mean(axis=(1, 2))
    per_t = loss_m[:, :, 0]
    z = (per_t - per_t.mean(axis=0)) / (per_t.std(axis=0) + 1e-12)
    s_multi = -z.mean(axis=1)
    attacks = [
        evaluate_attack("loss", s_loss[:n], s_loss[n:], max_fpr),
        evaluate_attack("multi_t", s_multi[:n], s_multi[n:], max_fpr),
    ]
    return MiaResult(n_members=n, n_nonmembers=len(non), skipped_lesions=sk1 + sk2, attacks=attacks)
