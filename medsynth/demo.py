"""The end-to-end demo: medsynth's whole mission on embedded phantoms, on a CPU.

``run_demo(out)`` (and ``medsynth demo``) makes phantom train / holdout / test sets of distinct
patients, trains a small inpainting model, adapts it with LoRA to a second "site" (once plainly and
once under differential privacy), generates a segmentation training set in nnU-Net format,
evaluates its fidelity and downstream utility, and audits it for privacy. Every step writes into
``out`` and the reports' paths are returned. Settings come from ``configs/demo.yaml``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from medsynth.config import deep_update, load_config
from medsynth.errors import OutputExistsError


@dataclass
class DemoResult:
    """What the demo made: folders, reports and the headline figures of each step."""

    out: Path
    paths: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "paths": {k: str(v) for k, v in self.paths.items()},
            "figures": self.figures,
            "summary": self.summary,
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
        }


def demo_config(config: str | Path | dict[str, Any] | None = None, quick: bool = False) -> dict[str, Any]:
    """The demo's settings: ``configs/demo.yaml``, a user file over it, then the ``quick`` overrides."""
    cfg = load_config(config, kind="demo")
    quick_overrides = cfg.pop("quick", {})
    return deep_update(cfg, quick_overrides) if quick else cfg


def run_demo(
    out: str | Path = "demo-output",
    config: str | Path | dict[str, Any] | None = None,
    quick: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    device: str | None = None,
) -> DemoResult:
    """Run the mission end to end on phantoms.

    Args:
        out: the folder everything is written into.
        config: a YAML file laid over ``configs/demo.yaml`` (or a dict).
        quick: tiny settings (about two minutes on 2 cores); used by the tests.
        overwrite: allow a non-empty ``out`` (its demo sub-folders are replaced).
        progress: show progress bars.
        log: where step headlines go.
        device: where every step computes (``"auto"``: CUDA when present, ``"cpu"``, ``"cuda"``);
            None: ``device`` of the demo config.

    Returns:
        A :class:`DemoResult` with the output folders, the report paths and headline figures.
    """
    from medsynth.auditing.run import audit
    from medsynth.generation.pipeline import generate
    from medsynth.metrics.evaluate import evaluate
    from medsynth.metrics.utility import evaluate_utility
    from medsynth.models.lora import finetune_lora
    from medsynth.models.training import train
    from medsynth.phantoms import make_phantoms
    from medsynth.runtime import resolve_device

    cfg = demo_config(config, quick)
    device = str(resolve_device(device or cfg["device"]))  # a device this machine lacks fails before any write
    out = Path(out)
    _prepare_output(out, overwrite)
    res = DemoResult(out=out)
    seed = int(cfg["seed"])
    pcfg = cfg["phantoms"]
    size = tuple(int(s) for s in pcfg["size"])

    def step(name: str, title: str):
        log(f"[{len(res.timings) + 1}/6] {title}")
        return _Timer(res.timings, name)

    # 1. Phantom data: distinct patients in every set (patient offsets keep the ID ranges apart).
    with step("phantoms", "Making phantom train / holdout / test / site-B / background sets"):
        data = out / "data"
        sets = {
            "train": dict(n=pcfg["train"], seed=seed + 1, patient_offset=0),
            "holdout": dict(n=pcfg["holdout"], seed=seed + 2, patient_offset=100_000),
            "test": dict(n=pcfg["test"], seed=seed + 3, patient_offset=200_000),
            "site_b": dict(n=pcfg["site_b"], seed=seed + 4, patient_offset=300_000, density="d", view="mlo"),
            "backgrounds": dict(n=pcfg["backgrounds"], seed=seed + 5, patient_offset=400_000, lesion_fraction=0.0),
        }
        for name, kw in sets.items():
            res.paths[f"data_{name}"] = make_phantoms(data / name, size=size, overwrite=overwrite, **kw)

    # 2. The base inpainting model.
    with step("train", "Training the lesion inpainting model"):
        tcfg = cfg["train"]
        model_dir = out / "model"
        # Every key of the demo's train section is a setting of medsynth.train (configs/train.yaml).
        model = train(res.paths["data_train"], model_dir, seed=seed, progress=progress, device=device, **dict(tcfg))
        res.paths["model"] = model_dir

    # 3. LoRA to a second site, plainly and under differential privacy.
    with step("finetune", "Fine-tuning LoRA adapters to site B (plain, then with DP)"):
        fcfg = cfg["finetune"]
        res.paths["adapter"] = finetune_lora(
            model_dir, res.paths["data_site_b"], out / "adapter-site-b", rank=int(fcfg["rank"]),
            steps=int(fcfg["steps"]), progress=progress, device=device,
        )
        res.paths["adapter_dp"] = finetune_lora(
            model_dir, res.paths["data_site_b"], out / "adapter-site-b-dp", rank=int(fcfg["rank"]),
            steps=int(fcfg["steps"]), dp=dict(fcfg["dp"]), progress=progress, device=device,
        )
        card = json.loads((Path(res.paths["adapter_dp"]) / "model_card.json").read_text())
        res.figures["dp_epsilon"] = (card.get("dp") or {}).get("epsilon")
        res.figures["dp_delta"] = (card.get("dp") or {}).get("delta")

    # 4. A synthetic segmentation training set (nnU-Net v2 raw format) on fresh backgrounds.
    with step("generate", "Generating a synthetic nnU-Net training set"):
        gcfg = cfg["generate"]
        gen = generate(
            model, res.paths["data_backgrounds"], gcfg["masks"], n=int(gcfg["n"]), out=out / "synthetic",
            format=gcfg["format"], seed=seed, num_inference_steps=int(gcfg["num_inference_steps"]),
            overwrite=overwrite, progress=progress, device=device,
        )
        res.paths["synthetic"] = gen.out  # load_dataset reads a generate output folder as it is
        res.figures["cases_per_s"] = round(gen.generated / max(gen.seconds, 1e-9), 3)

    # 5. Fidelity, realism and downstream utility against real (phantom) test data.
    with step("evaluate", "Evaluating fidelity, realism and downstream segmentation utility"):
        ecfg = cfg["evaluate"]
        ev = evaluate(res.paths["data_test"], res.paths["synthetic"], features=ecfg["features"], progress=progress,
                      device=device)
        ucfg = ecfg["utility"]
        # The low-data regime synthetic data is meant for: a few of the real training patients.
        ut = evaluate_utility(
            res.paths["data_train"], res.paths["synthetic"], res.paths["data_test"], tasks=list(ucfg["tasks"]),
            regimes=[float(ucfg["regime"])], steps=int(ucfg["steps"]), seeds=int(ucfg["seeds"]), progress=progress,
            device=device,
        )
        ev.to_json(out / "evaluation.json")
        ut.to_json(out / "utility.json")
        res.paths["evaluation_report"] = ev.save_html(out / "evaluation.html", utility=ut)
        res.figures["fid_domain"] = ev.value("fid")
        res.figures.update(_utility_figures(ut, ucfg))
        realism = ev.to_dict().get("realism") or {}
        res.figures["c2st_auc"] = realism.get("c2st_auc")
        res.summary = _plain_summary(realism, ut, ucfg)

    # 6. The privacy audit that decides whether the set may leave the hospital.
    with step("audit", "Auditing the synthetic set for privacy"):
        au = audit(
            res.paths["data_train"], res.paths["synthetic"], res.paths["data_holdout"],
            model=model_dir if cfg["audit"]["use_model"] else None, config=cfg["audit"].get("config") or None,
            progress=progress, device=device,
        )
        au.to_json(out / "audit.json")
        au.save_html(out / "audit.html")
        res.paths["audit_report"] = out / "audit.html"
        res.figures["audit_verdict"] = au.verdict
        res.summary.append(_audit_sentence(au.checks, au.verdict))

    (out / "demo-summary.json").write_text(json.dumps(res.to_dict(), indent=2))
    return res


