"""The audit's HTML report: one self-contained file (figures inlined as base64 PNG), verdict first.

Sections follow the checks: memorization (grid of the closest synthetic/train pairs), holdout
baseline (histograms of synthetic→train against holdout→train distances), membership inference
(ROC curves), differential privacy, PHI (with the note that pixel text is not OCR'd), then notes
and the settings used. ``AuditResult._repr_html_`` uses the same body inside Jupyter.
"""

from __future__ import annotations

import html
import json
from typing import Any

import numpy as np

from medsynth.html import fmt, img_tag

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;color:#222}
.verdict{font-size:2em;font-weight:700;padding:.4em .8em;border-radius:8px;display:inline-block}
.pass{background:#d9f2dc;color:#135c1e}.fail{background:#f9d6d5;color:#8a1c17}
table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:.92em}
th{background:#f3f3f3}.ok{color:#135c1e;font-weight:600}.bad{color:#8a1c17;font-weight:600}
img{max-width:100%}code,pre{background:#f6f6f6;font-size:.85em}pre{padding:.6em;overflow-x:auto}
.note{color:#555;font-size:.92em}.na{color:#7a5b00;font-weight:600}
"""


def pairs_figure(pairs: list[dict[str, Any]]) -> str:
    """Side-by-side grid: each row a synthetic sample (aligned by its matched flip/zoom) and its nearest
    training one."""
    from matplotlib.figure import Figure

    n = len(pairs)
    fig = Figure(figsize=(5.2, 2.4 * n))
    axes = fig.subplots(n, 2, squeeze=False)
    for row, p in zip(axes, pairs):
        row[0].imshow(p["synthetic_image"], cmap="gray")
        row[1].imshow(p["train_image"], cmap="gray")
        mark = "FLAGGED " if p["flagged"] else ""
        row[0].set_title(f"{mark}synthetic ({p['scope']}, {p['transform']})\n{p['synthetic'][-38:]}", fontsize=7,
                         color="#8a1c17" if p["flagged"] else "black")
        row[1].set_title(
            f"nearest train  NCC {p['ncc']:.3f}  ratio {p['carlini_ratio']:.2f}\n{p['nearest_train'][-38:]}",
            fontsize=7,
        )
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    return img_tag(fig, dpi=72)


def histogram_figure(syn: np.ndarray, hold: np.ndarray, scope: str) -> str:
    """Histograms of synthetic→train and holdout→train nearest-neighbour distances."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3))
    ax = fig.subplots()
    lo, hi = float(min(syn.min(), hold.min())), float(max(syn.max(), hold.max()))
    bins = np.linspace(lo, hi if hi > lo else lo + 1e-3, 30)
    ax.hist(hold, bins=bins, alpha=0.6, label=f"holdout → train (n={len(hold)})", density=True, color="#4c72b0")
    ax.hist(syn, bins=bins, alpha=0.6, label=f"synthetic → train (n={len(syn)})", density=True, color="#dd8452")
    ax.set_xlabel("nearest-neighbour distance (normalised pixels, flips allowed)")
    ax.set_ylabel("density")
    ax.set_title(f"{scope}s: distance to the closest training sample", fontsize=10)
    ax.legend(fontsize=8)
    return img_tag(fig, dpi=72)


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, float]]) -> str:
    """ROC curves of the membership-inference attacks (linear axes, and log FPR for the low-FPR regime)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 3.4))
    axes = fig.subplots(1, 2)
    for name, (fpr, tpr, auc) in curves.items():
        for ax in axes:
            ax.step(fpr, tpr, where="post", label=f"{name} (AUC {auc:.3f})")
    for ax in axes:
        ax.plot([1e-4, 1], [1e-4, 1], "k--", lw=0.8, label="chance")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlim(1e-3, 1)
    axes[1].set_ylim(1e-3, 1.05)
    axes[0].legend(fontsize=8)
    axes[0].set_title("membership inference ROC", fontsize=10)
    axes[1].set_title("log-log (TPR at low FPR)", fontsize=10)
    fig.tight_layout()
    return img_tag(fig, dpi=72)


def _checks_table(checks: list[dict[str, Any]], prefix: str | None = None) -> str:
    rows = []
    for c in checks:
        if prefix is not None and not c["name"].startswith(prefix):
            continue
        shown = c.get("status") or ("pass" if c["passed"] else "fail")
        status = ('<span class="ok">pass</span>' if shown == "pass" else '<span class="bad">FAIL</span>'
                  if shown == "fail" else f'<span class="na">{html.escape(shown)}</span>')
        details = "; ".join(f"{html.escape(str(k))}: {fmt(v)}" for k, v in c["details"].items()
                            if not isinstance(v, (dict, list)))
        rows.append(f"<tr><td>{html.escape(c['name'])}</td><td>{status}</td><td>{fmt(c['value'])}</td>"
                    f"<td>{fmt(c['threshold'])}</td><td class='note'>{details}</td></tr>")
    if not rows:
        return ""
    return ("<table><tr><th>check</th><th>result</th><th>value</th><th>threshold</th><th>details</th></tr>"
            + "".join(rows) + "</table>")


def render_html(result: Any, standalone: bool = True) -> str:
    """The report as HTML; ``standalone`` wraps it in a full page with its stylesheet."""
    d = result.to_dict()
    plots = result.plots
    v = d["verdict"]
    parts = [f'<h1>medsynth privacy audit</h1><div class="verdict {v}">{v.upper()}</div>']
    failed = [c["name"] for c in d["checks"] if not c["passed"]]
    parts.append(f"<p>{len(d['checks'])} checks, {len(failed)} failed"
                 + (f": {html.escape(', '.join(failed))}" if failed else "") + f" ({d['seconds']} s).</p>")
    inputs = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(x.get('root', x)))}</td>"
                     f"<td>{fmt(x.get('n_images')) if isinstance(x, dict) else ''}</td>"
                     f"<td>{fmt(x.get('n_rois')) if isinstance(x, dict) else ''}</td></tr>"
                     for k, x in d["inputs"].items())
    parts.append(f"<table><tr><th>input</th><th>path</th><th>images</th><th>lesion ROIs</th></tr>{inputs}</table>")
    parts.append("<h2>All checks</h2>" + _checks_table(d["checks"]))

    # 1. Memorization
    memo = d["memorization"]
    parts.append("<h2>1. Memorization / copies</h2><p class='note'>Nearest training sample of every synthetic "
                 "image and lesion ROI, with flips, zooms and shifts tried: NCC of pixels (Akbar et al.), SSIM, "
                 "embedding cosine (Dar et al.) and Carlini et al.'s ratio (α = 0.5, n = 50).</p>")
    parts.append(_checks_table(d["checks"], "memorization"))
    rows = "".join(
        f"<tr><td>{html.escape(s)}</td><td>{x['n']}</td><td>{x['n_flagged']}</td><td>{fmt(x['max_ncc'])}</td>"
        f"<td>{fmt(x['max_ssim'])}</td><td>{fmt(x['min_carlini_ratio'])}</td>"
        f"<td>{fmt(x['max_embedding_cosine'])} ({fmt(x['embedding'])})</td></tr>"
        for s, x in memo["scopes"].items()
    )
    parts.append("<table><tr><th>scope</th><th>samples</th><th>flagged</th><th>max NCC</th><th>max SSIM</th>"
                 f"<th>min Carlini ratio</th><th>max embedding cosine</th></tr>{rows}</table>")
    if memo["flagged"]:
        rows = "".join(f"<tr><td>{html.escape(f['synthetic'])}</td><td>{html.escape(f['nearest_train'])}</td>"
                       f"<td>{html.escape(f['scope'])}</td><td>{fmt(f['ncc'])}</td><td>{fmt(f['ssim'])}</td>"
                       f"<td>{fmt(f['carlini_ratio'])}</td><td>{html.escape(f['transform'])}</td>"
                       f"<td>{html.escape(', '.join(f['flagged_by']))}</td></tr>" for f in memo["flagged"][:200])
        parts.append("<h3>Flagged synthetic samples</h3><table><tr><th>synthetic</th><th>nearest train</th>"
                     "<th>scope</th><th>NCC</th><th>SSIM</th><th>Carlini ratio</th><th>transform</th>"
                     f"<th>flagged by</th></tr>{rows}</table>")
    if plots.get("pairs"):
        parts.append("<h3>Closest synthetic / training pairs</h3>" + pairs_figure(plots["pairs"]))

    # 2. Baseline
    parts.append("<h2>2. Holdout baseline</h2><p class='note'>Fresh real data is as close to the training set "
                 "as the synthetic set should be: SDMetrics' DCR overfitting protection (~50% for fresh data) "
                 "and Meehan et al.'s one-sided Mann–Whitney data-copying test.</p>")
    parts.append(_checks_table(d["checks"], "baseline"))
    for scope in d["baseline"]:
        syn, hold = plots[f"baseline_{scope}"]
        parts.append(histogram_figure(np.asarray(syn), np.asarray(hold), scope))

    # 3. MIA
    parts.append("<h2>3. Membership inference</h2>")
    if d["mia"] is None:
        parts.append("<p>Not run: no model was given (<code>--model</code>).</p>")
    else:
        parts.append(f"<p class='note'>{d['mia']['n_members']} training lesion ROIs (members) against "
                     f"{d['mia']['n_nonmembers']} holdout ROIs; attacks: loss threshold and a PIA/SecMI-style "
                     "multi-timestep loss with fixed noise.</p>")
        parts.append(_checks_table(d["checks"], "mia"))
        curves = {k[4:]: val for k, val in plots.items() if k.startswith("roc_")}
        if curves:
            parts.append(roc_figure(curves))

    # 4. DP
    parts.append("<h2>4. Differential privacy</h2>" + _checks_table(d["checks"], "dp"))
    dp = d["dp"]
    if not dp.get("recorded"):
        parts.append("<p>No DP record found in the model card or the synthetic set's manifest.</p>")
    else:
        parts.append(f"<p>The model was {html.escape(str(dp.get('statement')))} (from "
                     f"{html.escape(str(dp['source']))}). Each part's ε was recomputed from its recorded σ, sample "
                     "rate, steps and δ with opacus' accountant.</p>")
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{'DP' if p.get('dp_trained') else 'no DP'}</td>"
            f"<td>{fmt(p.get('epsilon'))}</td><td>{fmt(p.get('recomputed_epsilon'))}</td><td>{fmt(p.get('delta'))}"
            f"</td><td>{html.escape(str(p.get('noise')))}</td><td>{html.escape(str(p.get('problem') or ''))}</td></tr>"
            for name, p in (dp.get("parts") or {}).items())
        parts.append("<table><tr><th>part</th><th>DP</th><th>ε recorded</th><th>ε recomputed</th><th>δ</th>"
                     f"<th>noise</th><th>problem</th></tr>{rows}</table>")

    # 5. PHI
    phi = d["phi"]
    parts.append("<h2>5. Metadata and file names (PHI)</h2>" + _checks_table(d["checks"], "phi"))
    parts.append(f"<p>{phi['n_dicom']} DICOM file(s) of {phi['n_files']} walked (file meta, nested sequences, "
                 f"private tags). <b>{html.escape(phi['ocr_note'])}</b></p>")
    if phi["findings"]:
        rows = "".join(f"<tr><td>{html.escape(f.get('file', ''))}</td><td>{html.escape(f.get('problem', ''))}</td>"
                       f"<td>{html.escape(f.get('keyword', ''))} {html.escape(f.get('tag', ''))}</td>"
                       f"<td>{html.escape(f.get('value', ''))}</td><td>{html.escape(f.get('source', ''))}</td></tr>"
                       for f in phi["findings"][:200])
        parts.append("<table><tr><th>file</th><th>problem</th><th>attribute</th><th>value</th>"
                     f"<th>training source</th></tr>{rows}</table>")
    if phi["identifiers_not_searched"]:
        parts.append(f"<p class='note'>Identifiers too short to search safely: "
                     f"{html.escape(', '.join(phi['identifiers_not_searched'][:50]))}</p>")

    # Notes and settings
    parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in d["notes"]) + "</ul>")
    parts.append("<details><summary>Settings used</summary><pre>"
                 + html.escape(json.dumps(d["config"], indent=2)) + "</pre></details>")
    body = "\n".join(parts)
    if not standalone:
        return f"<div><style>{_CSS}</style>{body}</div>"
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>medsynth audit: {v}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>")
