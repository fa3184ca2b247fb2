"""Self-contained HTML reports: matplotlib figures embedded as base64 PNG, tables from pandas.

Reports are opened from e-mail attachments and CI artefacts, so they must not reference files
next to them; everything a reader sees is inside the one ``.html`` file.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hplan.io import write_text

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.pass { color: #11772d; font-weight: 600; } .fail { color: #b00020; font-weight: 600; }
.note { color: #555; font-size: 0.9em; } img { max-width: 100%; }
"""


@dataclass(frozen=True)
class Section:
    """One titled block of a report: raw HTML already escaped by the helpers below."""

    title: str
    body: str


def figure_html(fig: Any, alt: str = "", dpi: int = 110) -> str:
    """Render a matplotlib figure to an inline ``<img>`` and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def readable(value: Any) -> str:
    """A number as a person reads it: 3,850 not 3.85e+03; three significant digits below 1,000;
    scientific notation only for magnitudes under 0.001. NumPy scalars (what a DataFrame column
    hands a formatter) read like Python's: an int64 3850 is 3,850, not "3850"."""
    if isinstance(value, np.generic) and not isinstance(value, np.bool_):
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and value != value:
        return "–"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 0.001 or magnitude == 0:
        return f"{value:.3g}" if magnitude < 100 else f"{value:.0f}"
    return f"{value:.2e}"


def table_html(frame: pd.DataFrame) -> str:
    """A pandas table as HTML with numbers formatted for reading, not for machines (:func:`readable`)."""
    return frame.to_html(index=False, escape=True, formatters={c: readable for c in frame.columns}, border=0)


def paragraph(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{html.escape(text)}</p>"


def write_report(path: str | Path, title: str, sections: list[Section], subtitle: str = "") -> Path:
    """Write the whole page atomically."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    if subtitle:
        parts.append(paragraph(subtitle, "note"))
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>{section.body}")
    parts.append("</body></html>")
    write_text(path, "\n".join(parts))
    return Path(path)
