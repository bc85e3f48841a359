"""Lesions worth training on (issue 13): does the default model's synthetic data raise segmentation
Dice, per lesion class, and do its lesions pass for real? The targets, measured, not assumed.

Everything runs on the phantom benchmark of ``benchmarks/bench_utility.py`` (demo-sized phantoms,
320x256 at 0.32 mm: 160 real-train images of 80 patients, 60 real-test images of 30 other patients)
with issue 12's protocols, unchanged:

- **utility**: ``medsynth.metrics.utility.evaluate_utility`` (the full-image task: DynUNet on whole
  images at 0.32 mm, sliding-window inference), regimes 10 / 30 / 100 % of the real-train patients,
  >= 3 seeds, paired two-level bootstrap by patient (and seed); per class and per margin;
- **realism**: the C2ST of ``medsynth.metrics.evaluate`` (real test lesions vs synthetic ones), per class;
- **audit**: ``medsynth.audit`` of the synthetic set against the generator's training data, with a
  holdout of other patients.

Two generators, named in every row (the data-efficiency claim is only honest for the second):

- ``all-real``: the default model trained on all 160 real-train images (+ 120 lesion-free backgrounds
  of other patients, which give it healthy tissue only). In the 10 % and 30 % regimes it has seen
  more real lesions than the regime's real set: an upper bound there.
- ``regime``: for each seed k, a model trained only on the 10 % regime's real-train images of that
  seed (+ the lesion-free backgrounds); the protocol then runs with that seed's patients
  (``subset_seed`` k, one training seed) and that generator's synthetic set. The k runs are reported
  each and averaged.

The synthetic sets are painted into the lesion-free backgrounds (other patients than every real
set) with ``medsynth generate`` defaults (masses; ``--class calcification`` for the calcification
arm), so the protocol's split checks pass. The steps curve paints the same cases at 2, 4, 8, 16 and
25 sampler steps and measures the C2ST AUC and the 10 % regime Dice difference at each.

    python benchmarks/bench_model.py --work /tmp/bench-model [--quick] [--only train,utility,...]
           [--set KEY=JSON ...]

Each phase caches its output under ``--work`` (training resumes in time boxes: rerun the same command).
Figures go into BENCHMARKS.md by hand, with the machine and the command.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

try:  # run as a module (python -m benchmarks.X) or as a script
    from benchmarks._common import print_rows
except ImportError:  # pragma: no cover
    from _common import print_rows

BENCH = "model"
PHASES = ("data", "train", "generate", "utility", "realism", "audit", "steps", "regime")
SETTINGS: dict[str, dict[str, Any]] = {
    "quick": {"size": (160, 128), "train": 24, "test": 12, "holdout": 12, "backgrounds": 24, "n_synthetic": 16,
              "train_steps": 20, "train_minutes": None, "batch_size": 8, "seeds": 1, "utility_steps": 10,
              "regimes": [0.3, 1.0], "steps_curve": [[2, 1.0], [8, 1.0]], "curve_cases": 8, "regime_train_steps": 10,
              "realism_steps": 20, "audit": False},
    "full": {"size": (320, 256), "train": 160, "test": 60, "holdout": 40, "backgrounds": 120, "n_synthetic": 160,
             "train_steps": 4000, "train_minutes": 120, "batch_size": 16, "seeds": 3, "utility_steps": None,
             "regimes": [0.1, 0.3, 1.0],
             "steps_curve": [[2, 1.0], [4, 1.0], [8, 1.0], [16, 1.0], [25, 1.0], [4, 2.0]], "curve_cases": 80,
             "regime_train_steps": 1500, "realism_steps": None, "audit": True},
}
# The sets of benchmarks/bench_utility.py (seed, patient offset), and two more of other patients.
SETS = {"train": (1, 0), "test": (3, 200_000), "holdout": (8, 700_000), "backgrounds": (7, 600_000)}


def _row(metric: str, value: Any, unit: str, note: str = "") -> dict[str, Any]:
    return {"benchmark": BENCH, "metric": metric, "value": value, "unit": unit, "note": note}


def make_sets(work: Path, s: dict[str, Any]) -> dict[str, Path]:
    """The phantom sets (cached under ``work/data``)."""
    from medsynth.phantoms import make_phantoms

    out = {}
    for name, (seed, offset) in SETS.items():
        path = work / "data" / name
        if not (path / ".done").exists():
            extra = {"lesion_fraction": 0.0} if name == "backgrounds" else {}
            make_phantoms(path, n=int(s[name]), seed=seed, size=tuple(s["size"]), patient_offset=offset,
                          overwrite=True, **extra)
            (path / ".done").write_text("")
        out[name] = path
    return out


def train_generator(data: Any, out: Path, s: dict[str, Any], steps: int) -> tuple[Any, dict[str, Any]]:
    """Train (or resume, or load) a default model on ``data``; returns (model, facts)."""
    from medsynth.models.inpainter import LesionInpainter
    from medsynth.models.training import train

    if (out / "config.json").is_file():
        model = LesionInpainter.from_pretrained(out)
    else:
        resume = (out / "checkpoints" / "checkpoint.pt").is_file()
        model = train(data, out, steps=steps, batch_size=int(s["batch_size"]), resume=resume, progress=False,
                      time_limit_minutes=s["train_minutes"], checkpoint_every=250)
        if not (out / "config.json").is_file():
            raise SystemExit(f"training stopped at a time limit: rerun to resume ({out})")
    card = json.loads((out / "model_card.json").read_text())
    return model, {"steps": card["training"]["steps"], "data": card["data"]["source"],
                   "n_lesion_crops": card["data"]["n_lesion_crops"]}


def synthesize(model: Any, backgrounds: Path, out: Path, n: int, classes: list[str], steps: int | None = None,
               guidance: float | None = None, seed: int = 0) -> Path:
    """A synthetic set (nnU-Net format) painted into the lesion-free backgrounds (cached)."""
    import warnings

    from medsynth.generation.pipeline import generate

    if not (out / "manifest.json").is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the calcification note: this benchmark is the check
            generate(model, backgrounds, "shapes", n, out, "nnunet", seed=seed, num_inference_steps=steps,
                     guidance_scale=guidance, mask_options={"classes": classes}, progress=False, overwrite=True)
    return out


def utility(train: Any, synthetic: Path, test: Path, s: dict[str, Any], regimes: list[float] | None = None,
            seeds: int | None = None, subset_seed: int = 0) -> dict[str, Any]:
    from medsynth.metrics.utility import evaluate_utility

    res = evaluate_utility(train, synthetic, test, seeds=seeds or int(s["seeds"]), steps=s["utility_steps"],
                           tasks="full", regimes=regimes or list(s["regimes"]), progress=False,
                           config={"utility": {"subset_seed": int(subset_seed)}})
    return res.to_dict()["utility"]


def utility_rows(u: dict[str, Any], label: str) -> list[dict[str, Any]]:
    rows = []
    key = u["full"].get("headline", "dice")
    for r, reg in u["full"]["regimes"].items():
        arms = reg["arms"]
        for arm in ("real", "real+synthetic", "synthetic"):
            rows.append(_row(f"{label} {r}: {key} {arm}", arms[arm][key]["value"], "Dice",
                             f"95% CI {arms[arm][key]['ci95']}"))
        d = reg["delta"]
        groups = "; ".join(f"{n}: {g['value']:+.3f} {g['ci95']}" for k in ("by_class", "by_margin")
                           for n, g in (d.get(k) or {}).items() if g.get("value") is not None)
        rows.append(_row(f"{label} {r}: delta (real+synthetic - real)", d["value"], "Dice",
                         f"95% CI {d['ci95']}, p={d['p']}; {groups}"))
    return rows


def realism(test: Path, synthetic: Path, s: dict[str, Any]) -> dict[str, Any]:
    from medsynth.metrics.evaluate import evaluate

    cfg = {"realism": {"steps": s["realism_steps"]}} if s["realism_steps"] else None
    res = evaluate(test, synthetic, progress=False, config=cfg).to_dict()
    return {"realism": res.get("realism"), "lesion_stats": res.get("lesion_stats")}


def realism_rows(r: dict[str, Any], label: str) -> list[dict[str, Any]]:
    rz = r["realism"] or {}
    rows = [_row(f"{label}: C2ST AUC", rz.get("c2st_auc"), "AUC", f"95% CI {rz.get('c2st_ci95')}")]
    for name, g in (rz.get("by_class") or {}).items():
        rows.append(_row(f"{label}: C2ST AUC {name}", g.get("auc"), "AUC", f"95% CI {g.get('ci95')}"))
    return rows


def run(quick: bool = False, work: str | Path | None = None, only: list[str] | None = None,
        **overrides: Any) -> list[dict[str, Any]]:
    """Run the phases (all, or ``only``); ``overrides`` replace entries of ``SETTINGS``."""
    import tempfile

    s = {**SETTINGS["quick" if quick else "full"], **overrides}
    work = Path(work) if work else Path(tempfile.mkdtemp(prefix="bench-model-"))
    phases = list(only or PHASES)
    rows: list[dict[str, Any]] = []
    times: dict[str, float] = {}
    results_path = work / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}

    def save() -> None:
        results_path.write_text(json.dumps(results, indent=2, default=str))

    t = time.perf_counter()
    sets = make_sets(work, s)
    times["data"] = time.perf_counter() - t
    model = None
    if any(p in phases for p in ("train", "generate", "audit", "steps")):
        t = time.perf_counter()
        model, facts = train_generator(sets["train"], work / "model-all-real", s, int(s["train_steps"]))
        times["train"] = time.perf_counter() - t
        results["generator"] = facts
        rows.append(_row("generator all-real: training steps", facts["steps"], "steps", str(facts)))
    syn = {}
    if model is not None:
        t = time.perf_counter()
        syn["mass"] = synthesize(model, sets["backgrounds"], work / "syn-mass", int(s["n_synthetic"]), ["mass"])
        syn["both"] = synthesize(model, sets["backgrounds"], work / "syn-both", int(s["n_synthetic"]),
                                 ["mass", "calcification"])
        times["generate"] = time.perf_counter() - t
    if "utility" in phases and syn:
        for kind, path in syn.items():
            key = f"utility-all-real-{kind}"
            if key not in results:
                t = time.perf_counter()
                results[key] = utility(sets["train"], path, sets["test"], s)
                times[key] = time.perf_counter() - t
                save()
            rows += utility_rows(results[key], f"all-real/{kind}")
    if "realism" in phases and syn:
        for kind, path in syn.items():
            key = f"realism-{kind}"
            if key not in results:
                results[key] = realism(sets["test"], path, s)
                save()
            rows += realism_rows(results[key], f"synthetic {kind}")
    if "audit" in phases and model is not None and s["audit"]:
        from medsynth.auditing.run import audit

        if "audit" not in results:
            au = audit(sets["train"], syn["both"], sets["holdout"], model=work / "model-all-real", progress=False)
            results["audit"] = {"verdict": au.verdict, "checks": au.to_dict().get("checks")}
            save()
        rows.append(_row("audit of syn-both vs its training data", results["audit"]["verdict"], "verdict"))
    if "steps" in phases and model is not None:
        for steps, guidance in s["steps_curve"]:
            key = f"steps-{steps}-guidance-{guidance:g}"
            if key not in results:
                path = synthesize(model, sets["backgrounds"], work / f"curve-{steps}-{guidance:g}",
                                  int(s["curve_cases"]), ["mass", "calcification"], steps=steps, guidance=guidance)
                r = realism(sets["test"], path, s)
                u = utility(sets["train"], path, sets["test"], s, regimes=[min(s["regimes"])])
                reg = next(iter(u["full"]["regimes"].values()))
                results[key] = {"unet_evaluations": model.unet_evaluations(steps, guidance),
                                "c2st_auc": (r["realism"] or {}).get("c2st_auc"),
                                "c2st_by_class": (r["realism"] or {}).get("by_class"),
                                "delta": reg["delta"]["value"], "delta_ci95": reg["delta"]["ci95"],
                                "delta_by_class": {k: v.get("value") for k, v in
                                                   (reg["delta"].get("by_class") or {}).items()}}
                save()
            res = results[key]
            rows.append(_row(f"{steps} steps, guidance {guidance:g} ({res['unet_evaluations']} UNet evaluations): "
                             "C2ST AUC", res["c2st_auc"], "AUC",
                             f"Dice delta at {min(s['regimes'])}: {res['delta']} {res['delta_ci95']}"))
    if "regime" in phases:
        rows += regime_generators(work, sets, s, results, save)
    for name, secs in times.items():
        rows.append(_row(f"time: {name}", round(secs, 1), "s"))
    return rows


def regime_generators(work: Path, sets: dict[str, Path], s: dict[str, Any], results: dict[str, Any],
                      save: Any) -> list[dict[str, Any]]:
    """The honest data-efficiency check: per seed, a generator that saw only that seed's 10 % regime."""
    from medsynth.io.datasets import load_dataset
    from medsynth.metrics.utility.data import regime_patients

    frac = min(s["regimes"])
    ds = load_dataset(sets["train"])
    patients = list(dict.fromkeys(c.patient_id or c.case_id for c in ds))
    rows = []
    for k in range(int(s["seeds"])):
        key = f"regime-{k}"
        if key not in results:
            # The protocol's own draw of this run's patients (subset_seed k, training seed 0).
            chosen, _ = regime_patients(len(patients), frac, 0, k)
            names = {patients[i] for i in chosen}
            subset = [c for c in ds if (c.patient_id or c.case_id) in names]
            healthy = list(load_dataset(sets["backgrounds"]))
            model, facts = train_generator(subset + healthy, work / f"model-regime-{k}", s,
                                           int(s["regime_train_steps"]))
            path = synthesize(model, sets["backgrounds"], work / f"syn-regime-{k}", int(s["n_synthetic"]), ["mass"],
                              seed=k)
            u = utility(sets["train"], path, sets["test"], s, regimes=[frac, 0.3], seeds=1, subset_seed=k)
            results[key] = {"generator": facts, "patients": sorted(names), "utility": u}
            save()
        rows += utility_rows(results[key]["utility"], f"regime-generator seed {k}")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (the test suite's smoke run)")
    ap.add_argument("--work", type=Path, default=None, help="cache folder (rerun to resume)")
    ap.add_argument("--only", default=None, help=f"comma-separated phases of {', '.join(PHASES)}")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override a SETTINGS entry")
    args = ap.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    only = args.only.split(",") if args.only else None
    print_rows(run(quick=args.quick, work=args.work, only=only, **overrides))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
