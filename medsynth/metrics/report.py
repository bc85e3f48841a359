"""The self-contained HTML report of ``medsynth evaluate`` (one file, images inlined as base64 PNG).

Sections: the metrics table (with sample counts, the feature extractor, the scope and each
distance's real-vs-real floor), a PCA of real vs synthetic features, the realism section (the C2ST's
AUC overall, per class and per margin; the ROIs the classifier finds most obviously synthetic beside
real ones; the lesion statistics, real against synthetic, with the radially averaged spectra),
sample sheets of both sets, and -- when a utility run is given -- its section
(:mod:`medsynth.metrics.utility.report`). Also the ``_repr_html_`` of results in Jupyter.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from medsynth.html import REPORT_CSS, figure, fmt, img_tag, page


def pca_figure(real: np.ndarray, synthetic: np.ndarray) -> Any:
    """Scatter of the first two principal components of the pooled, standardised features."""
    x = np.concatenate([real, synthetic]).astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    pcs = x @ vt[:2].T
    explained = (s[:2] ** 2) / max((s**2).sum(), 1e-12)
    fig = figure(figsize=(5, 4.2))
    ax = fig.subplots()
    n = len(real)
    ax.scatter(pcs[:n, 0], pcs[:n, 1], s=12, alpha=0.6, label=f"real (n={n})")
    ax.scatter(pcs[n:, 0], pcs[n:, 1], s=12, alpha=0.6, marker="x", label=f"synthetic (n={len(synthetic)})")
    ax.set_xlabel(f"PC1 ({explained[0]:.0%})")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%})" if len(explained) > 1 else "PC2")
    ax.legend(loc="best", fontsize=8)
    ax.set_title("feature space (PCA)")
    return fig


def sample_sheet(images: np.ndarray, title: str, cols: int = 8) -> Any:
    """A grid of up to 2 rows x ``cols`` greyscale images."""
    images = np.asarray(images)[: 2 * cols]
    rows = max(1, int(np.ceil(len(images) / cols)))
    fig = figure(figsize=(cols * 1.2, rows * 1.25 + 0.3))
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for ax in axes:
        ax.axis("off")
    for ax, im in zip(axes, images):
        ax.imshow(im, cmap="gray", vmin=0.0, vmax=1.0)
    fig.suptitle(title)
    return fig


def roi_group_sheet(groups: dict[str, dict[str, np.ndarray]], cols: int = 6) -> Any:
    """Per lesion class and margin, a row of synthetic lesion ROIs above a row of real ones."""
    names = [g for g in groups if len(groups[g]["real"]) or len(groups[g]["synthetic"])]
    rows = 2 * max(1, len(names))
    fig = figure(figsize=(cols * 1.15 + 1.4, rows * 1.15 + 0.4))
    axes = np.atleast_2d(fig.subplots(rows, cols))
    for ax in axes.reshape(-1):
        ax.axis("off")
    for g, name in enumerate(names):
        for r, arm in enumerate(("synthetic", "real")):
            for j, im in enumerate(np.asarray(groups[name][arm])[:cols]):
                axes[2 * g + r, j].imshow(im, cmap="gray", vmin=0.0, vmax=1.0)
            axes[2 * g + r, 0].text(-0.1, 0.5, f"{name}\n{arm}", transform=axes[2 * g + r, 0].transAxes,
                                    fontsize=7, ha="right", va="center")
    fig.suptitle("lesion ROIs per class and margin: synthetic above real")
    return fig


def _floor_text(m: dict[str, Any]) -> str:
    """The real-vs-real floor of a distance, as the table shows it."""
    floor = m.get("floor")
    if not floor:
        return html.escape(m.get("floor_note") or "")
    return (f"{fmt(floor.get('value'))} <span class='note'>(real half vs half, n={floor.get('n_real_a')}/"
            f"{floor.get('n_real_b')}; synthetic at that n: {fmt(floor.get('synthetic_at_floor_n'))})</span>")


def metrics_table(result: Any) -> str:
    """The metrics as an HTML table (value, CI/std, real-vs-real floor, extractor and scope, n)."""
    rows = []
    for name, m in result.metrics.items():
        extra = ""
        if "std" in m:
            std = "n/a (every subset is the whole set)" if m["std"] is None else f"± {m['std']:.3g}"
            extra = f"{std} (std over {m.get('subsets')} subsets of {m.get('subset_size')})"
        elif "ci95" in m:
            extra = f"95% CI [{m['ci95'][0]:.3g}, {m['ci95'][1]:.3g}]"
            if "real_value" in m:
                extra += f"; real set: {m['real_value']:.3g}"
        if m.get("note") and m.get("value") is None:
            extra = m["note"]
        features = fmt(m.get("feature_extractor")) + (f" on {fmt(m['scope'])}" if m.get("scope") else "")
        rows.append(
            f"<tr><td><b>{html.escape(name)}</b></td><td>{fmt(m.get('value'))}</td><td>{html.escape(extra)}</td>"
            f"<td>{_floor_text(m) if 'floor' in m else ''}</td><td>{features}</td><td>{fmt(m.get('n_real'))}</td>"
            f"<td>{fmt(m.get('n_synthetic'))}</td></tr>"
        )
    head = ("<tr><th>metric</th><th>value</th><th>uncertainty / note</th><th>real-vs-real floor</th>"
            "<th>features</th><th>n real</th><th>n synthetic</th></tr>")
    return f'<table class="ms">{head}{"".join(rows)}</table>'


def _ci(ci: Any) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "—"


def _auc_verdict(auc: float | None, ci: Any) -> str:
    if auc is None:
        return "not run"
    if ci and ci[0] > 0.5:
        return "told apart (CI above 0.5)"
    if ci and ci[1] < 0.5:
        return "below 0.5: a small-sample artefact of cross-validation, not evidence of realism"
    return "not told apart (CI covers 0.5)"


def realism_table(realism: dict[str, Any]) -> str:
    """The C2ST's AUC overall, per lesion class and per mass margin."""
    rows = [("all lesions", realism.get("c2st_auc"), realism.get("c2st_ci95"),
             realism.get("n_real_rois"), realism.get("n_synthetic_rois"))]
    for kind, part in (("class", realism.get("by_class") or {}), ("margin", realism.get("by_margin") or {})):
        for name, r in part.items():
            rows.append((f"{kind}: {name}", r.get("auc"), r.get("ci95"), r.get("n_real"), r.get("n_synthetic")))
    body = "".join(
        f"<tr><td>{html.escape(str(n))}</td><td>{fmt(a)}</td><td>{_ci(c)}</td><td>{html.escape(_auc_verdict(a, c))}"
        f"</td><td>{fmt(nr)}</td><td>{fmt(ns)}</td></tr>"
        for n, a, c, nr, ns in rows
    )
    head = ("<tr><th>lesions</th><th>C2ST AUC</th><th>95% CI</th><th>reading</th>"
            "<th>n real ROIs</th><th>n synthetic ROIs</th></tr>")
    return f'<table class="ms">{head}{body}</table>'


