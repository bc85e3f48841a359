"""Can a classifier tell real lesions from synthetic ones? A classifier two-sample test (C2ST).

Lopez-Paz & Oquab (ICLR 2017): train a classifier to separate the two sets and measure it on data
it did not train on; a held-out ROC AUC of 0.5 means the sets are indistinguishable to it, 1.0 that
every synthetic lesion is told apart. Here:

- **Data**: one ROI per lesion (the one lesion rule), cut by :mod:`medsynth.metrics.images` as a
  ``roi_mm`` square resampled to ``roi_px`` (32 mm at 0.5 mm/px by default) -- the same mm grid for
  both sets, whatever their pixel spacing -- of which the C2ST takes the central ``crop_mm`` (24 mm,
  48 px: the lesion fills more of it than of 32 mm, and it costs half as much). Pixels are display
  values in [0, 1], not normalised per ROI, so brightness is evidence too. An ROI also holds the
  tissue around its lesion: when the two sets' backgrounds differ (other scanners, other breasts),
  that shows as well.
- **Folds grouped by patient**: an ROI's group is its patient (a synthetic case's: its background
  image, the manifest records no patient); every group's ROIs fall in one fold, so the classifier
  cannot score well by recognising a patient. Folds are balanced per arm and lesion class (groups
  placed largest first where the counts stay most even). Each fold's classifier trains on the
  other folds with class-balanced batches (so its prior is 50/50 whatever the set sizes: without
  that, cross-validated AUC is biased below 0.5 when the classes are unbalanced) and random flips and
  90-degree rotations; its scores on its own fold are the out-of-fold scores.
- **Classifier**: a small CNN (four 3x3 conv blocks with GroupNorm, mean and max pooled), Adam, a few
  hundred steps -- a CPU minute.
- **AUC and CI**: ROC AUC of the pooled out-of-fold scores (torchmetrics ``binary_auroc``); 95 %
  CI by a percentile bootstrap that resamples whole groups with replacement, real and synthetic
  groups separately (a cluster bootstrap: ROIs of one patient are not independent; DeLong's variance
  assumes independent ROIs). The resampled AUCs use the Mann-Whitney rank formula, the same number as
  torchmetrics' (checked by the tests) at a fraction of the cost. The CI holds the classifier fixed:
  it covers the test-set sampling, not the variation between training runs.
- **Per class and margin**: the same out-of-fold scores, restricted to the ROIs of one lesion class
  (or one mass margin) in both sets.
- **Evidence**: the synthetic ROIs with the highest scores, the ones most obviously synthetic.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medsynth.errors import ConfigError, InvalidImageError
from medsynth.io.labels import CLASS_NAMES
from medsynth.utils import progress_bar


@dataclass(frozen=True)
class C2STSettings:
    """The C2ST's settings (the ``realism`` section of configs/evaluate.yaml, ``enabled`` aside)."""

    crop_mm: float = 24.0
    folds: int = 5
    steps: int = 200
    batch_size: int = 32
    lr: float = 1.0e-3
    weight_decay: float = 1.0e-4
    width: int = 16
    highpass: bool = True
    augment: bool = True
    bootstrap: int = 1000
    min_rois: int = 4
    top_k: int = 8
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> C2STSettings:
        cfg = dict(cfg or {})
        cfg.pop("enabled", None)
        known = set(cls.__dataclass_fields__)
        unknown = set(cfg) - known
        if unknown:
            raise ConfigError(f"unknown realism setting(s) {sorted(unknown)}; known: {sorted(known)}")
        s = cls(**cfg)
        if s.folds < 2:
            raise ConfigError(f"realism.folds must be >= 2, got {s.folds}")
        if s.steps < 1 or s.batch_size < 2:
            raise ConfigError(f"realism.steps must be >= 1 and batch_size >= 2, got {s.steps}, {s.batch_size}")
        return s


