"""Differential privacy: ε equals opacus' accountant, unpredictable noise by default (seeded only on
request), no seed or generator state in any card, non-Poisson loaders and fp16 refused, exact DP resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from torch.utils.data import DataLoader, WeightedRandomSampler

from medsynth.errors import PrivacyError
from medsynth.models import privacy
from medsynth.models.inpainter import build_unet, make_config
from medsynth.models.privacy import DPSettings, dp_generators, make_private
from medsynth.models.training import train

from .conftest import TINY

# A small ε keeps opacus' noise search fast; the tests are about accounting, not utility.
DP = {"target_epsilon": 1.0, "target_delta": 1e-3, "max_grad_norm": 1.0}
SEEDED = {**DP, "noise": "seeded"}


def _weights(model):
    return {k: v.clone() for k, v in model.unet.state_dict().items()}


def _same(a, b):
    return all(torch.equal(v, b[k]) for k, v in a.items())


def _ckpt(path):
    return torch.load(path / "checkpoints" / "checkpoint.pt", weights_only=True)


def test_dp_epsilon_equals_opacus_accountant(bank, tmp_path):
    model = train(bank, tmp_path / "dp", steps=4, dp=DP, progress=False, **TINY)
    dp = model.model_card["dp"]
    assert dp["steps"] == 4 and dp["accountant"] == "rdp" and dp["delta"] == 1e-3
    assert dp["noise"] == "csprng" and dp["secure_mode"] is False  # torchcsprng does not install here
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
    assert privacy.recompute_epsilon(dp) == pytest.approx(dp["epsilon"], rel=1e-12)
    assert dp["epsilon"] <= 1.0 + 0.02
    card = json.loads((tmp_path / "dp" / "model_card.json").read_text())
    assert card["dp"]["epsilon"] == pytest.approx(dp["epsilon"]) and card["dp"]["noise"] == "csprng"
    assert "(ε, δ)-DP" in (tmp_path / "dp" / "README.md").read_text()
    ckpt = _ckpt(tmp_path / "dp")  # tensors and plain data only
    assert len(ckpt["accountant"]["history"]) > 0 and ckpt["dp"]["epsilon"] == pytest.approx(dp["epsilon"])
    # The run is finished: the secret generator states are gone from the checkpoint too.
    assert ckpt["noise_gen"] is None and ckpt["loader_gen"] is None
    # The returned UNet is the plain module again: no opacus wrapper, hooks or per-sample gradients left.
    from opacus import GradSampleModule

    assert not isinstance(model.unet, GradSampleModule)
    for name, m in model.unet.named_modules():
        assert not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks), name
        assert not hasattr(m, "autograd_grad_sample_hooks"), name
    assert all(getattr(p, "grad_sample", None) is None for p in model.unet.parameters())


def test_default_dp_runs_differ_and_seeded_runs_repeat(bank, tmp_path):
    """By default the noise and the Poisson sampling are unpredictable: two runs with identical settings
    (seed included) give different weights. Seeded noise replays exactly, and is recorded as such."""
    a = train(bank, tmp_path / "a", steps=2, dp=DP, progress=False, **TINY)
    b = train(bank, tmp_path / "b", steps=2, dp=DP, progress=False, **TINY)
    assert not _same(_weights(a), _weights(b))
    with pytest.warns(UserWarning, match="seeded noise"):
        c = train(bank, tmp_path / "c", steps=2, dp=SEEDED, progress=False, **TINY)
    with pytest.warns(UserWarning, match="seeded noise"):
        d = train(bank, tmp_path / "d", steps=2, dp=SEEDED, progress=False, **TINY)
    assert _same(_weights(c), _weights(d))
    assert c.model_card["dp"]["noise"] == "seeded"
    readme = (tmp_path / "c" / "README.md").read_text()
    assert "seeded DP noise: an experiment, no formal guarantee" in readme and "(ε, δ)-DP" not in readme


def test_no_card_holds_the_noise_seed_or_generator_state(bank, tmp_path, monkeypatch):
    """The CSPRNG seeds exist only inside the run; the generators' states live only in the private
    checkpoint while the run can resume, and are dropped when it finishes."""
    known = [0x1D2C3B4A59687706, 0x7F6E5D4C3B2A1908]
    drawn = []
    monkeypatch.setattr(privacy, "csprng_seed", lambda: drawn.append(known[len(drawn) % 2]) or drawn[-1])
    out = tmp_path / "m"
    train(bank, out, steps=4, max_steps=2, dp=DP, progress=False, **TINY)
    ckpt = _ckpt(out)
    assert drawn == known  # both generators were seeded from the (patched) CSPRNG
    assert ckpt["noise_gen"] is not None and ckpt["loader_gen"] is not None  # kept for the exact resume
    model = train(bank, out, steps=4, resume=True, dp=DP, progress=False, **TINY)
    assert set(model.model_card["dp"]) == set(privacy.DP_RECORD_KEYS) | {"target_epsilon", "planned_steps"}
    for f in out.iterdir():
        if f.is_file() and f.suffix in (".json", ".md"):
            text = f.read_text().lower()
            for seed in known:
                assert str(seed) not in text and f"{seed:x}" not in text, f.name
            assert "noise_gen" not in text and "loader_gen" not in text, f.name
    final = _ckpt(out)
    assert final["noise_gen"] is None and final["loader_gen"] is None and final["step"] == 4


def test_dp_resume_is_exact_and_keeps_counting(bank, tmp_path):
    """Seeded noise: stopped at 2 and resumed equals an uninterrupted run. csprng noise: the state in
    the checkpoint is all a resume needs, so two resumes of one checkpoint agree exactly."""
    with pytest.warns(UserWarning, match="seeded noise"):
        full = train(bank, tmp_path / "full", steps=4, dp=SEEDED, progress=False, **TINY)
    with pytest.warns(UserWarning, match="seeded noise"):
        train(bank, tmp_path / "part", steps=4, max_steps=2, dp=SEEDED, progress=False, **TINY)
    with pytest.raises(PrivacyError, match="--dp"):
        train(bank, tmp_path / "part", steps=4, resume=True, progress=False, **TINY)
    with pytest.raises(PrivacyError, match="noise"):  # seeded noise resumed as csprng would mix the two
        train(bank, tmp_path / "part", steps=4, resume=True, dp=DP, progress=False, **TINY)
    with pytest.warns(UserWarning, match="seeded noise"):
        resumed = train(bank, tmp_path / "part", steps=4, resume=True, dp=SEEDED, progress=False, **TINY)
    assert resumed.model_card["dp"]["epsilon"] == pytest.approx(full.model_card["dp"]["epsilon"], rel=1e-12)
    assert _same(_weights(full), _weights(resumed))

    train(bank, tmp_path / "c1", steps=4, max_steps=2, dp=DP, progress=False, **TINY)
    shutil.copytree(tmp_path / "c1", tmp_path / "c2")
    r1 = train(bank, tmp_path / "c1", steps=4, resume=True, dp=DP, progress=False, **TINY)
    r2 = train(bank, tmp_path / "c2", steps=4, resume=True, dp=DP, progress=False, **TINY)
    assert _same(_weights(r1), _weights(r2))
    assert r1.model_card["dp"]["epsilon"] == pytest.approx(full.model_card["dp"]["epsilon"], rel=1e-12)


def test_fp16_with_dp_is_refused(bank, tmp_path):
    """The DP path runs no GradScaler: fp16 per-sample gradients would underflow silently."""
    with pytest.raises(PrivacyError, match="fp16"):
        train(bank, tmp_path / "m", steps=1, dp=DP, progress=False, **{**TINY, "mixed_precision": "fp16"})
    assert not (tmp_path / "m").exists()
    privacy.check_dp_precision("bf16")  # bf16 has fp32's exponent range: allowed
    privacy.check_dp_precision("no")


class _StandInGenerator:
    """Records where a generator was made and what it was set to (no CUDA needed)."""

    made: list = []

    def __init__(self, device="cpu"):
        self.device = torch.device(device)
        self.state = None
        _StandInGenerator.made.append(self)

    def manual_seed(self, seed):
        self.state = seed
        return self

    def set_state(self, state):
        self.state = state


def test_noise_generator_is_made_on_the_parameters_device(monkeypatch):
    """opacus draws the noise with torch.normal(device=<the gradient's device>, generator=gen): the
    noise generator must sit on the parameters' device (a CPU one crashes on CUDA); Poisson sampling
    draws on the CPU. A stand-in generator shows it without a GPU, for fresh runs and resumes alike
    (a resume makes the generator the same way, then sets its state)."""
    from medsynth.models.training import restore_generator

    _StandInGenerator.made = []
    monkeypatch.setattr(torch, "Generator", _StandInGenerator)
    for noise in ("csprng", "seeded"):
        settings = DPSettings.from_any({**DP, "noise": noise})
        loader_gen, noise_gen = dp_generators(settings, torch.device("cuda", 0), seed=5)
        assert noise_gen.device == torch.device("cuda", 0) and loader_gen.device == torch.device("cpu")
        restore_generator(noise_gen, "state-from-checkpoint", Path("checkpoint.pt"))
        assert noise_gen.state == "state-from-checkpoint" and noise_gen.device == torch.device("cuda", 0)
    assert len(_StandInGenerator.made) == 4


def test_secure_mode_is_used_where_torchcsprng_imports(bank, tmp_path, monkeypatch):
    """secure_mode "auto": opacus' secure mode when torchcsprng imports. torchcsprng (last release 2021,
    for torch 1.8) does not install here, so a stand-in module with its one function shows the wiring:
    the card says secure mode, and no generator state is kept (opacus' secure RNG has none)."""
    import importlib.util
    import sys
    import types

    assert importlib.util.find_spec("torchcsprng") is None
    assert DPSettings.from_any(DP).use_secure_mode() is False
    fake = types.ModuleType("torchcsprng")
    fake.create_random_device_generator = lambda token: torch.Generator().manual_seed(privacy.csprng_seed())
    fake.__spec__ = importlib.util.spec_from_loader("torchcsprng", loader=None)
    monkeypatch.setitem(sys.modules, "torchcsprng", fake)
    assert DPSettings.from_any(DP).use_secure_mode() is True
    assert DPSettings.from_any(SEEDED).use_secure_mode() is False
    model = train(bank, tmp_path / "m", steps=4, max_steps=2, dp=DP, progress=False, **TINY)
    ckpt = _ckpt(tmp_path / "m")
    assert ckpt["noise_gen"] is None and ckpt["dp"]["secure_mode"] is True and ckpt["dp"]["noise"] == "csprng"
    assert model is not None
    with pytest.raises(PrivacyError, match="exclude"):
        DPSettings.from_any({**SEEDED, "secure_mode": True})


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
    with pytest.raises(PrivacyError, match="noise"):
        DPSettings.from_any({"noise": "urandom"})
    with pytest.raises(PrivacyError, match="secure_mode"):
        DPSettings.from_any({"secure_mode": "yes"})


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
