"""The training loop: AdamW, warm-up + cosine schedule, clipping, evaluation,
checkpoint cadence and progress samples. It reports through `Callbacks` and knows
nothing of the terminal.

    result = train(Corpus.load("corpora/tinyshakespeare"), ModelConfig(vocab_size=65),
                   TrainConfig(max_steps=500), Path("checkpoints/run"))

Truncated BPTT over contiguous streams: the hidden state carries from batch to batch
within an epoch. Everything a step depends on (weights, optimizer moments, step,
data position, carried state, RNG) is in the checkpoint, so a resumed run on the CPU
is bitwise the same as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from charrnn import __version__, checkpoint, distributed
from charrnn.config import DEFAULT_MAX_EPOCHS, ModelConfig, TrainConfig
from charrnn.data import Corpus, StreamBatcher, eval_batches
from charrnn.distributed import Dist
from charrnn.errors import CheckpointError, PeerLostError, TrainingError, first_line, os_reason
from charrnn.model import CharRNN, State, cross_entropy
from charrnn.runtime import (autocast, check_training_precision, needs_loss_scaling, pick_device, pick_precision, rng_state, seed_everything,
                             set_rng_state)
from charrnn.report import metric_record
from charrnn.sample import sample_text

LN2 = math.log(2)
MAX_BAD_STEPS = 8  # consecutive non-finite steps before training gives up
STOP_REASONS = ("", "max_epochs", "max_steps", "patience", "time_limit", "interrupted")  # by priority


class Callbacks:
    """Override what you need; every hook is optional."""

    def on_start(self, info: dict) -> None: ...
    def on_step(self, m: dict, logged: bool) -> None: ...
    def on_eval(self, m: dict) -> None: ...
    def on_sample(self, step: int, text: str, m: dict) -> None: ...
    def on_checkpoint(self, path: Path, kind: str) -> None: ...
    def on_warning(self, message: str) -> None: ...


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    best_val_loss: float
    best_step: int
    val_loss: float
    elapsed_s: float
    stopped: str  # max_steps | max_epochs | time_limit | patience | interrupted


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up over `warmup_steps`, then cosine decay to `lr * min_lr_frac` as
    progress (the fraction of the step, epoch or time budget used) goes from 0 to 1."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    p = min(max(progress, 0.0), 1.0)
    low = cfg.lr * cfg.min_lr_frac
    return low + (cfg.lr - low) * 0.5 * (1 + math.cos(math.pi * p))


@torch.no_grad()
def evaluate(model: CharRNN, ids: np.ndarray, batch_size: int, seq_len: int,
             device: torch.device, precision: str, dd: Dist = Dist()) -> float:
    """Mean loss in nats per character over every prediction of `ids`, deterministic.
    Under torchrun each rank takes every world-th stream and the sums are reduced."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    state = None
    for x, y in eval_batches(ids, batch_size, seq_len):
        x, y = x[dd.rank :: dd.world], y[dd.rank :: dd.world]
        if len(x) == 0:
            continue
        x = torch.from_numpy(x).to(device)
        y = torch.from_numpy(y).to(device)
        with autocast(device, precision):
            logits, state = model(x, state)
        total += float(cross_entropy(logits, y, reduction="sum"))
        count += int((y >= 0).sum())
    model.train(was_training)
    total, count = distributed.all_sum([total, count], dd, device)
    return total / count if count else float("nan")


def _to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _param_groups(model: CharRNN, weight_decay: float) -> list[dict]:
    # Decay weight matrices only; biases and the embedding table stay free.
    decay, free = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and not name.startswith("embed") else free).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": free, "weight_decay": 0.0}]


