"""The result of the utility test: JSON, plain-words summary, HTML (also in Jupyter)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.io.writers.atomic import atomic_write_text
from medsynth.metrics.utility.headlines import GROUP_HEADLINES, METRIC_WORDS, headline_of
from medsynth.utils import jsonable

TASK_WORDS = {"crops": "lesion crops", "full": "whole images"}


@dataclass
class UtilityResult:
    """Per task and data regime, each arm's figures and each arm-vs-real difference.

    Attributes:
        tasks: ``{"crops"|"full": {"regimes": {"0.1": {"arms": {...}, "delta": {...},
            "delta_synthetic_only": {...}}, ...}, "n_test_images": ..., ...}}`` (the JSON's shape).
        splits: what the split checks checked (patients, identical images, backgrounds).
        settings: tasks, regimes, seeds, steps, networks, bootstrap.
        seconds: wall-clock time per part (read, crops, full, statistics, total).
        cpu_seconds: CPU time of the process per part (all threads; on a shared machine, the work's cost).
    """

    tasks: dict[str, Any]
    splits: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: everything under ``utility``."""
        return {"utility": jsonable({**self.tasks, "splits": self.splits, "settings": self.settings,
                                     "seconds": self.seconds, "cpu_seconds": self.cpu_seconds,
                                     "summary": self.summary_lines()})}

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomically); returns the path."""
        return atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2))

    def save_html(self, path: str | Path) -> Path:
        """Write the self-contained HTML page of the result (atomically); returns the path."""
        from medsynth.metrics.utility.report import utility_html

        return atomic_write_text(Path(path), utility_html(self, full_page=True))

    def _repr_html_(self) -> str:
        from medsynth.metrics.utility.report import utility_html

        return utility_html(self)

    def regime(self, task: str | None = None, regime: str | None = None) -> dict[str, Any]:
        """One task's figures at one regime (default: the first task, its smallest regime)."""
        task = task or next(iter(self.tasks))
        regimes = self.tasks[task]["regimes"]
        return regimes[regime or next(iter(regimes))]

    def headline(self, task: str | None = None) -> str:
        """The figure a task leads with: ``dice`` (crops), ``dice_lesion_images`` (whole images; see
        :data:`medsynth.metrics.utility.headlines.HEADLINES`)."""
        return headline_of(task or next(iter(self.tasks)), self.tasks[task or next(iter(self.tasks))])

    def dice(self, task: str | None = None, regime: str | None = None) -> dict[str, float | None]:
        """The task's headline Dice per arm (``real``, ``real+synthetic``, ``synthetic``) at one regime."""
        key = self.headline(task)
        return {arm: a[key]["value"] for arm, a in self.regime(task, regime)["arms"].items()}

    def summary_lines(self, task: str | None = None, regime: str | None = None) -> list[str]:
        """The result in sentences a newcomer can read: per task and regime (or just the one asked for)."""
        lines = []
        for t, data in self.tasks.items():
            if task is not None and t != task:
                continue
            for r, reg in data["regimes"].items():
                if regime is not None and r != regime:
                    continue
                lines += describe_regime(t, r, reg)
        return lines


def _pct(fraction: str) -> str:
    return f"{float(fraction) * 100:.0f} %"


def _num(x: float) -> str:
    """A signed bound with 2 decimals, or 3 near zero (so +0.004 does not read as +0.00)."""
    return f"{x:+.3f}" if abs(x) < 0.01 else f"{x:+.2f}"


PLURALS = {"mass": "Masses", "calcification": "Calcifications"}


def _effect(d: dict[str, Any], what: str) -> str:
    """'raised mass Dice by 0.08 (95 % CI 0.03 to 0.13)', with a verdict that follows the interval."""
    v, ci, p = d.get("value"), d.get("ci95") or [None, None], d.get("p")
    if v is None or ci[0] is None:
        return f"could not measure the change in {what} (too few test cases)"
    if abs(v) < 0.005:
        verb, by = "barely changed", f" ({v:+.3f})"
    else:
        verb, by = ("raised" if v > 0 else "lowered"), f" by {abs(v):.2f}"
    ci_text = f"95 % CI {_num(ci[0])} to {_num(ci[1])}" + (f", p = {p:.2g}" if p is not None else "")
    if ci[0] > 0 or ci[1] < 0:
        verdict = "a clear gain" if v > 0 else "a clear loss"
    else:
        verdict = "not distinguishable from no change"
    return f"{verb} {what}{by} ({ci_text}): {verdict}"


def describe_regime(task: str, regime: str, reg: dict[str, Any]) -> list[str]:
    """Sentences for one task and regime: the overall change, then per class and per margin."""
    arms, delta = reg["arms"], reg["delta"]
    n_real = arms["real"].get("n_train", {}).get("real_patients") or []
    who = f"{_pct(regime)} of the real training patients" + (f" ({round(sum(n_real) / len(n_real))})"
                                                              if n_real else "")
    metric = METRIC_WORDS.get(delta.get("metric", "dice"), str(delta.get("metric")))
    lines = [f"[{TASK_WORDS.get(task, task)}, {who}] Adding the synthetic set " + _effect(delta, metric) + "."]
    unit = "crop" if task == "crops" else "lesion"
    for cls, d in (delta.get("by_class") or {}).items():
        n = d.get("n")
        lines.append(f"  {PLURALS.get(cls, cls)}: adding the synthetic set {_effect(d, f'{cls} Dice')} "
                     f"({n} test {unit}{'s' if n != 1 else ''}).")
    for margin, d in (delta.get("by_margin") or {}).items():
        n = d.get("n")
        lines.append(f"  Masses with {margin.replace('_', '-')} margins: {_effect(d, 'Dice')} "
                     f"({n} test {unit}{'s' if n != 1 else ''}).")
    if task == "full":
        metrics = delta.get("metrics") or {}
        clean = metrics.get("dice_lesion_free")
        if clean and clean.get("value") is not None and arms["real"].get("dice_lesion_free"):
            before = arms["real"]["dice_lesion_free"]["value"]
            after = arms["real+synthetic"]["dice_lesion_free"]["value"]
            lines.append(f"  Lesion-free test images left without a false positive: {before:.0%} -> {after:.0%} "
                         f"({_effect(clean, 'that share')}).")
        sens = metrics.get("sensitivity@1fp")
        if sens:
            lines.append("  Detection at 1 false positive per image: adding the synthetic set "
                         + _effect(sens, "sensitivity") + ".")
    syn = reg.get("delta_synthetic_only") or {}
    if syn.get("value") is not None:
        lines.append(f"  Synthetic data alone vs these real patients: {_effect(syn, metric)}.")
    lines += _failed_seed_lines(task, arms)
    return lines


def failed_seeds(task: str, arms: dict[str, Any]) -> list[dict[str, Any]]:
    """Seeds whose network did not learn a lesion class that the other seeds of the same arm did.

    A seed fails a class in an arm when its class Dice is below :data:`FAILED_SEED_DICE` while the
    median of the arm's other seeds is at least :data:`LEARNT_DICE`. In the synthetic-only arm and at
    100 % of the real patients every seed trains on the same data, so there only the training differs
    (on the phantom benchmark one seed of three missed calcifications in 5 of 7 whole-image arms); in a
    partial regime each seed also draws its own patients. Such a seed spreads the intervals of every
    difference it enters; more seeds narrow them.
    """
    key = GROUP_HEADLINES.get(task, "dice")
    out = []
    for arm, a in arms.items():
        for cls, g in (a.get("by_class") or {}).items():
            vals = (g.get(key) or {}).get("seed_values") or []
            for s, v in enumerate(vals):
                others = [x for k, x in enumerate(vals) if k != s and x is not None]
                if v is None or not others:
                    continue
                if v < FAILED_SEED_DICE and float(np.median(others)) >= LEARNT_DICE:
                    out.append({"arm": arm, "class": cls, "seed": s, "dice": v, "others": others})
    return out


FAILED_SEED_DICE = 0.25
LEARNT_DICE = 0.5


def _failed_seed_lines(task: str, arms: dict[str, Any]) -> list[str]:
    by_seed_class: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for f in failed_seeds(task, arms):
        by_seed_class.setdefault((f["seed"], f["class"]), []).append(f)
    lines = []
    for (seed, cls), fs in sorted(by_seed_class.items()):
        others = [x for f in fs for x in f["others"]]
        names = ", ".join(f["arm"] for f in fs)
        values = ", ".join(f"{f['dice']:.2f}" for f in fs)
        lines.append(f"  Warning: seed {seed} did not learn {PLURALS.get(cls, cls).lower()} in the {names} "
                     f"arm{'s' if len(fs) > 1 else ''} ({cls} Dice {values}; the other seeds "
                     f"{min(others):.2f}-{max(others):.2f}). Its network missed the class; that widens the "
                     f"intervals of the differences it enters, and more seeds narrow them.")
    return lines


__all__ = ["METRIC_WORDS", "UtilityResult", "describe_regime", "failed_seeds", "headline_of"]
