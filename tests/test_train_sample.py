import json

import pytest
import torch

from charrnn.config import SampleConfig
from charrnn.corpus.preprocess import preprocess
from charrnn.generation.sample import generate, pick, sample_text
from charrnn.model.rnn import CharRNN
from charrnn.model.stepper import FastStepper
from charrnn.runtime import cpu_runs_bf16_rnn, needs_loss_scaling
from charrnn.training import checkpoint
from charrnn.training.batches import StreamBatcher
from charrnn.training.loop import train
from tests.conftest import MIXED_TEXT, tiny_model, tiny_train


@pytest.mark.slow
def test_overfits_hihello_and_samples_it_back(tmp_path):
    src = tmp_path / "hi.txt"
    src.write_text("hihello" * 300, encoding="utf-8")
    corpus = preprocess(src, tmp_path / "c", val_frac=0.1)
    result = train(
        corpus, tiny_model(len(corpus.vocab), hidden=32), tiny_train(max_steps=150, lr=2e-2), run_dir=tmp_path / "run"
    )
    assert result.best_val_loss < 0.05
    model, vocab, _ = checkpoint.load_model(tmp_path / "run" / "best.pt")
    text = sample_text(model, vocab, prime="hi", length=40, temp=0)
    assert text == ("hihello" * 7)[:42]


def test_metrics_and_progress_samples(tmp_path, mixed_corpus):
    run = tmp_path / "run"
    train(
        mixed_corpus,
        tiny_model(len(mixed_corpus.vocab)),
        tiny_train(max_steps=30, sample_every=10, sample_length=20, eval_every=15),
        run_dir=run,
    )
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_lines = [m for m in lines if "train_loss" in m]
    assert [m["step"] for m in train_lines] == [1, 5, 10, 15, 20, 25, 30]
    for m in train_lines:
        assert {"step", "epoch", "train_loss", "lr", "chars_per_sec", "elapsed_s"} <= m.keys()
    assert [m["step"] for m in lines if "val_loss" in m] == [15, 30]
    samples = (run / "samples.txt").read_text(encoding="utf-8")
    headers = [line for line in samples.splitlines() if line.startswith("===== step")]
    assert [h.split()[2] for h in headers] == ["10", "20", "30"]
    assert (run / "best.pt").exists() and (run / "last.pt").exists()


def test_checkpoint_round_trip(tiny_run, mixed_corpus):
    ckpt = checkpoint.load(tiny_run / "last.pt")
    assert ckpt["format"] == "charrnn-checkpoint" and ckpt["version"] == checkpoint.VERSION
    assert ckpt["vocab"] == mixed_corpus.vocab.chars
    assert ckpt["step"] == 30
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in ckpt["model"].values())
    model, vocab, _ = checkpoint.load_model(tiny_run / "last.pt")
    again = CharRNN(model.config)
    again.load_state_dict(ckpt["model"])
    x = torch.randint(len(vocab), (2, 9))
    assert torch.equal(model(x)[0], again.eval()(x)[0])
    assert not list(tiny_run.glob(".*tmp*"))  # no temporary files left behind


@pytest.mark.parametrize(
    "model_type", ["lstm", pytest.param("gru", marks=pytest.mark.slow), pytest.param("rnn", marks=pytest.mark.slow)]
)
def test_resume_is_bitwise_equal_to_uninterrupted(tmp_path, model_type):
    # 12 steps per epoch: 10 + 10 steps go on after the warm-up and cross an epoch boundary; the
    # cosine schedule's horizon is fixed, as it must be for the two runs to see the same rates
    (tmp_path / "short.txt").write_bytes(MIXED_TEXT[:900].encode("utf-8"))
    corpus = preprocess(tmp_path / "short.txt", tmp_path / "corpus")
    mc = tiny_model(len(corpus.vocab), model=model_type, dropout=0.1)
    tc = dict(eval_every=5, decay_steps=20)
    train(corpus, mc, tiny_train(max_steps=10, **tc), run_dir=tmp_path / "a")
    ckpt = checkpoint.load(tmp_path / "a" / "last.pt")
    train(corpus, None, tiny_train(max_steps=20, **tc), run_dir=tmp_path / "a", resume=ckpt)
    train(corpus, mc, tiny_train(max_steps=20, **tc), run_dir=tmp_path / "b")
    a = checkpoint.load(tmp_path / "a" / "last.pt")
    b = checkpoint.load(tmp_path / "b" / "last.pt")
    assert ckpt["epoch"] == 0 and a["epoch"] == b["epoch"] == 1
    assert a["step"] == b["step"] == 20
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    steps = [
        json.loads(line)["step"]
        for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
        if "train_loss" in line
    ]
    assert steps == sorted(set(steps))  # the resumed run's metrics continue, without repeats


