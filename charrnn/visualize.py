"""What a trained model sees in a text, as one self-contained HTML page.

    charrnn visualize checkpoints/my-run --text play.txt --out play.html

For every character: the probability the model gave it, the model's five likeliest guesses
for the character after it, and the activation of every hidden unit (h, and for an LSTM the
cell state c) after reading it. Units are ranked by how well they track simple features of
the text (inside quotes, position in line, ...), so the interesting ones are a click away.

The model runs one character at a time with `FastStepper`, because `nn.LSTM` returns the
hidden states of its last layer only. The page needs no network: data is JSON inside a
<script> tag, activations are int8 in base64, and the CSS and JS are inline.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from charrnn.errors import InputError
from charrnn.model import CharRNN, FastStepper
from charrnn.vocab import Vocab

TOP_K = 5
MAX_STORED = 3_000_000  # activation values (one byte each) kept in a page: about 4 MB of base64
OPENERS, CLOSERS = "([{（【「『", ")]}）】」』"


@dataclass
class Trace:
    text: str  # the characters traced, one code point each
    prob: np.ndarray  # (N,) probability the model gave each character; NaN for the first
    top_ids: np.ndarray  # (N, K) the likeliest characters to follow each one
    top_p: np.ndarray  # (N, K) their probabilities
    states: np.ndarray  # (L, S, N, H) after each character; S = 2 (h, c) for an LSTM, else 1 (h)
    kinds: tuple[str, ...]  # ("h", "c") or ("h",)

    @property
    def loss(self) -> float:
        """Mean loss in nats per predicted character."""
        p = self.prob[1:]
        return float(-np.log(np.maximum(p, 1e-12)).mean()) if len(p) else float("nan")


@torch.no_grad()
def trace(model: CharRNN, vocab: Vocab, text: str, top_k: int = TOP_K) -> Trace:
    """Run `text` through `model` one character at a time, keeping every layer's state."""
    if len(text) < 2:
        raise InputError("the text to visualise needs at least 2 characters")
    ids = torch.tensor(vocab.encode(text, context="the text to visualise"), dtype=torch.long)
    stepper = FastStepper(model)
    state = model.init_state(1)
    logps, steps = [], []
    for t in range(len(ids)):
        logits, state = stepper.step(ids[t:t + 1], state)  # logits (1, V); state each (L, 1, H)
        logps.append(torch.log_softmax(logits[0], dim=-1))
        steps.append(torch.stack([s[:, 0] for s in state], dim=1))  # (L, S, H)
    logp = torch.stack(logps)  # (N, V): prediction for the character after each one
    states = torch.stack(steps, dim=2).numpy()  # (L, S, N, H)
    prob = np.full(len(ids), np.nan, dtype=np.float64)
    prob[1:] = logp[:-1].gather(1, ids[1:, None])[:, 0].exp().double().numpy()
    top = logp.exp().topk(min(top_k, len(vocab)), dim=-1)
    kinds = ("h", "c") if model.config.model == "lstm" else ("h",)
    return Trace(text, prob, top.indices.numpy(), top.values.double().numpy(), states, kinds)


# --------------------------------------------------------------------------- features

FEATURES = ("inside quotes", "inside brackets", "position in line", "start of word", "after newline",
            "inside a word", "capital letter")


def text_features(text: str) -> dict[str, np.ndarray]:
    """One value per character describing the text up to and including it, so that it lines
    up with the state the model holds after reading that character."""
    n = len(text)
    f = {name: np.zeros(n) for name in FEATURES}
    quoted, depth, column, prev = False, 0, 0, "\n"
    for i, ch in enumerate(text):
        # A closing quote or bracket still belongs to what it closes.
        closes_quote = (ch == '"' and quoted) or ch in "”»"
        closes_bracket = ch in CLOSERS and depth > 0
        if ch == '"':
            quoted = not quoted
        elif ch in "“«":
            quoted = True
        elif ch in "”»":
            quoted = False
        if ch in OPENERS:
            depth += 1
        elif ch in CLOSERS:
            depth = max(depth - 1, 0)
        f["inside quotes"][i] = quoted or closes_quote
        f["inside brackets"][i] = depth > 0 or closes_bracket
        f["position in line"][i] = column
        f["start of word"][i] = ch.isalpha() and not prev.isalpha()
        f["after newline"][i] = ch == "\n"
        f["inside a word"][i] = ch.isalpha()
        f["capital letter"][i] = ch.isupper()
        column = 0 if ch == "\n" else column + 1
        prev = ch
    return f


