"""Check 5 of the audit: differential privacy. What made the synthetic set (the base model, and a
LoRA adapter when one was used) is looked up in the model's and the adapter's ``model_card.json``
or, without ``--model``, in the synthetic set's ``manifest.json``; each part's ε is **recomputed**
from its recorded σ, sample rate, steps, δ and accountant with a fresh opacus accountant, never
taken on the card's word.

The check has three visible states:

- ``not DP``: no DP record, a part trained without DP (base + adapter is DP only when both are), or
  seeded noise (replayable: no formal guarantee). It does not fail the audit unless ``epsilon_max``
  or ``delta_max`` is configured, and it is never shown as a pass.
- ``pass``: every part trained with DP and unpredictable (csprng) noise, every ε recomputes to the
  recorded value, and ε, δ (summed over the parts: basic composition) are within the maxima.
- ``fail``: a recorded ε does not match its recomputation (or cannot be recomputed), or ε/δ are
  above a configured maximum, or a maximum is configured and the model is not DP.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from medsynth.auditing.result import check_record
from medsynth.errors import InvalidDatasetError, InvalidModelError, PrivacyError
from medsynth.models.privacy import dp_record, dp_statement, recompute_epsilon

# A recorded ε must equal its recomputation to this relative tolerance (the same opacus code gives the
# same float; JSON round-trips floats exactly).
EPSILON_RTOL = 1e-6


def _read_json(path: Path, error: type[Exception]) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise error(f"{path.name} is not valid JSON ({e})", path) from e


def _parts_of_card(card: dict[str, Any]) -> dict[str, Any] | None:
    """The DP entries of a model card: its ``dp_parts`` (base + adapter) or its ``dp``; None when it says nothing."""
    if isinstance(card.get("dp_parts"), dict):
        return dict(card["dp_parts"])
    if "dp" in card:
        return {"base": card.get("dp")}
    return None


def _parts_of_manifest(man: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(parts, the composed record) of a generated set's manifest."""
    model = man.get("model") if isinstance(man.get("model"), dict) else {}
    cards = model.get("cards") if isinstance(model.get("cards"), dict) else None
    dp = model["dp"] if "dp" in model else man.get("dp")
    if cards:
        return {name: (c or {}).get("dp") for name, c in cards.items()}, dp
    if isinstance(dp, dict) and isinstance(dp.get("parts"), dict):
        return dict(dp["parts"]), dp
    if "dp" in model or "dp" in man:
        return {"base": dp}, None
    return None, None


def find_dp_parts(model: Any, model_dir: Path | None, synthetic_ds: Any,
                  adapter_dir: Path | None = None) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    """(DP entry of each part, a recorded composition if any, where they were read).

    The model directory's card (with the adapter directory's card) is preferred, then an in-memory
    model's card, then the synthetic set's manifest.
    """
    sources: list[str] = []
    parts: dict[str, Any] | None = None
    if model_dir is not None and (model_dir / "model_card.json").is_file():
        path = model_dir / "model_card.json"
        parts = _parts_of_card(_read_json(path, InvalidModelError))
        sources.append(str(path))
    elif model is not None and isinstance(getattr(model, "model_card", None), dict):
        card = model.model_card
        parts = _parts_of_card(card)
        if parts is not None and "dp_parts" in card:  # an adapter is loaded: the card holds both parts
            return parts, None, "model.model_card (base + adapter)"
        sources.append("model.model_card")
    if parts is not None:
        if adapter_dir is not None:
            path = adapter_dir / "model_card.json"
            if not path.is_file():
                raise InvalidModelError("not a medsynth LoRA adapter directory (missing model_card.json)", adapter_dir)
            adapter_card = _read_json(path, InvalidModelError)
            parts = {"base": parts.get("base"), "adapter": adapter_card.get("dp")}
            sources.append(str(path))
        return parts, None, " + ".join(sources)
    root = Path(getattr(synthetic_ds, "root", "."))
    manifest = (root if root.is_dir() else root.parent) / "manifest.json"
    if manifest.is_file():
        man = _read_json(manifest, InvalidDatasetError)
        if isinstance(man, dict):
            found, composed = _parts_of_manifest(man)
            if found is not None:
                return found, composed, str(manifest)
    return None, None, None


def verify_part(dp: dict[str, Any] | None) -> dict[str, Any]:
    """One part's DP record with its ε recomputed; ``problem`` says why it cannot be trusted (or None)."""
    if not dp:
        return {"dp_trained": False, "epsilon": None, "delta": None, "noise": None, "problem": None}
    out = {**(dp_record(dp) or {}), "dp_trained": True, "recomputed_epsilon": None, "problem": None}
    if isinstance(dp.get("parts"), dict):  # itself a composition (an adapter merged into a saved model)
        sub = {name: verify_part(part) for name, part in dp["parts"].items()}
        problems = [f"{name}: {p['problem']}" for name, p in sub.items() if p["problem"]]
        if not all(p["dp_trained"] for p in sub.values()):
            problems.append("a composed DP entry has a part without DP")
        out["parts"] = sub
        if problems:
            out["problem"] = "; ".join(problems)
            return out
        out["recomputed_epsilon"] = sum(float(p["recomputed_epsilon"]) for p in sub.values())
        if not math.isclose(float(dp.get("epsilon") or 0.0), out["recomputed_epsilon"], rel_tol=EPSILON_RTOL):
            out["problem"] = f"composed ε {dp.get('epsilon')} is not the sum of its parts' ε"
        return out
    try:
        recorded = float(dp["epsilon"])
        recomputed = recompute_epsilon(dp)
    except (PrivacyError, KeyError, TypeError, ValueError) as e:
        out["problem"] = f"ε cannot be recomputed ({e.args[0] if isinstance(e, PrivacyError) else e!r})"
        return out
    out["recomputed_epsilon"] = recomputed
    if not math.isclose(recorded, recomputed, rel_tol=EPSILON_RTOL, abs_tol=1e-12):
        out["problem"] = (f"recorded ε {recorded:.6g} does not match ε {recomputed:.6g} recomputed from "
                          f"σ={dp.get('noise_multiplier')}, q={dp.get('sample_rate')}, steps={dp.get('steps')}, "
                          f"δ={dp.get('delta')} ({dp.get('accountant')})")
    elif dp.get("poisson_sampling") is False:
        out["problem"] = "trained without Poisson sampling: the accountant's ε does not hold"
    return out


