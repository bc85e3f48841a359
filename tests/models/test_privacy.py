"""Differential privacy: ε equals opacus' accountant, non-Poisson loaders refused, exact DP resume."""

from __future__ import annotations

import json

import pytest
import torch
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from torch.utils.data import DataLoader, WeightedRandomSampler

from medsynth.errors import PrivacyError
from medsynth.models.inpainter import build_unet, make_config
from medsynth.models.privacy import DPSettings, make_private
from medsynth.models.training import train

from .conftest import TINY

# A small ε keeps opacus' noise search fast; the tests are about accounting, not utility.
DP = {"target_epsilon": 1.0, "target_delta": 1e-3, "max_grad_norm": 1.0}


def test_dp_epsilon_equals_opacus_accountant(bank, tmp_path):
    with pytest.warns(UserWarning, match="secure_mode"):
        model = train(bank, tmp_path / "dp", steps=4, dp=DP, progress=False, **TINY)
    dp = model.model_card["dp"]
    assert dp["steps"] == 4 and dp["accountant"] == "rdp" and dp["delta"] == 1e-3
    expected_q = 1 / -(-len(bank) // TINY["batch_size"])  # 1 / number of batches, as opacus sets it
    assert dp["sample_rate"] == pytest.approx(expected_q)
    # σ is what opacus picks for this budget over exactly these steps ...
    assert dp["noise_multiplier"] == pytest.approx(
        get_noise_multiplier(target_epsilon=1.0, target_delta=1e-3, sample_rate=expected_q, steps=4, accountant="rdp"))
    # ... and ε is what an independent accountant gives when it replays the same steps.
    replay = RDPAccountant()
    for _ in range(4):
        replay.step(noise_multiplier=dp["noise_multiplier"], sample_rate=dp["sample_rate"])
    assert dp["epsilon"] == pytest.approx(replay.get_epsilon(delta=1e-3), rel=1e-12)
    assert dp["epsilon"] <= 1.0 + 0.02
    card = json.loads((tmp_path / "dp" / "model_card.json").read_text())
    assert card["dp"]["epsilon"] == pytest.approx(dp["epsilon"])
    assert "ε, δ" in (tmp_path / "dp" / "README.md").read_text()
    ckpt = torch.load(tmp_path / "dp" / "checkpoints" / "checkpoint.pt", weights_only=False)
    assert len(ckpt["accountant"]["history"]) > 0 and ckpt["dp"]["epsilon"] == pytest.approx(dp["epsilon"])
    # The returned UNet is the plain module again: no opacus wrapper, hooks or per-sample gradients left.
    from opacus import GradSampleModule

    assert not isinstance(model.unet, GradSampleModule)
    for name, m in model.unet.named_modules():
        assert not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks), name
        assert not hasattr(m, "autograd_grad_sample_hooks"), name
    assert all(getattr(p, "grad_sample", None) is None for p in model.unet.parameters())


def test_dp_resume_is_exact_and_keeps_counting(bank, tmp_path):
    full = train(bank, tmp_path / "full", steps=4, dp=DP, progress=False, **TINY)
    train(bank, tmp_path / "part", steps=4, max_steps=2, dp=DP, progress=False, **TINY)
    with pytest.raises(PrivacyError, match="--dp"):
        train(bank, tmp_path / "part", steps=4, resume=True, progress=False, **TINY)
    resumed = train(bank, tmp_path / "part", steps=4, resume=True, dp=DP, progress=False, **TINY)
    assert resumed.model_card["dp"]["epsilon"] == pytest.approx(full.model_card["dp"]["epsilon"], rel=1e-12)
    for k, v in full.unet.state_dict().items():
        assert torch.equal(v, resumed.unet.state_dict()[k]), k


