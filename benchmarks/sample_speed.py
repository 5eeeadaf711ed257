"""Sampling speed: charrnn's sampler against per-character `nn.LSTM` calls, side by side.

    python benchmarks/sample_speed.py [--hidden 512 --layers 3 --length 2000]

Prints chars/s for one stream and for 32 streams, the ratio to the baseline, and the
memory-bandwidth bound measured on the spot: the time of the bare matrix-vector
products over every weight of one step (what any exact sampler must at least do).
"""

from __future__ import annotations

import argparse
import time

import torch

from charrnn.config import ModelConfig
from charrnn.model import CharRNN
from charrnn.sample import generate
from charrnn.vocab import Vocab


def baseline(model: CharRNN, length: int, streams: int, seed: int = 0) -> float:
    """The plain way: nn.LSTM once per character, carrying (h, c)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(streams, 1, dtype=torch.long)
    state = None
    t = time.perf_counter()
    with torch.no_grad():
        for _ in range(length):
            out, state = model.rnn(model.embed(ids), state)
            probs = torch.softmax(model.head(out[:, -1]) / 0.8, dim=-1)
            ids = torch.multinomial(probs, 1, generator=g)
    return streams * length / (time.perf_counter() - t)


def ours(model: CharRNN, vocab: Vocab, length: int, streams: int, seed: int = 0) -> float:
    t = time.perf_counter()
    for _ in generate(model, vocab, prime="a", length=length, temp=0.8, seed=seed, num_samples=streams):
        pass
    return streams * length / (time.perf_counter() - t)


def bound(model: CharRNN, reps: int) -> float:
    """chars/s if a step cost only the matrix-vector products over all weights (float32)."""
    mats = [p.detach().contiguous() for n, p in model.named_parameters() if p.dim() == 2 and not n.startswith("embed")]
    vecs = [torch.randn(m.shape[1]) for m in mats]
    for _ in range(10):
        for m, v in zip(mats, vecs):
            torch.mv(m, v)
    t = time.perf_counter()
    for _ in range(reps):
        for m, v in zip(mats, vecs):
            torch.mv(m, v)
    return reps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=65)
    ap.add_argument("--length", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each is kept")
    args = ap.parse_args()
    torch.manual_seed(0)
    vocab = Vocab([chr(ord("a") + i) if i < 26 else chr(0x400 + i) for i in range(args.vocab)])
    model = CharRNN(ModelConfig(vocab_size=args.vocab, hidden=args.hidden, layers=args.layers)).eval()
    print(f"{args.layers}x{args.hidden} LSTM, vocab {args.vocab}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, best of {args.rounds} interleaved rounds")
    rows = []
    for streams, length in ((1, args.length), (32, max(args.length // 8, 50))):
        b = o = 0.0
        for _ in range(args.rounds):
            b = max(b, baseline(model, length, streams))
            o = max(o, ours(model, vocab, length, streams))
        rows.append((streams, b, o))
    mv = max(bound(model, 300) for _ in range(args.rounds))
    print(f"{'streams':>8} {'baseline nn.LSTM/char':>22} {'charrnn':>12} {'ratio':>7} {'bound':>10} {'of bound':>9}")
    for streams, b, o in rows:
        bnd = f"{mv:10.0f}" if streams == 1 else f"{'-':>10}"
        frac = f"{100 * o / mv:8.0f}%" if streams == 1 else f"{'-':>9}"
        print(f"{streams:>8} {b:>20.0f}/s {o:>10.0f}/s {o / b:>6.1f}x {bnd} {frac}")


if __name__ == "__main__":
    main()
