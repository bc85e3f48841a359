"""Training loop: exact resume, refusal to overwrite, config checks, data from a dataset on disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsynth.errors import ConfigError, InvalidModelError, OutputExistsError
from medsynth.models.training import train

from .conftest import TINY


def _weights(model):
    return {k: v.clone() for k, v in model.unet.state_dict().items()}


def test_interrupted_and_resumed_run_equals_uninterrupted(bank, tmp_path):
    full = train(bank, tmp_path / "full", steps=6, progress=False, **TINY)
    part = train(bank, tmp_path / "part", steps=6, max_steps=3, progress=False, **TINY)
    assert not (tmp_path / "part" / "model.safetensors").exists()  # interrupted: checkpoint only
    assert (tmp_path / "part" / "checkpoints" / "checkpoint.pt").is_file()
    assert not all(torch.equal(v, part.unet.state_dict()[k]) for k, v in _weights(full).items())
    resumed = train(bank, tmp_path / "part", steps=6, resume=True, progress=False, **TINY)
    for k, v in _weights(full).items():
        assert torch.equal(v, resumed.unet.state_dict()[k]), k
    assert resumed.model_card["training"]["steps"] == 6
    assert (tmp_path / "part" / "model.safetensors").is_file()


def test_refuses_to_overwrite_and_resume_without_checkpoint(bank, trained, tmp_path):
    out_dir, _ = trained
    with pytest.raises(OutputExistsError, match="resume"):
        train(bank, out_dir, steps=1, progress=False, **TINY)
    with pytest.raises(InvalidModelError, match="nothing to resume"):
        train(bank, tmp_path / "empty", steps=1, resume=True, progress=False, **TINY)


def test_resume_with_other_data_is_refused(bank, cases, tmp_path):
    train(bank, tmp_path / "m", steps=2, max_steps=1, progress=False, **TINY)
    with pytest.raises(InvalidModelError, match="other training data"):
        train(cases[:3], tmp_path / "m", steps=2, resume=True, progress=False, **TINY)


class _RunsCodeWhenUnpickled:
    """Unpickling this calls open(path, "w"): a stand-in for arbitrary code in a foreign checkpoint."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_checkpoint_carrying_a_pickled_object_is_refused(bank, tmp_path):
    """Checkpoints are read with torch.load(weights_only=True): one that carries a pickled object is
    refused with an error naming the file, and the object's code never runs."""
    from medsynth.models.training import _load_checkpoint

    train(bank, tmp_path / "m", steps=4, max_steps=2, progress=False, **TINY)
    ckpt = tmp_path / "m" / "checkpoints" / "checkpoint.pt"
    state = _load_checkpoint(ckpt)  # an honest checkpoint: tensors and plain data only
    marker = tmp_path / "code-ran"
    state["optimizer"]["extra"] = _RunsCodeWhenUnpickled(marker)
    torch.save(state, ckpt)
    with pytest.raises(InvalidModelError, match="pickled Python object") as err:
        train(bank, tmp_path / "m", steps=4, resume=True, progress=False, **TINY)
    assert str(ckpt) in str(err.value) and "io.open" in str(err.value)
    assert not marker.exists()
    torch.load(ckpt, weights_only=False)  # what the old loader did: the code runs
    assert marker.exists()


def test_checkpoints_are_written_with_plain_data_only(tmp_path):
    from medsynth.models.training import _save_checkpoint, plain_data_problem

    assert plain_data_problem({"a": [1, 2.0, "x", None, (torch.zeros(2), torch.Size([2]))]}) is None
    assert "Generator" in plain_data_problem({"a": {"b": [torch.Generator()]}})
    with pytest.raises(TypeError, match=r"checkpoint\['gen'\]"):
        _save_checkpoint(tmp_path / "c.pt", {"step": 1, "gen": torch.Generator()})
    assert not (tmp_path / "c.pt").exists()


def test_resume_puts_the_ema_on_the_parameters_device(bank, tmp_path, monkeypatch):
    """A checkpoint is loaded onto the CPU; diffusers' EMAModel.load_state_dict keeps the shadow
    parameters there, and on CUDA ema.step would mix devices. restore_ema moves them to the
    parameters' device (shown with parameters on the meta device), and the resume path calls it with
    the parameters' device."""
    from diffusers.training_utils import EMAModel

    from medsynth.models import training

    cpu_params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]
    state = EMAModel(cpu_params).state_dict()
    meta_params = [torch.nn.Parameter(p.detach().to("meta")) for p in cpu_params]
    plain = EMAModel(meta_params)
    plain.load_state_dict(state)
    assert {p.device.type for p in plain.shadow_params} == {"cpu"}  # the bug: left where it was loaded
    ema = EMAModel(meta_params)
    training.restore_ema(ema, state, meta_params[0].device)
    assert {p.device.type for p in ema.shadow_params} == {"meta"}

    calls = []
    real = training.restore_ema

    def spy(ema, state, device):
        real(ema, state, device)
        calls.append((device, {p.device for p in ema.shadow_params}))

    monkeypatch.setattr(training, "restore_ema", spy)
    train(bank, tmp_path / "m", steps=3, max_steps=1, progress=False, **TINY)
    train(bank, tmp_path / "m", steps=3, resume=True, progress=False, **TINY)
    assert calls == [(torch.device("cpu"), {torch.device("cpu")})]