def _audit_sentence(checks: list[dict[str, Any]], verdict: str) -> str:
    """The audit's verdict in words, naming what failed, could not tell or was not run."""
    def named(status: str) -> str:
        return ", ".join(c["name"] for c in checks if c.get("status") == status)

    text = f"Privacy audit: {verdict.upper()} ({len(checks)} checks"
    for status, word in (("fail", "failed"), ("inconclusive", "could not tell (too few samples)"),
                         ("not checked", "not run"), ("not DP", "no DP guarantee")):
        if named(status):
            text += f"; {word}: {named(status)}"
    return text + ")." + ("" if verdict == "pass" else " This set is not cleared for release as it stands.")


def _utility_figures(ut: Any, ucfg: dict[str, Any]) -> dict[str, Any]:
    """The demo's headline utility figures: Dice per arm and the difference, for its main task and regime."""
    from medsynth.metrics.utility import regime_key

    task, regime = list(ucfg["tasks"])[0], regime_key(float(ucfg["regime"]))
    reg = ut.regime(task, regime)
    delta = reg["delta"]

    def brief(d: dict[str, Any]) -> dict[str, Any]:
        return {"value": _r(d.get("value")), "ci95": [_r(x) for x in d.get("ci95") or [None, None]],
                "p": _r(d.get("p"))}

    return {
        "dice": {arm: _r(v) for arm, v in ut.dice(task, regime).items()},
        "utility_delta": {"task": task, "regime": regime, "arm": "real+synthetic", "versus": "real",
                          **brief(delta), "by_class": {k: brief(v) for k, v in (delta.get("by_class") or {}).items()}},
    }


