"""The PDF report: reportlab (platypus) for text and tables, so every number is real text that a
reader can search and copy; the figures are embedded as high-dpi PNGs (JPEG for
photographic ones, see ``compact_figure``).

Layout (A4 portrait): a title page (run, dataset and fingerprint, command, environment, models
with checkpoint sha256, defenses), the threat models, the results tables, then the figures, each
kept whole with its caption (a new page only when the next figure does not fit on the current
one), and last the sanity-check warnings. Figures without data are skipped. The
PDF has an outline (bookmarks) with one entry per section, table and figure.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import matplotlib
from PIL import Image as PILImage
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_LEFT, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import cm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    BaseDocTemplate,
    CondPageBreak,
    Frame,
    Image,
    KeepTogether,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    TableStyle,
)
from reportlab.platypus import Table as RLTable

from reidbench.reports import style as S
from reidbench.reports.document import Report
from reidbench.reports.tables import Table
from reidbench.reports.threats import code_spans

log = logging.getLogger(__name__)

FONT, BOLD, ITALIC, MONO = "RB-Sans", "RB-Sans-Bold", "RB-Sans-Oblique", "RB-Mono"
MARGIN_X, MARGIN_TOP, MARGIN_BOTTOM = 2.0 * cm, 1.7 * cm, 1.9 * cm
FRAME_W = A4[0] - 2 * MARGIN_X
FRAME_H = A4[1] - MARGIN_TOP - MARGIN_BOTTOM
TABLE_FS = 7.5
RULE = colors.black
STRIPE = colors.HexColor("#F2F2F2")


def _register_fonts() -> None:
    """DejaVu, as shipped with matplotlib: the figures' font, with the Unicode the text needs."""
    if FONT in pdfmetrics.getRegisteredFontNames():
        return
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    for name, file in ((FONT, "DejaVuSans.ttf"), (BOLD, "DejaVuSans-Bold.ttf"), (ITALIC, "DejaVuSans-Oblique.ttf"),
                       (MONO, "DejaVuSansMono.ttf")):  # fmt: skip
        pdfmetrics.registerFont(TTFont(name, str(ttf / file)))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=BOLD, italic=ITALIC, boldItalic=BOLD)


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("body", fontName=FONT, fontSize=8.5, leading=11, spaceAfter=3)
    return {
        "title": ParagraphStyle("title", parent=base, fontName=BOLD, fontSize=20, leading=24, spaceAfter=4),
        "subtitle": ParagraphStyle("subtitle", parent=base, fontSize=10.5, leading=13, textColor=colors.HexColor("#444444"), spaceAfter=10),
        "h1": ParagraphStyle("h1", parent=base, fontName=BOLD, fontSize=13, leading=16, spaceBefore=2, spaceAfter=6),
        "h2": ParagraphStyle("h2", parent=base, fontName=BOLD, fontSize=9.5, leading=12, spaceBefore=8, spaceAfter=2),
        "body": base,
        "caption": ParagraphStyle("caption", parent=base, fontSize=8, leading=10.2, spaceBefore=4),
        "note": ParagraphStyle("note", parent=base, fontName=ITALIC, fontSize=7, leading=9, spaceAfter=1, textColor=colors.HexColor("#333333")),
        "mono": ParagraphStyle("mono", parent=base, fontName=MONO, fontSize=7.5, leading=9.5, leftIndent=6, backColor=colors.HexColor("#F4F4F4"),
                               borderPadding=(3, 3, 3, 3), spaceBefore=2, spaceAfter=8),  # fmt: skip
        "bullet": ParagraphStyle("bullet", parent=base, leftIndent=10, bulletIndent=2, spaceAfter=1),
        "small_bullet": ParagraphStyle("small_bullet", parent=base, fontSize=7.5, leading=9.5, leftIndent=10, bulletIndent=2, spaceAfter=1),
        "cell": ParagraphStyle("cell", fontName=FONT, fontSize=TABLE_FS, leading=TABLE_FS + 1.6, alignment=TA_LEFT),
        "cellmono": ParagraphStyle("cellmono", fontName=MONO, fontSize=TABLE_FS - 0.8, leading=TABLE_FS + 1.2, alignment=TA_LEFT),
        "head": ParagraphStyle("head", fontName=BOLD, fontSize=TABLE_FS, leading=TABLE_FS + 1.6, alignment=TA_LEFT),
        "headr": ParagraphStyle("headr", fontName=BOLD, fontSize=TABLE_FS, leading=TABLE_FS + 1.6, alignment=TA_RIGHT),
        "headc": ParagraphStyle("headc", fontName=BOLD, fontSize=TABLE_FS, leading=TABLE_FS + 1.6, alignment=TA_CENTER),
    }


