"""Training and evaluation batches over a split's ids: contiguous streams, as in char-rnn,
so the hidden state carries from one window to the next.

    batcher = StreamBatcher(corpus.split_reader("train"), batch_size=64, seq_len=128)
    x, y = batcher.batch(0)                        # (B, T) inputs and targets
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from charrnn.errors import InputError

MIN_EVAL_STREAM = 512  # characters


class StreamBatcher:
    """Batches of B contiguous streams, as in char-rnn: batch k of an epoch holds, for each
    stream b, the characters [b*L + k*T, b*L + (k+1)*T] (inputs, and targets shifted by one),
    so a hidden state carried from batch k to k+1 continues the same text."""

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, *, rows: slice = slice(None)):
        n = len(ids)
        need = batch_size * seq_len + 1
        if n < need:
            raise InputError(
                f"the training split has {n} characters but --batch-size {batch_size} x "
                f"--seq-len {seq_len} needs at least {need}; lower --batch-size or --seq-len"
            )
        self.ids = ids
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.stream_len = (n - 1) // batch_size
        self.steps_per_epoch = self.stream_len // seq_len
        # the streams of the whole batch are laid out the same for any number of processes;
        # `rows` picks this process's share
        self.starts = (np.arange(batch_size, dtype=np.int64) * self.stream_len)[rows]

    def batch(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of the k-th batch of an epoch, each (B, T) int64."""
        return self.batch_at(k * self.seq_len)

    def batch_at(self, off: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of the window starting `off` characters into every stream."""
        t = self.seq_len
        chunk = np.stack([self.ids[s + off : s + off + t + 1] for s in self.starts]).astype(np.int64)
        return chunk[:, :-1], chunk[:, 1:]


def eval_batches(ids: np.ndarray, batch_size: int, seq_len: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every prediction of a split exactly once: the split is cut into at most `batch_size`
    contiguous streams of at least MIN_EVAL_STREAM characters (the last one padded with
    target -1, to be ignored), walked in windows of `seq_len` with the hidden state carried
    by the caller. Only one window is in memory at a time."""
    n_pred = len(ids) - 1
    if n_pred <= 0:
        return
    # Each stream starts from a zero state, so keep streams long enough for that to wash out.
    streams = max(1, min(batch_size, n_pred // MIN_EVAL_STREAM))
    length = math.ceil(n_pred / streams)
    rows = math.ceil(n_pred / length)
    for a in range(0, length, seq_len):
        w = min(seq_len, length - a)
        x = np.zeros((rows, w), dtype=np.int64)
        y = np.full((rows, w), -1, dtype=np.int64)
        for r in range(rows):
            start = r * length + a
            stop = min(start + w, r * length + length, n_pred)  # predictions this row makes here
            if stop > start:
                chunk = ids[start : stop + 1]
                x[r, : stop - start] = chunk[:-1]
                y[r, : stop - start] = chunk[1:]
        yield x, y
