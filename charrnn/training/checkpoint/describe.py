"""What a checkpoint shows of itself: the rows of `charrnn info` and of the report's
configuration table. Only what commands use is checked on load, so every row here reads the
file's fields as stored and shows a damaged one as "?".

    for label, text in describe(read(path)): ...
"""

from __future__ import annotations

from charrnn.corpus.tokens import cap_flags
from charrnn.corpus.vocab import shown
from charrnn.training.checkpoint.schema import Checkpoint
from charrnn.values import Units, as_dict, is_number, number


def config_fields(c: Checkpoint, key: str) -> dict:
    """A checkpoint's model_config or train_config as the run uses it (a field an older
    checkpoint lacks takes its default), or as stored where it does not parse."""
    config = c.model_config if key == "model_config" else c.train_config
    return config.to_dict() if config is not None else as_dict(c.payload.get(key))


def parameters(weights, mc: dict) -> int | None:
    """The model's parameters, as `CharRNN.num_params` counts them: its weights but the buffers
    (an adaptive softmax's order), the tied output matrix once."""
    if not isinstance(weights, dict):
        return None
    skip = {"order"} | ({"head.weight"} if mc.get("tie_embeddings") is True else set())
    return sum(t.numel() for name, t in weights.items() if name not in skip)


def _finite(v):
    """A number as JSON can hold it (None for a damaged value, or an infinite or NaN loss)."""
    return v if is_number(v) and v == v and abs(v) != float("inf") else None


def summary(c: Checkpoint) -> dict:
    """What `describe` shows, as values: the JSON of the server's /v1/info."""
    ckpt = c.payload or c.to_payload()
    mc, tc = config_fields(c, "model_config"), config_fields(c, "train_config")
    corpus, tokens = as_dict(ckpt.get("corpus")), as_dict(ckpt.get("tokens"))
    cap = as_dict(corpus.get("tokens"))
    labels = mc.get("labels") if isinstance(mc.get("labels"), (list, tuple)) else []
    return {
        "model": {k: mc.get(k) for k in ("model", "layers", "hidden", "dropout", "softmax", "tie_embeddings")},
        "parameters": parameters(ckpt.get("model"), mc),
        "vocabulary": {
            "size": len(ckpt["vocab"]) if isinstance(ckpt.get("vocab"), list) else None,
            "tokens": tokens.get("kind", "char"),
            "lowercase": bool(tokens.get("lowercase", False)),
            "max_vocab": cap.get("max_vocab"),
            "min_count": cap.get("min_count"),
        },
        "step": _finite(ckpt.get("step")),
        "epoch": _finite(ckpt.get("epoch")),
        "best_val_loss": _finite(ckpt.get("best_val_loss")),
        "best_step": _finite(ckpt.get("best_step")),
        "loss_unit": "nats/token" if Units.of(corpus).word else "nats/char",
        "training": {k: tc.get(k) for k in ("batch_size", "seq_len", "lr", "seed")} | {
            "elapsed_s": _finite(ckpt.get("elapsed_s"))},
        "precision": ckpt.get("precision"),
        "device": ckpt.get("device"),
        "corpus": {k: corpus.get(k) for k in ("name", "chars", "sha256", "documents", "doc_sep")},
        "labels": dict(zip(labels, mc.get("label_counts") or [None] * len(labels), strict=False)),
        "created": ckpt.get("created"),
        "charrnn_version": ckpt.get("charrnn_version"),
        "torch_version": ckpt.get("torch_version"),
        "format": ckpt.get("format"),
        "format_version": ckpt.get("version"),
    }  # fmt: skip


def _vocab_row(size, tokenizer, chosen) -> str:
    """The vocabulary row of `describe`: its size, its kind of symbols and their cap."""
    tokenizer, chosen = as_dict(tokenizer), as_dict(chosen)
    kind = "tokens (words)" if tokenizer.get("kind") == "word" else "characters"
    notes = ["lowercased"] if tokenizer.get("lowercase") is True else []
    notes += cap_flags(chosen)
    if is_number(chosen.get("coverage")):
        notes.append(f"coverage {chosen['coverage']:.2%}")
    return f"{number(size, ',')} {kind}" + (f" ({', '.join(notes)})" if notes else "")