def _r(x: Any, nd: int = 3) -> Any:
    return None if x is None else round(float(x), nd)


def _plain_summary(realism: dict[str, Any], ut: Any, ucfg: dict[str, Any]) -> list[str]:
    """What the evaluation found, in sentences a newcomer understands."""
    from medsynth.metrics.utility import regime_key

    lines = []
    auc, ci = realism.get("c2st_auc"), realism.get("c2st_ci95")
    if auc is not None:
        ci_text = f" (95 % CI {ci[0]:.2f} to {ci[1]:.2f})" if ci and ci[0] is not None else ""
        if ci and ci[0] is not None and ci[0] > 0.5:
            verdict = "so the synthetic lesions can still be told from real ones"
        else:
            verdict = "not distinguishable from chance (0.5), so the classifier could not tell them apart"
        lines.append(f"Realism: a classifier told real lesions from synthetic ones with ROC AUC {auc:.2f}{ci_text}; "
                     f"0.5 means indistinguishable, 1.0 always told apart: {verdict}.")
        for cls, d in (realism.get("by_class") or {}).items():  # per class, where the realism test gives it
            value = d.get("c2st_auc", d.get("auc")) if isinstance(d, dict) else d
            if isinstance(value, (int, float)):
                lines.append(f"  {cls}: ROC AUC {value:.2f}")
    else:
        lines.append("Realism: no classifier two-sample test (C2ST) in this evaluation.")
    task, regime = list(ucfg["tasks"])[0], regime_key(float(ucfg["regime"]))
    lines += ut.summary_lines(task, regime)
    return lines


MARKER = ".medsynth-demo"
OUTPUTS = ("data", "model", "adapter-site-b", "adapter-site-b-dp", "synthetic", "evaluation.json", "utility.json",
           "evaluation.html", "audit.json", "audit.html", "demo-summary.json")


def _prepare_output(out: Path, overwrite: bool) -> None:
    """Create ``out``; with ``overwrite``, remove what an earlier demo wrote there (and nothing else).

    A non-empty folder that an earlier demo did not make (no marker file) is refused either way, so
    the demo never deletes a user's files.
    """
    import shutil

    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(
                "output folder is not empty; pass --overwrite to replace an earlier demo's output", out
            )
        if not (out / MARKER).is_file():
            raise OutputExistsError(f"output folder is not empty and holds no earlier demo output ({MARKER} missing); "
                                    "choose another --out", out)
        for name in OUTPUTS:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by medsynth demo; --overwrite replaces this folder's demo outputs\n")


class _Timer:
    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> "_Timer":
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timings[self.name] = time.perf_counter() - self.t0