@pytest.mark.parametrize(
    "n_batches, steps, accountant",
    [(3, 7, "rdp"), (7, 10, "rdp"), (10, 3, "rdp"), (3, 1000, "rdp"), (49, 1001, "rdp"), (3, 7, "prv")],
)
def test_noise_multiplier_is_opacus_for_exactly_the_planned_steps(n_batches, steps, accountant):
    """σ is opacus' get_noise_multiplier for the planned steps at q = 1 / batches: the noise that
    spends the target ε at the last step, not at a step count rounded from a number of epochs."""
    from torch.utils.data import TensorDataset

    module = torch.nn.Linear(2, 1)
    loader = DataLoader(TensorDataset(torch.zeros(n_batches * 2, 2), torch.zeros(n_batches * 2, 1)), batch_size=2)
    settings = DPSettings.from_any({**DP, "accountant": accountant})
    with pytest.warns(UserWarning, match="secure_mode"):
        private = make_private(module, torch.optim.SGD(module.parameters(), lr=0.1), loader, settings, steps)
    assert private.sample_rate == 1 / n_batches and private.steps == steps
    assert private.noise_multiplier == get_noise_multiplier(
        target_epsilon=1.0, target_delta=1e-3, sample_rate=1 / n_batches, steps=steps, accountant=accountant
    )
    assert float(private.optimizer.noise_multiplier) == private.noise_multiplier


def test_non_poisson_loader_is_refused(bank):
    unet = build_unet(make_config(**{k: TINY[k] for k in ("image_size", "block_out_channels", "norm_num_groups")}))
    unet.train()
    opt = torch.optim.AdamW(unet.parameters())
    weighted = DataLoader(bank, batch_size=4, sampler=WeightedRandomSampler([1.0] * len(bank), len(bank)))
    with pytest.raises(PrivacyError, match="Poisson"):
        make_private(unet, opt, weighted, DPSettings.from_any(True), steps=3)


def test_bad_dp_settings():
    with pytest.raises(PrivacyError, match="target_delta"):
        DPSettings.from_any({"target_delta": 2.0})
    with pytest.raises(PrivacyError, match="unknown DP setting"):
        DPSettings.from_any({"epsilon": 1.0})


def test_default_grad_sample_mode_gives_exact_per_sample_gradients(bank):
    """opacus' per-sample gradients under the default mode equal autograd on each sample alone, for
    every parameter of the default UNet (attention included: 'hooks' gets convs after it wrong)."""
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    from benchmarks.bench_dp import per_sample_grad_error

    worst, wrong = per_sample_grad_error(bank, "full", DPSettings.from_any(True).grad_sample_mode, n=2)
    assert wrong == [] and worst < 1e-3


def test_empty_poisson_batches_still_take_a_noisy_accounted_step(bank, tmp_path):
    """At a small sample rate Poisson sampling draws empty batches; the UNet is not run on them but
    the step is taken (noise on a zero gradient) and counted, so ε is that of all the steps."""
    from opacus.data_loader import DPDataLoader

    # Expected batch size 1 on a bank of ~30 patches: q ≈ 0.03, so ~97% of batches hold 0 or 1 patch.
    settings = {**TINY, "batch_size": 1}
    q = 1 / len(bank)
    loader = DPDataLoader.from_data_loader(DataLoader(bank, batch_size=1), generator=torch.Generator().manual_seed(1))
    sizes = [len(b) for b, _ in zip(loader.batch_sampler, range(12))]
    assert 0 in sizes  # the stream this test relies on does hold empty batches
    model = train(bank, tmp_path / "dp", steps=12, dp=DP, progress=False, seed=0, **settings)
    dp = model.model_card["dp"]
    assert dp["steps"] == 12 and dp["sample_rate"] == pytest.approx(q)
    replay = RDPAccountant()
    for _ in range(12):
        replay.step(noise_multiplier=dp["noise_multiplier"], sample_rate=q)
    assert dp["epsilon"] == pytest.approx(replay.get_epsilon(delta=1e-3), rel=1e-12)
    assert all(torch.isfinite(v).all() for v in model.unet.state_dict().values())
