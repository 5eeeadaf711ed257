"""A model as an ONNX graph, built node by node with `onnx.helper` (no tracing, so neither
torch's exporter nor onnxscript is needed), for any ONNX runtime.

    charrnn export checkpoints/my-run --format onnx          # checkpoints/my-run/best.onnx

A text-generating model is one step: `ids` (batch,) int64, a labelled model's `label`
(batch,) int64, and the state `h` (and an LSTM's `c`), each (layers, batch, hidden) float32,
go in; `logits` (batch, vocab) and the new `h_out` (and `c_out`) come out. A runtime samples
by feeding each step's state back, at any batch size. An adaptive softmax's logits are its
log-probabilities (by id, as `CharRNN.logits` gives them).

A classifier is its whole pass: `ids` (batch, time) int64, each character's vocabulary index
plus one with 0 as padding on the right, and `lengths` (batch,) int64, go in; `probs`
(batch, labels), the label probabilities, come out.

Each recurrent layer is ONNX's own LSTM, GRU or RNN operator, its weights reordered from
torch's gate order (i f g o for LSTM, r z n for GRU) to ONNX's (i o f c, z r h). The
checkpoint's fields are in the model's metadata_props, as in an exported safetensors file,
and "io" says what goes in and comes out.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from charrnn.export.source import Source, optional

OPSET = 17
_CELLS = {"lstm": ("LSTM", 4), "gru": ("GRU", 3), "rnn": ("RNN", 1)}


def to_bytes(src: Source) -> bytes:
    """The ONNX model of `src`, serialised and checked by `onnx.checker`."""
    onnx = optional("onnx", "--format onnx")
    graph = _Graph(onnx, src.weights())
    if src.kind == "classifier":
        io = _classifier(graph, src.config)
    else:
        io = _step(graph, src.config)
    model = onnx.helper.make_model(
        graph.build(f"charrnn_{src.kind}"),
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        producer_name="charrnn",
    )
    model.ir_version = min(model.ir_version, 8)  # readable by runtimes a few years old
    for key, value in {**src.metadata(), "io": json.dumps(io)}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    return model.SerializeToString()


class _Graph:
    """Nodes, initializers, inputs and outputs gathered for `onnx.helper.make_graph`."""

    def __init__(self, onnx, weights: dict[str, torch.Tensor]):
        self.onnx, self.helper, self.weights = onnx, onnx.helper, weights
        self.nodes, self.inits, self.inputs, self.outputs = [], {}, [], []
        self.count = 0

    def const(self, name: str, value) -> str:
        """An initializer (a weight, or a small constant), added once."""
        if name not in self.inits:
            array = value.numpy() if torch.is_tensor(value) else np.asarray(value)
            self.inits[name] = self.onnx.numpy_helper.from_array(array, name)
        return name

    def weight(self, name: str) -> np.ndarray:
        return self.weights[name].float().numpy()

    def op(self, kind: str, *inputs: str, outs: int = 1, name: str | None = None, **attrs) -> str | list[str]:
        self.count += 1
        outputs = [name or f"{kind.lower()}_{self.count}"] + [
            f"{kind.lower()}_{self.count}_{i}" for i in range(1, outs)
        ]
        self.nodes.append(self.helper.make_node(kind, list(inputs), outputs, **attrs))
        return outputs[0] if outs == 1 else outputs

    def input(self, name: str, elem, shape) -> str:
        self.inputs.append(self.helper.make_tensor_value_info(name, elem, shape))
        return name

    def output(self, name: str, elem, shape) -> None:
        self.outputs.append(self.helper.make_tensor_value_info(name, elem, shape))

    def build(self, name: str):
        return self.helper.make_graph(self.nodes, name, self.inputs, self.outputs, list(self.inits.values()))

    def recurrent(self, kind: str, layer: int, x: str, h0: str = "", c0: str = "", lens: str = "", both=False):
        """One recurrent layer as ONNX's operator: x (T, B, I) -> Y (T, D, B, H), Y_h, Y_c."""
        op, gates = _CELLS[kind]
        suffixes = ["", "_reverse"] if both else [""]
        w, r, b = [], [], []
        for s in suffixes:
            w_ih, w_hh = self.weight(f"rnn.weight_ih_l{layer}{s}"), self.weight(f"rnn.weight_hh_l{layer}{s}")
            b_ih, b_hh = self.weight(f"rnn.bias_ih_l{layer}{s}"), self.weight(f"rnn.bias_hh_l{layer}{s}")
            order = _gate_order(kind, w_hh.shape[1])
            w.append(w_ih[order])
            r.append(w_hh[order])
            b.append(np.concatenate([b_ih[order], b_hh[order]]))
        args = [self.const(f"{op}_{layer}_{n}", np.stack(m)) for n, m in (("W", w), ("R", r), ("B", b))]
        hidden = r[0].shape[1]
        attrs = {"hidden_size": hidden, "direction": "bidirectional" if both else "forward"}
        if kind == "gru":
            attrs["linear_before_reset"] = 1  # torch applies the reset gate after the product
        outs = 3 if kind == "lstm" else 2
        inputs = [x, *args, lens, h0] + ([c0] if kind == "lstm" else [])
        while inputs[-1] == "":
            inputs.pop()
        return self.op(op, *inputs, outs=outs, **attrs)


def _gate_order(kind: str, hidden: int) -> np.ndarray:
    """Rows of torch's gate blocks in ONNX's order."""
    block = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}[kind]  # i o f g; z r n
    return np.concatenate([np.arange(g * hidden, (g + 1) * hidden) for g in block])


