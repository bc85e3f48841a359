"""Membership inference against a real (tiny) LesionInpainter: an overfit model fails, an
undertrained one does not and scores a lower AUC; plumbing checked with a model that memorises exactly;
the member crops are the crops training cut."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medsynth.auditing.dp import dp_check
from medsynth.auditing.mia import lesion_patches, membership_inference, training_lesion_rule
from medsynth.auditing.run import audit
from medsynth.config import load_config

from .conftest import FAST
from .test_roc import AUC_TOL, brute_force_auc

SIZE = (128, 104)
# A 160k-parameter UNet on 16 px patches at 1.6 mm/px (25.6 mm ROIs): cheap enough for CPU tests.
TINY = dict(image_size=16, spacing_mm=1.6, block_out_channels=[16, 32], attention=False, layers_per_block=1,
            norm_num_groups=8, batch_size=4, learning_rate=3e-3, warmup_steps=10, ema_decay=0.9,
            checkpoint_every=100000, lesion_crops_per_lesion=1, healthy_crops_per_case=0)
# Overfitting: the same crops every step (no flips, jitter or intensity changes) for many steps.
OVERFIT = dict(flips=False, intensity_jitter=0.0, jitter_mm=0.0)


@pytest.fixture(scope="module")
def mia_sets(tmp_path_factory):
    from medsynth.phantoms import make_phantoms

    root = tmp_path_factory.mktemp("mia")
    return {
        "train": make_phantoms(root / "train", 4, seed=21, size=SIZE, lesion_fraction=1.0),
        "holdout": make_phantoms(root / "holdout", 8, seed=21, size=SIZE, lesion_fraction=1.0, patient_offset=50),
        "synthetic": make_phantoms(root / "syn", 4, seed=22, size=SIZE, patient_offset=80, layout="folder"),
        "root": root,
    }


@pytest.fixture(scope="module")
def models(mia_sets):
    from medsynth.models.training import train

    root = mia_sets["root"]
    # One thread: a UNet this small gains nothing from two, and on a shared machine two threads
    # per process oversubscribe the cores (6x slower measured here).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        overfit = train(mia_sets["train"], root / "overfit", steps=200, progress=False, **TINY, **OVERFIT)
        under = train(mia_sets["train"], root / "under", steps=10, progress=False, **TINY)
    finally:
        torch.set_num_threads(threads)
    return {"overfit": overfit, "under": under, "overfit_dir": root / "overfit", "under_dir": root / "under"}


def test_overfit_model_fails_mia_and_undertrained_scores_lower(mia_sets, models):
    from medsynth.io.datasets import load_dataset

    cfg = load_config(None, kind="audit")["mia"]
    tr, ho = load_dataset(mia_sets["train"]), load_dataset(mia_sets["holdout"])
    over = {a.name: a for a in membership_inference(models["overfit"], tr, ho, cfg).attacks}
    under = {a.name: a for a in membership_inference(models["under"], tr, ho, cfg).attacks}
    for name in ("loss", "multi_t"):
        assert over[name].auc > under[name].auc, (name, over[name].auc, under[name].auc)
        # The undertrained model passes the check (not above the AUC limit with significance).
        assert not (under[name].auc > cfg["auc_max"] and under[name].pvalue < cfg["alpha"])
    assert max(a.auc for a in over.values()) > cfg["auc_max"]
    # On the attacks' real scores, torchmetrics' AUC is the pairwise probability.
    for a in [*over.values(), *under.values()]:
        assert a.auc == pytest.approx(brute_force_auc(a.member_scores, a.nonmember_scores), abs=AUC_TOL)


def test_audit_with_overfit_model_dir_fails(mia_sets, models, tmp_path):
    res = audit(mia_sets["train"], mia_sets["synthetic"], mia_sets["holdout"], model=models["overfit_dir"],
                config={**FAST, "memorization": {"embedding": "none", "scopes": ["image"]}}, progress=False)
    mia = [c for c in res.checks if c["name"].startswith("mia_")]
    assert {c["name"] for c in mia} == {"mia_loss", "mia_multi_t"}
    assert any(not c["passed"] for c in mia) and res.verdict == "fail"
    assert res.mia["n_members"] >= 4
    html = res.to_html()
    assert "membership inference ROC" not in html or html.count("data:image/png") >= 2
    # The model card says the model was not trained with DP: reported, and a maximum makes it fail.
    dp = next(c for c in res.checks if c["name"] == "dp")
    assert dp["passed"] and dp["status"] == "not DP" and res.dp["dp_trained"] is False
    assert not dp_check(res.dp, {"epsilon_max": 10.0, "delta_max": None})["passed"]


class LookupModel:
    """A model that has memorised its training patches exactly: loss 0 on them, 1 elsewhere."""

    config = {"image_size": 16, "spacing_mm": 1.6, "num_train_timesteps": 1000}

    def __init__(self, members: np.ndarray) -> None:
        self.members = members

    def per_sample_loss(self, images, masks, timesteps, seed):
        x = images.numpy()
        d = np.abs(x[:, None] - self.members[None]).reshape(len(x), len(self.members), -1).max(-1).min(1)
        return torch.from_numpy((d > 1e-6).astype(np.float32))


def test_membership_inference_plumbing_with_a_lookup_model(mia_sets):
    from medsynth.io.datasets import load_dataset

    tr, ho = load_dataset(mia_sets["train"]), load_dataset(mia_sets["holdout"])
    members, _, _ = lesion_patches(tr, 16 * 1.6, 16, 1000, 0)
    res = membership_inference(LookupModel(members), tr, ho, load_config(None, kind="audit")["mia"])
    for a in res.attacks:
        assert a.auc == 1.0 and a.tpr_at_fpr == 1.0


def _cases_with_hard_lesions(n: int = 3) -> list:
    """In-memory cases whose masks test the lesion rule: two parts 0.8 mm apart (one lesion), a
    speck (none), a lesion larger than a 25.6 mm ROI (skipped), and one plain lesion."""
    from scipy import ndimage

    from medsynth.io.scan import Case, Scan

    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        image = ndimage.gaussian_filter(rng.uniform(0, 1, (160, 130)), 2).astype(np.float32)
        label = np.zeros(image.shape, np.float32)
        label[20:30, 20:28] = 1
        label[20:30, 30:38] = 1  # 2 px = 0.8 mm from the first part
        label[60 + i, 100] = 1  # a speck
        label[70:140, 10:80] = 1  # 28 mm: no room in the ROI
        label[20:32, 90:100 + i] = 2
        img = Scan(Path(f"mem/{i}.png"), image.shape, (0.4, 0.4), pixel_loader=lambda a=image: a)
        mask = Scan(Path(f"mem/{i}_mask.png"), label.shape, (0.4, 0.4), pixel_loader=lambda a=label: a)
        out.append(Case(f"c{i}", img, mask, patient_id=f"p{i}", image_relpath=f"{i}.png"))
    return out


def test_member_crops_are_the_crops_training_cut():
    from medsynth.models.data import build_patch_bank
    from medsynth.models.patches import default_lesion_rule

    cases = _cases_with_hard_lesions()
    patches, masks, skipped = lesion_patches(cases, 16 * 1.6, 16, 1000, 0, default_lesion_rule())
    # Training with one unshifted crop per lesion and no healthy crops cuts exactly these patches.
    bank = build_patch_bank(cases, 16, 1.6, {"lesion_crops_per_lesion": 1, "healthy_crops_per_case": 0,
                                             "jitter_mm": 0.0}, seed=0)
    np.testing.assert_array_equal(patches, bank.images.numpy())
    np.testing.assert_array_equal(masks, bank.masks.numpy())
    # Per case: the two nearby parts are one lesion, the speck is none, the large lesion is skipped.
    assert len(patches) == 2 * len(cases)
    assert skipped == bank.info["n_lesions_too_large"] == len(cases)


def test_the_lesion_rule_comes_from_the_model_card(models):
    from medsynth.models.inpainter import LesionInpainter
    from medsynth.models.patches import default_lesion_rule

    saved = LesionInpainter.from_pretrained(models["overfit_dir"])
    assert saved.model_card["data"]["lesion_rule"] == default_lesion_rule()
    assert training_lesion_rule(saved) == default_lesion_rule()

    class Card:
        model_card = {"data": {"lesion_rule": {"merge_mm": 4.0, "min_lesion_mm2": 0.0, "margin_mm": 1.0}}}

    rule = training_lesion_rule(Card())
    assert rule == {"merge_mm": 4.0, "min_lesion_mm2": 0.0, "margin_mm": 1.0}
    # A larger merge distance joins the lesions of a case, no minimum area keeps the specks.
    cases = _cases_with_hard_lesions()
    assert len(lesion_patches(cases, 16 * 1.6, 16, 1000, 0, rule)[0]) != len(
        lesion_patches(cases, 16 * 1.6, 16, 1000, 0)[0])
    assert training_lesion_rule(object()) == default_lesion_rule()  # no card: the train.yaml defaults