def correlations(features: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """Pearson correlation of each feature (F, N) with each unit (N, U) -> (F, U); 0 where
    either side is constant over the text."""
    f = features - features.mean(axis=1, keepdims=True)
    a = acts - acts.mean(axis=0, keepdims=True)
    fs = np.sqrt((f * f).sum(axis=1))
    as_ = np.sqrt((a * a).sum(axis=0))
    tiny = 1e-9  # below this a side is constant up to rounding
    r = (f @ a) / np.outer(np.where(fs > tiny, fs, np.inf), np.where(as_ > tiny, as_, np.inf))
    return np.clip(r, -1.0, 1.0)


def unit_matrix(t: Trace) -> tuple[np.ndarray, list[tuple[int, str, int]]]:
    """All units side by side: (N, L*S*H) activations in tanh range, and (layer, kind, unit) labels.
    Cell states are unbounded, so they are shown through tanh, as the LSTM itself reads them."""
    L, S, N, H = t.states.shape
    acts = t.states.astype(np.float64)
    if "c" in t.kinds:
        acts[:, t.kinds.index("c")] = np.tanh(acts[:, t.kinds.index("c")])
    labels = [(layer, t.kinds[s], u) for layer in range(L) for s in range(S) for u in range(H)]
    return acts.transpose(2, 0, 1, 3).reshape(N, L * S * H), labels


def interesting_cells(r: np.ndarray, labels: list, names=FEATURES, per_feature: int = 3,
                      top: int = 12) -> list[dict]:
    """Units that track a feature: the best unit of every feature that occurs (however weak, so
    the reader sees that too), then the strongest of the runners-up; strongest first."""
    best: dict[int, tuple[int, float]] = {}
    runners: dict[int, tuple[int, float]] = {}
    for fi in range(r.shape[0]):
        order = [int(u) for u in np.argsort(-np.abs(r[fi]))[:per_feature] if abs(r[fi, u]) > 0]
        for rank, u in enumerate(order):
            into = best if rank == 0 else runners
            if u not in into or abs(r[fi, u]) > abs(into[u][1]):
                into[u] = (fi, float(r[fi, u]))
    strength = lambda kv: -abs(kv[1][1])  # noqa: E731
    rest = sorted(((u, v) for u, v in runners.items() if u not in best), key=strength)
    chosen = sorted(list(best.items()) + rest[:max(top - len(best), 0)], key=strength)
    return [{"index": u, "layer": labels[u][0], "kind": labels[u][1], "unit": labels[u][2],
             "feature": names[fi], "r": round(rv, 3)} for u, (fi, rv) in chosen]


# --------------------------------------------------------------------------- page

def build_page(model: CharRNN, vocab: Vocab, text: str, title: str = "charrnn", max_stored: int = MAX_STORED) -> str:
    t = trace(model, vocab, text)
    feats = text_features(text)
    acts, labels = unit_matrix(t)
    r = correlations(np.stack([feats[n] for n in FEATURES]), acts)
    cells = interesting_cells(r, labels)
    n, total = acts.shape
    keep = np.arange(total)
    if total * n > max_stored:  # too many units to store: the interesting ones, then the liveliest
        budget = max(max_stored // n, len(cells))
        first = [c["index"] for c in cells]
        rest = [int(u) for u in np.argsort(-acts.std(axis=0)) if int(u) not in set(first)]
        keep = np.array(sorted((first + rest)[:budget]))
    row = {int(u): i for i, u in enumerate(keep)}
    for c in cells:
        c["row"] = row[c.pop("index")]
    q = np.round(np.clip(acts[:, keep], -1, 1) * 127).astype(np.int8).T  # (units, N): one unit per row
    mc = model.config
    data = {
        "model": f"{mc.model} {mc.layers} x {mc.hidden}",
        "kinds": list(t.kinds),
        "layers": mc.layers,
        "hidden": mc.hidden,
        "text": text,
        "vocab": vocab.chars,
        "prob": [-1 if np.isnan(p) else int(round(p * 10000)) for p in t.prob],  # per ten thousand
        "top_ids": t.top_ids.ravel().tolist(),
        "top_p": np.round(t.top_p * 10000).astype(int).ravel().tolist(),
        "k": int(t.top_ids.shape[1]),
        "loss": round(t.loss, 4),
        "units": [list(labels[u]) for u in keep],
        "stored": int(len(keep)),
        "total_units": int(total),
        "acts": base64.b64encode(q.tobytes()).decode("ascii"),
        "features": list(FEATURES),
        "unit_r": np.round(r[:, keep].T, 3).tolist(),  # (stored units, features)
        "present": [bool(np.ptp(feats[name]) > 0) for name in FEATURES],  # features that vary in this text
        "cells": cells,
    }
    return PAGE.replace("__TITLE__", html.escape(title)).replace("__DATA__", script_json(data))


def script_json(obj) -> str:
    """JSON that is safe inside <script>: no '<', '>' or '&', so `</script>` in the text cannot
    end the element; ensure_ascii also escapes U+2028/U+2029."""
    s = json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_page(model: CharRNN, vocab: Vocab, text: str, out: Path, title: str = "charrnn") -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_page(model, vocab, text, title), encoding="utf-8")
    return out


PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__ · charrnn visualize</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;background:#fafafa}
header{padding:12px 20px;background:#263238;color:#eceff1}
header h1{font-size:18px;margin:0 0 2px}
header p{margin:0;font-size:13px;color:#b0bec5}
main{display:flex;gap:16px;padding:12px 20px;align-items:flex-start}
#left{flex:1;min-width:0}
aside{width:320px;flex:none}
.controls{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin-bottom:8px}
select,button{font:inherit}
#legend{display:flex;align-items:center;gap:6px;font-size:12px;color:#555;margin-bottom:8px}
#legend .bar{width:180px;height:10px;border:1px solid #ccc}
#unitinfo{font-size:12px;color:#555;min-height:1.4em;margin-bottom:6px}
#text{font:15px/1.6 ui-monospace,"DejaVu Sans Mono",Menlo,monospace;white-space:pre-wrap;word-break:break-all;
 background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px;max-height:75vh;overflow:auto}
#text span{cursor:default;border-radius:2px}
#text span.nl{color:#999}
#text span.on{outline:2px solid #263238}
#tip{position:fixed;display:none;background:#fff;border:1px solid #888;border-radius:6px;padding:6px 8px;
 box-shadow:0 2px 8px rgba(0,0,0,.2);font-size:13px;pointer-events:none;z-index:10;min-width:160px}
#tip table{border-collapse:collapse}
#tip td{padding:0 4px}
#tip td.c{font-family:ui-monospace,monospace;background:#f1f1f1;text-align:center}
#tip .bar{display:inline-block;height:8px;background:#546e7a}
#tip tr.hit td{font-weight:bold}
aside h2{font-size:15px;margin:0 0 4px}
aside p{font-size:12px;color:#555;margin:0 0 8px}
#cells button{display:block;width:100%;text-align:left;margin:0 0 4px;padding:4px 6px;border:1px solid #ccc;
 border-radius:4px;background:#fff;cursor:pointer;font-size:13px}
#cells button:hover,#cells button.on{background:#e3f2fd;border-color:#64b5f6}
#selftest{display:none}
</style></head>
<body>
<header><h1>__TITLE__</h1><p id="summary"></p></header>
<main>
<div id="left">
 <div class="controls">
  <label>Colour by <select id="layer"></select></label>
  <label>unit <select id="unit"></select></label>
 </div>
 <div id="legend"><span id="lo"></span><span class="bar" id="bar"></span><span id="hi"></span></div>
 <div id="unitinfo"></div>
 <div id="text"></div>
</div>
<aside>
 <h2>Interesting cells</h2>
 <p>Units whose activation tracks a feature of this text, by Pearson correlation r. Click one to colour the text by it.</p>
 <div id="cells"></div>
 <p id="absent"></p>
</aside>
</main>
<div id="tip"></div>
<pre id="selftest"></pre>
<script type="application/json" id="viz-data">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("viz-data").textContent);
const chars = Array.from(D.text);  // code points, as in the model's vocabulary
const N = chars.length;
const raw = atob(D.acts), bytes = new Uint8Array(raw.length);
for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
const acts = new Int8Array(bytes.buffer);  // (stored units, N)
const rowOf = new Map(D.units.map((u, i) => [u.join(":"), i]));
const $ = id => document.getElementById(id);
const show = c => c === "\n" ? "↵" : c === "\r" ? "␍" : c === " " ? "␣" : c === "\t" ? "⇥" : c;
const SHOWN = {"\n": "↵\n", "\r": "␍"};  // line breaks made visible in the text itself
const UNSHOWN = Object.fromEntries(Object.entries(SHOWN).map(([k, v]) => [v, k]));

$("summary").textContent = `${D.model} · ${N.toLocaleString()} characters · ` +
  `${(D.loss / Math.LN2).toFixed(3)} bits/char on this text · ${D.stored} of ${D.total_units} units stored` +
  ` · hover or tap a character for the model's guesses about the next one`;

function mix(a, b, t) { return a.map((v, i) => Math.round(v + (b[i] - v) * t)); }
const RED = [215, 48, 39], BLUE = [33, 102, 172], WHITE = [255, 255, 255];
function probColour(p) {  // unlikely: red, likely: green
  if (p < 0) return "rgb(238, 238, 238)";
  const c = p < 0.5 ? mix([244, 109, 67], [254, 224, 139], p * 2) : mix([254, 224, 139], [102, 189, 99], (p - 0.5) * 2);
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}
function actColour(a) {  // a in [-1, 1]: blue, white, red
  const c = a < 0 ? mix(WHITE, BLUE, -a) : mix(WHITE, RED, a);
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

const box = $("text"), spans = [];
const frag = document.createDocumentFragment();
chars.forEach((ch, i) => {
  const s = document.createElement("span");
  s.dataset.i = i;
  if (ch in SHOWN) s.className = "nl";
  s.textContent = SHOWN[ch] || ch;
  spans.push(s); frag.appendChild(s);
});
box.appendChild(frag);

const layerSel = $("layer"), unitSel = $("unit");
layerSel.add(new Option("confidence: probability of each character", "p"));
for (let l = 0; l < D.layers; l++) for (const k of D.kinds)
  layerSel.add(new Option(`layer ${l + 1} ${k === "h" ? "hidden state h" : "cell state c"}`, `${l}:${k}`));

function fillUnits() {
  unitSel.innerHTML = "";
  const v = layerSel.value;
  unitSel.disabled = v === "p";
  if (v === "p") return;
  const [l, k] = v.split(":");
  D.units.forEach((u, i) => { if (String(u[0]) === l && u[1] === k) unitSel.add(new Option(`#${u[2]}`, i)); });
}

function paint() {
  const v = layerSel.value;
  if (v === "p") {
    spans.forEach((s, i) => { s.style.backgroundColor = probColour(D.prob[i] / 10000); });
    $("lo").textContent = "unlikely 0"; $("hi").textContent = "1 expected";
    $("bar").style.background = "linear-gradient(90deg, rgb(244,109,67), rgb(254,224,139), rgb(102,189,99))";
    $("unitinfo").textContent = "";
  } else {
    const row = Number(unitSel.value), base = row * N;
    spans.forEach((s, i) => { s.style.backgroundColor = actColour(acts[base + i] / 127); });
    $("lo").textContent = "−1"; $("hi").textContent = "+1";
    $("bar").style.background = "linear-gradient(90deg, rgb(33,102,172), white, rgb(215,48,39))";
    const u = D.units[row];
    $("unitinfo").textContent = `layer ${u[0] + 1} ${u[1]} #${u[2]}: r with ` +
      D.features.flatMap((f, j) => D.present[j] ? [`${f} ${D.unit_r[row][j] >= 0 ? "+" : ""}${D.unit_r[row][j].toFixed(2)}`] : []).join(" · ");
  }
  document.querySelectorAll("#cells button").forEach(b => b.classList.toggle("on", v !== "p" && b.dataset.row === unitSel.value));
}

function select(row) {
  const u = D.units[row];
  layerSel.value = `${u[0]}:${u[1]}`;
  fillUnits();
  unitSel.value = String(row);
  paint();
}

layerSel.addEventListener("change", () => { fillUnits(); paint(); });
unitSel.addEventListener("change", paint);

const cellsBox = $("cells");
if (!D.cells.length) cellsBox.textContent = "No unit varies with these features on this text.";
D.cells.forEach(c => {
  const b = document.createElement("button");
  b.dataset.row = c.row;
  b.textContent = `layer ${c.layer + 1} ${c.kind} #${c.unit} · ${c.feature} · r = ${c.r >= 0 ? "+" : ""}${c.r.toFixed(2)}`;
  b.addEventListener("click", () => select(c.row));
  cellsBox.appendChild(b);
});

const tip = $("tip");
let current = null;
function showTip(s) {
  const i = Number(s.dataset.i);
  if (current) current.classList.remove("on");
  current = s; s.classList.add("on");
  const next = i + 1 < N ? chars[i + 1] : null;
  let rows = "";
  for (let j = 0; j < D.k; j++) {
    const c = D.vocab[D.top_ids[i * D.k + j]], p = D.top_p[i * D.k + j] / 10000;
    rows += `<tr class="${c === next ? "hit" : ""}"><td class="c"></td><td>${(100 * p).toFixed(1)}%</td>` +
      `<td><span class="bar" style="width:${Math.round(60 * p)}px"></span></td></tr>`;
  }
  const pHere = D.prob[i] < 0 ? "no prediction (first character)" : `p = ${(D.prob[i] / 100).toFixed(1)}%`;
  tip.innerHTML = `<div><b class="here"></b> #${i} · ${pHere}</div><div>likeliest next:</div><table>${rows}</table>` +
    (next === null ? "" : `<div>actual next: <b class="next"></b></div>`);
  tip.querySelector(".here").textContent = show(chars[i]);
  tip.querySelectorAll("td.c").forEach((td, j) => { td.textContent = show(D.vocab[D.top_ids[i * D.k + j]]); });
  if (next !== null) tip.querySelector(".next").textContent = show(next);
  const r = s.getBoundingClientRect();
  tip.style.display = "block";
  const w = tip.offsetWidth, h = tip.offsetHeight;
  tip.style.left = Math.max(4, Math.min(r.left, window.innerWidth - w - 4)) + "px";
  tip.style.top = (r.bottom + 6 + h < window.innerHeight ? r.bottom + 6 : Math.max(4, r.top - h - 6)) + "px";
}
box.addEventListener("mouseover", e => { if (e.target.dataset && e.target.dataset.i) showTip(e.target); });
box.addEventListener("click", e => { if (e.target.dataset && e.target.dataset.i) showTip(e.target); });
box.addEventListener("mouseleave", () => { tip.style.display = "none"; });

fillUnits();
paint();
const absent = D.features.filter((f, j) => !D.present[j]);
if (absent.length) $("absent").textContent = `Not in this text, so not ranked: ${absent.join(", ")}.`;

// A link can open the page on a unit and a character: page.html#unit=2:c:37&char=120
// (layer counted from 1, as shown).
const params = new URLSearchParams(location.hash.slice(1));
if (params.has("unit")) {
  const [l, k, u] = params.get("unit").split(":");
  const row = rowOf.get(`${Number(l) - 1}:${k}:${Number(u)}`);
  if (row !== undefined) select(row);
}
if (params.has("char") && spans[Number(params.get("char"))]) showTip(spans[Number(params.get("char"))]);

// `page.html#selftest` drives the page the way a reader would and writes what it saw into
// #selftest, so a headless browser's --dump-dom can check the interactions.
if (location.hash === "#selftest") {
  const out = {spans: spans.length, chars: N};
  const target = spans[Math.min(3, N - 1)];
  target.dispatchEvent(new MouseEvent("mouseover", {bubbles: true}));
  out.tip_visible = tip.style.display === "block";
  out.tip_rows = tip.querySelectorAll("tr").length;
  out.tip_text = tip.textContent;
  out.prob_colour_ok = spans[1].style.backgroundColor === probColour(D.prob[1] / 10000);
  const last = D.units.length - 1, u = D.units[last];
  layerSel.value = `${u[0]}:${u[1]}`;
  layerSel.dispatchEvent(new Event("change"));
  unitSel.value = String(last);
  unitSel.dispatchEvent(new Event("change"));
  out.picked = unitSel.value === String(last);
  out.act_colour_ok = spans.every((s, i) => s.style.backgroundColor === actColour(acts[last * N + i] / 127));
  out.colours = new Set(spans.map(s => s.style.backgroundColor)).size;
  const button = document.querySelector("#cells button");
  if (button) {
    button.click();
    out.cell_clicked = unitSel.value === button.dataset.row && button.classList.contains("on");
  }
  out.newlines = spans.filter(s => s.textContent === "↵\n").length;
  out.text_ok = spans.map(s => UNSHOWN[s.textContent] || s.textContent).join("") === D.text;
  $("selftest").textContent = JSON.stringify(out);
}
</script>
</body></html>
"""
