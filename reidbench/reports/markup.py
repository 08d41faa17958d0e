"""The report as markdown (with PNG figures, and every table also as CSV and LaTeX, in a folder
next to it) or as one self-contained HTML file (figures inlined).

Also the one home of :func:`md_escape` and :func:`slug`, which the tables' exports and
``reidbench check``'s markdown summary share. This module imports the report machinery (matplotlib,
reportlab) only inside the writers, so those two helpers are cheap to import.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import TYPE_CHECKING

from reidbench.eval.results import atomic_write_text

if TYPE_CHECKING:
    from reidbench.reports.document import Report
    from reidbench.reports.tables import Table

_NEWLINES = re.compile(r"\r\n|\r|\n")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def md_escape(text: str) -> str:
    """``text`` safe inside a markdown table cell or list item: ``|`` escaped, line breaks as spaces."""
    return _NEWLINES.sub(" ", text.replace("|", "\\|"))


def slug(text: str) -> str:
    """A file-name- and LaTeX-label-safe id: lower case, each run of other than ``a-z0-9`` one ``-``."""
    return _NOT_SLUG.sub("-", text.lower()).strip("-")


def files_dir(out: Path) -> Path:
    """Where the markdown report keeps its figures and table exports: ``report_files/``."""
    return out.with_name(out.stem + "_files")


def _md_kv(rows: list[tuple[str, str]]) -> str:
    return "\n".join(f"- **{k}**: {v}" for k, v in rows) + "\n"


def write_markdown(report: Report, out: str | Path, *, dpi: int = 150) -> Path:
    from reidbench.reports.pdf import render_figures

    out = Path(out)
    files = files_dir(out)
    files.mkdir(parents=True, exist_ok=True)
    md = [f"# {report.title}", "", report.subtitle, "", _md_kv(report.facts)]
    if report.command:
        md += ["**Command**", "", "```", report.command, "```", ""]
    md += [f"> {n}\n" for n in report.notes]
    for t in report.info_tables:
        if t.rows:
            md += [t.to_markdown()]
    md += ["## Threat models", ""] + [f"- {x}" for x in report.threat_lines] + [""]
    md += [t.to_markdown() for t in report.threat_tables]
    if report.deviations:
        md += ["**Where the models differ from their papers**", ""] + [f"- {m}: {d}" for m, d in report.deviations] + [""]
    if report.tables:
        md += ["## Results", ""]
        for i, t in enumerate(report.tables, 1):
            stem = f"table{i}-{t.key}"
            (files / f"{stem}.csv").write_text(t.to_csv())
            (files / f"{stem}.tex").write_text(t.to_latex())
            md += [_numbered(t, i).to_markdown(), f"[CSV]({files.name}/{stem}.csv) · [LaTeX]({files.name}/{stem}.tex)", ""]
    figs = render_figures(report, dpi)
    if figs:
        md += ["## Figures", ""]
    for n, (_, item, png) in enumerate(figs, 1):
        name = f"figure{n}-{slug(item.key)}.png"
        (files / name).write_bytes(png)
        md += [f"### Figure {n}. {item.title}", "", f"![Figure {n}]({files.name}/{name})", "", item.caption, ""]
    md += ["## Sanity checks", ""]
    if report.warnings:
        md += ["| cell | warning |", "| :-- | :-- |"] + [f"| {md_escape(c)} | {md_escape(w)} |" for c, w in report.warnings]
    else:
        md.append("No sanity-check warnings: no cell raised one.")
    atomic_write_text(out, "\n".join(md) + "\n")
    return out


def _numbered(t: Table, i: int) -> Table:
    from dataclasses import replace

    return replace(t, title=f"Table {i}. {t.title}")


_CSS = """body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#111;font-size:14px}
table{border-collapse:collapse;margin:.4em 0 .2em;font-size:12px}th,td{padding:2px 7px}
thead tr:first-child th{border-top:2px solid #000}thead tr:last-child th{border-bottom:1px solid #000}
tbody tr:last-child td{border-bottom:2px solid #000}tbody tr:nth-child(even){background:#f2f2f2}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}caption{caption-side:top;text-align:left;font-weight:bold}
.cap{font-size:12px;color:#333}.note{font-size:11px;font-style:italic;color:#444;margin:0}
pre{background:#f4f4f4;padding:.5em;white-space:pre-wrap}figure{margin:2em 0;page-break-before:always}img{max-width:100%}"""


def _html_table(t: Table, title: str) -> str:
    e = html.escape
    head = ""
    if cols := t.span_columns:
        a, b = cols[0], cols[-1]
        head += ("<tr>" + "<th></th>" * a + f'<th colspan="{b - a + 1}" style="text-align:center">{e(t.span)}</th>'
                 + "<th></th>" * (len(t.columns) - b - 1) + "</tr>")  # fmt: skip
    head += "<tr>" + "".join(f'<th class="{"" if c.label else "n"}">{e(c.name)}</th>' for c in t.columns) + "</tr>"
    body = "".join("<tr>" + "".join(f'<td class="{"" if c.label else "n"}">{e(x)}</td>' for c, x in zip(t.columns, r, strict=True)) + "</tr>"
                   for r in t.formatted())  # fmt: skip
    notes = "".join(f'<p class="note">{e(n)}</p>' for n in t.notes)
    cap = f'<p class="cap">{e(t.caption)}</p>' if t.caption else ""
    return f"<h3>{e(title)}</h3>{cap}<table><thead>{head}</thead><tbody>{body}</tbody></table>{notes}"


def write_html(report: Report, out: str | Path, *, dpi: int = 150) -> Path:
    from reidbench.reports.pdf import render_figures

    out = Path(out)
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(report.title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{e(report.title)}</h1><p>{e(report.subtitle)}</p><ul>"
             + "".join(f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in report.facts) + "</ul>"]  # fmt: skip
    if report.command:
        parts.append(f"<h3>Command</h3><pre>{e(report.command)}</pre>")
    parts += [f'<p class="note">{e(n)}</p>' for n in report.notes]
    parts += [_html_table(t, t.title) for t in report.info_tables if t.rows]
    parts.append("<h2>Threat models</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in report.threat_lines) + "</ul>")
    parts += [_html_table(t, t.title) for t in report.threat_tables]
    if report.deviations:
        parts.append("<h3>Where the models differ from their papers</h3><ul>"
                     + "".join(f"<li><b>{e(m)}</b>: {e(d)}</li>" for m, d in report.deviations) + "</ul>")  # fmt: skip
    if report.tables:
        parts.append("<h2>Results</h2>")
        parts += [_html_table(t, f"Table {i}. {t.title}") for i, t in enumerate(report.tables, 1)]
    for n, (_, item, png) in enumerate(render_figures(report, dpi), 1):
        src = "data:image/png;base64," + base64.b64encode(png).decode()
        parts.append(f"<figure><h2>Figure {n}. {e(item.title)}</h2><img src='{src}' alt='Figure {n}'>"
                     f"<figcaption class='cap'>{e(item.caption)}</figcaption></figure>")  # fmt: skip
    parts.append("<h2>Sanity checks</h2>")
    if report.warnings:
        parts.append("<table><thead><tr><th>cell</th><th>warning</th></tr></thead><tbody>"
                     + "".join(f"<tr><td>{e(c)}</td><td>{e(w)}</td></tr>" for c, w in report.warnings) + "</tbody></table>")  # fmt: skip
    else:
        parts.append("<p>No sanity-check warnings: no cell raised one.</p>")
    parts.append("</body></html>")
    atomic_write_text(out, "\n".join(parts))
    return out
