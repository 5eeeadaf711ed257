"""`charrnn export --format html`: a model as one self-contained HTML page that writes text in any browser, offline: the
weights embedded (base64), a small JavaScript implementation of the model's layers and of the
sampler (writer.js), and a form to write from (template: writer.html).

    charrnn export checkpoints/my-run --format html -o shakespeare.html
    # then open file:///.../shakespeare.html#prime=ROMEO%3A&temp=0&length=500&seed=7&go

The page loads nothing: no CDN, no fetch, no web font, and a Content-Security-Policy that
forbids any request. Its settings can be given in the URL's fragment (`go` writes at once, as
the page opens); the text it writes is in the element with id "output", and the speed in
"speed" (its `data-chars-per-s`).

Weights are stored as float32 (exact: greedy text equals `charrnn sample --temp 0`), float16,
or int8 with a float32 scale per row (a 1-D tensor, a bias, stays float32); the page turns
them back into float32 when it opens. It refuses a classifier and a word-token model.
"""

from __future__ import annotations

import base64
import html
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

from charrnn.corpus.documents import EOD
from charrnn.errors import BadValueError
from charrnn.export.source import Source
from charrnn.pages import page_head
from charrnn.pages.visualize import script_json

HERE = Path(__file__).parent


def to_bytes(src: Source, dtype: str = "float16") -> bytes:
    """The page of a text-generating model of characters, its weights stored as `dtype`."""
    if src.kind != "lm":
        raise BadValueError(
            f"{src.path}: is a classifier; --format html writes a page for text-generating models "
            "(a classifier exports to onnx or safetensors)"
        )
    if src.vocab.tokenizer.kind != "char":
        raise BadValueError(
            f"{src.path}: is a word-token model; the html page reads characters only "
            "(export it to onnx or safetensors, which carry its vocabulary)"
        )
    blob, tensors = pack(_tensors(src), dtype)
    model = _description(src, dtype)
    model["tensors"] = tensors
    title = model["title"]
    page = (HERE / "writer.html").read_text(encoding="utf-8")
    page = page.replace("__HEAD__\n", page_head(title)).replace("__TITLE__", html.escape(title))
    script = (HERE / "writer.js").read_text(encoding="utf-8")
    head, rest = page.split("__MODEL__", 1)
    middle, tail = rest.split("__WEIGHTS__", 1)
    tail = tail.replace("__SCRIPT__", script)
    return (head + script_json(model) + middle + base64.b64encode(blob).decode("ascii") + tail).encode("utf-8")


def _tensors(src: Source) -> dict[str, torch.Tensor]:
    """The tensors the page reads, by their state-dict names (a tied head is the embedding)."""
    weights = src.weights()
    if src.config.tie_embeddings:
        weights.pop("head.weight")
    return weights


def _description(src: Source, dtype: str) -> dict:
    """What the page's script needs besides the weights: the shape, the vocabulary and the
    symbols it treats apart, labels, and a line about the model."""
    cfg, vocab, payload = src.config, src.vocab, src.payload
    name = src.path.parent.name if src.path.name in ("best.pt", "last.pt") else src.path.stem
    adaptive = None
    if cfg.softmax == "adaptive":
        head = src.net.head
        cutoffs = [*head.cutoffs]  # the head's end, each cluster's, and the vocabulary's size
        adaptive = {
            "shortlist": head.shortlist_size,
            "clusters": [[a, b, head.tail[i][0].out_features] for i, (a, b) in enumerate(pairwise(cutoffs))],
        }
    step, loss = payload.get("step"), payload.get("best_val_loss")
    trained = f" · {step:,} steps" if isinstance(step, int) else ""
    if isinstance(loss, float) and np.isfinite(loss):
        trained += f", val loss {loss:.3f}"
    return {
        "title": f"{name} · charrnn",
        "about": f"{cfg.model.upper()} {cfg.layers} × {cfg.hidden} · {len(vocab):,} characters · "
        f"{dtype} weights{trained}",
        "cell": cfg.model,
        "layers": cfg.layers,
        "hidden": cfg.hidden,
        "vocab": vocab.chars,
        "lowercase": vocab.tokenizer.lowercase,
        "eod": vocab.index.get(EOD),
        "eodText": src.eod_text,
        "unk": vocab.unk,
        "labels": list(cfg.labels),
        "labelCounts": list(cfg.label_counts),
        "head": "embed.weight" if cfg.tie_embeddings else "head.weight",
        "adaptive": adaptive,
        "prime": "",
        "dtype": dtype,
    }


def pack(tensors: dict[str, torch.Tensor], dtype: str) -> tuple[bytes, list[dict]]:
    """The tensors as one blob, each at an offset aligned to 4 bytes, and the list that says
    where each lies and how it is stored: "f32", "f16", "i8" (its per-row float32 scales at
    "scales") or "i32" (an index, such as an adaptive softmax's order)."""
    parts, listed, at = [], [], 0

    def put(data: bytes) -> int:
        nonlocal at
        start = at
        parts.append(data + b"\0" * (-len(data) % 4))
        at += len(parts[-1])
        return start

    for name, t in tensors.items():
        entry = {"name": name, "shape": list(t.shape)}
        if not t.is_floating_point():
            entry.update(dtype="i32", offset=put(t.to(torch.int32).numpy().tobytes()))
        elif dtype == "float32" or t.dim() != 2:
            entry.update(dtype="f32", offset=put(t.float().numpy().tobytes()))
        elif dtype == "float16":
            entry.update(dtype="f16", offset=put(t.half().numpy().tobytes()))
        else:
            w = t.float()
            scales = (w.abs().amax(dim=1) / 127).clamp_min(1e-12)  # (rows,)
            q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
            entry.update(dtype="i8", offset=put(q.numpy().tobytes()), scales=put(scales.numpy().tobytes()))
        listed.append(entry)
    return b"".join(parts), listed