@pytest.mark.slow
def test_resume_with_another_seq_len_goes_on_from_the_same_character(tmp_path, mixed_corpus):
    mc = tiny_model(len(mixed_corpus.vocab))
    train(mixed_corpus, mc, tiny_train(max_steps=10, seq_len=16), run_dir=tmp_path / "a")
    ckpt = checkpoint.load(tmp_path / "a" / "last.pt")
    assert ckpt["data"]["offset"] == 160 and ckpt["epoch"] == 0
    train(mixed_corpus, None, tiny_train(max_steps=14, seq_len=8), run_dir=tmp_path / "a", resume=ckpt)
    after = checkpoint.load(tmp_path / "a" / "last.pt")
    assert after["epoch"] == 0 and after["data"]["offset"] == 160 + 4 * 8
    # a checkpoint from before "offset" was stored: its batch index counts windows of its own seq_len
    old = {**ckpt, "data": {k: v for k, v in ckpt["data"].items() if k != "offset"}}
    train(mixed_corpus, None, tiny_train(max_steps=11, seq_len=8), run_dir=tmp_path / "b", resume=old)
    assert checkpoint.load(tmp_path / "b" / "last.pt")["data"]["offset"] == 160 + 8
    # an epoch limit counts the windows left from where the data stands, in the new length
    train(mixed_corpus, None, tiny_train(max_epochs=1, seq_len=8), run_dir=tmp_path / "c", resume=ckpt)
    end = checkpoint.load(tmp_path / "c" / "last.pt")
    stream_len = StreamBatcher(mixed_corpus.split_reader("train"), 4, 8).stream_len
    assert end["epoch"] == 0 and end["data"]["offset"] + 8 > stream_len >= end["data"]["offset"]


@pytest.mark.slow
@pytest.mark.skipif(not cpu_runs_bf16_rnn("lstm"), reason="this CPU cannot train an LSTM under bf16 autocast")
def test_resume_in_another_precision_takes_the_carried_state(tmp_path, mixed_corpus):
    # bf16 autocast hands back a bf16 state; fp32's LSTM refuses one, so it is kept in float32
    mc = tiny_model(len(mixed_corpus.vocab))
    train(mixed_corpus, mc, tiny_train(max_steps=10, precision="bf16"), run_dir=tmp_path / "a")
    ckpt = checkpoint.load(tmp_path / "a" / "last.pt")
    assert ckpt["precision"] == "bf16" and {h.dtype for h in ckpt["hidden"]} == {torch.float32}
    result = train(mixed_corpus, None, tiny_train(max_steps=15), run_dir=tmp_path / "a", resume=ckpt)
    assert result.step == 15 and checkpoint.load(tmp_path / "a" / "last.pt")["precision"] == "fp32"


@pytest.mark.slow
def test_a_carried_state_stored_in_bf16_resumes_in_fp32(tmp_path, mixed_corpus):
    # checkpoints written before the carried state was kept in float32 hold it in bf16
    mc = tiny_model(len(mixed_corpus.vocab))
    train(mixed_corpus, mc, tiny_train(max_steps=10), run_dir=tmp_path / "a")
    ckpt = checkpoint.load(tmp_path / "a" / "last.pt")
    old = {**ckpt, "hidden": [h.bfloat16() for h in ckpt["hidden"]]}
    result = train(mixed_corpus, None, tiny_train(max_steps=15), run_dir=tmp_path / "b", resume=old)
    assert result.step == 15 and checkpoint.load(tmp_path / "b" / "last.pt")["precision"] == "fp32"
    straight = train(mixed_corpus, None, tiny_train(max_steps=15), run_dir=tmp_path / "c", resume=ckpt)
    assert abs(result.val_loss - straight.val_loss) < 1e-2  # the same state, rounded to bf16


def test_loss_scaling_wherever_gradients_pass_through_float16():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
    assert needs_loss_scaling(cuda, "fp16") and needs_loss_scaling(cuda, "bf16")  # cuDNN RNNs: fp16
    assert not needs_loss_scaling(cuda, "fp32")
    assert not needs_loss_scaling(cpu, "bf16") and not needs_loss_scaling(cpu, "fp32")


def test_same_seed_same_sample_and_different_seed_differs(tiny_run):
    model, vocab, _ = checkpoint.load_model(tiny_run / "best.pt")
    a = sample_text(model, vocab, prime="床前", length=80, seed=11)
    b = sample_text(model, vocab, prime="床前", length=80, seed=11)
    c = sample_text(model, vocab, prime="床前", length=80, seed=12)
    assert a == b and a != c and a.startswith("床前")


