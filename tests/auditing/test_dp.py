"""The DP check: ε recomputed from the recorded σ, sample rate, steps and δ with opacus' accountant (a
tampered ε fails); three visible states, "not DP" never shown as a pass; the model card preferred
over the manifest."""

from __future__ import annotations

import json

import pytest
from opacus.accountants import PRVAccountant, RDPAccountant

from medsynth.auditing.dp import dp_budget, dp_check
from medsynth.errors import InvalidDatasetError
from medsynth.models.privacy import recompute_epsilon

NO_MAX = {"epsilon_max": None, "delta_max": None}


def _record(sigma=1.1, q=0.05, steps=300, delta=1e-5, accountant="rdp", noise="csprng", **extra):
    """A card's dp entry whose ε comes from an independent replay of the accountant, step by step."""
    acc = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    for _ in range(steps):
        acc.step(noise_multiplier=sigma, sample_rate=q)
    return {"epsilon": acc.get_epsilon(delta=delta), "delta": delta, "noise_multiplier": sigma, "sample_rate": q,
            "steps": steps, "accountant": accountant, "max_grad_norm": 1.0, "noise": noise, "secure_mode": False,
            "poisson_sampling": True, **extra}


def _model_dir(tmp_path, dp, name="model"):
    d = tmp_path / name
    d.mkdir()
    (d / "model_card.json").write_text(json.dumps({"dp": dp}))
    return d


class _Syn:
    def __init__(self, root):
        self.root = root


def test_recompute_epsilon_matches_opacus_pinned_value():
    # opacus' own accountant test: RDP, σ = 1.5, q = 0.04, 2250 steps, δ = 1e-5 -> ε = 7.32911117143.
    dp = {"noise_multiplier": 1.5, "sample_rate": 0.04, "steps": 2250, "delta": 1e-5, "accountant": "rdp"}
    assert recompute_epsilon(dp) == pytest.approx(7.32911117143, rel=1e-9)
    assert recompute_epsilon(_record(accountant="prv", steps=50)) == pytest.approx(
        _record(accountant="prv", steps=50)["epsilon"], rel=1e-9)


def test_three_states(tmp_path):
    syn = _Syn(tmp_path)
    # pass: csprng noise, ε recomputes, within the maximum (or none configured).
    dp = dp_budget(None, _model_dir(tmp_path, _record()), syn)
    assert dp["dp_trained"] and dp["parts"]["base"]["recomputed_epsilon"] == pytest.approx(dp["epsilon"])
    assert dp_check(dp, NO_MAX)["status"] == "pass"
    assert dp_check(dp, {"epsilon_max": dp["epsilon"] + 0.1, "delta_max": 1e-4})["status"] == "pass"
    over = dp_check(dp, {"epsilon_max": dp["epsilon"] - 0.1})
    assert over["status"] == "fail" and not over["passed"] and "above the maximum" in over["details"]["note"]
    assert dp_check(dp, {"epsilon_max": None, "delta_max": 1e-6})["status"] == "fail"
    # not DP: trained without DP. Not a pass, and not a failure unless a maximum is set.
    none = dp_budget(None, _model_dir(tmp_path, None, "plain"), syn)
    check = dp_check(none, NO_MAX)
    assert check["status"] == "not DP" and check["passed"] and check["value"] is None
    assert dp_check(none, {"epsilon_max": 100.0})["status"] == "fail"
    # not DP: seeded noise is replayable, whatever ε it records.
    seeded = dp_budget(None, _model_dir(tmp_path, _record(noise="seeded"), "seeded"), syn)
    assert seeded["dp_trained"] and seeded["noise"] == "seeded"
    assert dp_check(seeded, NO_MAX)["status"] == "not DP"
    failed = dp_check(seeded, {"epsilon_max": 100.0})
    assert failed["status"] == "fail" and "seeded" in failed["details"]["note"]
    # A card from before the noise source was recorded: its noise came from the training seed.
    old = _record()
    del old["noise"]
    assert dp_budget(None, _model_dir(tmp_path, old, "old"), syn)["noise"] == "seeded"


