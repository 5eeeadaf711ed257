"""A training run as one self-contained HTML page, and its loss as a terminal sparkline.

    charrnn report checkpoints/my-run --out report.html

Reads what `charrnn train` leaves in a run directory: metrics.jsonl (loss curves, learning
rate, chars/s), samples.txt (the progress samples, shown as a timeline from noise to words)
and last.pt (the run's configuration). The charts are inline SVG drawn here; the page needs
no network and no JavaScript.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from charrnn.errors import CharRNNError, InputError
from charrnn.pages import page_head, write_html
from charrnn.training import checkpoint, runlog
from charrnn.values import Units, is_number

BLOCKS = "▁▂▃▄▅▆▇█"
MAX_SAMPLES = 40  # progress samples shown; evenly spaced over the run when there are more


@dataclass
class Run:
    path: Path
    train: list[dict] = field(default_factory=list)  # metrics.jsonl lines with train_loss
    evals: list[dict] = field(default_factory=list)  # metrics.jsonl lines with val_loss
    samples: list[dict] = field(default_factory=list)  # {"step", "train_loss", "val_loss", "text"}
    ckpt: checkpoint.Checkpoint | None = None  # last.pt (or best.pt) without optimizer, RNG and carried state

    @property
    def units(self) -> Units:
        """How its losses are reported: per character, or a word model's per token."""
        return Units.of(self.ckpt.corpus if self.ckpt is not None else None)


def load_run(run_dir: Path) -> Run:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: not a run directory")
    if not (run_dir / runlog.METRICS).is_file():
        raise InputError(f"{run_dir}: no {runlog.METRICS}; is it a directory written by `charrnn train`?")
    run = Run(run_dir)
    run.train, run.evals = runlog.read_metrics(run_dir)
    run.samples = runlog.read_samples(run_dir)
    for name in ("last.pt", "best.pt"):
        if (run_dir / name).is_file():
            try:
                run.ckpt = checkpoint.read(run_dir / name, strict=False).lightened()
            except CharRNNError:
                continue
            break
    return run


# --------------------------------------------------------------------------- terminal


def sparkline(values: list[float], width: int = 40) -> str:
    """Values as unicode block characters, averaged into at most `width` buckets."""
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return ""
    if len(vals) > width:
        edges = [round(i * len(vals) / width) for i in range(width + 1)]
        vals = [sum(vals[a:b]) / (b - a) for a, b in pairwise(edges) if b > a]
    lo, hi = min(vals), max(vals)
    span = hi - lo or 1.0
    return "".join(BLOCKS[min(int((v - lo) / span * len(BLOCKS)), len(BLOCKS) - 1)] for v in vals)


def loss_sparkline(history: list[dict], width: int = 40) -> str:
    """'4.17 ▇▆▄▃▂▂▁ 1.62': the train loss of a checkpoint's `history`, first and last values around it.
    Entries that are not records with a finite train loss (evals, or a damaged history) are left out."""
    entries = history if isinstance(history, list) else []
    losses = [
        h["train_loss"]
        for h in entries
        if isinstance(h, dict) and is_number(h.get("train_loss")) and math.isfinite(h["train_loss"])
    ]
    if not losses:
        return ""
    return f"{losses[0]:.2f} {sparkline(losses, width)} {losses[-1]:.2f}"


# --------------------------------------------------------------------------- charts

COLOURS = {"train": "#1f77b4", "val": "#d62728", "lr": "#2ca02c", "speed": "#9467bd"}


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 10000:
        return f"{v / 1000:g}k"
    return f"{v:.4g}"


def _finite_points(xs: list[float], ys: list[float]) -> list[tuple[float, float]]:
    return [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(x) and math.isfinite(y)]


@dataclass(frozen=True)
class _Frame:
    """A chart's plot area and its data ranges: where a point (x, y) is drawn."""

    left: float
    top: float
    width: float
    height: float
    x0: float
    x1: float
    y0: float
    y1: float

    def sx(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.width

    def sy(self, y: float) -> float:
        return self.top + (1 - (y - self.y0) / (self.y1 - self.y0)) * self.height


def svg_chart(
    series: list[tuple[str, list[float], list[float], str]],
    xlabel: str,
    ylabel: str,
    *,
    width: int = 520,
    height: int = 240,
) -> str:
    """A line chart as inline SVG: series are (name, xs, ys, colour); a series with few points
    also gets markers, each with a tooltip."""
    pts = [pt for _, xs, ys, _ in series for pt in _finite_points(xs, ys)]
    if not pts:
        return f'<p class="empty">No {html.escape(ylabel)} logged.</p>'
    left, right, top, bottom = 56, 12, 24, 40
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0:
        x1 = x0 + 1
    pad = (y1 - y0) * 0.05 or abs(y0) * 0.1 or 1.0
    f = _Frame(left, top, width - left - right, height - top - bottom, x0, x1, y0 - pad, y1 + pad)
    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{html.escape(ylabel)} by {html.escape(xlabel)}">',
        f'<rect x="{left}" y="{top}" width="{f.width}" height="{f.height}" fill="#fff" stroke="#ccc"/>',
        *_axes(f, xlabel, ylabel, height),
    ]
    lx = left + 8
    for name, xs, ys, colour in series:
        line = _finite_points(xs, ys)
        if line:
            out += _series(f, name, line, colour, xlabel, lx)
            lx += 24 + 7 * len(name)
    out.append("</svg>")
    return "".join(out)


