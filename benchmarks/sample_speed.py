"""Sampling speed: charrnn's sampler against per-character `nn.LSTM` calls, side by side.

    python benchmarks/sample_speed.py [--hidden 512 --layers 3 --length 2000]
    python benchmarks/sample_speed.py --device cuda --streams 1,32,256 --batcher

Prints chars/s for each number of streams (one request of that many samples; 1 and 32 by
default, the many in fp32 and in bf16), the ratio to the baseline, and the bound
measured on the spot: the time of the bare matrix products over every weight of one step
(what any exact sampler must at least do). For one stream that is memory bandwidth, for 32
the arithmetic of a 32-row matrix product in the row's precision.

--batcher adds the server's continuous batching (`charrnn.generation.batching.Batcher`, what `charrnn
serve` steps): as many separate requests as streams, each of one sample, submitted at once,
against the same streams as one request.
"""

from __future__ import annotations

import argparse
import threading
import time

import torch

from charrnn.config import ModelConfig, SampleConfig
from charrnn.corpus.vocab import Vocab
from charrnn.generation.sample import generate
from charrnn.model.rnn import CharRNN


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def baseline(model: CharRNN, length: int, streams: int, seed: int = 0) -> float:
    """The plain way: nn.LSTM once per character, carrying (h, c), and each character read back
    (as a sampler that prints as it goes must)."""
    device = model.head.weight.device
    g = torch.Generator(device).manual_seed(seed)
    ids = torch.zeros(streams, 1, dtype=torch.long, device=device)
    state = None
    t = time.perf_counter()
    with torch.no_grad():
        for _ in range(length):
            out, state = model.rnn(model.embed(ids), state)
            probs = torch.softmax(model.head(out[:, -1]) / 0.8, dim=-1)
            ids = torch.multinomial(probs, 1, generator=g)
            ids.tolist()
    return streams * length / (time.perf_counter() - t)


def ours(model: CharRNN, vocab: Vocab, length: int, streams: int, precision: str, seed: int = 0) -> float:
    t = time.perf_counter()
    config = SampleConfig(prime="a", length=length, temp=0.8, seed=seed, num_samples=streams, precision=precision)
    for _ in generate(model, vocab, config):
        pass
    return streams * length / (time.perf_counter() - t)


def batched(model: CharRNN, vocab: Vocab, length: int, streams: int, seed: int = 0) -> float:
    """chars/s of `streams` requests of one sample each, all submitted at once to the batcher
    that `charrnn serve` steps, until the last is done."""
    from charrnn.generation.batching import Batcher, Done

    done = threading.Semaphore(0)
    deliver = lambda item: done.release() if isinstance(item, Done) else None  # noqa: E731
    batcher = Batcher(model, vocab, max_streams=streams, max_waiting=streams)
    try:
        t = time.perf_counter()
        for i in range(streams):
            batcher.submit(SampleConfig(prime="a", length=length, temp=0.8, seed=seed + i), deliver)
        for _ in range(streams):
            done.acquire()
        return streams * length / (time.perf_counter() - t)
    finally:
        batcher.close()


def bound(model: CharRNN, reps: int, streams: int = 1, dtype: torch.dtype = torch.float32) -> float:
    """chars/s if a step cost only one pass over every weight matrix: each matrix multiplied by
    the streams' vectors in turn (for one stream in whichever of torch's two forms is faster).
    One stream is bound by memory bandwidth, many by the matrix product's arithmetic."""
    mats = [
        p.detach().contiguous().to(dtype)
        for n, p in model.named_parameters()
        if p.dim() == 2 and not n.startswith("embed")
    ]
    device = mats[0].device
    best = 0.0
    for form in ("mv", "mm") if streams == 1 else ("mm",):
        if form == "mv":
            ops = [(torch.mv, m, torch.randn(m.shape[1], device=device, dtype=dtype)) for m in mats]
        else:
            ops = [
                (torch.mm, torch.randn(streams, m.shape[1], device=device, dtype=dtype), m.T.contiguous()) for m in mats
            ]
        for _ in range(10):
            for f, a, b in ops:
                f(a, b)
        sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            for f, a, b in ops:
                f(a, b)
        sync(device)
        best = max(best, streams * reps / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=65)
    ap.add_argument("--length", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each is kept")
    ap.add_argument("--streams", default="1,32", help="numbers of streams, comma-separated [default: 1,32]")
    ap.add_argument("--batcher", action="store_true", help="also time the server's batcher at each number of streams")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    vocab = Vocab([chr(ord("a") + i) if i < 26 else chr(0x400 + i) for i in range(args.vocab)])
    model = CharRNN(ModelConfig(vocab_size=args.vocab, hidden=args.hidden, layers=args.layers)).to(device).eval()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(
        f"{args.layers}x{args.hidden} LSTM, vocab {args.vocab}, torch {torch.__version__}, "
        f"{where}, best of {args.rounds} interleaved rounds"
    )
    rows = []
    counts = [int(x) for x in args.streams.split(",")]
    shorter = max(args.length // 8, 50)  # many streams write fewer characters each
    cases = [
        (n, args.length if n == 1 else shorter, p) for n in counts for p in (("fp32",) if n == 1 else ("fp32", "bf16"))
    ]
    for streams, length, precision in cases:
        b = o = 0.0
        for _ in range(args.rounds):
            b = max(b, baseline(model, length, streams))
            o = max(o, ours(model, vocab, length, streams, precision))
        rows.append((streams, precision, b, o))
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    print(
        f"{'streams':>8} {'charrnn precision':>18} {'baseline nn.LSTM/char':>22} {'charrnn':>10} {'ratio':>7} "
        f"{'bound':>8} {'of bound':>9}"
    )
    for streams, precision, b, o in rows:
        mv = max(bound(model, 300 if streams == 1 else 50, streams, dtypes[precision]) for _ in range(args.rounds))
        print(f"{streams:>8} {precision:>18} {b:>20.0f}/s {o:>8.0f}/s {o / b:>6.1f}x {mv:8.0f} {100 * o / mv:>8.0f}%")
    print(
        f"bound: one pass over every weight matrix per character in that precision, on {device.type}, "
        "for that many streams at once; measured above"
    )
    if args.batcher:
        print(f"{'requests':>8} {'one request of N samples':>25} {'batcher, N requests':>20} {'ratio':>7}")
        for streams in counts:
            length = args.length if streams == 1 else shorter
            one = many = 0.0
            for _ in range(args.rounds):
                one = max(one, ours(model, vocab, length, streams, "fp32"))
                many = max(many, batched(model, vocab, length, streams))
            print(f"{streams:>8} {one:>23.0f}/s {many:>18.0f}/s {many / one:>6.2f}x", flush=True)


if __name__ == "__main__":
    main()
