"""Check 5 of the audit: the differential-privacy budget (ε, δ) the model was trained under, as its
model card or the synthetic set's manifest records it, against the configured maxima."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medsynth.auditing.result import check_record
from medsynth.errors import InvalidDatasetError, InvalidModelError


def dp_budget(model: Any, model_dir: Path | None, synthetic_ds: Any) -> dict[str, Any]:
    """ε/δ as recorded by the model card (preferred) or by the synthetic set's manifest."""
    card: dict[str, Any] | None = None
    source = None
    if model_dir is not None and (model_dir / "model_card.json").is_file():
        path = model_dir / "model_card.json"
        try:
            card = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise InvalidModelError(f"model_card.json is not valid JSON ({e})", path) from e
        source = str(path)
    elif model is not None and isinstance(getattr(model, "model_card", None), dict):
        card, source = model.model_card, "model.model_card"
    if card is not None and "dp" in card:
        return _dp_fields(card.get("dp"), source)
    root = Path(getattr(synthetic_ds, "root", "."))
    manifest = (root if root.is_dir() else root.parent) / "manifest.json"
    if manifest.is_file():
        try:
            man = json.loads(manifest.read_text())
        except json.JSONDecodeError as e:
            raise InvalidDatasetError(f"manifest.json is not valid JSON ({e})", manifest) from e
        if isinstance(man, dict):
            if "dp" in man:
                return _dp_fields(man.get("dp"), str(manifest))
            if isinstance(man.get("model"), dict) and "dp" in man["model"]:
                return _dp_fields(man["model"].get("dp"), str(manifest))
    return {"recorded": False, "source": None, "epsilon": None, "delta": None}


def _dp_fields(dp: Any, source: str | None) -> dict[str, Any]:
    if not dp:
        return {"recorded": True, "dp_trained": False, "source": source, "epsilon": None, "delta": None}
    return {"recorded": True, "dp_trained": True, "source": source,
            "epsilon": float(dp["epsilon"]) if dp.get("epsilon") is not None else None,
            "delta": float(dp["delta"]) if dp.get("delta") is not None else None,
            **{k: dp[k] for k in ("max_grad_norm", "noise_multiplier", "accountant") if k in dp}}


def dp_check(dp: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``dp`` check: fails when ε (or δ) is above its configured maximum, or not recorded at all
    while a maximum is set; with no maximum it only reports."""
    eps_max, delta_max = cfg.get("epsilon_max"), cfg.get("delta_max")
    eps, delta = dp.get("epsilon"), dp.get("delta")
    passed, why = True, "reported only (no maximum configured)"
    if eps_max is not None:
        if eps is None:
            passed, why = False, "no differential-privacy guarantee recorded (epsilon = infinity)"
        elif eps > float(eps_max):
            passed, why = False, f"epsilon {eps:g} above the maximum {float(eps_max):g}"
        else:
            why = "epsilon within the maximum"
    if delta_max is not None and passed:
        if delta is None or delta > float(delta_max):
            passed, why = False, f"delta {delta} above the maximum {float(delta_max):g}"
    return check_record("dp", eps, eps_max, passed, delta=delta, delta_max=delta_max, source=dp.get("source"),
                        note=why)
