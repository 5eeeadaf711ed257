"use strict";
// A charrnn model in plain JavaScript: its weights (embedded above), the cell of its layers
// (LSTM, GRU or RNN, with a labelled model's label embedding), its output layer (full or
// adaptive softmax) and the sampler: temperature (0 is argmax), top-k, top-p, stop string.
// The random draws come from mulberry32, seeded with the seed's low 32 bits (docs/export.md).

const M = JSON.parse(document.getElementById("model").textContent);

// ------------------------------------------------------------------ weights

function halfTable() {
  // every float16 bit pattern as a float32
  const t = new Float32Array(65536);
  for (let u = 0; u < 65536; u++) {
    const s = u & 0x8000 ? -1 : 1, e = (u >> 10) & 0x1f, f = u & 0x3ff;
    t[u] = e === 0 ? s * f * 2 ** -24 : e === 31 ? (f ? NaN : s * Infinity) : s * (1 + f / 1024) * 2 ** (e - 15);
  }
  return t;
}

function loadWeights(tensors, b64) {
  const bin = atob(b64.trim());
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const buf = bytes.buffer, out = {};
  let half = null;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.dtype === "f32") out[t.name] = new Float32Array(buf, t.offset, n);
    else if (t.dtype === "i32") out[t.name] = new Int32Array(buf, t.offset, n);
    else if (t.dtype === "f16") {
      half = half || halfTable();
      const raw = new Uint16Array(buf, t.offset, n), w = new Float32Array(n);
      for (let i = 0; i < n; i++) w[i] = half[raw[i]];
      out[t.name] = w;
    } else if (t.dtype === "i8") {  // a scale per row
      const raw = new Int8Array(buf, t.offset, n), scales = new Float32Array(buf, t.scales, t.shape[0]);
      const cols = n / t.shape[0], w = new Float32Array(n);
      for (let r = 0; r < t.shape[0]; r++) for (let k = 0; k < cols; k++) w[r * cols + k] = raw[r * cols + k] * scales[r];
      out[t.name] = w;
    }
  }
  return out;
}

// ------------------------------------------------------------------ the network

function matvec(w, rows, cols, x, out, bias) {
  // out[r] = bias[r] + w[r, :] . x, two rows at a time (most of the page's time is here)
  let r = 0;
  for (; r + 1 < rows; r += 2) {
    const o = r * cols, p = o + cols;
    let s = 0, t = 0;
    for (let k = 0; k < cols; k++) {
      const v = x[k];
      s += w[o + k] * v;
      t += w[p + k] * v;
    }
    out[r] = (bias ? bias[r] : 0) + s;
    out[r + 1] = (bias ? bias[r + 1] : 0) + t;
  }
  for (; r < rows; r++) {
    let s = 0;
    for (let k = 0; k < cols; k++) s += w[r * cols + k] * x[k];
    out[r] = (bias ? bias[r] : 0) + s;
  }
}

const sigmoid = (v) => 1 / (1 + Math.exp(-v));

function logSoftmax(v) {
  let max = -Infinity;
  for (const a of v) if (a > max) max = a;
  let sum = 0;
  for (const a of v) sum += Math.exp(a - max);
  const lse = max + Math.log(sum);
  return v.map((a) => a - lse);
}

