"""What a trained model sees in a text, as one self-contained HTML page.

    charrnn visualize checkpoints/my-run --text play.txt --out play.html
    page, shown = visualize_checkpoint(Path("checkpoints/my-run"), text=Path("play.txt"))

For every character: the probability the model gave it, the model's five likeliest guesses
for the character after it, and the activation of every hidden unit (h, and for an LSTM the
cell state c) after reading it. Units are ranked by how well they track simple features of
the text (inside quotes, position in line, ...), so the interesting ones are a click away.

The model runs one character at a time with `FastStepper`, because `nn.LSTM` returns the
hidden states of its last layer only. The page (template: visualize.html beside this file)
needs no network: data is JSON inside a <script> tag, activations are int8 in base64, and
the CSS and JS are inline.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from charrnn.corpus.store import Corpus
from charrnn.corpus.text import check_text_file, iter_text
from charrnn.corpus.vocab import Vocab
from charrnn.errors import BadValueError, InputError
from charrnn.model.rnn import CharRNN
from charrnn.model.stepper import FastStepper
from charrnn.pages import page_head, write_html
from charrnn.training import checkpoint, runs

TOP_K = 5
MAX_STORED = 3_000_000  # activation values (one byte each) kept in a page: about 4 MB of base64
OPENERS, CLOSERS = "([{（【「『", ")]}）】」』"


@dataclass
class Trace:
    text: str  # the text traced
    units: list[str]  # its symbols, one per step: code points, or a word model's tokens
    prob: np.ndarray  # (N,) probability the model gave each character; NaN for the first
    top_ids: np.ndarray  # (N, K) the likeliest characters to follow each one
    top_p: np.ndarray  # (N, K) their probabilities
    states: np.ndarray  # (L, S, N, H) after each character; S = 2 (h, c) for an LSTM, else 1 (h)
    kinds: tuple[str, ...]  # ("h", "c") or ("h",)

    @property
    def loss(self) -> float:
        """Mean loss in nats per predicted symbol."""
        p = self.prob[1:]
        return float(-np.log(np.maximum(p, 1e-12)).mean()) if len(p) else float("nan")


@torch.no_grad()
def trace(
    model: CharRNN, vocab: Vocab, text: str | list[int], *, top_k: int = TOP_K, labels: np.ndarray | None = None
) -> Trace:
    """Run `text` (or its ids) through `model` one symbol at a time, keeping every layer's
    state. A labelled model reads each symbol with a label id (`labels`, one per symbol: the
    label of the document the next symbol belongs to)."""
    ids = vocab.encode(text, context="the text to visualise") if isinstance(text, str) else list(text)
    if len(ids) < 2:
        raise InputError(f"the text to visualise needs at least 2 {vocab.unit}s")
    units = [vocab.shown_chars[i] for i in ids]
    text = "".join(units)
    ids = torch.tensor(ids, dtype=torch.long)
    stepper = FastStepper(model)
    state = stepper.convert(model.init_state(1))  # per layer [h] or [h, c], each (1, H)
    label_ids = None if labels is None else torch.as_tensor(np.asarray(labels, dtype=np.int64))
    logps, steps = [], []
    for t in range(len(ids)):
        label = None if label_ids is None else label_ids[t : t + 1]
        logits, state = stepper.step(ids[t : t + 1], state, label)  # logits (1, V)
        logps.append(torch.log_softmax(logits[0], dim=-1))
        steps.append(torch.stack([torch.stack([s[0] for s in layer]) for layer in state]))  # (L, S, H)
    logp = torch.stack(logps)  # (N, V): prediction for the character after each one
    states = torch.stack(steps, dim=2).numpy()  # (L, S, N, H)
    prob = np.full(len(ids), np.nan, dtype=np.float64)
    prob[1:] = logp[:-1].gather(1, ids[1:, None])[:, 0].exp().double().numpy()
    top = logp.exp().topk(min(top_k, len(vocab)), dim=-1)
    kinds = ("h", "c") if model.config.model == "lstm" else ("h",)
    return Trace(text, units, prob, top.indices.numpy(), top.values.double().numpy(), states, kinds)


# --------------------------------------------------------------------------- features

FEATURES = (
    "inside quotes",
    "inside brackets",
    "position in line",
    "start of word",
    "after newline",
    "inside a word",
    "capital letter",
)


def unit_features(units: list[str]) -> dict[str, np.ndarray]:
    """`text_features` per symbol: each symbol's are its last character's (a word model's
    token "Romeo" is at the start of a word and a capital if its first letter is)."""
    f = text_features("".join(units))
    last = np.cumsum([len(u) for u in units]) - 1
    firsts = last - np.array([len(u) for u in units]) + 1
    out = {name: values[last] for name, values in f.items()}
    for name in ("start of word", "capital letter"):  # said of a token's first letter
        out[name] = f[name][firsts]
    return out


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


def interesting_cells(
    r: np.ndarray, labels: list, *, names=FEATURES, per_feature: int = 3, top: int = 12
) -> list[dict]:
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
    chosen = sorted(list(best.items()) + rest[: max(top - len(best), 0)], key=strength)
    return [
        {
            "index": u,
            "layer": labels[u][0],
            "kind": labels[u][1],
            "unit": labels[u][2],
            "feature": names[fi],
            "r": round(rv, 3),
        }
        for u, (fi, rv) in chosen
    ]


# --------------------------------------------------------------------------- page


def build_page(
    model: CharRNN,
    vocab: Vocab,
    text: str,
    *,
    title: str = "charrnn",
    max_stored: int = MAX_STORED,
    labels: np.ndarray | None = None,
) -> str:
    t = trace(model, vocab, text, labels=labels)
    feats = unit_features(t.units)
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
        "text": t.units,
        "unit": vocab.unit,
        "vocab": vocab.shown_chars,
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
    head, tail = Path(__file__).with_name("visualize.html").read_text(encoding="utf-8").split("__DATA__", 1)
    head = head.replace("__HEAD__\n", page_head(f"{title} · charrnn visualize")).replace(
        "__TITLE__", html.escape(title)
    )
    return head + script_json(data) + tail


def script_json(obj) -> str:
    """JSON that is safe inside <script>: no '<', '>' or '&', so `</script>` in the text cannot
    end the element; ensure_ascii also escapes U+2028/U+2029."""
    s = json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_page(
    model: CharRNN,
    vocab: Vocab,
    text: str | list[int],
    *,
    out: Path,
    title: str = "charrnn",
    labels: np.ndarray | None = None,
) -> Path:
    return write_html(out, build_page(model, vocab, text, title=title, labels=labels))


def visualize_checkpoint(
    checkpoint_path: Path,
    *,
    text: Path | None = None,
    prime: str | None = None,
    out: Path | None = None,
    max_chars: int = 3000,
    unknown: str = "auto",
    label: str | None = None,
) -> tuple[Path, int]:
    """`charrnn visualize`: the page of a checkpoint on a file, on `prime`, or on the start of
    its corpus's validation split (default: visualize.html beside the checkpoint). Returns the
    page and the number of characters it shows. A labelled model reads a file or `prime` as
    text of `label`, and the split with its documents' labels."""
    if text is not None and prime is not None:
        raise BadValueError("give --text or --prime, not both")
    path = runs.resolve_checkpoint(checkpoint_path)
    model, vocab, ckpt = checkpoint.load_model(path)
    labels = None
    if prime is not None or text is not None:
        label_id = model.config.label_id(label)
        if prime is not None:
            content, what = prime, "--prime"
        else:
            content, what = "".join(iter_text(check_text_file(text))), str(text)
    else:
        corpus = Corpus.load(runs.checkpoint_corpus(ckpt, "give --text FILE or --prime TEXT"))
        what = f"val split of {corpus.name}"
        reader = corpus.split_reader("val", vocab)  # a fine-tuned model orders the corpus's symbols its own way
        content = [int(i) for i in reader[0 : min(max_chars, len(reader))]]
        if label is not None:
            raise BadValueError("--label is for --text and --prime: a split is read with its documents' labels")
        label_id = None
        reader = runs.split_labels(corpus, model.config.labels, "val")
        if reader is not None:  # each character with the label of the next one's document
            own = reader[0 : max_chars + 1]
            labels = np.append(own[1:], own[-1:])[: len(content)]
    ids = vocab.encode(content, unknown=unknown, context=what) if isinstance(content, str) else content
    ids = ids[:max_chars]
    if label_id is not None:
        labels = np.full(len(ids), label_id)
    title = f"{path.parent.name}/{path.name} on {what}"
    page = write_page(model, vocab, ids, out=out or path.parent / "visualize.html", title=title, labels=labels)
    return page, len(ids)