def train(
    corpus: Corpus,
    model_cfg: ModelConfig | None,
    cfg: TrainConfig,
    run_dir: Path,
    callbacks: Callbacks | None = None,
    resume: dict | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> TrainResult:
    dd = distributed.from_env()
    cb = callbacks if callbacks is not None and dd.main else Callbacks()
    run_dir = Path(run_dir)
    device = pick_device(cfg.device)
    precision = pick_precision(cfg.precision, device)
    rows = dd.share(cfg.batch_size)  # this process's streams of each batch
    try:
        device = distributed.setup(dd, device)
    except RuntimeError as e:  # the processes could not form a group: a rendezvous that failed
        raise TrainingError(f"the training processes could not connect ({first_line(e)})") from None
    try:
        result = _train(corpus, model_cfg, cfg, run_dir, cb, resume, should_stop, dd, device, precision, rows)
    except RuntimeError as e:
        if dd.enabled and distributed.peer_lost(e):
            raise PeerLostError(f"another training process stopped ({first_line(e)}); {_kept(run_dir)}") from None
        raise
    # Only a run that ended together leaves the group: destroying it while a peer is still in a
    # collective, or gone, can abort this process (the CLI ends a failed rank with os._exit).
    distributed.teardown(dd)
    return result


def _train(corpus, model_cfg, cfg, run_dir, cb, resume, should_stop, dd, device, precision, rows) -> TrainResult:
    vocab = corpus.vocab

    if resume is not None:
        model_cfg = checkpoint.model_config(resume)
        if checkpoint.vocab(resume) != vocab:
            raise CheckpointError(
                f"the checkpoint was made for a different vocabulary ({len(resume['vocab'])} characters) "
                f"than corpus {corpus.name} ({len(vocab)} characters); it cannot be resumed on this corpus"
            )
        old = checkpoint.train_config(resume)
        if old.batch_size != cfg.batch_size:
            raise CheckpointError(
                f"--batch-size cannot change on resume ({old.batch_size} -> {cfg.batch_size}): "
                "the data position is defined by it"
            )
    assert model_cfg is not None and model_cfg.vocab_size == len(vocab)
    check_training_precision(device, precision, model_cfg.model)

    seed_everything(cfg.seed)
    model = CharRNN(model_cfg).to(device)
    if dd.rank:
        seed_everything(cfg.seed + dd.rank)  # same initial weights, different dropout masks
    net = torch.nn.parallel.DistributedDataParallel(model) if dd.enabled else model
    # fused: one kernel for the whole update instead of a few per parameter tensor
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.99),
                            fused=device.type in ("cuda", "cpu"))
    scaler = torch.amp.GradScaler(device.type, enabled=needs_loss_scaling(device, precision))
    train_ids, val_ids = corpus.split_reader("train"), corpus.split_reader("val")
    batcher = StreamBatcher(train_ids, cfg.batch_size, cfg.seq_len, rows)
    spe = batcher.steps_per_epoch

    step, epoch, pos = 0, 0, 0  # pos: characters into every stream; the next window starts there
    best, best_step, last_val = float("inf"), 0, float("nan")
    stale = 0  # evals without improvement
    elapsed0 = 0.0
    lr_scale = 1.0  # lowered after non-finite steps
    state: State | None = None
    if resume is not None:
        pos = _data_offset(resume["data"], cfg.seq_len)
        try:  # a checkpoint that loads can still hold a damaged training state
            model.load_state_dict(resume["model"])
            opt.load_state_dict(resume["optimizer"])
            if "scaler" in resume and resume["scaler"]:
                scaler.load_state_dict(resume["scaler"])
            step, epoch = int(resume["step"]), int(resume["epoch"])
            best = float(resume.get("best_val_loss", best))
            best_step = int(resume.get("best_step", 0))
            last_val = float(resume.get("val_loss", last_val))
            stale = int(resume.get("stale_evals", 0))
            elapsed0 = float(resume.get("elapsed_s", 0.0))
            lr_scale = float(resume.get("lr_scale", 1.0))
            if resume.get("hidden") is not None:
                # stored for the whole batch, so any number of processes can take their share
                state = tuple(h[:, rows].to(device, torch.float32) for h in resume["hidden"])
                want = (model_cfg.layers, len(range(cfg.batch_size)[rows]), model_cfg.hidden)
                if len(state) != (2 if model_cfg.model == "lstm" else 1) or any(h.shape != want for h in state):
                    raise ValueError("the carried hidden state does not fit the model and batch")
            if dd.main:
                set_rng_state(resume["rng"])
        except (KeyError, TypeError, ValueError, OverflowError, RuntimeError, AttributeError, IndexError) as e:
            raise CheckpointError(
                f"the checkpoint's training state is damaged ({first_line(e)}); it cannot be resumed") from None
    # Everything is checked: only now is anything written, and only by rank 0.
    if dd.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.remove_leftovers(run_dir, ("*.pt", "metrics.jsonl"))  # from a run killed while saving
        if resume is not None:
            _truncate_metrics(run_dir / "metrics.jsonl", step)

    limits = [cfg.max_steps, cfg.max_epochs, cfg.time_limit]
    max_epochs = DEFAULT_MAX_EPOCHS if all(v is None for v in limits) else cfg.max_epochs
    step_limits = [cfg.max_steps] if cfg.max_steps is not None else []
    if max_epochs is not None:
        # the windows left to the epoch limit, counted from where the data stands: on a fresh run
        # or a resume with the same --seq-len this is ceil(max_epochs * spe); after a --seq-len
        # change, step counts windows of the old length
        windows = max(0.0, (max_epochs - epoch) * spe - pos / cfg.seq_len)
        if math.isfinite(windows):  # an epoch limit too large to count is no limit
            step_limits.append(step + math.ceil(windows))
    total_steps = min(step_limits) if step_limits else None

    def progress(elapsed: float) -> float:
        if cfg.decay_steps:
            return step / cfg.decay_steps
        p = step / total_steps if total_steps else 0.0
        return max(p, elapsed / cfg.time_limit) if cfg.time_limit else p

    meta = corpus.meta
    corpus_info = {"name": corpus.name, "sha256": meta.get("source_sha256"), "path": str(corpus.path.resolve()),
                   "chars": meta.get("chars"), "split_sizes": meta.get("split_sizes")}
    old_history = resume.get("history") if resume else None
    history = [h for h in old_history if isinstance(h, dict)] if isinstance(old_history, list) else []

    def payload() -> dict:
        hidden = None if state is None else [distributed.gather_rows(h, dd) for h in state]
        return {
            "model_config": model_cfg.to_dict(),
            "train_config": cfg.to_dict(),
            "vocab": vocab.chars,
            "model": _to_cpu({k2: v.float() for k2, v in model.state_dict().items()}),
            "optimizer": _to_cpu(opt.state_dict()),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "step": step, "epoch": epoch,
            "data": {"offset": pos, "batch": pos // cfg.seq_len, "batch_size": cfg.batch_size,
                     "seq_len": cfg.seq_len},
            "hidden": None if hidden is None else _to_cpu(hidden),
            "rng": _to_cpu(rng_state()),
            "best_val_loss": best, "best_step": best_step, "val_loss": last_val,
            "stale_evals": stale, "elapsed_s": elapsed, "lr_scale": lr_scale,
            "precision": precision, "device": device.type,
            "corpus": corpus_info, "history": history[-2000:],
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "charrnn_version": __version__, "torch_version": str(torch.__version__),
        }

    def save(kind: str) -> None:
        data = payload()  # every rank takes part in gathering the hidden state
        if not dd.main:
            return
        path = run_dir / f"{kind}.pt"
        checkpoint.save(data, path)
        cb.on_checkpoint(path, kind)

    metrics_path = run_dir / "metrics.jsonl"
    metrics_f = open(metrics_path, "a", encoding="utf-8") if dd.main else None

    def log(m: dict) -> None:
        if metrics_f is None:
            return
        try:
            metrics_f.write(json.dumps(m) + "\n")
            metrics_f.flush()
        except OSError as e:
            raise _write_failed(metrics_path, e) from None

    last_eval_step = -1

    def do_eval() -> float:
        nonlocal best, best_step, last_val, stale, last_eval_step
        last_eval_step = step
        last_val = evaluate(model, val_ids, cfg.eval_batch_size, cfg.seq_len, device, precision, dd)
        improved = math.isfinite(last_val) and last_val < best
        if improved:
            best, best_step, stale = last_val, step, 0
        else:
            stale += 1
        m = {"step": step, "epoch": epoch, "val_loss": last_val, "val_bpc": last_val / LN2,
             "best_val_loss": best, "elapsed_s": round(elapsed, 3)}
        history.append({"step": step, "val_loss": last_val})
        log(m)
        cb.on_eval(m)
        if improved:
            save("best")
        return last_val

    cb.on_start({
        "run_dir": run_dir, "device": device.type, "precision": precision, "params": model.num_params(),
        "total_steps": total_steps, "time_limit": cfg.time_limit, "steps_per_epoch": spe,
        "start_step": step, "model_config": model_cfg, "train_config": cfg, "corpus": corpus_info,
        "resumed": resume is not None,
    })

    model.train()
    t_start = time.perf_counter()
    elapsed = elapsed0
    t_log, chars_log, loss_sum, loss_n, bad = t_start, 0, 0.0, 0, 0
    train_loss = float("nan")
    stopped = "max_epochs"
    params = [p for p in model.parameters()]
    try:
        while True:
            reason = ""
            if total_steps is not None and step >= total_steps:
                reason = "max_steps" if cfg.max_steps is not None and step >= cfg.max_steps else "max_epochs"
            elif cfg.patience and stale >= cfg.patience:
                reason = "patience"
            elif cfg.time_limit is not None and elapsed >= cfg.time_limit:
                reason = "time_limit"
            if should_stop():
                reason = "interrupted"
            if dd.enabled:  # clocks and signals differ between processes: stop together
                reason = STOP_REASONS[distributed.all_max([STOP_REASONS.index(reason)], dd, device)[0]]
            if reason:
                stopped = reason
                break
            if pos + cfg.seq_len > batcher.stream_len:
                epoch, pos, state = epoch + 1, 0, None

            xb, yb = batcher.batch_at(pos)
            x = torch.from_numpy(xb).to(device, non_blocking=True)
            y = torch.from_numpy(yb).to(device, non_blocking=True)
            lr = lr_at(cfg, step, progress(elapsed)) * lr_scale
            for group in opt.param_groups:
                group["lr"] = lr
            with autocast(device, precision):
                logits, new_state = net(x, state)
            loss = cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            loss_v = float(loss.detach())
            ok = math.isfinite(loss_v) and (math.isfinite(float(gnorm)) or scaler.is_enabled())
            if dd.enabled:
                ok = not distributed.all_max([int(not ok)], dd, device)[0]
            if ok:
                scaler.step(opt)
                scaler.update()
                bad = 0
                # float32 whatever autocast ran in, so a resume in another precision can take it
                state = tuple(s.detach().float() for s in new_state)
                loss_sum += loss_v
                loss_n += 1
            else:
                # A non-finite loss: skip the update, restart the carried state, halve the rate.
                bad += 1
                lr_scale *= 0.5
                state = None
                cb.on_warning(f"step {step + 1}: non-finite loss or gradient, step skipped, learning rate halved")
                if bad >= MAX_BAD_STEPS:
                    raise TrainingError(
                        f"training diverged: {bad} non-finite steps in a row at step {step + 1}; "
                        f"try a lower --lr (now {cfg.lr}) or --grad-clip; {_kept(run_dir)}"
                    )
            step += 1
            pos += cfg.seq_len
            chars_log += x.numel() * dd.world
            elapsed = elapsed0 + time.perf_counter() - t_start

            logged = step % cfg.log_every == 0 or step == 1
            m = {"step": step, "epoch": epoch, "lr": lr, "elapsed_s": round(elapsed, 3)}
            if logged:
                now = time.perf_counter()
                loss_sum, loss_n = distributed.all_sum([loss_sum, loss_n], dd, device)
                train_loss = loss_sum / max(loss_n, 1)
                m.update(train_loss=train_loss, chars_per_sec=round(chars_log / max(now - t_log, 1e-9), 1),
                         grad_norm=float(gnorm))
                history.append({"step": step, "train_loss": train_loss})
                log(m)
                t_log, chars_log, loss_sum, loss_n = now, 0, 0.0, 0
            epoch_frac = epoch + pos / batcher.stream_len
            cb.on_step(m | {"train_loss": train_loss, "val_loss": last_val, "epoch_frac": epoch_frac}, logged)

            if cfg.eval_every and step % cfg.eval_every == 0:
                do_eval()
            if cfg.sample_every and step % cfg.sample_every == 0 and dd.main:
                text = sample_text(model, vocab, length=cfg.sample_length, temp=cfg.sample_temp,
                                   seed=cfg.seed + step)
                try:
                    _write_sample(run_dir / "samples.txt", step, train_loss, last_val, text)
                except OSError as e:
                    raise _write_failed(run_dir / "samples.txt", e) from None
                cb.on_sample(step, text, {"step": step, "train_loss": train_loss, "val_loss": last_val})
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save("last")

        if stopped == "interrupted":
            save("last")
        else:
            if last_eval_step != step:
                do_eval()
            save("last")
            if not math.isfinite(best) and all(bool(torch.isfinite(p).all()) for p in params):
                save("best")  # no eval gave a finite loss (no val split): still leave a model to sample
    finally:
        if metrics_f is not None:
            try:
                metrics_f.close()
            except OSError:
                pass  # the write that failed has already been reported
    return TrainResult(run_dir, step, epoch, best, best_step, last_val, elapsed, stopped)