def _axes(f: _Frame, xlabel: str, ylabel: str, height: int) -> list[str]:
    """The grid lines with their ticks' values, and the axes' names."""
    left, top, pw, ph = f.left, f.top, f.width, f.height
    out = []
    for t in nice_ticks(f.y0, f.y1):
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{f.sy(t):.1f}" y2="{f.sy(t):.1f}" stroke="#eee"/>'
            f'<text x="{left - 6}" y="{f.sy(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>'
        )
    for t in nice_ticks(f.x0, f.x1, 6):
        out.append(
            f'<line x1="{f.sx(t):.1f}" x2="{f.sx(t):.1f}" y1="{top}" y2="{top + ph}" stroke="#eee"/>'
            f'<text x="{f.sx(t):.1f}" y="{top + ph + 16}" text-anchor="middle">{_fmt(t)}</text>'
        )
    out.append(
        f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle" class="axis">{html.escape(xlabel)}</text>'
    )
    out.append(
        f'<text x="14" y="{top + ph / 2}" text-anchor="middle" class="axis" '
        f'transform="rotate(-90 14 {top + ph / 2})">{html.escape(ylabel)}</text>'
    )
    return out


def _series(f: _Frame, name: str, line: list[tuple[float, float]], colour: str, xlabel: str, lx: float) -> list[str]:
    """One series: its line, markers with tooltips where it has few points, its legend entry."""
    d = " ".join(f"{f.sx(x):.1f},{f.sy(y):.1f}" for x, y in line)
    out = [
        f'<polyline class="series" data-name="{html.escape(name)}" points="{d}" fill="none" '
        f'stroke="{colour}" stroke-width="1.8"/>'
    ]
    if len(line) <= 60:
        for x, y in line:
            out.append(
                f'<circle cx="{f.sx(x):.1f}" cy="{f.sy(y):.1f}" r="3" fill="{colour}">'
                f"<title>{html.escape(name)}: {_fmt(y)} at {html.escape(xlabel)} {_fmt(x)}</title></circle>"
            )
    out.append(
        f'<rect x="{lx}" y="8" width="12" height="3" fill="{colour}"/>'
        f'<text x="{lx + 16}" y="13">{html.escape(name)}</text>'
    )
    return out


# --------------------------------------------------------------------------- page


def _col(rows: list[dict], key: str) -> list[float]:
    return [float(r.get(key, float("nan"))) for r in rows]


def _losses(train: list[dict], evals: list[dict], x: str) -> list[tuple[str, list[float], list[float], str]]:
    """The train and val loss series against the metric `x` (step or elapsed_s)."""
    return [
        ("train", _col(train, x), _col(train, "train_loss"), COLOURS["train"]),
        ("val", _col(evals, x), _col(evals, "val_loss"), COLOURS["val"]),
    ]


def render(run: Run) -> str:
    tr, ev = run.train, run.evals
    per = run.units.per
    charts = [
        (f"Loss by {axis}", svg_chart(_losses(tr, ev, x), xlabel, f"loss (nats/{per})"))
        for axis, x, xlabel in (("step", "step", "step"), ("time", "elapsed_s", "elapsed seconds"))
    ]
    charts.append(
        ("Learning rate", svg_chart([("lr", _col(tr, "step"), _col(tr, "lr"), COLOURS["lr"])], "step", "learning rate"))
    )
    speed = [(f"{per}s/s", _col(tr[1:], "step"), _col(tr[1:], "chars_per_sec"), COLOURS["speed"])]
    charts.append(("Speed", svg_chart(speed, "step", f"{run.units.per.replace('char', 'character')}s per second")))
    name = run.path.resolve().name
    parts = [
        page_head(f"{name} · charrnn report") + PAGE_CSS,
        f"<header><h1>{html.escape(name)}</h1>",
        f"<p>{html.escape(_summary(run))}</p></header><main>",
    ]
    parts.append(
        '<section class="charts">'
        + "".join(f"<figure><figcaption>{html.escape(t)}</figcaption>{svg}</figure>" for t, svg in charts)
        + "</section>"
    )
    parts.append('<section class="cols"><div class="config"><h2>Configuration</h2>' + _config_table(run) + "</div>")
    parts.append('<div class="samples"><h2>Samples during training</h2>' + _timeline(run.samples) + "</div></section>")
    parts.append("</main></body></html>\n")
    return "".join(parts)