HIGHPASS_SIGMA_PX = 1.0
HIGHPASS_GAIN = 10.0


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    r = int(np.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


class RealismCNN(nn.Module):
    """Four 3x3 conv blocks (GroupNorm, ReLU, 2x max-pool after the first three); mean- and
    max-pooled features into one logit (high = synthetic).

    With ``highpass`` the first block sees two channels: the ROI and its high-pass residual (the
    ROI minus its Gaussian blur of ``HIGHPASS_SIGMA_PX``, times ``HIGHPASS_GAIN``): fine detail --
    noise, texture, specks -- that a few hundred steps on a few dozen ROIs would not otherwise learn
    to weigh, and what a painted lesion most often lacks.
    """

    def __init__(self, width: int = 16, highpass: bool = True) -> None:
        super().__init__()
        w = width
        self.highpass = bool(highpass)
        self.register_buffer("_blur", _gaussian_kernel(HIGHPASS_SIGMA_PX), persistent=False)

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(min(8, cout), cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(2 if self.highpass else 1, w), nn.MaxPool2d(2), *block(w, 2 * w), nn.MaxPool2d(2),
            *block(2 * w, 4 * w), nn.MaxPool2d(2), *block(4 * w, 4 * w),
        )
        self.head = nn.Linear(8 * w, 1)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` minus its separable Gaussian blur (reflect-padded), times the gain."""
        k = self._blur
        r = len(k) // 2
        smooth = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
        smooth = F.conv2d(F.pad(smooth, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
        return HIGHPASS_GAIN * (x - smooth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = 2.0 * x - 1.0
        if self.highpass:
            inputs = torch.cat([inputs, self.residual(x)], dim=1)
        f = self.features(inputs)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)[:, 0]


def group_folds(
    is_synthetic: np.ndarray, groups: list[str], k: int, seed: int, strata: list[str] | None = None
) -> np.ndarray:
    """A fold index per sample: every group in one fold, folds balanced per class and stratum.

    Groups are shuffled (seeded) and placed, largest first, into the fold where the sum of squares
    of the per-(class, stratum) counts grows least, so every fold holds a like share of real and
    synthetic samples and of each lesion class. Without that balance a fold whose real lesions are
    mostly calcifications leaves a training set in which calcifications look synthetic, and the
    held-out AUC falls below 0.5 on sets that do not differ ("anti-learning").
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(is_synthetic, dtype=bool)
    kinds = [f"{int(y[i])}/{strata[i] if strata is not None else ''}" for i in range(len(y))]
    index = {kind: j for j, kind in enumerate(dict.fromkeys(kinds))}
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(str(g), []).append(i)
    load = np.zeros((k, len(index)))
    folds = np.full(len(y), -1, dtype=np.int64)
    names = list(members)
    shuffled = [names[i] for i in rng.permutation(len(names))]
    for g in sorted(shuffled, key=lambda name: -len(members[name])):  # stable: shuffled ties
        idx = np.asarray(members[g])
        counts = np.bincount([index[kinds[i]] for i in idx], minlength=len(index))
        cost = ((load + counts) ** 2).sum(axis=1) - (load**2).sum(axis=1)
        fold = int(np.argmin(cost + 1e-9 * np.arange(k)))
        folds[idx] = fold
        load[fold] += counts
    return folds


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flips and 90-degree rotations per sample (a lesion has no preferred orientation)."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    k = torch.randint(0, 4, (n,), generator=gen)
    out = x.clone()
    for r in (1, 2, 3):
        sel = k == r
        if sel.any():
            out[sel] = torch.rot90(x[sel], r, dims=(-2, -1))
    return out


def train_classifier(x: np.ndarray, y: np.ndarray, settings: C2STSettings, seed: int,
                     device: torch.device | str = "cpu") -> RealismCNN:
    """Train a :class:`RealismCNN` on ROIs ``x`` (N, S, S) with labels ``y`` (1 = synthetic) using
    class-balanced batches (half real, half synthetic, drawn with replacement) on ``device`` (batches
    and augmentations are drawn on the CPU from the seeded generator, then moved)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = RealismCNN(settings.width, settings.highpass).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    data = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None]
    pos = torch.from_numpy(np.flatnonzero(y == 1))
    neg = torch.from_numpy(np.flatnonzero(y == 0))
    half = settings.batch_size // 2
    target = torch.cat([torch.zeros(half), torch.ones(half)]).to(device)
    model.train()
    for _ in range(settings.steps):
        idx = torch.cat([neg[torch.randint(len(neg), (half,), generator=gen)],
                         pos[torch.randint(len(pos), (half,), generator=gen)]])
        batch = data[idx]
        if settings.augment:
            batch = _augment(batch, gen)
        loss = F.binary_cross_entropy_with_logits(model(batch.to(device)), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def auroc(scores: np.ndarray, is_synthetic: np.ndarray) -> float:
    """ROC AUC of ``scores`` for telling synthetic (1) from real (0), by torchmetrics."""
    from torchmetrics.functional.classification import binary_auroc

    return float(binary_auroc(torch.as_tensor(scores, dtype=torch.float64),
                              torch.as_tensor(is_synthetic, dtype=torch.long)))


def rank_auc(scores: np.ndarray, is_synthetic: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank formula (ties count one half): the same number as
    :func:`auroc`, fast enough for thousands of bootstrap resamples (the tests check the two agree)."""
    from scipy.stats import rankdata

    y = np.asarray(is_synthetic, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def grouped_auc_ci(
    scores: np.ndarray, is_synthetic: np.ndarray, groups: list[str], n_boot: int, seed: int
) -> list[float] | None:
    """95 % percentile CI of the AUC by a cluster bootstrap: whole groups drawn with replacement,
    real and synthetic groups separately. None with fewer than two groups in a class."""
    y = np.asarray(is_synthetic, dtype=bool)
    per_class: list[list[np.ndarray]] = []
    for cls in (False, True):
        members: dict[str, list[int]] = {}
        for i in np.flatnonzero(y == cls):
            members.setdefault(str(groups[i]), []).append(int(i))
        per_class.append([np.asarray(v) for v in members.values()])
    if min(len(p) for p in per_class) < 2:
        return None
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([np.concatenate([p[j] for j in rng.integers(len(p), size=len(p))]) for p in per_class])
        values[b] = rank_auc(scores[idx], y[idx])
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]


@dataclass
class C2STResult:
    """The outcome of :func:`c2st`.

    Attributes:
        auc: held-out ROC AUC (0.5 = indistinguishable), None when not computed.
        ci95: its 95 % grouped-bootstrap CI, or None.
        scores: out-of-fold score (probability of "synthetic") of every ROI, real ones first.
        is_synthetic: 1 for synthetic ROIs.
        groups, folds: the group and fold of every ROI.
        by_class, by_margin: AUC, CI and counts per lesion class / mass margin.
        most_synthetic: indices (into the synthetic ROIs) of the highest-scoring synthetic ROIs.
        info: counts, settings, seconds, notes.
    """

    auc: float | None
    ci95: list[float] | None
    scores: np.ndarray = field(repr=False)
    is_synthetic: np.ndarray = field(repr=False)
    groups: list[str] = field(repr=False)
    folds: np.ndarray = field(repr=False)
    by_class: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_margin: dict[str, dict[str, Any]] = field(default_factory=dict)
    most_synthetic: list[int] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def _subset_auc(
    scores: np.ndarray, y: np.ndarray, groups: list[str], sel: np.ndarray, s: C2STSettings
) -> dict[str, Any]:
    n_real, n_syn = int((sel & (y == 0)).sum()), int((sel & (y == 1)).sum())
    out: dict[str, Any] = {"auc": None, "ci95": None, "n_real": n_real, "n_synthetic": n_syn}
    if n_real < 2 or n_syn < 2:
        out["note"] = "fewer than 2 ROIs in an arm"
        return out
    idx = np.flatnonzero(sel)
    out["auc"] = auroc(scores[idx], y[idx])
    out["ci95"] = grouped_auc_ci(scores[idx], y[idx], [groups[i] for i in idx], s.bootstrap, s.seed)
    return out


def c2st(
    real: np.ndarray,
    synthetic: np.ndarray,
    real_groups: list[str],
    synthetic_groups: list[str],
    settings: C2STSettings | None = None,
    real_classes: list[str] | None = None,
    synthetic_classes: list[str] | None = None,
    real_margins: list[str | None] | None = None,
    synthetic_margins: list[str | None] | None = None,
    progress: bool = False,
    device: torch.device | str = "cpu",
) -> C2STResult:
    """Run the C2ST on two sets of ROIs (see the module docstring).

    Args:
        real, synthetic: (N, S, S) ROIs in [0, 1] on one mm grid.
        real_groups, synthetic_groups: the group (patient) of every ROI.
        settings: :class:`C2STSettings` (default: its defaults).
        real_classes, synthetic_classes: lesion class name of every ROI, for ``by_class``.
        real_margins, synthetic_margins: mass margin of every ROI (None where unknown), for ``by_margin``.
        progress: a progress bar over the folds.
        device: where the classifiers train and score.

    Returns:
        A :class:`C2STResult`; ``auc`` is None (with ``info["note"]``) when an arm has fewer than
        ``min_rois`` ROIs or fewer than two groups.

    Raises:
        InvalidImageError: ROI arrays of different sizes or not (N, S, S).
    """
    s = settings or C2STSettings()
    t0 = time.perf_counter()
    real = np.asarray(real, dtype=np.float32)
    synthetic = np.asarray(synthetic, dtype=np.float32)
    if real.ndim != 3 or synthetic.ndim != 3 or real.shape[1:] != synthetic.shape[1:]:
        raise InvalidImageError(
            f"C2ST needs two (N, S, S) ROI stacks of one size, got {real.shape} and {synthetic.shape}"
        )
    if len(real_groups) != len(real) or len(synthetic_groups) != len(synthetic):
        raise InvalidImageError("C2ST: one group per ROI is needed")
    x = np.concatenate([real, synthetic])
    y = np.concatenate([np.zeros(len(real), np.int64), np.ones(len(synthetic), np.int64)])
    groups = [f"real/{g}" for g in real_groups] + [f"synthetic/{g}" for g in synthetic_groups]
    n_groups = (len(set(real_groups)), len(set(synthetic_groups)))
    info: dict[str, Any] = {"n_real_rois": int(len(real)), "n_synthetic_rois": int(len(synthetic)),
                            "n_real_groups": n_groups[0], "n_synthetic_groups": n_groups[1],
                            "settings": asdict(s)}
    empty = C2STResult(None, None, np.full(len(y), np.nan), y, groups, np.full(len(y), -1), info=info)
    if min(len(real), len(synthetic)) < s.min_rois or min(n_groups) < 2:
        info["note"] = (f"C2ST not run: it needs at least {s.min_rois} ROIs and 2 patients per arm (real "
                        f"{len(real)} ROIs / {n_groups[0]} patients, synthetic {len(synthetic)} / {n_groups[1]})")
        return empty
    k = int(min(s.folds, *n_groups))
    strata = None
    if real_classes is not None and synthetic_classes is not None:
        strata = [*real_classes, *synthetic_classes]
    folds = group_folds(y, groups, k, s.seed, strata)
    scores = np.full(len(y), np.nan)
    with progress_bar(progress) as bar, torch.random.fork_rng(devices=[]):
        task = bar.add_task("C2ST folds", total=k)
        for f in range(k):
            train, test = folds != f, folds == f
            if len(np.unique(y[train])) < 2 or not test.any():
                continue  # cannot happen with >= 2 groups per class and k <= groups; kept as a guard
            model = train_classifier(x[train], y[train], s, seed=s.seed * 1000 + f, device=device)
            with torch.no_grad():
                logits = model(torch.from_numpy(x[test])[:, None].to(device))
            scores[test] = torch.sigmoid(logits).double().cpu().numpy()
            bar.advance(task)
    auc = auroc(scores, y)
    ci = grouped_auc_ci(scores, y, groups, s.bootstrap, s.seed)
    result = C2STResult(auc, ci, scores, y, groups, folds, info=info)
    if real_classes is not None and synthetic_classes is not None:
        classes = np.asarray(list(real_classes) + list(synthetic_classes), dtype=object)
        for name in dict.fromkeys(classes.tolist()):
            result.by_class[str(name)] = _subset_auc(scores, y, groups, classes == name, s)
    if real_margins is not None and synthetic_margins is not None:
        margins = np.asarray(list(real_margins) + list(synthetic_margins), dtype=object)
        known = sorted({m for m in margins.tolist() if m is not None})
        for name in known:
            result.by_margin[str(name)] = _subset_auc(scores, y, groups, margins == name, s)
    syn_scores = scores[len(real):]
    result.most_synthetic = [int(i) for i in np.argsort(-syn_scores, kind="stable")[: s.top_k]]
    info.update(folds=k, seconds=round(time.perf_counter() - t0, 2))
    return result


def central_crop(rois: np.ndarray, roi_mm: float, crop_mm: float) -> np.ndarray:
    """The central ``crop_mm`` square of ROIs that span ``roi_mm`` (same mm grid, no resampling)."""
    rois = np.asarray(rois)
    px = rois.shape[-1]
    keep = int(round(px * min(float(crop_mm), float(roi_mm)) / float(roi_mm)))
    keep = max(8, min(px, keep))
    start = (px - keep) // 2
    return rois[:, start : start + keep, start : start + keep]


def class_names(labels: np.ndarray | None, n: int) -> list[str]:
    """Lesion class names of label values (``io/labels.py``); "lesion" when unknown."""
    if labels is None:
        return ["lesion"] * n
    return [CLASS_NAMES.get(int(v), str(int(v))) for v in labels]


__all__ = [
    "C2STResult",
    "C2STSettings",
    "RealismCNN",
    "auroc",
    "c2st",
    "central_crop",
    "class_names",
    "group_folds",
    "grouped_auc_ci",
    "rank_auc",
    "train_classifier",
]
