"""The loss of a model over a text: the deterministic pass behind training's validation,
`charrnn eval` (`evaluate`) and a text's score.

    loss = mean_loss(model, corpus.split("val"), batch_size=32, seq_len=128)   # nats/char
    evaluate("checkpoints/my-run", file=Path("holdout.txt")).loss
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from charrnn.corpus.store import Corpus
from charrnn.corpus.text import check_text_file, iter_text
from charrnn.errors import BadValueError, CheckpointError, InputError
from charrnn.model.rnn import CharRNN
from charrnn.runtime import autocast, pick_device, pick_precision
from charrnn.training import checkpoint, distributed, runs
from charrnn.training.batches import eval_batches
from charrnn.training.distributed import Ranks
from charrnn.values import Units, perplexity


@torch.no_grad()
def mean_loss(
    model: CharRNN,
    ids: np.ndarray,
    *,
    batch_size: int,
    seq_len: int,
    device: torch.device = torch.device("cpu"),
    precision: str = "fp32",
    ranks: Ranks = Ranks(),
    labels: np.ndarray | None = None,
) -> float:
    """Mean loss in nats per character over every prediction of `ids`, deterministic; a
    labelled model reads each symbol's label id beside it (`labels`, as long as `ids`).
    Under torchrun each rank takes every world-th stream and the sums are reduced."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    state = None
    # a position's label is its target's: the same windows over the labels, their targets
    windows = eval_batches(labels, batch_size, seq_len) if labels is not None else None
    for x, y in eval_batches(ids, batch_size, seq_len):
        lab = None if windows is None else next(windows)[1][ranks.rank :: ranks.world]
        x, y = x[ranks.rank :: ranks.world], y[ranks.rank :: ranks.world]
        if len(x) == 0:
            continue
        x = torch.from_numpy(x).to(device)
        y = torch.from_numpy(y).to(device)
        if lab is not None:
            lab = torch.from_numpy(np.maximum(lab, 0)).to(device)  # -1 pads rows whose targets are ignored
        with autocast(device, precision):
            losses, state = model(x, state, lab, targets=y)
        total += float(losses.sum())
        count += int((y >= 0).sum())
    model.train(was_training)
    total, count = distributed.all_sum([total, count], ranks, device)
    return total / count if count else float("nan")


@torch.no_grad()
def char_logprobs(model: CharRNN, ids: torch.Tensor, *, window: int = 1024, label: int | None = None) -> torch.Tensor:
    """log p(ids[t] | ids[:t]) for t >= 1, in float32: the text read as one stream from a zero
    state, in windows with the state carried, so any length fits in memory. A labelled model
    reads it as text of the label id `label`."""
    was_training = model.training
    model.eval()
    out, state = [], None
    for a in range(0, len(ids) - 1, window):
        x = ids[a : a + window].unsqueeze(0)  # (1, T)
        y = ids[a + 1 : a + window + 1]  # (T',) T' = T, or T - 1 at the end
        lab = None if label is None else torch.full_like(x, label)
        logits, state = model(x, state, lab)
        logp = torch.log_softmax(logits[0, : len(y)].float(), dim=-1)  # (T', V)
        out.append(logp.gather(1, y[:, None])[:, 0])
    model.train(was_training)
    return torch.cat(out).cpu()


@dataclass(frozen=True)
class Evaluation:
    what: str  # "val split of <corpus>", or the file's path
    loss: float  # nats per symbol: per character, or a word model's per token
    predictions: int
    units: Units = Units()  # how the loss is reported (a word model's: per token, with perplexity)

    @property
    def bits(self) -> float | None:
        """Bits per character of the text (None where a word model's text length is unknown)."""
        return self.units.bpc(self.loss)

    @property
    def perplexity(self) -> float:
        """exp(loss): a word model's figure (per token); a character model's per character."""
        return perplexity(self.loss)


def evaluate(
    checkpoint_path: Path,
    *,
    split: str = "val",
    file: Path | None = None,
    unknown: str = "auto",
    device: str = "auto",
    label: str | None = None,
) -> Evaluation:
    """A model's loss on a split of its corpus, or on any UTF-8 file, as `charrnn eval`. A
    labelled model reads its corpus's labels, and a file as text of `label`."""
    path = runs.resolve_checkpoint(checkpoint_path)
    dev = pick_device(device)
    model, vocab, ckpt = checkpoint.load_model(path, dev)
    tc = ckpt.train_config
    labels = None
    if file is not None:
        label_id = model.config.label_id(label)
        content = "".join(iter_text(check_text_file(file)))
        ids = np.asarray(vocab.encode(content, unknown=unknown, context=str(file)), dtype=np.int64)
        labels = None if label_id is None else np.full(len(ids), label_id, dtype=np.int64)
        what = str(file)
        units = vocab.units_of(content, unknown, len(ids) - 1)
    else:
        cpath = runs.checkpoint_corpus(ckpt, "use --file to evaluate on a text file")
        corpus = Corpus.load(cpath)
        try:  # a fine-tuned model orders the corpus's characters its own way
            ids = corpus.split_reader(split, vocab)
        except InputError as e:  # symbols the model lacks, or symbols of another kind
            raise CheckpointError(str(e)) from None
        if label is not None:
            raise BadValueError("--label is for --file: a split is read with its own documents' labels")
        labels = runs.split_labels(corpus, model.config.labels, split)
        what = f"{split} split of {corpus.name}"
        units = Units.of(corpus.meta, split)
    if len(ids) < 2:
        raise InputError(f"{what} has fewer than 2 characters: nothing to evaluate")
    loss = mean_loss(
        model,
        ids,
        batch_size=tc.eval_batch_size,
        seq_len=tc.seq_len,
        device=dev,
        precision=pick_precision("fp32", dev),
        labels=labels,
    )
    return Evaluation(what, loss, len(ids) - 1, units)
