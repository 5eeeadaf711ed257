"""Training speed: charrnn's training loop against a plain float32 `nn.LSTM` + AdamW loop,
side by side in one process (interleaved rounds, best of each).

    python benchmarks/train_speed.py                      # 3x512, batch 128 x seq 128
    python benchmarks/train_speed.py --hidden 128 --layers 2 --batch-size 50 --seq-len 50
    python benchmarks/train_speed.py --quality-steps 300  # + val loss, fp32 vs charrnn's precision
    python benchmarks/train_speed.py --device cuda        # on a GPU: cuDNN, bf16 autocast
    python benchmarks/train_speed.py --batch-sizes 64,128,256,512   # + charrnn's speed by batch size

"ours" is the real `charrnn.training.loop.train` loop (precision auto: bf16 autocast where the CPU has
AMX or AVX512-BF16, and on CUDA), timed from its own metrics after warm-up steps. Trains on
the bundled tiny-shakespeare, or --corpus.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from charrnn.config import ModelConfig, TrainConfig
from charrnn.corpus.bundled import CORPORA
from charrnn.corpus.preprocess import preprocess
from charrnn.runtime import pick_precision
from charrnn.training.batches import StreamBatcher
from charrnn.training.loop import train

TINYSHAKESPEARE = CORPORA["tinyshakespeare"].path  # the copy inside the package


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def baseline(corpus, h: int, layers: int, b: int, t: int, steps: int, warm: int, device: torch.device) -> float:
    """Plain float32 nn.LSTM + AdamW, carrying the hidden state: chars/s after warm-up."""
    torch.manual_seed(0)
    v = len(corpus.vocab)
    emb, rnn, head = (
        m.to(device) for m in (nn.Embedding(v, h), nn.LSTM(h, h, layers, batch_first=True), nn.Linear(h, v))
    )
    params = [*emb.parameters(), *rnn.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=2e-3)
    batcher = StreamBatcher(corpus.split("train"), b, t)
    state = None
    for i in range(warm + steps):
        if i == warm:
            sync(device)
            t0 = time.perf_counter()
        x, y = (torch.from_numpy(a).to(device) for a in batcher.batch(i % batcher.steps_per_epoch))
        out, state = rnn(emb(x), state)
        loss = F.cross_entropy(head(out).reshape(-1, v), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        state = tuple(s.detach() for s in state)
    sync(device)
    return steps * b * t / (time.perf_counter() - t0)


def ours(
    corpus,
    h: int,
    layers: int,
    b: int,
    t: int,
    steps: int,
    warm: int,
    run: Path,
    device: torch.device,
    precision: str = "auto",
    **extra,
) -> tuple[float, float]:
    """(chars/s after warm-up, final val loss) of charrnn's own loop."""
    mc = ModelConfig(vocab_size=len(corpus.vocab), hidden=h, layers=layers)
    tc = TrainConfig(
        batch_size=b,
        seq_len=t,
        max_steps=warm + steps,
        eval_every=0,
        checkpoint_every=0,
        log_every=1,
        device=device.type,
        precision=precision,
        seed=0,
        **extra,
    )
    result = train(corpus, mc, tc, run_dir=run)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    el = {m["step"]: m["elapsed_s"] for m in lines if "train_loss" in m}
    return steps * b * t / (el[warm + steps] - el[warm]), result.val_loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=0, help="timed steps per round [default: by model size]")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--quality-steps",
        type=int,
        default=0,
        help="also train this many steps in fp32 and in charrnn's precision from the same seed and compare val loss",
    )
    ap.add_argument(
        "--batch-sizes",
        default="",
        help="also time charrnn's loop at each of these batch sizes (comma-separated), as many characters each",
    )
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument(
        "--corpus",
        type=Path,
        default=TINYSHAKESPEARE,
        help="text to train on [default: the bundled tiny-shakespeare]",
    )
    args = ap.parse_args()
    if not args.corpus.exists():
        raise SystemExit(f"{args.corpus} is absent")
    h, layers, b, t = args.hidden, args.layers, args.batch_size, args.seq_len
    device = torch.device(args.device)
    # about 10 s a round on this project's CPU; a GPU does in the order of 50x as many steps
    # (at most 2,000: small models are bound by kernel launches there, not by arithmetic)
    steps = args.steps or max(5, int(3e6 / (b * t * (h / 128) ** 2 * layers)))
    if device.type == "cuda" and not args.steps:
        steps = min(50 * steps, 2000)
    warm = 3
    prec = pick_precision("auto", device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = preprocess(args.corpus, tmp / "corpus", val_frac=0.1)
        print(
            f"{layers}x{h} LSTM, vocab {len(corpus.vocab)}, batch {b} x seq {t}, {steps} timed steps, "
            f"torch {torch.__version__}, {where}, charrnn precision {prec}"
        )
        best_b = best_o = 0.0
        for r in range(args.rounds):
            best_b = max(best_b, baseline(corpus, h, layers, b, t, steps, warm, device))
            o, _ = ours(corpus, h, layers, b, t, steps, warm, tmp / f"run{r}", device)
            best_o = max(best_o, o)
        print(f"{'':<28} {'chars/s':>10}")
        print(f"{'baseline fp32 nn.LSTM+AdamW':<28} {best_b:>10.0f}")
        print(f"{'charrnn train (' + prec + ')':<28} {best_o:>10.0f}")
        print(f"ratio: {best_o / best_b:.2f}x")
        if args.batch_sizes:
            sizes = [int(x) for x in args.batch_sizes.split(",")]
            chars = steps * b * t
            print(f"charrnn train ({prec}) by batch size, seq {t}, about {chars:,} timed characters each")
            print(f"{'batch':>6} {'steps':>6} {'chars/s':>10}")
            speeds = {}
            for size in sizes:
                n = max(10, chars // (size * t))
                speeds[size], _ = ours(corpus, h, layers, size, t, n, warm, tmp / f"b{size}", device)
                print(f"{size:>6} {n:>6} {speeds[size]:>10.0f}", flush=True)
            top = max(speeds, key=speeds.get)
            print(f"fastest: batch {top} at {speeds[top]:.0f} chars/s, {speeds[top] / best_b:.2f}x the baseline at {b}")
        if args.quality_steps:
            n = args.quality_steps
            _, v32 = ours(corpus, h, layers, b, t, n - warm, warm, tmp / "q32", device, precision="fp32")
            _, vp = ours(corpus, h, layers, b, t, n - warm, warm, tmp / "qp", device, precision=prec)
            print(
                f"val loss after {n} steps, seed 0: fp32 {v32:.4f}, {prec} {vp:.4f}, "
                f"difference {vp - v32:+.4f} nats/char"
            )


if __name__ == "__main__":
    main()
