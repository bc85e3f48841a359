"""Building blocks of medsynth's one-file HTML reports (evaluation and audit): figures embedded as
base64 PNG, values formatted for tables, and the page around them. Figures are
``matplotlib.figure.Figure`` objects, not pyplot's, so nothing needs closing and the caller's
backend (Jupyter's inline one, say) is left alone."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

#: The style of the evaluation and utility reports (tables ``ms``, notes, figures).
REPORT_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table.ms{border-collapse:collapse;margin:0.5em 0}
table.ms td,table.ms th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:0.92em}
table.ms th{background:#f3f3f3}
.note{color:#666;font-size:0.9em}
img.fig{max-width:100%;border:1px solid #eee}
"""


def figure(*args: Any, **kwargs: Any) -> Any:
    """A ``matplotlib.figure.Figure`` (imported on first use: matplotlib stays off the import path)."""
    from matplotlib.figure import Figure

    return Figure(*args, **kwargs)


def png_base64(fig: Any, dpi: int = 90) -> str:
    """The figure as a base64-encoded PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def img_tag(fig: Any, alt: str = "figure", dpi: int = 90, css_class: str = "fig") -> str:
    """An ``<img>`` holding the figure inline, so the report is a single file."""
    return f'<img class="{css_class}" alt="{html.escape(alt)}" src="data:image/png;base64,{png_base64(fig, dpi)}"/>'


def fmt(v: Any) -> str:
    """A table cell: an em dash for None, 4 significant digits for floats, escaped text otherwise."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def page(title: str, body: str, css: str) -> str:
    """A complete HTML document."""
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{css}</style></head><body>{body}</body></html>")