def test_tampered_or_incomplete_epsilon_fails(tmp_path):
    syn = _Syn(tmp_path)
    tampered = _record()
    tampered["epsilon"] = tampered["epsilon"] / 2  # a card edited to look more private
    check = dp_check(dp_budget(None, _model_dir(tmp_path, tampered), syn), NO_MAX)
    assert check["status"] == "fail" and "does not match" in check["details"]["note"]
    sigma = _record()
    sigma["noise_multiplier"] = 2.0  # σ edited, ε kept: recomputation disagrees as well
    assert dp_check(dp_budget(None, _model_dir(tmp_path, sigma, "sigma"), syn), NO_MAX)["status"] == "fail"
    # Only ε and δ recorded (what manifests held before): nothing to recompute from, so no trust.
    (tmp_path / "manifest.json").write_text(json.dumps({"model": {"dp": {"epsilon": 7.5, "delta": 1e-5,
                                                                          "noise": "csprng"}}}))
    check = dp_check(dp_budget(None, None, syn), NO_MAX)
    assert check["status"] == "fail" and "cannot be recomputed" in check["details"]["note"]


def test_dp_budget_from_manifest_and_model_card(tmp_path):
    syn = _Syn(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"model": {"dp": _record(steps=100)}}))
    dp = dp_budget(None, None, syn)
    assert dp["epsilon"] == pytest.approx(_record(steps=100)["epsilon"]) and dp["source"].endswith("manifest.json")
    card_dir = _model_dir(tmp_path, _record(steps=200))
    assert dp_budget(None, card_dir, syn)["epsilon"] == pytest.approx(_record(steps=200)["epsilon"])  # card wins
    # A composed record in a manifest (base + adapter): ε is the sum of the verified parts.
    parts = {"base": _record(steps=100), "adapter": _record(steps=50, q=0.1)}
    total = parts["base"]["epsilon"] + parts["adapter"]["epsilon"]
    (tmp_path / "manifest.json").write_text(json.dumps({"model": {"dp": {"epsilon": total, "delta": 2e-5,
                                                                          "noise": "csprng", "parts": parts}}}))
    dp = dp_budget(None, None, syn)
    assert dp["composed"] and dp["epsilon"] == pytest.approx(total) and dp_check(dp, NO_MAX)["status"] == "pass"
    lowered = {"epsilon": total / 2, "delta": 2e-5, "noise": "csprng", "parts": parts}
    (tmp_path / "manifest.json").write_text(json.dumps({"model": {"dp": lowered}}))
    assert dp_check(dp_budget(None, None, syn), NO_MAX)["status"] == "fail"


def test_no_budget_recorded_is_not_dp_and_fails_only_when_a_maximum_is_set(tmp_path):
    syn = _Syn(tmp_path)
    dp = dp_budget(None, None, syn)
    assert dp["recorded"] is False and dp["epsilon"] is None
    check = dp_check(dp, NO_MAX)
    assert check["passed"] and check["status"] == "not DP"
    failed = dp_check(dp, {"epsilon_max": 8.0, "delta_max": None})
    assert not failed["passed"] and "no differential-privacy record" in failed["details"]["note"]
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(InvalidDatasetError, match="manifest.json"):
        dp_budget(None, None, syn)


def test_cli_and_html_show_not_dp_not_pass(tmp_path):
    from medsynth.auditing.report import _checks_table

    check = dp_check(dp_budget(None, _model_dir(tmp_path, None), _Syn(tmp_path)), NO_MAX)
    row = _checks_table([check])
    assert "not DP" in row and ">pass<" not in row


def test_a_composed_entry_in_a_card_is_verified_part_by_part(tmp_path):
    """A saved model that merged an adapter carries a composed dp entry: each part is recomputed."""
    parts = {"base": _record(steps=100), "adapter": _record(steps=50, q=0.1)}
    total = parts["base"]["epsilon"] + parts["adapter"]["epsilon"]
    composed = {"epsilon": total, "delta": 2e-5, "noise": "csprng", "parts": parts}
    dp = dp_budget(None, _model_dir(tmp_path, composed), _Syn(tmp_path))
    assert dp_check(dp, NO_MAX)["status"] == "pass" and dp["epsilon"] == pytest.approx(total)
    lowered = {**composed, "epsilon": total / 2}
    assert dp_check(dp_budget(None, _model_dir(tmp_path, lowered, "low"), _Syn(tmp_path)), NO_MAX)["status"] == "fail"