def dp_budget(model: Any, model_dir: Path | None, synthetic_ds: Any,
              adapter_dir: Path | None = None) -> dict[str, Any]:
    """The DP record behind the synthetic set, each part verified (:func:`verify_part`).

    Returns:
        ``recorded``, ``dp_trained`` (every part with DP), ``source``, ``epsilon`` / ``delta``
        (summed over the parts: basic composition; None without DP), ``noise`` ("csprng", "seeded" or
        None), ``composed`` (an adapter is part of it), ``parts`` and ``problems``.
    """
    parts, composed, source = find_dp_parts(model, model_dir, synthetic_ds, adapter_dir)
    if parts is None:
        return {"recorded": False, "dp_trained": False, "source": None, "epsilon": None, "delta": None,
                "noise": None, "composed": False, "parts": {}, "problems": []}
    checked = {name: verify_part(dp) for name, dp in parts.items()}
    problems = [f"{name}: {p['problem']}" for name, p in checked.items() if p["problem"]]
    dp_trained = all(p["dp_trained"] for p in checked.values())
    eps = delta = noise = None
    if dp_trained:
        eps = sum(float(p["epsilon"]) for p in checked.values())
        delta = sum(float(p["delta"]) for p in checked.values())
        noise = "csprng" if all(p["noise"] == "csprng" for p in checked.values()) else "seeded"
        if isinstance(composed, dict) and composed.get("epsilon") is not None and not math.isclose(
                float(composed["epsilon"]), eps, rel_tol=EPSILON_RTOL):
            problems.append(f"composed ε {composed['epsilon']} is not the sum of its parts' ε ({eps:.6g})")
    elif isinstance(composed, dict):
        problems.append("a DP entry is recorded although a part was trained without DP")
    return {"recorded": True, "dp_trained": dp_trained, "source": source, "epsilon": eps, "delta": delta,
            "noise": noise, "composed": len(checked) > 1, "parts": checked, "problems": problems,
            "statement": dp_statement(_as_entry(checked) if dp_trained else None,
                                      {n: (p if p["dp_trained"] else None) for n, p in checked.items()}
                                      if len(checked) > 1 else None)}


def _as_entry(checked: dict[str, Any]) -> dict[str, Any]:
    """A ``dp`` entry for :func:`dp_statement` from verified parts."""
    if len(checked) == 1:
        return next(iter(checked.values()))
    return {"epsilon": sum(float(p["epsilon"]) for p in checked.values()),
            "delta": sum(float(p["delta"]) for p in checked.values()),
            "noise": "csprng" if all(p["noise"] == "csprng" for p in checked.values()) else "seeded",
            "parts": checked}


def dp_check(dp: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``dp`` check (states: ``not DP``, ``pass``, ``fail``; see the module docstring)."""
    eps_max, delta_max = cfg.get("epsilon_max"), cfg.get("delta_max")
    limited = eps_max is not None or delta_max is not None
    eps, delta = dp.get("epsilon"), dp.get("delta")
    problems = list(dp.get("problems") or [])
    extra = {"delta": delta, "delta_max": delta_max, "source": dp.get("source"), "noise": dp.get("noise"),
             "composed": dp.get("composed", False)}
    if problems:
        return check_record("dp", eps, eps_max, False, status="fail", **extra, note="; ".join(problems))
    if not dp.get("dp_trained") or dp.get("noise") != "csprng":
        if not dp.get("recorded"):
            why = "no differential-privacy record found (epsilon = infinity)"
        elif not dp.get("dp_trained"):
            why = (dp.get("statement") or "not trained with differential privacy") + " (epsilon = infinity)"
        else:
            why = "trained with seeded DP noise: replayable, an experiment with no formal guarantee"
        if limited:
            return check_record("dp", eps, eps_max, False, status="fail", **extra,
                                note=why + "; a maximum is configured, so this fails")
        return check_record("dp", eps, eps_max, True, status="not DP", **extra,
                            note=why + "; not a pass: no maximum is configured, so it does not fail the audit")
    why = f"ε {eps:.6g} recomputed from the recorded σ, sample rate, steps and δ"
    if eps_max is not None and eps > float(eps_max):
        return check_record("dp", eps, eps_max, False, status="fail", **extra,
                            note=f"epsilon {eps:g} above the maximum {float(eps_max):g}")
    if delta_max is not None and delta > float(delta_max):
        return check_record("dp", eps, eps_max, False, status="fail", **extra,
                            note=f"delta {delta:g} above the maximum {float(delta_max):g}")
    note = why + ("; within the maximum" if eps_max is not None else "; no maximum configured")
    return check_record("dp", eps, eps_max, True, status="pass", **extra, note=note)