def test_temperature_zero_is_argmax(tiny_run):
    model, vocab, _ = checkpoint.load_model(tiny_run / "best.pt")
    text = sample_text(model, vocab, prime="Th", length=30, temp=0, seed=1)
    # rebuild it by feeding the whole prefix each step and taking the argmax
    ids = vocab.encode("Th")
    for _ in range(30):
        logits, _ = model(torch.tensor([ids]))
        ids.append(int(logits[0, -1].argmax()))
    assert text == vocab.decode(ids)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["lstm", "gru", "rnn"])
def test_fast_sampling_path_gives_the_reference_text(tmp_path, mixed_corpus, model_type):
    run = tmp_path / model_type
    train(
        mixed_corpus,
        tiny_model(len(mixed_corpus.vocab), model=model_type, hidden=24, layers=3),
        tiny_train(max_steps=20),
        run_dir=run,
    )
    model, vocab, _ = checkpoint.load_model(run / "best.pt")
    for kw in (dict(temp=1.0), dict(temp=0.7, top_k=5), dict(temp=1.0, top_p=0.9), dict(temp=0)):
        config = SampleConfig(prime="The", length=200, seed=5, num_samples=3, **kw)
        fast = list(generate(model, vocab, config))
        slow = list(generate(model, vocab, config, fast=False))
        assert fast == slow


def test_stop_string_ends_a_sample_and_is_not_printed(tiny_run):
    model, vocab, _ = checkpoint.load_model(tiny_run / "best.pt")
    full = sample_text(model, vocab, prime="T", length=300, seed=4)
    stop = full[5:7]
    cut = sample_text(model, vocab, prime="T", length=300, seed=4, stop=stop)
    assert cut == full[: full.index(stop, 1)]


def test_top_k_and_top_p_restrict_the_choice():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[5.0, 4.0, 1.0, 0.0, -1.0]]).repeat(500, 1)
    assert set(pick(logits, g, temp=1.0, top_k=2).tolist()) == {0, 1}
    # p(0) = 0.72, p(0)+p(1) = 0.99: top-p 0.5 keeps only the first
    assert set(pick(logits, g, temp=1.0, top_p=0.5).tolist()) == {0}
    assert set(pick(logits, g, temp=1.0, top_p=0.9).tolist()) == {0, 1}
    assert set(pick(logits, g, temp=0.0).tolist()) == {0}


def test_bf16_sampling_runs_and_stays_close(tiny_run):
    model, vocab, _ = checkpoint.load_model(tiny_run / "best.pt")
    pieces = list(
        generate(model, vocab, SampleConfig(prime="The", length=100, seed=5, num_samples=4, precision="bf16"))
    )
    texts = ["".join(p[i] for p in pieces) for i in range(4)]
    assert all(t.startswith("The") and len(t) == 103 and set(t) <= set(vocab.chars) for t in texts)
    # at every character of a text, the bf16 step's next-character distribution is within rounding
    # of the float32 forward pass's, and names the same likeliest character
    ids = torch.tensor(vocab.encode(MIXED_TEXT[:400]))
    with torch.no_grad():
        expected = torch.softmax(model(ids[None])[0][0], dim=-1)  # (T, V)
    stepper = FastStepper(model, torch.bfloat16)
    state = stepper.convert(model.init_state(1))
    got = []
    for i in ids:
        logits, state = stepper.step(i[None], state)
        got.append(torch.softmax(logits[0], dim=-1))
    got = torch.stack(got)
    distance = (got - expected).abs().sum(dim=-1) / 2  # total variation, per character
    assert distance.max() < 0.02, distance.max()
    assert (got.argmax(-1) == expected.argmax(-1)).float().mean() > 0.95
    # and greedy decoding agrees with float32 over the first characters
    a = sample_text(model, vocab, prime="The", length=20, temp=0, precision="bf16")
    b = sample_text(model, vocab, prime="The", length=20, temp=0)
    assert a[:13] == b[:13]


def test_draw_is_the_draw_torch_multinomial_makes():
    # the server draws many runs' rows at once, each from its own generator; alone, a run must
    # draw what `charrnn sample` always drew
    from charrnn.generation.sample import draw

    for seed in range(200):
        probs = torch.softmax(torch.randn(1 + seed % 3, 65, dtype=torch.float64) * (1 + seed % 4), dim=-1)
        probs[:, seed % 65] = 0  # a cut-off character is never drawn
        probs /= probs.sum(dim=-1, keepdim=True)
        a, b = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        for _ in range(3):
            assert torch.equal(draw(probs, a), torch.multinomial(probs, 1, generator=b).squeeze(-1))