def roi_sheet(examples: dict[str, Any]) -> Any:
    """The most obviously synthetic ROIs (with their scores) above randomly chosen real ROIs."""
    syn, real = np.asarray(examples["synthetic"]), np.asarray(examples["real"])
    scores = np.asarray(examples["synthetic_scores"])
    classes = list(examples.get("synthetic_classes", [""] * len(syn)))
    cols = max(len(syn), len(real), 1)
    fig = figure(figsize=(cols * 1.25, 2 * 1.4 + 0.4))
    axes = np.atleast_2d(fig.subplots(2, cols))
    for ax in axes.reshape(-1):
        ax.axis("off")
    for j, im in enumerate(syn):
        axes[0, j].imshow(im, cmap="gray", vmin=0.0, vmax=1.0)
        axes[0, j].set_title(f"{str(classes[j])[:5]} p={scores[j]:.2f}", fontsize=8)
    for j, im in enumerate(real):
        axes[1, j].imshow(im, cmap="gray", vmin=0.0, vmax=1.0)
    axes[0, 0].text(-0.15, 0.5, "synthetic", transform=axes[0, 0].transAxes, rotation=90, va="center", ha="right")
    axes[1, 0].text(-0.15, 0.5, "real", transform=axes[1, 0].transAxes, rotation=90, va="center", ha="right")
    fig.suptitle("most obviously synthetic lesion ROIs (top; p = classifier's held-out score) and real ROIs")
    return fig


def lesion_stats_table(stats: dict[str, Any]) -> str:
    """Every lesion statistic: real and synthetic medians, difference with its CI, test and distance."""
    rows = []
    for stat, per_class in stats.items():
        if stat in ("radial_spectra", "settings", "note") or not isinstance(per_class, dict):
            continue
        for klass, c in per_class.items():
            r, y = c.get("real") or {}, c.get("synthetic") or {}
            flag = "differs" if c.get("differs") else ("—" if c.get("differs") is None else "no difference shown")
            rows.append(
                f"<tr><td><b>{html.escape(stat)}</b> <span class='note'>{html.escape(c.get('unit', ''))}</span></td>"
                f"<td>{html.escape(klass)}</td><td>{fmt(r.get('median'))} (n={fmt(r.get('n'))})</td>"
                f"<td>{fmt(y.get('median'))} (n={fmt(y.get('n'))})</td><td>{fmt(c.get('difference'))}</td>"
                f"<td>{_ci(c.get('ci95'))}</td><td>{fmt(c.get('p_mannwhitney'))}</td>"
                f"<td>{fmt(c.get('ks_distance'))}</td><td>{html.escape(c.get('note') or flag)}</td></tr>"
            )
    head = ("<tr><th>statistic</th><th>class</th><th>real median</th><th>synthetic median</th>"
            "<th>difference (syn - real)</th><th>95% CI (patients resampled)</th><th>Mann-Whitney p</th>"
            "<th>KS distance</th><th>reading</th></tr>")
    return f'<table class="ms">{head}{"".join(rows)}</table>'