def _step(g: _Graph, cfg) -> dict:
    """A text-generating model's one step (see the module's docstring); returns its "io"."""
    from onnx import TensorProto as T

    lstm = cfg.model == "lstm"
    state = [cfg.layers, "batch", cfg.hidden]
    ids = g.input("ids", T.INT64, ["batch"])
    label = g.input("label", T.INT64, ["batch"]) if cfg.labels else None
    h = g.input("h", T.FLOAT, state)
    c = g.input("c", T.FLOAT, state) if lstm else None
    x = g.op("Gather", g.const("embed.weight", g.weight("embed.weight")), ids)  # (B, H)
    if label is not None:
        x = g.op("Add", x, g.op("Gather", g.const("label_embed.weight", g.weight("label_embed.weight")), label))
    x = g.op("Unsqueeze", x, g.const("axis0", np.array([0])))  # (1, B, H)
    hs, cs = [], []
    for i in range(cfg.layers):
        at = [g.const(f"at{i}", np.array([i])), g.const(f"at{i + 1}", np.array([i + 1])), g.const("axis0", [0])]
        h0 = g.op("Slice", h, *at)  # (1, B, H)
        c0 = g.op("Slice", c, *at) if lstm else ""
        out = g.recurrent(cfg.model, i, x, h0, c0)
        hs.append(out[1])
        if lstm:
            cs.append(out[2])
        x = g.op("Squeeze", out[0], g.const("axis1", np.array([1])))  # (1, B, H)
    g.op("Concat", *hs, axis=0, name="h_out")
    if lstm:
        g.op("Concat", *cs, axis=0, name="c_out")
    top = g.op("Squeeze", x, g.const("axis0", [0]))  # (B, H)
    _head(g, cfg, top)
    g.output("logits", T.FLOAT, ["batch", cfg.vocab_size])
    g.output("h_out", T.FLOAT, state)
    if lstm:
        g.output("c_out", T.FLOAT, state)
    inputs = {"ids": "(batch,) int64: each row's symbol id", "h": "(layers, batch, hidden) float32, zeros to start"}
    if lstm:
        inputs["c"] = "(layers, batch, hidden) float32, zeros to start"
    if label is not None:
        inputs["label"] = "(batch,) int64: each row's label id"
    return {"graph": "one step", "inputs": inputs, "outputs": {"logits": "(batch, vocab)", "h_out": "h's next"}
            | ({"c_out": "c's next"} if lstm else {})}  # fmt: skip


def _head(g: _Graph, cfg, x: str) -> None:
    """logits (B, V) from the top layer's output x (B, H): a product, or an adaptive softmax's
    log-probabilities, by rank, reordered by id."""
    if cfg.softmax == "full":
        w = "embed.weight" if cfg.tie_embeddings else "head.weight"
        g.op("Gemm", x, g.const(w, g.weight(w)), g.const("head.bias", g.weight("head.bias")), transB=1, name="logits")
        return
    head = g.op("LogSoftmax", g.op("MatMul", x, g.const("head.head.T", g.weight("head.head.weight").T)), axis=1)
    cutoffs = [c for c in g.weights if c.startswith("head.tail.")]
    clusters = len(cutoffs) // 2
    shortlist = g.weights["head.head.weight"].shape[0] - clusters
    parts = [g.op("Slice", head, g.const("at0", [0]), g.const(f"to{shortlist}", [shortlist]), g.const("axis1", [1]))]
    for i in range(clusters):
        proj = g.op("MatMul", x, g.const(f"tail{i}.0.T", g.weight(f"head.tail.{i}.0.weight").T))
        out = g.op("LogSoftmax", g.op("MatMul", proj, g.const(f"tail{i}.1.T", g.weight(f"head.tail.{i}.1.weight").T)))
        at = shortlist + i
        prior = g.op("Slice", head, g.const(f"at{at}", [at]), g.const(f"to{at + 1}", [at + 1]), g.const("axis1", [1]))
        parts.append(g.op("Add", out, prior))
    by_rank = g.op("Concat", *parts, axis=1)
    g.op("Gather", by_rank, g.const("order", g.weights["order"].long().numpy()), axis=1, name="logits")


def _classifier(g: _Graph, cfg) -> dict:
    """A classifier's whole pass (see the module's docstring); returns its "io"."""
    from onnx import TensorProto as T

    ids = g.input("ids", T.INT64, ["batch", "time"])
    lengths = g.input("lengths", T.INT64, ["batch"])
    x = g.op("Gather", g.const("embed.weight", g.weight("embed.weight")), ids)  # (B, T, H)
    x = g.op("Transpose", x, perm=[1, 0, 2])  # (T, B, H)
    lens = g.op("Cast", lengths, to=T.INT32)
    for i in range(cfg.layers):
        out = g.recurrent(cfg.model, i, x, lens=lens, both=cfg.bidirectional)  # Y (T, D, B, H)
        y, last = out[0], out[1]  # last: Y_h (D, B, H)
        x = g.op("Reshape", g.op("Transpose", y, perm=[0, 2, 1, 3]), g.const("to_tbf", [0, 0, -1]))  # (T, B, D*H)
    last = g.op("Reshape", g.op("Transpose", last, perm=[1, 0, 2]), g.const("to_bf", [0, -1]))  # (B, D*H)
    logits = g.op("Gemm", last, g.const("head.weight", g.weight("head.weight")),
                  g.const("head.bias", g.weight("head.bias")), transB=1)  # fmt: skip
    g.op("Softmax", logits, axis=1, name="probs")
    g.output("probs", T.FLOAT, ["batch", cfg.labels])
    return {
        "graph": "whole text",
        "inputs": {"ids": "(batch, time) int64: vocabulary index + 1 of each character, 0 pads on the right",
                   "lengths": "(batch,) int64: characters of each text (an empty text is one padding id, length 1)"},
        "outputs": {"probs": "(batch, labels) float32: each label's probability, in the order of 'labels'"},
    }  # fmt: skip