def _write_failed(path: Path, e: OSError) -> TrainingError:
    """A log file of the run (beside its checkpoints) could not be written."""
    return TrainingError(f"could not write {path}: {os_reason(e)}; {_kept(path.parent)}")


def _kept(run_dir: Path) -> str:
    saved = [n for n in ("last.pt", "best.pt") if (run_dir / n).exists()]
    if not saved:
        return "no checkpoint was written"
    return f"{' and '.join(saved)} {'hold' if len(saved) > 1 else 'holds'} the last good weights"


def _data_offset(data, seq_len: int) -> int:
    """Characters into every stream where a resumed run goes on. The offset, not the batch
    index, is what stays true when --seq-len changes between runs; checkpoints that predate
    "offset" held only the batch index, in windows of their own --seq-len."""
    try:
        pos = data["offset"] if "offset" in data else data["batch"] * data.get("seq_len", seq_len)
    except (TypeError, KeyError, AttributeError):
        pos = None
    if not isinstance(pos, int) or pos < 0:
        raise CheckpointError("checkpoint has a malformed 'data' position; it cannot be resumed")
    return pos


def _write_sample(path: Path, step: int, train_loss: float, val_loss: float, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"===== step {step} | train loss {train_loss:.4f} | val loss {val_loss:.4f} =====\n")
        f.write(text.lstrip("\n") + "\n\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop lines logged after the checkpoint being resumed, so steps are not repeated."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = metric_record(line)  # None for a line cut short by a crash, or damaged
        if m is not None and m["step"] <= step:
            keep.append(line)
    try:  # a crash or a full disk half-way leaves the old lines
        checkpoint.write_atomic(path, "".join(line + "\n" for line in keep).encode("utf-8"))
    except OSError as e:
        raise TrainingError(f"could not rewrite {path} to resume: {os_reason(e)}; it and the checkpoint are intact") from None