class Net {
  constructor(m, w) {
    this.m = m; this.w = w; this.H = m.hidden; this.V = m.vocab.length;
    this.G = { lstm: 4, gru: 3, rnn: 1 }[m.cell];
    this.gi = new Float64Array(this.G * this.H);
    this.gh = new Float64Array(this.G * this.H);
  }
  zero() {
    const n = this.m.cell === "lstm" ? 2 : 1, s = [];
    for (let l = 0; l < this.m.layers; l++) s.push(Array.from({ length: n }, () => new Float64Array(this.H)));
    return s;
  }
  // the logits (Float64Array, V) after reading symbol `id` (with `label`, a labelled model); `state` is updated
  step(id, label, state) {
    const H = this.H, w = this.w, G = this.G, gi = this.gi, gh = this.gh;
    let x = Float64Array.from(w["embed.weight"].subarray(id * H, (id + 1) * H));  // float64 as every vector here
    if (this.m.labels.length) {
      const e = w["label_embed.weight"];
      for (let k = 0; k < H; k++) x[k] += e[label * H + k];
    }
    for (let l = 0; l < this.m.layers; l++) {
      const s = state[l], h = s[0];
      matvec(w[`rnn.weight_ih_l${l}`], G * H, H, x, gi, w[`rnn.bias_ih_l${l}`]);
      matvec(w[`rnn.weight_hh_l${l}`], G * H, H, h, gh, w[`rnn.bias_hh_l${l}`]);
      if (this.m.cell === "lstm") {  // gates i f g o
        const c = s[1];
        for (let k = 0; k < H; k++) {
          const i = sigmoid(gi[k] + gh[k]), f = sigmoid(gi[H + k] + gh[H + k]);
          const g = Math.tanh(gi[2 * H + k] + gh[2 * H + k]), o = sigmoid(gi[3 * H + k] + gh[3 * H + k]);
          c[k] = f * c[k] + i * g;
          h[k] = o * Math.tanh(c[k]);
        }
      } else if (this.m.cell === "gru") {  // gates r z n, the reset gate applied after the product
        for (let k = 0; k < H; k++) {
          const r = sigmoid(gi[k] + gh[k]), z = sigmoid(gi[H + k] + gh[H + k]);
          const n = Math.tanh(gi[2 * H + k] + r * gh[2 * H + k]);
          h[k] = (1 - z) * n + z * h[k];
        }
      } else {
        for (let k = 0; k < H; k++) h[k] = Math.tanh(gi[k] + gh[k]);
      }
      x = h;
    }
    return this.m.adaptive ? this.adaptive(x) : this.full(x);
  }
  full(x) {
    const out = new Float64Array(this.V);
    matvec(this.w[this.m.head], this.V, this.H, x, out, this.w["head.bias"]);
    return out;
  }
  adaptive(x) {
    // log-probabilities by rank: the head's shortlist, then each cluster's over its prior in the head
    const a = this.m.adaptive, w = this.w, H = this.H;
    const head = new Float64Array(a.shortlist + a.clusters.length);
    matvec(w["head.head.weight"], head.length, H, x, head, null);
    const hl = logSoftmax(head), byRank = new Float64Array(this.V);
    byRank.set(hl.subarray(0, a.shortlist));
    a.clusters.forEach(([start, stop, inner], i) => {
      const proj = new Float64Array(inner), out = new Float64Array(stop - start);
      matvec(w[`head.tail.${i}.0.weight`], inner, H, x, proj, null);
      matvec(w[`head.tail.${i}.1.weight`], stop - start, inner, proj, out, null);
      const cl = logSoftmax(out);
      for (let j = 0; j < cl.length; j++) byRank[start + j] = cl[j] + hl[a.shortlist + i];
    });
    const order = w.order, logits = new Float64Array(this.V);
    for (let id = 0; id < this.V; id++) logits[id] = byRank[order[id]];
    return logits;
  }
}

// ------------------------------------------------------------------ the sampler

