"""The training loop, and only the loop: AdamW, warm-up + cosine schedule, clipping,
evaluation, checkpoint cadence and progress samples (`charrnn.train`, the function users call,
is `api.train`, which plans a run and calls this). It reports through `Callbacks` and
knows nothing of the terminal, the HTML report or the log format (`runlog` writes the logs,
`checkpoint` the checkpoints).

    result = train(Corpus.load("corpora/tinyshakespeare"), ModelConfig(vocab_size=65),
                   TrainConfig(max_steps=500), run_dir=Path("checkpoints/run"))

Truncated BPTT over contiguous streams: the hidden state carries from batch to batch
within an epoch. Everything a step depends on (weights, optimizer moments, step,
data position, carried state, RNG) is in the checkpoint, so a resumed run on the CPU
is bitwise the same as an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from charrnn.config import DEFAULT_MAX_EPOCHS, ModelConfig, TrainConfig
from charrnn.corpus.documents import eod_text
from charrnn.corpus.store import Corpus
from charrnn.errors import BadValueError, PeerLostError, TrainingError, first_line
from charrnn.generation.sample import sample_text
from charrnn.model.rnn import CharRNN, State
from charrnn.runtime import (
    pick_device,
    pick_precision,
    rng_state,
    seed_everything,
    set_rng_state,
    training_precision,
)
from charrnn.training import checkpoint, distributed, runlog
from charrnn.training.batches import StreamBatcher
from charrnn.training.checkpoint import Checkpoint, TrainState
from charrnn.training.distributed import Ranks
from charrnn.training.finetune import Parent
from charrnn.training.scoring import mean_loss
from charrnn.training.step import TrainStep
from charrnn.values import Units, perplexity

MAX_BAD_STEPS = 8  # consecutive non-finite steps before training gives up
STOP_REASONS = ("", "max_epochs", "max_steps", "patience", "time_limit", "interrupted")  # by priority


@dataclass(frozen=True)
class RunStart:
    """What `Callbacks.on_start` is told about the run about to train."""

    run_dir: Path
    model_config: ModelConfig
    train_config: TrainConfig
    corpus: dict  # name, sha256, path, chars, split_sizes
    device: str
    precision: str
    params: int
    total_steps: int | None  # None: the run is limited by time only
    steps_per_epoch: int
    start_step: int
    resumed: bool
    parent: dict | None = None  # the model a fine-tuning run starts from (finetune.Parent.record)
    auto: dict | None = None  # how --preset auto chose the preset (autopreset.Choice.record)


class Callbacks(Protocol):
    """What the loop reports, and when. Subclass it and override what you need; only rank 0
    of a data-parallel run is told anything."""

    def on_start(self, run: RunStart) -> None: ...

    def on_step(self, record: dict, logged: bool) -> None:
        """After every step; `logged` when the record is a metrics line (with chars_per_sec)."""

    def on_eval(self, record: dict) -> None: ...

    def on_sample(self, step: int, text: str, record: dict) -> None: ...

    def on_checkpoint(self, path: Path, kind: str) -> None: ...

    def on_warning(self, message: str) -> None: ...


class _Silent(Callbacks):
    pass


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


def train(
    corpus: Corpus,
    model_cfg: ModelConfig | None,
    cfg: TrainConfig,
    *,
    run_dir: Path,
    callbacks: Callbacks | None = None,
    resume: Checkpoint | dict | None = None,
    parent: Parent | None = None,
    should_stop: Callable[[], bool] | None = None,
    auto: dict | None = None,
) -> TrainResult:
    """Train a new model (`model_cfg`), starting from random weights or from the trained
    model `parent`, or go on from a checkpoint (`resume`, whose model config is used) on
    `corpus`, writing checkpoints and logs to `run_dir`. Under torchrun (or `charrnn train
    --nproc`) this is one rank of a data-parallel run. `resume` may be a file's payload, as
    `checkpoint.load` returns it."""
    if isinstance(resume, dict):
        resume = Checkpoint.from_payload(resume)
    ranks = distributed.from_env()
    run_dir = Path(run_dir)
    device = pick_device(cfg.device)
    pick_precision(cfg.precision, device)  # refuses what the device cannot do, before the processes meet
    rows = ranks.share(cfg.batch_size)  # this process's streams of each batch
    try:
        device = distributed.setup(ranks, device)
    except RuntimeError as e:  # the processes could not form a group: a rendezvous that failed
        raise TrainingError(f"the training processes could not connect ({first_line(e)})") from None
    try:
        trainer = _Trainer(corpus, model_cfg, cfg, resume=resume, parent=parent, ranks=ranks, device=device, rows=rows)
        trainer.auto = auto if resume is None else resume.auto
        result = trainer.run(
            run_dir, callbacks if callbacks is not None and ranks.is_main else _Silent(), should_stop or (lambda: False)
        )
    except RuntimeError as e:
        if ranks.enabled and distributed.peer_lost(e):
            raise PeerLostError(
                f"another training process stopped ({first_line(e)}); {checkpoint.kept(run_dir)}"
            ) from None
        raise
    # Only a run that ended together leaves the group: destroying it while a peer is still in a
    # collective, or gone, can abort this process (the CLI ends a failed rank with os._exit).
    distributed.teardown(ranks)
    return result


def corpus_record(corpus: Corpus) -> dict:
    """What a run's checkpoints say of the corpus it trains on."""
    meta = corpus.meta
    return {
        "name": corpus.name,
        "sha256": meta.get("source_sha256"),
        "path": str(corpus.path.resolve()),
        "chars": meta.get("chars"),
        "split_sizes": meta.get("split_sizes"),
        "documents": meta.get("documents"),  # a collection of documents, each ended by documents.EOD
        "doc_sep": meta.get("doc_sep"),
        "tokens": meta.get("tokens"),  # a word model's or capped vocabulary's: how its symbols were chosen
    }