def _markup(text: str) -> str:
    """Escaped text for a Paragraph; code marks (```area```) in the monospace font, not as backticks."""
    return code_spans(escape(text), f'<font name="{MONO}">', "</font>")


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(_markup(text), style)


def _cellp(text: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(_markup(text).replace("\n", "<br/>"), style)


_MONO_COLUMNS = {"fingerprint", "checkpoint / sha256", "command"}


class _Doc(BaseDocTemplate):
    """Adds PDF bookmarks for headings (``h1``) and table/figure titles (``h2``)."""

    def __init__(self, path: str, footer: str, **kw: Any) -> None:
        super().__init__(path, pagesize=A4, leftMargin=MARGIN_X, rightMargin=MARGIN_X, topMargin=MARGIN_TOP,
                         bottomMargin=MARGIN_BOTTOM, **kw)  # fmt: skip
        self.footer = footer
        self._n = 0
        frame = Frame(MARGIN_X, MARGIN_BOTTOM, FRAME_W, FRAME_H, id="body", leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)
        self.addPageTemplates([PageTemplate("page", [frame], onPage=self._decorate)])

    def _decorate(self, canv: Any, doc: Any) -> None:
        canv.saveState()
        canv.setFont(FONT, 7)
        canv.setFillColor(colors.HexColor("#555555"))
        canv.drawString(MARGIN_X, MARGIN_BOTTOM - 0.9 * cm, self.footer)
        canv.drawRightString(A4[0] - MARGIN_X, MARGIN_BOTTOM - 0.9 * cm, f"page {doc.page}")
        canv.setStrokeColor(colors.HexColor("#999999"))
        canv.setLineWidth(0.4)
        canv.line(MARGIN_X, MARGIN_BOTTOM - 0.6 * cm, A4[0] - MARGIN_X, MARGIN_BOTTOM - 0.6 * cm)
        canv.restoreState()

    def afterFlowable(self, flowable: Any) -> None:
        if isinstance(flowable, Paragraph) and flowable.style.name in ("title", "h1", "h2"):
            self._n += 1
            key = f"b{self._n}"
            self.canv.bookmarkPage(key)
            level = 1 if flowable.style.name == "h2" else 0
            self.canv.addOutlineEntry(flowable.getPlainText(), key, level=level, closed=level > 0)


# -------------------------------------------------------------------------------------------------
# Tables
# -------------------------------------------------------------------------------------------------


def _widths(t: Table, body: Sequence[Sequence[str]]) -> tuple[list[float], list[float]]:
    """Natural and minimal column widths (points) from the text; label columns may wrap."""
    pad = 7.0
    nat, mins = [], []
    for j, c in enumerate(t.columns):
        texts = [r[j] for r in body]
        font = FONT
        bw = max((stringWidth(x, font, TABLE_FS) for x in texts), default=0.0)
        hw = stringWidth(c.name, BOLD, TABLE_FS)
        hword = max((stringWidth(w, BOLD, TABLE_FS) for w in c.name.split()), default=0.0)
        if c.label and j == 0 and t.n_label < len(t.columns):
            # row names of a numeric table: keep them on one line where possible
            nat.append(min(max(bw, hw), 150.0) + pad)
            mins.append(nat[-1])
        elif c.label:
            fs = TABLE_FS - 0.8 if c.name in _MONO_COLUMNS else TABLE_FS
            font = MONO if c.name in _MONO_COLUMNS else FONT
            lines = [ln for x in texts for ln in x.split("\n")]
            bw = max((stringWidth(ln, font, fs) for ln in lines), default=0.0)
            word = max((stringWidth(w, font, fs) for ln in lines for w in ln.split()), default=0.0)
            nat.append(min(max(bw, hw), 280.0) + pad)
            mins.append(min(max(word, hword, 30.0), 280.0) + pad)
        else:
            nat.append(max(bw, min(hw, 90.0)) + pad)
            mins.append(max(bw, min(hword, 110.0)) + pad)
    return nat, mins


def _chunks(t: Table, body: Sequence[Sequence[str]], width: float) -> list[tuple[list[int], list[float]]]:
    """Split the value columns into groups that fit ``width`` (label columns repeated); widths for each.

    A column gets at least its longest word (so words are not broken), then a share of the
    remaining room in proportion to how much it would need to hold its text on one line.
    """
    nat, mins = _widths(t, body)
    nl = t.n_label
    groups: list[list[int]] = []
    cur: list[int] = []
    base = sum(mins[:nl])
    for j in range(nl, len(t.columns)):
        if cur and base + sum(mins[i] for i in cur) + mins[j] > width:
            groups.append(cur)
            cur = []
        cur.append(j)
    if cur or not groups:
        groups.append(cur)
    if len(groups) > 1:  # same number of pieces, but balanced: no lone column on the last one
        cols = [j for g in groups for j in g]
        size = -(-len(cols) // len(groups))
        even = [cols[i : i + size] for i in range(0, len(cols), size)]
        if all(base + sum(mins[i] for i in g) <= width for g in even):
            groups = even
    out = []
    for g in groups:
        idx = list(range(nl)) + g
        n, m = [nat[i] for i in idx], [mins[i] for i in idx]
        if sum(n) <= width:
            w = n
        else:
            extra = max(0.0, width - sum(m))
            slack = [a - b for a, b in zip(n, m, strict=True)]
            tot = sum(slack) or 1.0
            w = [b + extra * s / tot for b, s in zip(m, slack, strict=True)]
        out.append((idx, w))
    return out


def _table_flowables(t: Table, title: str, st: dict[str, ParagraphStyle], width: float = FRAME_W) -> list[Any]:
    body = t.formatted()
    out: list[Any] = []
    chunks = _chunks(t, body, width)
    for ci, (idx, widths) in enumerate(chunks):
        cols = [t.columns[i] for i in idx]
        nl = sum(1 for c in cols if c.label)
        rows: list[list[Any]] = []
        under = [k for k, i in enumerate(idx) if i in set(t.span_columns)]
        spans = bool(under)
        if spans:
            rows.append([_p(t.span, st["headc"]) if k == under[0] else "" for k in range(len(cols))])
        rows.append([_p(c.name, st["head"] if c.label else st["headr"]) for c in cols])
        for r in body:
            rows.append([(_cellp(r[i], st["cellmono"] if t.columns[i].name in _MONO_COLUMNS else st["cell"]) if t.columns[i].label else r[i])
                         for i in idx])  # fmt: skip
        hdr = 2 if spans else 1
        style: list[tuple[Any, ...]] = [
            ("FONT", (0, 0), (-1, -1), FONT, TABLE_FS),
            ("LEADING", (0, 0), (-1, -1), TABLE_FS + 1.6),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ("ALIGN", (nl, hdr), (-1, -1), "RIGHT"),
            ("TOPPADDING", (0, 0), (-1, -1), 1.8),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.8),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ("LINEABOVE", (0, 0), (-1, 0), 0.9, RULE),
            ("LINEBELOW", (0, hdr - 1), (-1, hdr - 1), 0.5, RULE),
            ("LINEBELOW", (0, -1), (-1, -1), 0.9, RULE),
        ]
        if len(rows) > hdr + 1:
            style.append(("ROWBACKGROUNDS", (0, hdr), (-1, -1), [colors.white, STRIPE]))
        if spans:
            style += [("SPAN", (under[0], 0), (under[-1], 0)), ("LINEBELOW", (under[0], 0), (under[-1], 0), 0.4, RULE)]
        tbl = RLTable(rows, colWidths=widths, repeatRows=hdr, hAlign="LEFT", style=TableStyle(style))
        text = title + (f" (continued, {ci + 1}/{len(chunks)})" if ci else "")
        head: list[Any] = [_p(text, st["h2"] if ci == 0 else st["caption"])]
        if ci == 0 and t.caption:
            head.append(_p(t.caption, st["caption"]))
        head.append(Spacer(1, 3))
        tail: list[Any] = [Spacer(1, 2)]
        if ci == len(chunks) - 1:
            tail += [_p(n, st["note"]) for n in t.notes]
        if tbl.wrap(sum(widths), FRAME_H)[1] < 0.55 * FRAME_H:
            out.append(KeepTogether([*head, tbl, *tail]))
        else:  # a long table flows over pages (header rows repeat) rather than leaving one half empty;
            # its title starts a new page only when fewer than a few rows would fit under it
            room = sum(f.wrap(FRAME_W, FRAME_H)[1] for f in head) + 60
            out += [CondPageBreak(room), *head, tbl, *tail]
        out.append(Spacer(1, 8))
    return out


# -------------------------------------------------------------------------------------------------
# Figures
# -------------------------------------------------------------------------------------------------


def _figure_flowables(png: bytes, number: int, title: str, caption: str, st: dict[str, ParagraphStyle], dpi: int) -> list[Any]:
    head = _p(f"Figure {number}. {title}", st["h1"])
    cap = _p(caption, st["caption"])
    _, hh = head.wrap(FRAME_W, FRAME_H)
    _, ch = cap.wrap(FRAME_W, FRAME_H)
    with PILImage.open(io.BytesIO(png)) as im:
        wpx, hpx = im.size
    w, h = wpx / dpi * 72.0, hpx / dpi * 72.0
    room = FRAME_H - hh - ch - 50  # the spacer before a figure and the paragraphs' own spacing
    scale = min(FRAME_W / w, room / h, 1.15)
    return [head, Spacer(1, 4), Image(io.BytesIO(png), width=w * scale, height=h * scale), Spacer(1, 6), cap]


PHOTO_BYTES = 600_000  # a PNG figure above this is photographic (ranked lists, heatmaps over images)


def compact_figure(png: bytes, quality: int = 85) -> bytes:
    """The figure as embedded in the PDF: line art stays a lossless PNG; a photographic figure
    (pictures of the samples, whose PNG is large) becomes a JPEG, which reportlab embeds as is,
    so a report with ranked lists stays small enough to mail."""
    if len(png) <= PHOTO_BYTES:
        return png
    with PILImage.open(io.BytesIO(png)) as im:
        rgba = im.convert("RGBA")
    flat = PILImage.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    buf = io.BytesIO()
    flat.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def render_figures(report: Report, dpi: int) -> list[tuple[int, Any, bytes]]:
    """Draw every figure that has data: ``(index into report.figures, item, png bytes)``."""
    out = []
    for i, item in enumerate(report.figures):
        fig = item.make()
        if fig is None:
            log.info("figure %s: no data, skipped", item.key)
            continue
        buf = io.BytesIO()
        S.save(fig, buf, "png", dpi=dpi)
        out.append((i, item, buf.getvalue()))
        del fig
    return out


# -------------------------------------------------------------------------------------------------
# The document
# -------------------------------------------------------------------------------------------------


def write_pdf(report: Report, out: str | Path, *, dpi: int = 200) -> Path:
    """Lay ``report`` out as a PDF at ``out``."""
    _register_fonts()
    st = _styles()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    story: list[Any] = []

    # title page
    story += [_p(report.title, st["title"]), _p(report.subtitle, st["subtitle"])]
    facts = RLTable([[_p(k, st["head"]), _p(v, st["cell"])] for k, v in report.facts], colWidths=[2.6 * cm, FRAME_W - 2.6 * cm],
                    hAlign="LEFT", style=TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("TOPPADDING", (0, 0), (-1, -1), 1),
                                                     ("BOTTOMPADDING", (0, 0), (-1, -1), 1), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))  # fmt: skip
    story += [facts, Spacer(1, 6)]
    if report.command:
        story += [_p("Command", st["h2"]), _p(report.command, st["mono"])]
    for note in report.notes:
        story.append(_p(note, st["note"]))
    for t in report.info_tables:
        story += _info_table(t, st)

    # threat models
    story += [PageBreak(), _p("Threat models", st["h1"])]
    if report.threat_tables:
        story.append(_p("Who is attacked (query, gallery or both), what the attacker knows of the model and of the data, "
                        "and the budget, for each attack of this run, from the attack's threat model.", st["body"]))  # fmt: skip
    else:
        story.append(_p("This run has no attacked cells: every number in it is clean retrieval, so there is no attacker "
                        "and no budget.", st["body"]))  # fmt: skip
    if report.threat_lines:
        story.append(_p("Threat models of this run", st["h2"]))
        story += [Paragraph(_markup(x), st["bullet"], bulletText="•") for x in report.threat_lines]
    for t in report.threat_tables:
        story += _info_table(t, st)
    if report.deviations:
        story.append(_p("Where the models differ from their papers (from the model cards)", st["h2"]))
        story += [Paragraph(f"<b>{escape(m)}</b>: {_markup(d)}", st["small_bullet"], bulletText="•") for m, d in report.deviations]

    # results tables
    if report.tables:
        story += [CondPageBreak(0.4 * FRAME_H), Spacer(1, 10), _p("Results", st["h1"])]
        for i, t in enumerate(report.tables, 1):
            story += _table_flowables(t, f"Table {i}. {t.title}", st)

    # figures: each kept whole with its caption, a new page only when the next one does not fit
    for n, (_, item, png) in enumerate(render_figures(report, dpi), 1):
        story += [CondPageBreak(0.3 * FRAME_H) if n == 1 else Spacer(1, 14),
                  KeepTogether(_figure_flowables(compact_figure(png), n, item.title, item.caption, st, dpi))]  # fmt: skip

    # sanity checks
    story += [CondPageBreak(0.25 * FRAME_H), Spacer(1, 10), _p("Sanity checks", st["h1"])]
    if report.warnings:
        story.append(_p(f"{len(report.warnings)} warning(s) raised while the cells were evaluated. Each names the cell and "
                        "what looks wrong; a warning is a finding to read, not necessarily a bug.", st["body"]))  # fmt: skip
        rows = [[_p("cell", st["head"]), _p("warning", st["head"])]] + [[_p(c, st["cell"]), _p(w, st["cell"])] for c, w in report.warnings]
        story.append(RLTable(rows, colWidths=[0.36 * FRAME_W, 0.64 * FRAME_W], repeatRows=1, hAlign="LEFT",
                             style=TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LINEABOVE", (0, 0), (-1, 0), 0.9, RULE),
                                               ("LINEBELOW", (0, 0), (-1, 0), 0.5, RULE), ("LINEBELOW", (0, -1), (-1, -1), 0.9, RULE),
                                               ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, STRIPE])])))  # fmt: skip
    else:
        story.append(_p("No sanity-check warnings: no cell raised one.", st["body"]))

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    doc = _Doc(str(tmp), report.footer, title=report.title, author="reidbench", subject=report.subtitle)
    try:
        doc.build(story)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _info_table(t: Table, st: dict[str, ParagraphStyle]) -> list[Any]:
    return _table_flowables(t, t.title, st) if t.rows else []