def describe(c: Checkpoint) -> list[tuple[str, str]]:
    """(label, text) rows of what a checkpoint holds, for `charrnn info` and the report. Only
    what commands use is validated on load: a damaged descriptive field shows as "?"."""
    ckpt = c.payload or c.to_payload()
    mc, tc = config_fields(c, "model_config"), config_fields(c, "train_config")
    corpus = as_dict(ckpt.get("corpus"))
    best = ckpt.get("best_val_loss")
    params = parameters(ckpt.get("model"), mc)
    vocab_size = len(ckpt["vocab"]) if isinstance(ckpt.get("vocab"), list) else None
    units = Units.of(corpus)

    def get(d: dict, key: str) -> str:
        return str(d.get(key, "?"))

    return [
        (
            "model",
            f"{get(mc, 'model')} {get(mc, 'layers')} x {get(mc, 'hidden')}, dropout {get(mc, 'dropout')}"
            + (", adaptive softmax" if mc.get("softmax") == "adaptive" else ""),
        ),
        ("parameters", number(params, ",")),
        ("vocabulary", _vocab_row(vocab_size, ckpt.get("tokens"), corpus.get("tokens"))),
        ("step", f"{number(ckpt.get('step'), ',')} (epoch {number(ckpt.get('epoch'))})"),
        (
            "best val loss",
            f"{units.describe(best)} (step {number(ckpt.get('best_step'))})",
        ),
        (
            "training",
            f"batch {get(tc, 'batch_size')} x seq {get(tc, 'seq_len')}, lr {get(tc, 'lr')}, "
            f"seed {get(tc, 'seed')}, {number(ckpt.get('elapsed_s'), '.1f')} s",
        ),
        ("precision", f"{ckpt.get('precision', '?')} on {ckpt.get('device', '?')}"),
        ("corpus", f"{corpus.get('name', '?')} ({number(corpus.get('chars'), ',')} characters{_documents(corpus)})"),
        ("corpus sha256", str(corpus.get("sha256"))),
        *_label_rows(mc),
        *_auto_rows(ckpt.get("auto")),
        *_parent_rows(ckpt.get("parent")),
        *provenance_rows(ckpt),
    ]


INFO_LABELS = 30  # labels `info` lists


def _label_rows(mc: dict) -> list[tuple[str, str]]:
    """A labelled model's labels with the documents of each it was trained on."""
    names, counts = mc.get("labels"), mc.get("label_counts")
    if not isinstance(names, (list, tuple)) or not names:
        return []
    counts = counts if isinstance(counts, (list, tuple)) and len(counts) == len(names) else ["?"] * len(names)
    listed = shown(
        [f"{name} {number(c, ',')}" for name, c in zip(names, counts, strict=True)], INFO_LABELS, quote=False
    )
    return [("labels", f"{len(names)} (documents each: {listed})")]


def _documents(corpus: dict) -> str:
    """ ", N documents split at SEP" for a corpus of documents, else ""."""
    if not is_number(corpus.get("documents")):
        return ""
    sep = corpus.get("doc_sep")
    return f", {number(corpus['documents'], ',')} documents" + (f" split at {sep!r}" if isinstance(sep, str) else "")


def _auto_rows(auto) -> list[tuple[str, str]]:
    """How --preset auto chose the preset, by the speed it measured here."""
    if not isinstance(auto, dict):
        return []
    speeds = auto.get("chars_per_sec") if isinstance(auto.get("chars_per_sec"), dict) else {}
    measured = ", ".join(f"{k} {number(v / 1e3 if is_number(v) else None, '.1f')}k" for k, v in speeds.items())
    return [("preset", f"auto: {auto.get('preset', '?')} ({auto.get('reason', '?')}; chars/s measured: {measured})")]


def _parent_rows(parent) -> list[tuple[str, str]]:
    """Where a fine-tuned model started: the parent checkpoint, and the characters it lacked."""
    if not isinstance(parent, dict):
        return []
    new = parent.get("new") if isinstance(parent.get("new"), list) else []
    listed = ", ".join(repr(c) for c in new if isinstance(c, str))
    more = parent.get("new_chars", len(new))
    added = f"{number(more)} new character(s)" + (f": {listed}" if listed else "")
    if is_number(more) and more > len(new):
        added += ", …"
    return [
        ("fine-tuned from", f"{parent.get('path', '?')} (step {number(parent.get('step'), ',')}, "
         f"corpus {parent.get('corpus', '?')})"),
        ("parent sha256", str(parent.get("sha256", "?"))),
        ("vocabulary added", f"{number(parent.get('chars'))} characters kept, {added}"),
    ]  # fmt: skip


def provenance_rows(ckpt: dict) -> list[tuple[str, str]]:
    """The last rows of `describe` for every kind of checkpoint: its provenance and format."""
    return [
        (
            "created",
            f"{ckpt.get('created', '?')} by charrnn {ckpt.get('charrnn_version', '?')}, "
            f"torch {ckpt.get('torch_version', '?')}",
        ),
        ("format", f"{ckpt.get('format', '?')} v{ckpt.get('version', '?')}"),
    ]
