"""A small character-level transformer, trained for a wall-clock budget on charrnn's own split of
a corpus and evaluated on its whole val split: the baseline `quality.py` runs beside
charrnn.

    python benchmarks/transformer_baseline.py --time-limit 60            # prints one JSON line

The sizes and recipe are those of nanoGPT's documented CPU run on tiny-shakespeare: 4 layers,
4 heads, 128 wide, context 64, batch 12, AdamW (lr 1e-3, betas 0.9/0.99, weight decay 0.1 on
matrices), 100 warm-up steps then cosine decay to 1e-4, gradient clipping at 1.0, dropout 0.
The cosine runs over the time budget, as charrnn's does under --time-limit. The model is
written here from the standard architecture (pre-norm blocks, causal self-attention, learned
positions, tied input and output embeddings).

Evaluation: the val split in consecutive windows of the context length, every prediction
counted once (a character at the start of a window sees no context, as in nanoGPT's own
evaluation); mean loss in nats per character.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from charrnn.training import runs


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C)
        b, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))  # (B, h, T, c/h)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(a)
        return x + self.mlp(self.norm2(x))


class CharTransformer(nn.Module):
    def __init__(self, vocab: int, *, layers: int = 4, heads: int = 4, width: int = 128, context: int = 64):
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, width), nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.embed.weight  # tied
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, V)
        x = self.embed(ids) + self.pos(torch.arange(ids.size(1)))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def val_loss(model: CharTransformer, val: np.ndarray, context: int, batch: int = 64) -> float:
    model.eval()
    total, count = 0.0, 0
    windows = [val[i : i + context + 1] for i in range(0, len(val) - 1, context)]
    with torch.no_grad():
        for a in range(0, len(windows), batch):
            group = windows[a : a + batch]
            width = max(len(w) for w in group)
            x = torch.zeros(len(group), width - 1, dtype=torch.long)
            y = torch.full((len(group), width - 1), -1, dtype=torch.long)
            for r, w in enumerate(group):
                x[r, : len(w) - 1] = torch.from_numpy(w[:-1].astype(np.int64))
                y[r, : len(w) - 1] = torch.from_numpy(w[1:].astype(np.int64))
            logits = model(x)
            total += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-1, reduction="sum"))
            count += int((y >= 0).sum())
    model.train()
    return total / count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="tinyshakespeare")
    ap.add_argument("--time-limit", type=float, required=True)
    ap.add_argument("--seed", type=int, default=1337)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    corpus = runs.open_corpus(a.corpus)
    train, val = np.asarray(corpus.split("train")), np.asarray(corpus.split("val"))
    context, batch, lr, min_lr, warmup = 64, 12, 1e-3, 1e-4, 100
    model = CharTransformer(len(corpus.vocab), context=context)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.99)
    )
    g = np.random.default_rng(a.seed)
    step, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < a.time_limit:
        progress = elapsed / a.time_limit
        rate = (
            lr * (step + 1) / warmup
            if step < warmup
            else min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
        )
        for group in opt.param_groups:
            group["lr"] = rate
        starts = g.integers(0, len(train) - context - 1, size=batch)
        chunk = torch.from_numpy(np.stack([train[s : s + context + 1] for s in starts]).astype(np.int64))
        logits = model(chunk[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
    print(
        json.dumps({"steps": step, "seconds": round(time.perf_counter() - t0, 1), "val": val_loss(model, val, context)})
    )


if __name__ == "__main__":
    main()
