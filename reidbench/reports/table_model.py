"""The table model every report format renders: :class:`Column` and :class:`Table`, which keep
their numbers as floats and export them to markdown, LaTeX (booktabs) and CSV."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any

from reidbench.reports import cells as C
from reidbench.reports.markup import md_escape, slug

Value = float | None
Cell = str | float | None | tuple[Value, ...]

METRIC_NAMES = {"rank1": "R1", "rank5": "R5", "rank10": "R10", "mAP": "mAP", "mINP": "mINP"}
METRIC_LONG = {"rank1": "Rank-1", "rank5": "Rank-5", "rank10": "Rank-10", "mAP": "mAP", "mINP": "mINP"}
AP_TEXT = {
    "market": "AP: 'market' variant (mean precision at each hit; queries without a match left out)",
    "official": "AP: 'official' Market-1501 variant (trapezoidal; queries without a match count as 0)",
}
DASH = "–"


@dataclass(frozen=True)
class Column:
    """One column. A value column holds a float, or a tuple of floats when ``parts`` names them."""

    name: str
    parts: tuple[str, ...] = ()
    label: bool = False
    template: str = ""  # how formatted parts are joined; default "a/b/c"
    spec: str | tuple[str, ...] = ".1f"  # one format spec, or one per part

    def _spec(self, i: int) -> str:
        return self.spec if isinstance(self.spec, str) else self.spec[i]

    def format(self, v: Cell) -> str:
        if self.label:
            return "" if v is None else str(v)
        if v is None:
            return DASH
        if isinstance(v, tuple):
            txt = [DASH if x is None else format(x, self._spec(i)) for i, x in enumerate(v)]
            if all(x is None for x in v):
                return DASH
            return self.template.format(*txt) if self.template else "/".join(txt)
        if isinstance(v, str):
            return v
        return format(v, self._spec(0))

    def csv_names(self) -> list[str]:
        return [f"{self.name} {p}" for p in self.parts] if self.parts else [self.name]


@dataclass(frozen=True)
class Table:
    """A table with its numbers, what it shows (``caption``) and how it was measured (``notes``).

    ``span``: a header over the value columns that share the table's cell layout (``Rank-1/mAP
    (%)``), as in the JAD tables; see :attr:`span_columns`.
    ``key``: a short file-name-safe id (``pivot``, ``drop``, ``defense``, ``sweep-eps``, ...).
    """

    key: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]
    caption: str = ""
    notes: tuple[str, ...] = ()
    span: str = ""
    scope: C.Scope | None = None

    @property
    def n_label(self) -> int:
        n = 0
        for c in self.columns:
            if not c.label:
                break
            n += 1
        return n

    @property
    def span_columns(self) -> list[int]:
        """The columns under ``span``: a contiguous run of the value columns with the most common parts."""
        if not self.span:
            return []
        vals = [(i, c.parts) for i, c in enumerate(self.columns) if not c.label and c.parts]
        if not vals:
            return []
        parts = [p for _, p in vals]
        common = max(parts, key=parts.count)
        idx = [i for i, p in vals if p == common]
        return list(range(idx[0], idx[-1] + 1))

    def formatted(self) -> list[list[str]]:
        """The body as people read it: one decimal, en dash for missing values."""
        return [[c.format(v) for c, v in zip(self.columns, row, strict=True)] for row in self.rows]

    def cell(self, row: str, column: str) -> Cell:
        """The value at the row whose first cell is ``row`` and the column named ``column``."""
        j = [c.name for c in self.columns].index(column)
        for r in self.rows:
            if r[0] == row:
                return r[j]
        raise KeyError(f"no row {row!r} in table {self.key!r}")

    # -- exports ---------------------------------------------------------------------------------

    def to_markdown(self) -> str:
        head = [md_escape(c.name) for c in self.columns]
        align = [":--" if c.label else "--:" for c in self.columns]
        lines = [f"**{md_escape(self.title)}**", ""]
        if self.caption:
            lines += [md_escape(self.caption), ""]
        if self.span:
            lines += [f"Cells: {md_escape(self.span)}", ""]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("| " + " | ".join(align) + " |")
        for row in self.formatted():
            lines.append("| " + " | ".join(md_escape(x) for x in row) + " |")
        if self.notes:
            lines += ["", *(f"- {md_escape(n)}" for n in self.notes)]
        return "\n".join(lines) + "\n"

    def to_latex(self, label: str | None = None) -> str:
        """A ``table`` environment with booktabs rules (needs ``\\usepackage{booktabs}``)."""
        n = len(self.columns)
        spec = "".join("l" if c.label else "r" for c in self.columns)
        cap = _tex(self.title + (". " + self.caption if self.caption else ""))
        if self.notes:
            cap += " " + " ".join(_tex(x if x.endswith(".") else x + ".") for x in self.notes)
        out = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{cap}}}",
               rf"\label{{{label or 'tab:reidbench-' + slug(self.key)}}}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]  # fmt: skip
        cols = self.span_columns
        if cols:
            a, b = cols[0], cols[-1]
            cells = [""] * a + [rf"\multicolumn{{{b - a + 1}}}{{c}}{{{_tex(self.span)}}}"] + [""] * (n - b - 1)
            out.append(" & ".join(cells) + r" \\")
            out.append(rf"\cmidrule(lr){{{a + 1}-{b + 1}}}")
        out.append(" & ".join(_tex(c.name) for c in self.columns) + r" \\")
        out.append(r"\midrule")
        for row in self.formatted():
            out.append(" & ".join(_tex_num(x) for x in row) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(out) + "\n"

    def to_csv(self) -> str:
        """Machine-readable: one column per value (multi-value cells split), full precision."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([name for c in self.columns for name in c.csv_names()])
        for row in self.rows:
            out: list[str] = []
            for c, v in zip(self.columns, row, strict=True):
                if c.label:
                    out.append("" if v is None else str(v))
                elif c.parts:
                    vals = v if isinstance(v, tuple) else (None,) * len(c.parts)
                    out += [_csv_num(x) for x in vals]
                else:
                    out.append(_csv_num(v))
            w.writerow(out)
        return buf.getvalue()


def _csv_num(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(round(v, 6))
    return str(v)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
        "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", DASH: "--", "Δ": r"$\Delta$", "×": r"$\times$"}  # fmt: skip


def _tex(s: str) -> str:
    """LaTeX-escaped text; code marks (```area```) become ``\\texttt{area}``."""
    parts = ["".join(_TEX.get(ch, ch) for ch in p) for p in re.split(r"`+([^`]+?)`+", s)]
    return "".join("\\texttt{" + p + "}" if i % 2 else p for i, p in enumerate(parts))


def _tex_num(s: str) -> str:
    """Escape a cell, writing a leading minus of a number as a math minus."""
    return re.sub(r"(?<![\w.])-(?=\d)", r"$-$", _tex(s))