def spectrum_figure(spectra: dict[str, Any]) -> Any | None:
    """Median log10(power inside the lesion / power in its ring) against frequency, real vs synthetic."""
    f = np.asarray(spectra.get("frequency_of_nyquist") or [])
    curves = [(arm, klass, v) for arm in ("real", "synthetic") for klass, v in (spectra.get(arm) or {}).items()]
    if not len(f) or not curves:
        return None
    fig = figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    for arm, klass, v in curves:
        y = np.asarray([np.nan if x is None else x for x in v], dtype=float)
        ax.plot(f, y, ("-" if arm == "real" else "--"), marker="o" if klass == "mass" else "s", ms=3,
                label=f"{arm} {klass}")
    ax.axhline(0.0, color="#999", lw=0.8)
    ax.set_xlabel("spatial frequency (fraction of the image's Nyquist)")
    ax.set_ylabel("log10 power: lesion / surround")
    ax.set_title("radially averaged power spectrum, at each image's own spacing")
    ax.legend(fontsize=7)
    return fig


def realism_html(result: Any) -> str:
    """The realism section: the C2ST and the lesion statistics."""
    parts = ["<h3>Realism: can a classifier tell real lesions from synthetic ones?</h3>"]
    realism = result.realism
    if realism is not None:
        if realism.get("c2st_auc") is None:
            parts.append(f'<p class="note">{html.escape(str(realism.get("note", "C2ST not run")))}</p>')
        else:
            roi = realism.get("roi") or {}
            parts.append(
                f"<p>Classifier two-sample test: a small CNN learns to tell real from synthetic lesion ROIs "
                f"({fmt(roi.get('crop_mm'))} mm at {fmt(roi.get('mm_per_px'))} mm/px), with {realism.get('folds')} "
                f"cross-validation folds grouped by patient. Held-out AUC 0.5 means the synthetic lesions cannot be "
                f"told apart; 1.0 that every one can. CI: {html.escape(str(realism.get('ci_method')))}.</p>"
            )
            parts.append(realism_table(realism))
            if result.realism_examples is not None:
                parts.append(img_tag(roi_sheet(result.realism_examples), "most obviously synthetic ROIs"))
    stats = result.lesion_stats
    if stats is not None:
        parts.append("<h3>Lesion statistics, real against synthetic (full-resolution images)</h3>")
        if "note" in stats and len(stats) == 1:
            parts.append(f'<p class="note">{html.escape(stats["note"])}</p>')
        else:
            parts.append(lesion_stats_table(stats))
            settings = stats.get("settings") or {}
            parts.append(f'<p class="note">ring {settings.get("ring_mm")} mm around each lesion; high-frequency '
                         f'band {settings.get("hf_band_of_nyquist")} x Nyquist; specks: '
                         f'{html.escape(str(settings.get("speck_detector")))}. Mann-Whitney and KS treat lesions as '
                         f'independent; the CI resamples patients.</p>')
            fig = spectrum_figure(stats.get("radial_spectra") or {})
            if fig is not None:
                parts.append(img_tag(fig, "radial power spectra"))
    return "\n".join(parts) if len(parts) > 1 else ""


def utility_html(utility: Any, full_page: bool = False) -> str:
    """The utility section: :func:`medsynth.metrics.utility.report.utility_html`."""
    from medsynth.metrics.utility.report import utility_html as render

    return render(utility, full_page=full_page)


def evaluation_html(result: Any, utility: Any = None, full_page: bool = True) -> str:
    """The report of an :class:`~medsynth.metrics.evaluate.EvaluationResult` (and a utility run)."""
    meta = result.meta
    parts = [
        "<h2>medsynth evaluate</h2>",
        f"<p>real: <code>{html.escape(str(meta.get('real')))}</code> &nbsp; synthetic: "
        f"<code>{html.escape(str(meta.get('synthetic')))}</code> "
        f"&nbsp; features: <b>{html.escape(meta['feature_extractor']['name'])}</b></p>",
        metrics_table(result),
    ]
    if meta.get("warning"):
        parts.append(f'<p class="note">{html.escape(meta["warning"])}</p>')
    if result.real_features is not None and result.synthetic_features is not None:
        parts.append(img_tag(pca_figure(result.real_features, result.synthetic_features), "PCA of features"))
    realism = realism_html(result)
    if realism:
        parts.append(realism)
    if full_page and result.real_samples is not None:
        # Sample sheets only in the file report; the notebook view stays compact.
        parts.append("<h3>Samples</h3>")
        parts.append(img_tag(sample_sheet(result.real_samples, "real"), "real samples"))
        parts.append(img_tag(sample_sheet(result.synthetic_samples, "synthetic"), "synthetic samples"))
        if getattr(result, "roi_groups", None):
            parts.append(img_tag(roi_group_sheet(result.roi_groups), "lesion ROIs per class and margin"))
    if utility is not None:
        parts.append(utility_html(utility))
    body = "\n".join(parts)
    return page("medsynth evaluate", body, REPORT_CSS) if full_page else f"<div>{body}</div>"
