"""Base model + LoRA adapter: DP is composed (null unless both parts are DP, both ε listed) in the
model card, the manifest, the dataset card and the audit; `audit --adapter` attacks base + adapter
with the adapter's training data as members."""

from __future__ import annotations

import json

import pytest
import torch

from medsynth.auditing.dp import dp_budget, dp_check
from medsynth.auditing.run import audit
from medsynth.cli import main

SIZE = (128, 104)
# 16 px patches at 1.6 mm/px (a 25.6 mm ROI), no attention: cheap on a CPU (as tests/auditing/test_mia_model.py).
TINY = dict(image_size=16, spacing_mm=1.6, block_out_channels=[16, 32], attention=False, layers_per_block=1,
            norm_num_groups=8, batch_size=4, warmup_steps=1, checkpoint_every=100000, num_inference_steps=2,
            lesion_crops_per_lesion=1, healthy_crops_per_case=1, torch_threads=1)
LORA = dict(batch_size=4, warmup_steps=1, torch_threads=1, lesion_crops_per_lesion=1, healthy_crops_per_case=1)
DP = {"target_epsilon": 2.0, "target_delta": 1e-3}
AUDIT = {"memorization": {"embedding": "none", "scopes": ["image"]}, "mia": {"noise_draws": 1}}


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """Site A trains a DP base; site B fine-tunes adapters on it, with and without DP."""
    from medsynth.models.lora import finetune_lora
    from medsynth.models.training import train
    from medsynth.phantoms import make_phantoms

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("dp_adapter")
    try:
        out = {
            "a": make_phantoms(root / "a", 4, seed=31, size=SIZE, lesion_fraction=1.0),
            "b": make_phantoms(root / "b", 8, seed=32, size=SIZE, lesion_fraction=1.0, patient_offset=40),
            "holdout": make_phantoms(root / "h", 8, seed=32, size=SIZE, lesion_fraction=1.0, patient_offset=60),
            "backgrounds": make_phantoms(root / "bg", 2, seed=33, size=SIZE, layout="folder", lesion_fraction=0.0,
                                         patient_offset=90),
            "root": root,
        }
        train(out["a"], root / "base_dp", steps=3, dp=DP, progress=False, **TINY)
        finetune_lora(root / "base_dp", out["b"], root / "adapter_plain", rank=2, steps=2, progress=False, **LORA)
        finetune_lora(root / "base_dp", out["b"], root / "adapter_dp", rank=2, steps=2, dp=DP, progress=False, **LORA)
    finally:
        torch.set_num_threads(threads)
    return out


def _generate(sites, adapter, name):
    from medsynth.generation.pipeline import generate

    out = sites["root"] / name
    if not out.exists():
        generate(str(sites["root"] / "base_dp"), sites["backgrounds"], "shapes", 2, out, "png",
                 adapter=str(sites["root"] / adapter), mask_options={"size_mm": "4:8"}, progress=False)
    return out


def test_dp_base_with_plain_adapter_is_not_dp_anywhere(sites, tmp_path):
    from medsynth.io.datasets import load_dataset
    from medsynth.models.inpainter import LesionInpainter

    root = sites["root"]
    base_eps = json.loads((root / "base_dp" / "model_card.json").read_text())["dp"]["epsilon"]
    # The model: its card's dp is the composition (None), both parts kept.
    model = LesionInpainter.from_pretrained(root / "base_dp", adapter=root / "adapter_plain")
    assert model.model_card["dp"] is None
    parts = model.model_card["dp_parts"]
    assert parts["base"]["epsilon"] == base_eps and parts["adapter"] is None
    merged = model.save_pretrained(tmp_path / "merged")
    readme = (merged / "README.md").read_text()
    assert "(ε, δ)-DP" not in readme and "not trained with differential privacy end to end" in readme
    # The generated set: manifest and dataset card.
    syn = _generate(sites, "adapter_plain", "syn_plain")
    man = json.loads((syn / "manifest.json").read_text())
    assert man["model"]["dp"] is None
    cards = man["model"]["cards"]
    assert cards["base"]["dp"]["epsilon"] == base_eps and cards["adapter"]["dp"] is None
    assert str(root) not in json.dumps(man)  # the cards' facts carry no path
    card = (syn / "README.md").read_text()
    assert "(ε, δ)-DP" not in card and "not trained with differential privacy end to end" in card
    # The audit's dp check, from the two cards and from the manifest alone: "not DP", never a pass.
    for dp in (dp_budget(None, root / "base_dp", load_dataset(syn), root / "adapter_plain"),
               dp_budget(None, None, load_dataset(syn))):
        assert dp["dp_trained"] is False and dp["composed"] and dp["parts"]["base"]["dp_trained"]
        check = dp_check(dp, {"epsilon_max": None, "delta_max": None})
        assert check["status"] == "not DP" and check["passed"]
        assert dp_check(dp, {"epsilon_max": 100.0, "delta_max": None})["status"] == "fail"
    # Without --adapter the base's card alone would have said DP: that is what the option is for.
    assert dp_check(dp_budget(None, root / "base_dp", load_dataset(syn)), {})["status"] == "pass"