def _summary(run: Run) -> str:
    parts = []
    if run.train:
        last = max(run.train + run.evals, key=lambda m: (m.get("step", 0), m.get("elapsed_s", 0)))
        parts.append(f"{last['step']:,} steps in {last.get('elapsed_s', 0):.1f} s")
        parts.append(f"train loss {run.train[0]['train_loss']:.3f} → {run.train[-1]['train_loss']:.3f}")
    finite = [e for e in run.evals if math.isfinite(e.get("val_loss", float("nan")))]
    if finite:
        best = min(finite, key=lambda e: e["val_loss"])
        parts.append(f"best val loss {run.units.describe(best['val_loss'])} at step {best['step']:,}")
    return " · ".join(parts) or "no steps logged yet"


def _config_table(run: Run) -> str:
    c = run.ckpt
    if c is None:
        return '<p class="empty">No readable last.pt or best.pt in the run directory.</p>'
    rows: list[tuple[str, object]] = list(checkpoint.describe(c))
    rows += [
        (f"model.{k}", v)
        for k, v in checkpoint.config_fields(c, "model_config").items()
        if k not in ("labels", "label_counts")  # the labels row of `describe` shows them
    ]
    rows += [(f"train.{k}", v) for k, v in checkpoint.config_fields(c, "train_config").items()]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _timeline(samples: list[dict]) -> str:
    if not samples:
        return (
            '<p class="empty">No progress samples yet: one is written at every evaluation, unless the run'
            " was trained with <code>--sample-every 0</code>.</p>"
        )
    if len(samples) > MAX_SAMPLES:
        idx = sorted({round(i * (len(samples) - 1) / (MAX_SAMPLES - 1)) for i in range(MAX_SAMPLES)})
        samples = [samples[i] for i in idx]
    items = []
    for s in samples:
        val = f" · val {s['val_loss']:.3f}" if math.isfinite(s["val_loss"]) else ""
        train = f" · train {s['train_loss']:.3f}" if math.isfinite(s["train_loss"]) else ""  # nan before a step
        items.append(
            f'<li><div class="when">step {s["step"]:,}{train}{val}</div><pre>{html.escape(s["text"])}</pre></li>'
        )
    return f'<ol class="timeline">{"".join(items)}</ol>'


def write_report(run_dir: Path, out: Path | None = None, run: Run | None = None) -> Path:
    """Write the report page; `run` saves reading the run again where the caller has it."""
    run = run or load_run(run_dir)
    return write_html(Path(out) if out is not None else Path(run_dir) / "report.html", render(run))


PAGE_CSS = """main{padding:12px 20px}
h2{font-size:15px;margin:8px 0}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:12px}
figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px}
figcaption{font-weight:600;font-size:13px;margin-left:4px}
svg.chart{width:100%;height:auto;font-size:11px;fill:#555}
svg.chart text.axis{font-size:12px;fill:#333}
.cols{display:flex;flex-wrap:wrap;gap:20px;margin-top:12px;align-items:flex-start}
.config{flex:0 1 380px}
.config table{border-collapse:collapse;font-size:12px;background:#fff}
.config th,.config td{border:1px solid #e0e0e0;padding:2px 6px;text-align:left;vertical-align:top;word-break:break-all}
.config th{font-weight:500;color:#555;white-space:nowrap}
.samples{flex:1 1 480px;min-width:0}
.timeline{list-style:none;margin:0;padding:0 0 0 14px;border-left:3px solid #90a4ae}
.timeline li{position:relative;margin:0 0 12px}
.timeline li::before{content:"";position:absolute;left:-21px;top:5px;width:11px;height:11px;border-radius:50%;
 background:#546e7a}
.when{font-size:12px;color:#555;font-weight:600}
.timeline pre{margin:2px 0 0;padding:6px 8px;background:#fff;border:1px solid #ddd;border-radius:4px;
 white-space:pre-wrap;word-break:break-word;font:12px/1.4 ui-monospace,"DejaVu Sans Mono",Menlo,monospace}
.empty{color:#777;font-style:italic}
</style></head><body>
"""