@dataclass
class _Meter:
    """The clock and the train loss between two metrics lines."""

    elapsed0: float  # seconds trained before this process started
    t_start: float = 0.0
    t_log: float = 0.0
    chars: int = 0
    loss_sum: float = 0.0
    loss_n: int = 0
    train_loss: float = math.nan  # of the latest metrics line

    def start(self) -> None:
        self.t_start = self.t_log = time.perf_counter()

    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t_start


class _Trainer:
    """One run's model, optimizer, data and state; `run` is the loop. Everything is checked
    in the constructor, before `run` writes anything."""

    def __init__(
        self,
        corpus: Corpus,
        model_cfg: ModelConfig | None,
        cfg: TrainConfig,
        *,
        resume: Checkpoint | None,
        parent: Parent | None,
        ranks: Ranks,
        device: torch.device,
        rows: slice,
    ):
        model_cfg = self._going_on(corpus, model_cfg, cfg, resume, parent)
        self.precision = training_precision(cfg.precision, device, model_cfg.model)
        self.corpus, self.model_cfg, self.cfg = corpus, model_cfg, cfg
        self.ranks, self.device, self.rows = ranks, device, rows
        self.resumed = resume is not None
        self._build_model(fresh=resume is None and parent is None)
        self._read_data(rows)
        self.state = TrainState()
        self.hidden: State | None = None  # carried from batch to batch, float32
        if resume is not None:
            self._restore(resume)
        self.total_steps = self._total_steps()
        self.corpus_info = corpus_record(corpus)
        self.units = Units.of(self.corpus_info)
        self.meter = _Meter(elapsed0=self.state.elapsed_s)
        self.bad_steps = 0  # non-finite steps in a row
        self.last_eval_step = -1
        self.auto: dict | None = None  # set by `train`: how --preset auto chose

    def _going_on(
        self, corpus: Corpus, model_cfg, cfg, resume: Checkpoint | None, parent: Parent | None
    ) -> ModelConfig:
        """The model's config and vocabulary: the corpus's, or a resumed run's, or a fine-tuned
        model's (its parent's characters, then the new ones)."""
        self.vocab = corpus.vocab
        self.parent = parent  # only for a run starting from it, not for a resumed one
        self.parent_record = None if parent is None else parent.record()
        if resume is not None:
            model_cfg = resume.model_config
            checkpoint.check_resumes_on(
                resume, corpus_vocab=corpus.vocab, corpus_name=corpus.name, cfg=cfg, corpus_labels=corpus.labels
            )
            self.vocab = resume.vocab
            self.parent_record = resume.parent
        elif parent is not None:
            self.vocab = parent.vocab
        assert model_cfg is not None and model_cfg.vocab_size == len(self.vocab)
        if model_cfg.labels != tuple(corpus.labels):
            raise BadValueError("the model's labels are not the corpus's: build its config from the corpus")
        return model_cfg

    def _build_model(self, fresh: bool) -> None:
        """The model (its parent's weights in a fine-tuning run), its step and its average."""
        cfg, ranks = self.cfg, self.ranks
        seed_everything(cfg.seed)
        self.model = CharRNN(self.model_cfg)
        if self.model_cfg.softmax == "adaptive" and fresh:  # the others load their order
            self.model.set_order(self.corpus.counts("train"))
        if self.parent is not None:
            self.parent.load_into(self.model, self.corpus)
        self.model = self.model.to(self.device)
        if ranks.rank:
            seed_everything(cfg.seed + ranks.rank)  # same initial weights, different dropout masks
        self.net = torch.nn.parallel.DistributedDataParallel(self.model) if ranks.enabled else self.model
        self.train_step = TrainStep(self.model, cfg, self.device, self.precision, self.net)
        self.params = self.train_step.params
        # --ema: a shadow copy whose weights follow the trained ones; it is what is evaluated,
        # sampled and saved as best.pt (last.pt keeps the trained weights, and the shadow beside them)
        self.ema_model: CharRNN | None = None
        if cfg.ema:
            self.ema_model = copy.deepcopy(self.model).eval().requires_grad_(False)

    def _read_data(self, rows: slice) -> None:
        """This process's streams of the training split, and the val split (with a labelled
        model's labels: the same windows over each symbol's label id)."""
        corpus, cfg = self.corpus, self.cfg
        self.batcher = StreamBatcher(corpus.split_reader("train", self.vocab), cfg.batch_size, cfg.seq_len, rows=rows)
        self.val_ids = corpus.split_reader("val", self.vocab)
        self.label_batcher = self.val_labels = None
        if self.model_cfg.labels:
            train_labels = corpus.label_reader("train")
            self.label_batcher = StreamBatcher(train_labels, cfg.batch_size, cfg.seq_len, rows=rows)
            self.val_labels = corpus.label_reader("val")

    def _restore(self, ckpt: Checkpoint) -> None:
        self.state = ckpt.resumable_state(self.cfg.seq_len)
        try:  # a checkpoint that loads can still hold a damaged training state
            self.model.load_state_dict(ckpt.weights)
            self.train_step.opt.load_state_dict(ckpt.optimizer)
            if self.ema_model is not None:  # a run that had no shadow starts one from its weights
                self.ema_model.load_state_dict(ckpt.ema or ckpt.weights)
            if ckpt.scaler:
                self.train_step.scaler.load_state_dict(ckpt.scaler)
            hidden = checkpoint.carried_state(ckpt, self.model_cfg, batch_size=self.cfg.batch_size, rows=self.rows)
            self.hidden = None if hidden is None else tuple(h.to(self.device) for h in hidden)
            if self.ranks.is_main:
                set_rng_state(ckpt.rng)
        except (KeyError, TypeError, ValueError, OverflowError, RuntimeError, AttributeError, IndexError) as e:
            raise checkpoint.damaged_state(e) from None

    def _total_steps(self) -> int | None:
        """The step the step and epoch limits end at (None: only a time limit)."""
        cfg, state = self.cfg, self.state
        limits = [cfg.max_steps, cfg.max_epochs, cfg.time_limit]
        max_epochs = DEFAULT_MAX_EPOCHS if all(v is None for v in limits) else cfg.max_epochs
        step_limits = [cfg.max_steps] if cfg.max_steps is not None else []
        if max_epochs is not None:
            # the windows left to the epoch limit, counted from where the data stands: on a fresh run
            # or a resume with the same --seq-len this is ceil(max_epochs * steps per epoch); after a
            # --seq-len change, step counts windows of the old length
            windows = max(0.0, (max_epochs - state.epoch) * self.batcher.steps_per_epoch - state.offset / cfg.seq_len)
            if math.isfinite(windows):  # an epoch limit too large to count is no limit
                step_limits.append(state.step + math.ceil(windows))
        return min(step_limits) if step_limits else None

    # ------------------------------------------------------------------ the loop

    def run(self, run_dir: Path, callbacks: Callbacks, should_stop: Callable[[], bool]) -> TrainResult:
        self.run_dir, self.cb = run_dir, callbacks
        self.log = self._open_run_dir() if self.ranks.is_main else None
        try:
            self.cb.on_start(
                RunStart(
                    run_dir=run_dir,
                    model_config=self.model_cfg,
                    train_config=self.cfg,
                    corpus=self.corpus_info,
                    device=self.device.type,
                    precision=self.precision,
                    params=self.model.num_params(),
                    total_steps=self.total_steps,
                    steps_per_epoch=self.batcher.steps_per_epoch,
                    start_step=self.state.step,
                    resumed=self.resumed,
                    parent=self.parent_record,
                    auto=self.auto,
                )
            )
            self.model.train()
            self.meter.start()
            if self.parent is not None and self.state.step == 0:
                self._eval()  # where the model starts on the new text
            stopped = self._loop(should_stop)
            self._finish(stopped)
        finally:
            if self.log is not None:
                self.log.close()
        state = self.state
        return TrainResult(
            run_dir=run_dir,
            step=state.step,
            epoch=state.epoch,
            best_val_loss=state.best_val_loss,
            best_step=state.best_step,
            val_loss=state.val_loss,
            elapsed_s=state.elapsed_s,
            stopped=stopped,
        )

    def _open_run_dir(self) -> runlog.RunLog:
        """Everything is checked: only now is anything written, and only by rank 0."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.remove_leftovers(self.run_dir, ("*.pt", runlog.METRICS))  # from a run killed while saving
        if self.resumed:
            runlog.truncate_metrics(self.run_dir, self.state.step)
        return runlog.RunLog(self.run_dir)

    def _loop(self, should_stop: Callable[[], bool]) -> str:
        cfg = self.cfg
        while True:
            reason = self._stop_reason(should_stop)
            if reason:
                return reason
            self._step()
            step = self.state.step
            if cfg.eval_every and step % cfg.eval_every == 0:
                self._eval()
            if cfg.sample_every and step % cfg.sample_every == 0 and self.ranks.is_main:
                self._sample()
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                self._save("last")

    def _stop_reason(self, should_stop: Callable[[], bool]) -> str:
        cfg, state = self.cfg, self.state
        reason = ""
        if self.total_steps is not None and state.step >= self.total_steps:
            reason = "max_steps" if cfg.max_steps is not None and state.step >= cfg.max_steps else "max_epochs"
        elif cfg.patience and state.stale_evals >= cfg.patience:
            reason = "patience"
        elif cfg.time_limit is not None and state.elapsed_s >= cfg.time_limit:
            reason = "time_limit"
        if should_stop():
            reason = "interrupted"
        if self.ranks.enabled:  # clocks and signals differ between processes: stop together
            reason = STOP_REASONS[distributed.all_max([STOP_REASONS.index(reason)], self.ranks, self.device)[0]]
        return reason

    def _progress(self) -> float:
        """The fraction of the run done, for the learning-rate schedule."""
        cfg, state = self.cfg, self.state
        if cfg.decay_steps:
            return state.step / cfg.decay_steps
        p = state.step / self.total_steps if self.total_steps else 0.0
        return max(p, state.elapsed_s / cfg.time_limit) if cfg.time_limit else p

    def _step(self) -> None:
        cfg, state, ranks = self.cfg, self.state, self.ranks
        if state.offset + cfg.seq_len > self.batcher.stream_len:
            state.epoch, state.offset, self.hidden = state.epoch + 1, 0, None
        xb, yb = self.batcher.batch_at(state.offset)
        x = torch.from_numpy(xb).to(self.device, non_blocking=True)
        y = torch.from_numpy(yb).to(self.device, non_blocking=True)
        labels = None
        if self.label_batcher is not None:
            labels = torch.from_numpy(self.label_batcher.batch_at(state.offset)[1]).to(self.device, non_blocking=True)
        lr = lr_at(cfg, state.step, self._progress()) * state.lr_scale
        loss_v, gnorm, new_state = self.train_step.backward(x, y, self.hidden, labels, lr)
        ok = math.isfinite(loss_v) and (math.isfinite(gnorm) or self.train_step.scaled)
        if ranks.enabled:
            ok = not distributed.all_max([int(not ok)], ranks, self.device)[0]
        if ok:
            self.train_step.apply()
            self._update_ema()
            self.bad_steps = 0
            # float32 whatever autocast ran in, so a resume in another precision can take it
            self.hidden = tuple(h.detach().float() for h in new_state)
            self.meter.loss_sum += loss_v
            self.meter.loss_n += 1
        else:
            self._skip_step()
        state.step += 1
        state.offset += cfg.seq_len
        self.meter.chars += x.numel() * ranks.world
        state.elapsed_s = self.meter.elapsed()
        self._report_step(lr, gnorm)

    def _update_ema(self) -> None:
        if self.ema_model is None:
            return
        # the decay ramps up from 0.1 so that the first steps' random weights fade out quickly
        step = self.state.step
        decay = min(self.cfg.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for shadow, p in zip(self.ema_model.parameters(), self.params, strict=True):
                shadow.lerp_(p.detach(), 1 - decay)

    def _skip_step(self) -> None:
        """A non-finite loss or gradient: no update, the carried state restarts, the rate halves."""
        state = self.state
        self.bad_steps += 1
        state.lr_scale *= 0.5
        self.hidden = None
        self.cb.on_warning(f"step {state.step + 1}: non-finite loss or gradient, step skipped, learning rate halved")
        if self.bad_steps >= MAX_BAD_STEPS:
            raise TrainingError(
                f"training diverged: {self.bad_steps} non-finite steps in a row at step {state.step + 1}; "
                f"try a lower --lr (now {self.cfg.lr}) or --grad-clip; {checkpoint.kept(self.run_dir)}"
            )

    def _report_step(self, lr: float, grad_norm: float) -> None:
        state, meter = self.state, self.meter
        logged = state.step % self.cfg.log_every == 0 or state.step == 1
        record = {"step": state.step, "epoch": state.epoch, "lr": lr, "elapsed_s": round(state.elapsed_s, 3)}
        if logged:
            now = time.perf_counter()
            loss_sum, loss_n = distributed.all_sum([meter.loss_sum, meter.loss_n], self.ranks, self.device)
            meter.train_loss = loss_sum / max(loss_n, 1)
            record.update(
                train_loss=meter.train_loss,
                chars_per_sec=round(meter.chars / max(now - meter.t_log, 1e-9), 1),
                grad_norm=grad_norm,
            )
            state.history.append({"step": state.step, "train_loss": meter.train_loss})
            if self.log is not None:
                self.log.metric(record)
            meter.t_log, meter.chars, meter.loss_sum, meter.loss_n = now, 0, 0.0, 0
        epoch_frac = state.epoch + state.offset / self.batcher.stream_len
        latest = {"train_loss": meter.train_loss, "val_loss": state.val_loss, "epoch_frac": epoch_frac}
        self.cb.on_step(record | latest, logged)

    def _eval(self) -> None:
        cfg, state = self.cfg, self.state
        self.last_eval_step = state.step
        state.val_loss = mean_loss(
            self._evaluated(),
            self.val_ids,
            batch_size=cfg.eval_batch_size,
            seq_len=cfg.seq_len,
            device=self.device,
            precision=self.precision,
            ranks=self.ranks,
            labels=self.val_labels,
        )
        improved = math.isfinite(state.val_loss) and state.val_loss < state.best_val_loss
        if improved:
            state.best_val_loss, state.best_step, state.stale_evals = state.val_loss, state.step, 0
        else:
            state.stale_evals += 1
        record = {
            "step": state.step,
            "epoch": state.epoch,
            "val_loss": state.val_loss,
            "val_bpc": self.units.bpc(state.val_loss),
            **({"val_ppl": perplexity(state.val_loss)} if self.units.word else {}),
            "best_val_loss": state.best_val_loss,
            "elapsed_s": round(state.elapsed_s, 3),
        }
        state.history.append({"step": state.step, "val_loss": state.val_loss})
        if self.log is not None:
            self.log.metric(record)
        self.cb.on_eval(record)
        if cfg.sample_every is None and self.ranks.is_main:  # by default a sample goes with every evaluation
            self._sample()
        if improved:
            self._save("best")

    def _evaluated(self) -> CharRNN:
        """The weights that are evaluated, sampled and saved as best.pt."""
        return self.model if self.ema_model is None else self.ema_model

    def _sample(self) -> None:
        cfg, state = self.cfg, self.state
        text = sample_text(
            self._evaluated(),
            self.vocab,
            eod_text=eod_text(self.corpus_info),
            length=cfg.sample_length,
            temp=cfg.sample_temp,
            seed=cfg.seed + state.step,
        )
        self.log.sample(step=state.step, train_loss=self.meter.train_loss, val_loss=state.val_loss, text=text)
        losses = {"step": state.step, "train_loss": self.meter.train_loss, "val_loss": state.val_loss}
        self.cb.on_sample(state.step, text, losses)

    def _save(self, kind: str) -> None:
        # every rank takes part in gathering the carried state; only rank 0 writes
        hidden = None if self.hidden is None else [distributed.gather_rows(h, self.ranks) for h in self.hidden]
        if not self.ranks.is_main:
            return
        ckpt = Checkpoint(
            model_config=self.model_cfg,
            train_config=self.cfg,
            vocab=self.vocab,
            weights=(self._evaluated() if kind == "best" else self.model).state_dict(),
            state=self.state,
            # best.pt's weights are the shadow's already; last.pt keeps it beside the trained ones
            ema=None if self.ema_model is None or kind == "best" else self.ema_model.state_dict(),
            optimizer=self.train_step.opt.state_dict(),
            scaler=self.train_step.scaler.state_dict() if self.train_step.scaled else None,
            hidden=hidden,
            rng=rng_state(),
            precision=self.precision,
            device=self.device.type,
            corpus=self.corpus_info,
            parent=self.parent_record,
            auto=self.auto,
        )
        path = self.run_dir / f"{kind}.pt"
        checkpoint.write(ckpt, path)
        self.cb.on_checkpoint(path, kind)

    def _finish(self, stopped: str) -> None:
        if stopped == "interrupted":
            self._save("last")
            return
        if self.last_eval_step != self.state.step:
            self._eval()
        self._save("last")
        if not math.isfinite(self.state.best_val_loss) and all(bool(torch.isfinite(p).all()) for p in self.params):
            self._save("best")  # no eval gave a finite loss (no val split): still leave a model to sample