def test_dp_base_with_dp_adapter_is_composed(sites, tmp_path):
    from medsynth.io.datasets import load_dataset

    root = sites["root"]
    eps = {name: json.loads((root / d / "model_card.json").read_text())["dp"]["epsilon"]
           for name, d in (("base", "base_dp"), ("adapter", "adapter_dp"))}
    syn = _generate(sites, "adapter_dp", "syn_dp")
    man = json.loads((syn / "manifest.json").read_text())
    assert man["model"]["dp"]["epsilon"] == pytest.approx(eps["base"] + eps["adapter"])
    assert {k: v["epsilon"] for k, v in man["model"]["dp"]["parts"].items()} == eps
    assert man["model"]["dp"]["noise"] == "csprng"
    assert "(ε, δ)-DP" in (syn / "README.md").read_text()
    for dp in (dp_budget(None, root / "base_dp", load_dataset(syn), root / "adapter_dp"),
               dp_budget(None, None, load_dataset(syn))):
        assert dp["dp_trained"] and dp["epsilon"] == pytest.approx(eps["base"] + eps["adapter"])
        assert dp_check(dp, {"epsilon_max": None})["status"] == "pass"
        assert dp_check(dp, {"epsilon_max": sum(eps.values()) + 0.01})["status"] == "pass"
        assert dp_check(dp, {"epsilon_max": max(eps.values()) + 0.01})["status"] == "fail"  # the sum counts
    # An adapter card whose ε was lowered by hand fails, even with no maximum configured.
    tampered = tmp_path / "adapter"
    tampered.mkdir()
    card = json.loads((root / "adapter_dp" / "model_card.json").read_text())
    card["dp"]["epsilon"] = card["dp"]["epsilon"] / 2
    (tampered / "model_card.json").write_text(json.dumps(card))
    check = dp_check(dp_budget(None, root / "base_dp", load_dataset(syn), tampered), {})
    assert check["status"] == "fail" and "adapter: recorded ε" in check["details"]["note"]


def test_audit_with_adapter_attacks_base_plus_adapter(sites, monkeypatch):
    """`adapter=` loads the adapter onto the base for membership inference (members: the adapter's
    data given as train) and composes DP; the CLI takes --adapter and shows "not DP"."""
    from peft import PeftModel

    from medsynth.auditing import mia

    root = sites["root"]
    attacked = []
    real = mia.membership_inference

    def spy(model, *args, **kwargs):
        attacked.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(mia, "membership_inference", spy)
    syn = _generate(sites, "adapter_plain", "syn_plain")
    res = audit(sites["b"], syn, sites["holdout"], model=root / "base_dp", adapter=root / "adapter_plain",
                config=AUDIT, progress=False)
    assert isinstance(attacked[0].unet, PeftModel)
    assert res.mia["target"] == "base model + LoRA adapter" and res.inputs["adapter"]["root"].endswith("adapter_plain")
    dp = next(c for c in res.checks if c["name"] == "dp")
    assert dp["status"] == "not DP" and res.dp["parts"]["adapter"]["dp_trained"] is False
    assert "adapter's training data" in " ".join(res.notes)
    monkeypatch.undo()
    code = main(["audit", "--train", str(sites["b"]), "--synthetic", str(syn), "--holdout", str(sites["holdout"]),
                 "--adapter", str(root / "adapter_plain"), "--quiet"])
    assert code == 2  # --adapter without --model: bad input


def test_overfit_adapter_is_caught_only_when_attacked_with_its_base(sites, tmp_path):
    """A LoRA adapter overfit on site B's few images leaks them. Attacking the base alone (which never
    saw site B) misses it; base + adapter, with site B as members, catches it. (A seeded, non-DP base:
    the DP base's noise is unpredictable by design, and this test must not depend on it.)"""
    from medsynth.auditing.mia import membership_inference
    from medsynth.config import load_config
    from medsynth.io.datasets import load_dataset
    from medsynth.models.inpainter import LesionInpainter
    from medsynth.models.lora import finetune_lora
    from medsynth.models.training import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(sites["a"], tmp_path / "base", steps=3, progress=False, **TINY)
        # Overfitting: the same lesion crops every step (no healthy crops, flips, jitter or intensity
        # changes), a high learning rate and a short EMA.
        out = finetune_lora(tmp_path / "base", sites["b"], tmp_path / "overfit", rank=8, steps=250, progress=False,
                            learning_rate=2e-2, ema_decay=0.9, flips=False, intensity_jitter=0.0, jitter_mm=0.0,
                            **{**LORA, "healthy_crops_per_case": 0})
        cfg = load_config(None, kind="audit")["mia"]
        members, holdout = load_dataset(sites["b"]), load_dataset(sites["holdout"])
        results = {}
        for name, adapter in (("base", None), ("base + adapter", out)):
            model = LesionInpainter.from_pretrained(tmp_path / "base", adapter=adapter)
            results[name] = membership_inference(model, members, holdout, cfg).attacks
    finally:
        torch.set_num_threads(threads)

    def caught(attacks):
        return any(a.auc > cfg["auc_max"] and a.pvalue < cfg["alpha"] for a in attacks)

    aucs = {name: [round(a.auc, 3) for a in attacks] for name, attacks in results.items()}
    assert caught(results["base + adapter"]) and not caught(results["base"]), aucs
    assert max(aucs["base + adapter"]) > max(aucs["base"]), aucs
