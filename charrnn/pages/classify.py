"""The page `charrnn classify eval` writes: the scores, the confusion matrix as an SVG
(each row normalised to its label's examples, the counts on hover), and the pairs of labels
most often confused, with examples. One self-contained HTML file; nothing is fetched.

    write_page(evaluate_classifier(run, data), Path("eval.html"))
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from charrnn.classify.evaluate import Evaluation
from charrnn.pages import page_head, write_html

CELL = 26  # pixels per matrix cell

CSS = """
main{padding:12px 20px;max-width:1100px}
table{border-collapse:collapse;margin:8px 0 16px}
td,th{padding:3px 10px;border-bottom:1px solid #e0e0e0;text-align:right}
td:first-child,th:first-child{text-align:left}
.matrix text{font:11px system-ui,sans-serif;fill:#333}
.matrix rect:hover{stroke:#000;stroke-width:1.5}
td.examples{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace;color:#444;text-align:left}
"""


def write_page(ev: Evaluation, out: Path) -> Path:
    sc = ev.scores
    per = sc.per_label()
    rows = "".join(
        f"<tr><td>{escape(r['label'])}</td><td>{r['precision']:.3f}</td><td>{r['recall']:.3f}</td>"
        f"<td>{r['f1']:.3f}</td><td>{r['support']:,}</td></tr>"
        for r in per
    )
    pairs = (
        "".join(
            f"<tr><td>{escape(t)}</td><td>{escape(p)}</td><td>{n:,}</td>"
            f"<td class='examples'>{escape(', '.join(ex))}</td></tr>"
            for t, p, n, ex in ev.confused
        )
        or "<tr><td colspan=4>none: every example was labelled right</td></tr>"
    )
    body = (
        f"<header><h1>{escape(ev.path.parent.name)}/{escape(ev.path.name)} on {escape(ev.data)}</h1>"
        f"<p>accuracy {sc.accuracy:.4f} · macro-F1 {sc.macro_f1:.4f} · {sc.total:,} examples"
        f"{f' · {ev.skipped_chars:,} unseen characters skipped' if ev.skipped_chars else ''}</p></header>"
        "<main><h2>Confusion matrix</h2>"
        "<p>Rows are the true labels, columns the predicted ones; each row is shaded by the share of its "
        "examples (hover a cell for the count).</p>"
        f"{_matrix(ev)}"
        "<h2>Per label</h2><table><tr><th>label</th><th>precision</th><th>recall</th><th>F1</th>"
        f"<th>support</th></tr>{rows}</table>"
        "<h2>Most confused</h2><table><tr><th>true</th><th>predicted</th><th>count</th><th>examples</th></tr>"
        f"{pairs}</table></main></body></html>"
    )
    title = f"{ev.path.parent.name} · charrnn classify eval"
    return write_html(out, page_head(title) + CSS + "</style></head><body>" + body)


def _matrix(ev: Evaluation) -> str:
    labels, confusion = ev.scores.labels, ev.scores.confusion
    n = len(labels)
    margin = 8 + 7 * max(len(label) for label in labels)
    size = margin + n * CELL + 4
    width = size + margin // 2  # the last column's label leans out to the right
    parts = [f'<svg class="matrix" width="{width}" height="{size}" viewBox="0 0 {width} {size}" role="img">']
    for i, label in enumerate(labels):
        y = margin + i * CELL + CELL * 0.65
        parts.append(f'<text x="{margin - 6}" y="{y:.1f}" text-anchor="end">{escape(label)}</text>')
        x = margin + i * CELL + CELL * 0.65
        parts.append(
            f'<text transform="translate({x:.1f},{margin - 6}) rotate(-60)" text-anchor="start">{escape(label)}</text>'
        )
    for i, row in enumerate(confusion):
        total = sum(row)
        for j, count in enumerate(row):
            share = count / total if total else 0.0
            colour = _shade(share, diagonal=i == j)
            tip = f"{labels[i]} → {labels[j]}: {count:,} of {total:,} ({100 * share:.1f}%)"
            parts.append(
                f'<rect x="{margin + j * CELL}" y="{margin + i * CELL}" width="{CELL - 1}" height="{CELL - 1}" '
                f'fill="{colour}" data-count="{count}"><title>{escape(tip)}</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _shade(share: float, *, diagonal: bool) -> str:
    """White at 0; green on the diagonal (right), red off it (confused), darker as the share grows."""
    r, g, b = (46, 125, 50) if diagonal else (198, 40, 40)
    mix = lambda c: round(255 - (255 - c) * min(1.0, share))  # noqa: E731
    return f"rgb({mix(r)},{mix(g)},{mix(b)})"