def test_unknown_settings_are_refused(bank, tmp_path):
    with pytest.raises(ConfigError, match="unknown setting"):
        train(bank, tmp_path / "m", steps=1, progress=False, bach_size=4)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("training:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match="stepz"):
        train(bank, tmp_path / "m", config=cfg, progress=False)


def test_patch_bank_from_dataset_on_disk(tmp_path):
    from medsynth.io.datasets import load_dataset
    from medsynth.models.data import augment_batch, build_patch_bank
    from medsynth.phantoms import make_phantoms

    root = make_phantoms(tmp_path / "ph", n=4, seed=1, size=(128, 104), lesion_fraction=1.0)
    ds = load_dataset(root)
    bank = build_patch_bank(ds, 32, 0.8, {"healthy_crops_per_case": 1}, seed=0)
    assert bank.info["layout"] == ds.layout and bank.info["n_cases"] == len(ds)
    assert bank.info["n_lesion_crops"] > 0 and bank.info["n_healthy_crops"] > 0
    assert bank.images.shape[1:] == (32, 32) and 0 <= float(bank.images.min()) <= float(bank.images.max()) <= 1
    lesion = ~bank.healthy
    assert bool(bank.masks[lesion].flatten(1).any(1).all()) and not bool(bank.masks[~lesion].any())
    # Same seed, same patches (the fingerprint ties a model to its data).
    assert (
        build_patch_bank(ds, 32, 0.8, {"healthy_crops_per_case": 1}, seed=0).info["fingerprint"]
        == bank.info["fingerprint"]
    )
    # Healthy patches get a random lesion-shaped mask per draw.
    g = torch.Generator().manual_seed(0)
    imgs, masks = augment_batch(bank.images[:, None], bank.masks[:, None].float(), bank.healthy.float(), g, 0.8,
                                {"flips": True, "intensity_jitter": 0.05, "random_mask_radius_mm": [2.5, 8.0]})
    assert bool(masks[bank.healthy].flatten(1).any(1).all())
    assert float(imgs.min()) >= 0 and float(imgs.max()) <= 1
    np.testing.assert_array_equal(
        masks[lesion].flatten(1).sum(1).numpy(), bank.masks[lesion].flatten(1).sum(1).numpy()
    )


def test_each_process_and_step_draws_its_own_batches():
    """In a multi-GPU run every process must train on different batches (not N copies of one), and
    the draws of a step depend only on (seed, process, step), so a resumed run repeats them: the
    rule the loop reseeds its generator with at every step."""
    from medsynth.models.training import seed_step
    from medsynth.utils import derive_seed

    def batch(seed, process, step):
        g = seed_step(torch.Generator(), seed, process, step)
        return torch.randint(0, 10_000, (16,), generator=g)

    assert torch.equal(batch(0, 0, 5), batch(0, 0, 5))
    assert not torch.equal(batch(0, 0, 5), batch(0, 1, 5))
    assert not torch.equal(batch(0, 0, 5), batch(0, 0, 6))
    assert not torch.equal(batch(0, 0, 5), batch(1, 0, 5))
    seeds = {derive_seed(0, p, s) for p in range(8) for s in range(1000)}
    assert len(seeds) == 8000


def test_two_process_training_runs_and_the_main_process_saves(tmp_path):
    """`torchrun --nproc_per_node 2` (gloo on CPU, as `accelerate launch` on GPUs) trains to the end;
    both processes finish with the same weights (DDP) and one model is written."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "run.py"
    script.write_text(
        "import sys, torch\n"
        "torch.set_num_threads(1)\n"
        "from medsynth.phantoms import render_phantom\n"
        "from medsynth.models.data import build_patch_bank\n"
        "from medsynth.models.training import train\n"
        "cases = [(p.image, p.label > 0, tuple(p.spacing)) "
        "for p in (render_phantom(0, size=(128, 104), index=i) for i in range(3))]\n"
        "bank = build_patch_bank(cases, 32, 0.8, {'healthy_crops_per_case': 1}, seed=0)\n"
        "m = train(bank, sys.argv[1], steps=3, progress=False, image_size=32, spacing_mm=0.8, "
        "block_out_channels=[8, 16, 16],\n"
        "          norm_num_groups=4, batch_size=4, warmup_steps=1, checkpoint_every=100)\n"
        "w = sum(float(v.double().sum()) for v in m.unet.state_dict().values())\n"
        "print(f'WEIGHTSUM {w!r}', flush=True)\n"
    )
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path / "m")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sums = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("WEIGHTSUM")]
    assert len(sums) == 2 and sums[0] == sums[1]
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.startswith(".tmp-")]
