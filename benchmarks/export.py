"""`charrnn export`: file sizes per format and dtype, and sampling speed of one stream in torch
(`charrnn sample`'s own path, the baseline), onnxruntime (the exported step graph, fed back
step by step from Python) and headless Chromium (the exported page's own chars/s), side by
side in one run.

    python benchmarks/export.py                       # 2x256 and 3x512 LSTMs, 65 symbols
    python benchmarks/export.py --shapes 2x256 --length 1000 --browser-length 500

The weights are random (speed and size do not depend on their values); every runtime samples
at temperature 0.8 from the same prime, on one thread each by default (`--threads`), as the
page's JavaScript runs. Chromium runs the page from file:// with
`#...&go` and the speed is the page's own figure (the time of writing only, not of decoding
the weights). Needs the export extra (onnx, onnxruntime, safetensors) and, for the browser
column, Debian's chromium; without it that column is "-".
"""

from __future__ import annotations

import argparse
import re
import shutil
import string
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from charrnn import api
from charrnn.config import ModelConfig, SampleConfig, TrainConfig
from charrnn.corpus.vocab import Vocab
from charrnn.generation.sample import generate
from charrnn.model.rnn import CharRNN
from charrnn.training import checkpoint

VOCAB = Vocab.from_text("\n !$&',-.3:;?" + string.ascii_letters)  # tiny-shakespeare's 65 symbols
PRIME, TEMP = "The ", 0.8


def make(root: Path, layers: int, hidden: int) -> Path:
    torch.manual_seed(0)
    net = CharRNN(ModelConfig(vocab_size=len(VOCAB), hidden=hidden, layers=layers))
    path = root / f"{layers}x{hidden}.pt"
    checkpoint.write(checkpoint.Checkpoint(net.config, TrainConfig(), VOCAB, net.state_dict()), path)
    return path


def torch_speed(path: Path, length: int) -> float:
    """chars/s of `charrnn sample`'s path: FastStepper, one stream."""
    model = api.load(path)
    config = SampleConfig(prime=PRIME, length=length, temp=TEMP, seed=0)
    t = time.perf_counter()
    for _ in generate(model.net, model.vocab, config):
        pass
    return length / (time.perf_counter() - t)


def onnx_speed(path: Path, layers: int, hidden: int, length: int) -> float:
    """chars/s of the exported step graph in onnxruntime, one stream, sampled with numpy."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {n: np.zeros((layers, 1, hidden), np.float32) for n in ("h", "c")}
    for i in VOCAB.encode(PRIME):
        logits, feeds["h"], feeds["c"] = session.run(None, {**feeds, "ids": np.array([i])})
    t = time.perf_counter()
    for _ in range(length):
        z = logits[0].astype(np.float64) / TEMP
        p = np.exp(z - z.max())
        nxt = int(rng.choice(len(p), p=p / p.sum()))
        logits, feeds["h"], feeds["c"] = session.run(None, {**feeds, "ids": np.array([nxt])})
    return length / (time.perf_counter() - t)


def browser_speed(page: Path, length: int, root: Path) -> float | None:
    """The page's own chars/s in headless Chromium, or None without chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return None
    url = page.resolve().as_uri() + f"#prime={PRIME.strip()}%20&temp={TEMP}&length={length}&seed=1&go"
    profile = tempfile.mkdtemp(dir=root)
    # every request the browser makes goes to a closed loopback port: nothing leaves the machine
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           "--proxy-server=http://127.0.0.1:9", "--dump-dom", url]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, timeout=600).stdout.decode("utf-8")
    found = re.search(r'data-chars-per-s="([\d.]+)"', dom)
    return float(found.group(1)) if found else None


def best(row: dict, name: str, cps: float | None) -> None:
    row[name] = cps if row.get(name) is None else max(row[name], cps or 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="2x256,3x512", help="LAYERSxHIDDEN, comma-separated")
    ap.add_argument("--length", type=int, default=2000, help="characters for torch and onnxruntime")
    ap.add_argument("--browser-length", type=int, default=1000, help="characters for the page")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each, interleaved; the best is shown")
    ap.add_argument("--threads", type=int, default=1, help="threads of torch and onnxruntime (the page has one)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; temperature {TEMP}, one stream; "
        f"best of {args.repeats}\n"
    )
    sizes, speeds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for shape in args.shapes.split(","):
            layers, hidden = map(int, shape.split("x"))
            pt = make(root, layers, hidden)
            files = {"checkpoint .pt": pt}
            files["safetensors"] = api.export(pt, "safetensors")
            files["onnx"] = api.export(pt, "onnx")
            for dtype in ("float32", "float16", "int8"):
                files[f"html {dtype}"] = api.export(pt, "html", root / f"{shape}-{dtype}.html", dtype=dtype)
            sizes.append((shape, {k: p.stat().st_size for k, p in files.items()}))
            row: dict[str, float | None] = {}
            for _ in range(args.repeats):  # interleaved, the best of each: a shared machine's noise only slows
                best(row, "torch (charrnn sample)", torch_speed(pt, args.length))
                best(row, "onnxruntime", onnx_speed(files["onnx"], layers, hidden, args.length))
                for dtype in ("float32", "float16"):
                    cps = browser_speed(files[f"html {dtype}"], args.browser_length, root)
                    best(row, f"chromium, {dtype} page", cps)
            speeds.append((shape, row["torch (charrnn sample)"], row))
    print("File sizes (MB)")
    kinds = list(sizes[0][1])
    print(
        f"{'model':<8}" + "".join(f"{k:>16}" for k in kinds),
        "  (the .pt holds weights only; a run's also holds Adam's moments)",
    )
    for shape, row in sizes:
        print(f"{shape:<8}" + "".join(f"{row[k] / 1e6:>16.2f}" for k in kinds))
    print("\nSampling, one stream (chars/s, and the ratio to charrnn sample)")
    for shape, base, row in speeds:
        for name, cps in row.items():
            shown = "-" if cps is None else f"{cps:>9,.0f}   {cps / base:.2f}x"
            print(f"{shape:<8}{name:<26}{shown}")


if __name__ == "__main__":
    main()
