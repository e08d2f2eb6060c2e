"""A tiny builder of self-contained HTML pages: inline CSS, PNGs embedded as ``data:`` URIs, no script,
nothing fetched from a network (the page opens the same offline, from an e-mail or an archive)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1100px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px;
       border-bottom: 1px solid #ddd; padding-bottom: 3px; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 9px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0; }
figure { margin: 10px 0; } figcaption { color: #555; font-size: 12.5px; }
code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12.5px; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; }
.note { color: #666; font-size: 12.5px; }
.grid { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def img_png(data: bytes, alt: str, caption: str | None = None) -> str:
    """A PNG embedded as a data URI, in a figure with an optional caption."""
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{esc(alt)}">{cap}</figure>'


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, numeric: Sequence[bool] | None = None) -> str:
    """An HTML table; cells are escaped; numeric columns are right-aligned."""
    if numeric is None:
        numeric = [bool(rows) and isinstance(rows[0][i], (int, float)) for i in range(len(headers))]
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{esc(c)}</td>' if n else f"<td>{esc(c)}</td>"
                        for c, n in zip(row, numeric, strict=True))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(title: str, sections: Sequence[str], *, subtitle: str = "") -> str:
    sub = f'<p class="sub">{esc(subtitle)}</p>' if subtitle else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>{sub}\n"
            + "\n".join(sections) + "\n</body></html>\n")