function mulberry32(seed) {
  // the page's random numbers: mulberry32, a 32-bit state; each call returns a float in [0, 1)
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick(logits, o, rng, never) {
  // the next id: argmax at temperature 0 (the first of equal maxima, as torch's), else a draw
  // from the tempered softmax, cut to the top-k and to the top-p mass (the likeliest always kept)
  const V = logits.length, z = Float64Array.from(logits);
  for (const j of never) z[j] = -Infinity;
  let best = 0;
  for (let j = 1; j < V; j++) if (z[j] > z[best]) best = j;
  if (o.temp === 0) return best;
  const max = z[best];
  for (let j = 0; j < V; j++) z[j] = (z[j] - max) / o.temp;
  if (o.topK > 0 && o.topK < V) {
    const kth = Float64Array.from(z).sort().reverse()[o.topK - 1];
    for (let j = 0; j < V; j++) if (z[j] < kth) z[j] = -Infinity;
  }
  const p = z.map(Math.exp);
  let total = p.reduce((a, b) => a + b, 0);
  if (o.topP < 1) {
    const ids = Array.from(p.keys()).sort((i, j) => p[j] - p[i] || i - j);
    let cum = 0;
    for (const j of ids) {
      if (cum / total > o.topP) p[j] = 0;
      cum += p[j] || 0;
    }
    total = p.reduce((a, b) => a + b, 0);
  }
  let u = rng() * total;
  for (let j = 0; j < V; j++) {
    u -= p[j];
    if (u < 0 && p[j] > 0) return j;
  }
  return best;
}

class Run {
  // one sample: the prime read, then a symbol a step until `length`, the stop string or the documents
  constructor(net, o) {
    const m = net.m;
    this.net = net; this.o = o; this.m = m;
    this.rng = mulberry32(o.seed);
    this.chars = m.vocab.map((c, j) => (j === m.eod ? (m.eodText) : j === m.unk ? "<unk>" : c));
    this.never = m.unk === null ? [] : [m.unk];
    this.label = this.drawLabel(o.label);
    this.state = net.zero();
    const [ids, shown] = this.encode(o.prime);
    this.primeIds = m.eod === null ? ids : ids.slice(1);
    this.prime = shown; this.text = ""; this.picked = 0; this.docs = 0; this.queue = []; this.done = false;
    for (const id of ids) this.logits = net.step(id, this.label, this.state);
  }
  drawLabel(name) {
    const m = this.m;
    if (!m.labels.length) return null;
    if (name) return m.labels.indexOf(name);
    const total = m.labelCounts.reduce((a, b) => a + b, 0);
    let u = this.rng() * total;
    for (let j = 0; j < m.labels.length; j++) if ((u -= m.labelCounts[j]) < 0) return j;
    return m.labels.length - 1;
  }
  encode(prime) {
    // the ids the model reads first, and the prime as shown; a model of documents starts after the end of one
    const m = this.m, index = new Map(m.vocab.map((c, j) => [c, j]));
    const text = m.lowercase ? prime.toLowerCase() : prime, ids = [], missing = [];
    for (const ch of text) {
      if (index.has(ch) && index.get(ch) !== m.eod) ids.push(index.get(ch));
      else if (m.unk !== null) ids.push(m.unk);
      else if (!missing.includes(ch)) missing.push(ch);
    }
    if (missing.length) throw new Error("the prime has characters the model never saw: " + missing.map((c) => JSON.stringify(c)).join(", "));
    const shown = m.unk !== null ? text : ids.map((j) => this.chars[j]).join("");
    if (m.eod !== null) return [[m.eod, ...ids], shown];
    if (ids.length) return [ids, shown];
    if (index.has("\n")) return [[index.get("\n")], ""];
    let j = Math.floor(this.rng() * m.vocab.length);
    if (j === m.unk) j = j ? j - 1 : 1;
    return [[j], this.chars[j]];
  }
  next() {
    // one more symbol; false once the sample is done
    if (this.done) return false;
    const m = this.m, o = this.o;
    let id = pick(this.logits, o, this.rng, this.never);
    if (this.queue.length) id = this.queue.shift();  // a document's prime, fed
    this.picked++;
    if (id === m.eod && m.eod !== null) {
      this.docs++;
      if (o.documents && this.docs >= o.documents) { this.done = true; return false; }
      if (m.labels.length && !o.label) this.label = this.drawLabel("");
      if (o.documents) this.queue = this.primeIds.slice();
    }
    this.text += this.chars[id];
    if (o.stop) {
      const at = this.text.indexOf(o.stop, Math.max(0, this.text.length - this.chars[id].length - o.stop.length));
      if (at >= 0) { this.text = this.text.slice(0, at); this.done = true; return false; }
    }
    if (this.picked >= o.length) { this.done = true; return false; }
    this.logits = this.net.step(id, this.label, this.state);
    return true;
  }
}

// ------------------------------------------------------------------ the page

const $ = (id) => document.getElementById(id);
const FIELDS = ["prime", "temp", "top-k", "top-p", "length", "seed", "stop", "label", "documents"];
let net = null, current = null;

function settings() {
  const num = (id, dflt) => ($(id).value.trim() === "" ? dflt : Number($(id).value));
  const seedText = $("seed").value.trim();
  const seed = seedText === "" ? crypto.getRandomValues(new Uint32Array(1))[0] : Number(BigInt(seedText) & 0xffffffffn);
  if (seedText === "") $("seed").value = String(seed);
  const o = {
    prime: $("prime").value, temp: num("temp", 0.8), topK: num("top-k", 0), topP: num("top-p", 1),
    length: num("length", 500), seed, stop: $("stop").value.replace(/\\n/g, "\n").replace(/\\t/g, "\t"),
    label: $("label").value, documents: num("documents", 0),
  };
  if (!(o.temp >= 0) || !(o.length >= 1) || !(o.topP > 0 && o.topP <= 1) || !(o.topK >= 0)) {
    throw new Error("temperature >= 0, length >= 1, 0 < top-p <= 1 and top-k >= 0, please");
  }
  return o;
}

function show(run, final) {
  const out = $("output");
  out.textContent = "";
  const p = document.createElement("span");
  p.className = "prime";
  p.textContent = run.prime;
  out.append(p, run.text);
  if (final) out.dataset.done = "true";
}

function status(text, state) {
  $("status").textContent = text;
  $("status").dataset.state = state;
}

function speed(run, t0) {
  const s = (performance.now() - t0) / 1000, cps = s > 0 ? run.picked / s : 0;
  $("speed").textContent = `${Math.round(cps).toLocaleString("en")} chars/s`;
  $("speed").dataset.charsPerS = cps.toFixed(1);
}

function linkTo() {
  const q = FIELDS.filter((f) => $(f).value !== "").map((f) => `${f}=${encodeURIComponent($(f).value)}`);
  $("link").href = "#" + q.concat("go").join("&");
}

function write(all) {
  // a sample: at once (`all`, for a link with `go`), or in slices that let the page draw as it writes
  let run, t0;
  try {
    net = net || new Net(M, loadWeights(M.tensors, $("weights").textContent));
    const o = settings();
    linkTo();
    run = current = new Run(net, o);
    t0 = performance.now();
  } catch (e) {
    status(e.message, "error");
    return;
  }
  status("writing", "writing");
  $("go").disabled = true; $("halt").disabled = false;
  out.dataset.done = "false";
  const finish = () => {
    speed(run, t0); show(run, true);
    status(`${run.picked.toLocaleString("en")} characters, seed ${run.o.seed}`, "done");
    $("go").disabled = false; $("halt").disabled = true;
  };
  if (all) {
    while (run.next());
    return finish();
  }
  const slice = () => {
    if (current !== run) return;
    const until = performance.now() + 40;
    while (performance.now() < until && run.next());
    speed(run, t0); show(run);
    if (run.done) finish(); else setTimeout(slice, 0);
  };
  slice();
}

const out = $("output");
function setup() {
  const m = M;
  $("about").textContent = m.about;
  document.title = m.title;
  for (const name of m.labels) $("label").add(new Option(name, name));
  for (const e of document.querySelectorAll(".labelled")) e.hidden = !m.labels.length;
  for (const e of document.querySelectorAll(".documents")) e.hidden = m.eod === null;
  $("prime").value = m.prime;
  const params = new URLSearchParams(location.hash.slice(1));
  for (const f of FIELDS) if (params.has(f)) $(f).value = params.get(f);
  $("form").addEventListener("submit", (e) => { e.preventDefault(); write(false); });
  $("halt").addEventListener("click", () => {
    if (current && !current.done) { current.done = true; }
  });
  if (params.has("go")) write(true);
}
setup();
