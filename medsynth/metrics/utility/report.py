"""HTML of a utility result: the plain-words summary, Dice per regime, a forest plot of the differences
(overall, per class, per margin), the tables behind them and what the split checks checked."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from medsynth.html import REPORT_CSS, figure, img_tag, page
from medsynth.metrics.utility.headlines import METRIC_WORDS, headline_of

_STYLE = REPORT_CSS + "ul.summary li{margin:0.2em 0}\n"
COLORS = {"real": "#4c72b0", "real+synthetic": "#55a868", "synthetic": "#c44e52"}


def _ci_text(ci: list[Any]) -> str:
    return "—" if not ci or ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _v(x: Any) -> str:
    return "—" if x is None else f"{x:.3f}"


def regime_figure(task: str, data: dict[str, Any]) -> Any:
    """Mean Dice (95 % CI) against the share of real training patients, per arm."""
    regimes = list(data["regimes"])
    key = headline_of(task, data)
    xs = [float(r) for r in regimes]
    fig = figure(figsize=(5.2, 3.6))
    ax = fig.subplots()
    for arm, dodge in (("real", 0.97), ("real+synthetic", 1.03)):  # side by side, not on top of each other
        vals = [data["regimes"][r]["arms"][arm][key] for r in regimes]
        y = np.array([np.nan if v["value"] is None else v["value"] for v in vals])
        lo = np.array([np.nan if v["ci95"][0] is None else v["ci95"][0] for v in vals])
        hi = np.array([np.nan if v["ci95"][1] is None else v["ci95"][1] for v in vals])
        ax.errorbar([x * dodge for x in xs], y, yerr=[y - lo, hi - y], marker="o", capsize=4, label=arm,
                    color=COLORS[arm])
    syn = data["regimes"][regimes[0]]["arms"]["synthetic"][key]
    if syn["value"] is not None:
        ax.axhline(syn["value"], color=COLORS["synthetic"], ls="--", label="synthetic only")
        if syn["ci95"][0] is not None:
            ax.axhspan(syn["ci95"][0], syn["ci95"][1], color=COLORS["synthetic"], alpha=0.12)
    ax.set_xscale("log")
    ax.set_xlim(min(xs) / 1.5, max(xs) * 1.5)
    ax.set_xticks(xs, [f"{x:.0%}" for x in xs])
    ax.minorticks_off()
    ax.set_xlabel("share of real training patients")
    ax.set_ylabel("Dice on real test crops" if task == "crops" else "Dice, real test images with lesions")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{task}: Dice by data regime")
    return fig


def forest_figure(task: str, data: dict[str, Any]) -> Any:
    """Differences real+synthetic minus real with 95 % CIs: overall, per class, per margin, per regime."""
    rows: list[tuple[str, dict[str, Any]]] = []
    for r, reg in data["regimes"].items():
        d = reg["delta"]
        rows.append((f"{float(r):.0%}: all", d))
        for key, word in (("by_class", "class"), ("by_margin", "mass margin")):
            for name, g in (d.get(key) or {}).items():
                rows.append((f"{float(r):.0%}: {word} {name} (n={g.get('n')})", g))
    fig = figure(figsize=(6.2, 0.32 * len(rows) + 1.1))
    ax = fig.subplots()
    for k, (label, d) in enumerate(rows):
        v, ci = d.get("value"), d.get("ci95") or [None, None]
        if v is None or ci[0] is None:
            continue
        colour = "#2a9d4b" if ci[0] > 0 else "#c0392b" if ci[1] < 0 else "#777777"
        ax.errorbar([v], [k], xerr=[[v - ci[0]], [ci[1] - v]], fmt="o", color=colour, capsize=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
    ax.invert_yaxis()
    metric = "Dice" if task == "crops" else "Dice of images with lesions (all); lesion Dice (groups)"
    ax.set_xlabel(f"real+synthetic minus real: {metric}")
    ax.set_title(f"{task}: what adding the synthetic set changes (95 % CI)")
    return fig


def _arms_table(task: str, data: dict[str, Any]) -> str:
    key = headline_of(task, data)
    first = _first_arm(data)
    extra = [] if task == "crops" else [k for k in ("dice", "dice_lesion_free", "lesion_dice") if k in first] + [
        k for k in first if k.startswith("sensitivity@")]
    head = (f"<tr><th>regime</th><th>trained on</th><th>{html.escape(METRIC_WORDS.get(key, key))}</th><th>95 % CI</th>"
            "<th>per seed</th>") + "".join(
        f"<th>{html.escape(k)}</th>" for k in extra) + "<th>real patients / images</th></tr>"
    rows = []
    for r, reg in data["regimes"].items():
        for arm, a in reg["arms"].items():
            n = a.get("n_train", {})
            seeds = ", ".join(_v(x) for x in a[key]["seed_values"])
            cells = "".join(f"<td>{_v(a[k]['value'])} {_ci_text(a[k]['ci95'])}</td>" for k in extra)
            who = (f"{_mean(n.get('real_patients'))} / {_mean(n.get('real_images'))}"
                   + (f" + {_mean(n.get('synthetic_images'))} synthetic" if _mean(n.get("synthetic_images")) else ""))
            rows.append(f"<tr><td>{float(r):.0%}</td><td><b>{html.escape(arm)}</b></td><td>{_v(a[key]['value'])}</td>"
                        f"<td>{_ci_text(a[key]['ci95'])}</td><td>{seeds}</td>{cells}<td>{who}</td></tr>")
    return f'<table class="ms">{head}{"".join(rows)}</table>'


def _first_arm(data: dict[str, Any]) -> dict[str, Any]:
    reg = next(iter(data["regimes"].values()))
    return reg["arms"]["real"]


def _mean(values: Any) -> str:
    if not values:
        return "0"
    m = float(np.mean(values))
    return f"{m:.0f}" if m == int(m) else f"{m:.1f}"


def _delta_table(data: dict[str, Any]) -> str:
    head = "<tr><th>regime</th><th>group</th><th>n</th><th>difference</th><th>95 % CI</th><th>p</th></tr>"
    rows = []
    for r, reg in data["regimes"].items():
        for label, key in (("real+synthetic − real", "delta"), ("synthetic − real", "delta_synthetic_only")):
            d = reg[key]
            groups = [("all", d)] + [(f"{n}", g) for k in ("by_class", "by_margin") for n, g in
                                      (d.get(k) or {}).items()]
            for name, g in groups:
                p = g.get("p")
                rows.append(f"<tr><td>{float(r):.0%}: {html.escape(label)}</td><td>{html.escape(name)}</td>"
                            f"<td>{g.get('n', '')}</td><td>{_v(g.get('value'))}</td><td>{_ci_text(g.get('ci95'))}</td>"
                            f"<td>{'—' if p is None else f'{p:.3g}'}</td></tr>")
    return f'<table class="ms">{head}{"".join(rows)}</table>'


def _splits_html(splits: dict[str, Any]) -> str:
    rows = []
    for check, value in splits.items():
        if check == "sets":
            continue
        items = value.items() if isinstance(value, dict) else [("", value)]
        for pair, text in items:
            rows.append(f"<tr><td>{html.escape(check)}</td><td>{html.escape(pair)}</td>"
                        f"<td>{html.escape(str(text))}</td></tr>")
    sets = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>"
                   for k, v in splits.get("sets", {}).items())
    return (f'<table class="ms"><tr><th>check</th><th>sets</th><th>result</th></tr>{"".join(rows)}</table>'
            f"<ul class='note'>{sets}</ul>")


def utility_html(result: Any, full_page: bool = False) -> str:
    """The utility section (or, with ``full_page``, a whole page) of a :class:`UtilityResult`."""
    parts = ["<h2>Downstream utility: does the synthetic set help a segmentation model?</h2>",
             "<ul class='summary'>" + "".join(f"<li>{html.escape(s)}</li>" for s in result.summary_lines()) + "</ul>"]
    for task, data in result.tasks.items():
        title = "lesion crops (UNet)" if task == "crops" else "whole images (DynUNet, sliding window)"
        units = (f"{data.get('n_test_crops')} crops" if task == "crops" else
                 f"{data.get('n_test_images')} images, {data.get('n_test_lesions')} lesions")
        parts += [f"<h3>Task: {title}</h3>",
                  f"<p class='note'>Real test set: {units} of {data['n_test_patients']} patients; by class "
                  f"{html.escape(str(data.get('test_by_class')))}; by margin "
                  f"{html.escape(str(data.get('test_by_margin')))}.</p>",
                  img_tag(regime_figure(task, data), f"{task} Dice by regime"),
                  img_tag(forest_figure(task, data), f"{task} differences"),
                  _arms_table(task, data), _delta_table(data)]
    s = result.settings
    parts += ["<h3>Splits</h3>", _splits_html(result.splits),
              f"<p class='note'>{s.get('seeds')} seeds per arm; {html.escape(str(s.get('bootstrap')))}; "
              f"{s.get('n_boot')} replicates. Seconds: {html.escape(str(result.seconds))}.</p>",
              f"<p class='note'>Settings: {html.escape(str({k: v for k, v in s.items() if k != 'bootstrap'}))}</p>"]
    body = "\n".join(parts)
    return page("medsynth utility", body, _STYLE) if full_page else f"<div>{body}</div>"


__all__ = ["forest_figure", "regime_figure", "utility_html"]
