"""The self-contained HTML report of ``medsynth evaluate`` (one file, images inlined as base64 PNG).

Sections: the metrics table (with sample counts and the feature extractor), a PCA of real vs
synthetic features, sample sheets of both sets, and -- when a utility run is given -- its section
(:mod:`medsynth.metrics.utility.report`). Also the ``_repr_html_`` of results in Jupyter.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from medsynth.html import fmt, img_tag, page

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table.ms{border-collapse:collapse;margin:0.5em 0}
table.ms td,table.ms th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:0.92em}
table.ms th{background:#f3f3f3}
.note{color:#666;font-size:0.9em}
img.fig{max-width:100%;border:1px solid #eee}
"""


def _figure(*args: Any, **kwargs: Any) -> Any:
    from matplotlib.figure import Figure

    return Figure(*args, **kwargs)


def pca_figure(real: np.ndarray, synthetic: np.ndarray) -> Any:
    """Scatter of the first two principal components of the pooled, standardised features."""
    x = np.concatenate([real, synthetic]).astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    pcs = x @ vt[:2].T
    explained = (s[:2] ** 2) / max((s**2).sum(), 1e-12)
    fig = _figure(figsize=(5, 4.2))
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
    fig = _figure(figsize=(cols * 1.2, rows * 1.25 + 0.3))
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for ax in axes:
        ax.axis("off")
    for ax, im in zip(axes, images):
        ax.imshow(im, cmap="gray", vmin=0.0, vmax=1.0)
    fig.suptitle(title)
    return fig


def metrics_table(result: Any) -> str:
    """The metrics as an HTML table (value, CI/std, extractor, n)."""
    rows = []
    for name, m in result.metrics.items():
        extra = ""
        if "std" in m:
            extra = f"± {m['std']:.3g} (std over {m.get('subsets')} subsets of {m.get('subset_size')})"
        elif "ci95" in m:
            extra = f"95% CI [{m['ci95'][0]:.3g}, {m['ci95'][1]:.3g}]"
            if "real_value" in m:
                extra += f"; real set: {m['real_value']:.3g}"
        if m.get("note") and m.get("value") is None:
            extra = m["note"]
        rows.append(
            f"<tr><td><b>{html.escape(name)}</b></td><td>{fmt(m.get('value'))}</td><td>{html.escape(extra)}</td>"
            f"<td>{fmt(m.get('feature_extractor'))}</td><td>{fmt(m.get('n_real'))}</td><td>{fmt(m.get('n_synthetic'))}</td></tr>"
        )
    head = ("<tr><th>metric</th><th>value</th><th>uncertainty / note</th>"
            "<th>features</th><th>n real</th><th>n synthetic</th></tr>")
    return f'<table class="ms">{head}{"".join(rows)}</table>'


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
    if full_page and result.real_samples is not None:
        # Sample sheets only in the file report; the notebook view stays compact.
        parts.append("<h3>Samples</h3>")
        parts.append(img_tag(sample_sheet(result.real_samples, "real"), "real samples"))
        parts.append(img_tag(sample_sheet(result.synthetic_samples, "synthetic"), "synthetic samples"))
    if utility is not None:
        parts.append(utility_html(utility))
    body = "\n".join(parts)
    return page("medsynth evaluate", body, _STYLE) if full_page else f"<div>{body}</div>"
