"""Word tokens and capped vocabularies: the tokenizer, <unk>, coverage, perplexity, sampling."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn import api
from charrnn.config import SampleConfig
from charrnn.corpus.preprocess import preprocess
from charrnn.corpus.store import Corpus
from charrnn.corpus.tokens import UNK, Tokenizer, VocabCap
from charrnn.generation.sample import generate
from charrnn.training import checkpoint
from tests.conftest import TINY_FLAGS, one_line_error

WORD = Tokenizer("word")

# a text the tokenizer cuts in every way it can: words with marks, numbers, whitespace runs,
# punctuation, CJK, emoji with a variation selector
HAND_TEXT = "The cat sat. The cat ran!\n\nA dog sat, 42 times: café e\u0301 naïve 床前明月光 🐍\ufe0f\tend\n"


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.text(), st.booleans())
def test_tokens_joined_are_the_text(text, lowercase):
    tokenizer = Tokenizer("word", lowercase)
    tokens = tokenizer.split(text)
    assert "".join(tokens) == (text.lower() if lowercase else text)
    assert all(tokens)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.text(), st.lists(st.integers(0, 60), max_size=6))
def test_tokens_of_text_in_chunks_are_those_of_the_whole(text, cuts):
    cuts = sorted({min(c, len(text)) for c in cuts})
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    streamed = [t for tokens in WORD.stream(chunks) for t in tokens]
    assert streamed == WORD.split(text)


def test_the_tokenizer_keeps_words_numbers_and_whitespace_runs_whole():
    assert WORD.split(HAND_TEXT) == [
        "The", " ", "cat", " ", "sat", ".", " ", "The", " ", "cat", " ", "ran", "!", "\n\n",
        "A", " ", "dog", " ", "sat", ",", " ", "42", " ", "times", ":", " ", "café", " ", "e\u0301", " ",
        "naïve", " ", "床", "前", "明", "月", "光", " ", "🐍\ufe0f", "\t", "end", "\n",
    ]  # fmt: skip


def test_a_capped_word_vocabulary_keeps_the_likeliest_and_reads_the_rest_as_unk(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(HAND_TEXT, encoding="utf-8")
    tokens = WORD.split(HAND_TEXT)
    corpus = preprocess(path, tmp_path / "c", tokens=(WORD, VocabCap(max_vocab=6)))
    chars = corpus.vocab.chars
    # five kept, the likeliest first (ties in code point order), and UNK
    counts = {t: tokens.count(t) for t in set(tokens)}
    assert chars == [" ", "The", "cat", "sat", "\t", UNK]  # "\t" sorts first of those seen once
    assert corpus.vocab.unk == 5
    kept = chars[:5]
    assert min(counts[t] for t in kept) >= max(counts[t] for t in counts if t not in kept)
    ids = np.asarray(corpus.ids)
    assert corpus.vocab.decode(ids) == "".join(t if t in kept else "<unk>" for t in tokens)
    meta = corpus.meta["tokens"]
    assert meta["kind"] == "word" and meta["distinct"] == len(counts)
    assert meta["coverage"] == pytest.approx(sum(counts[t] for t in kept) / len(tokens), abs=1e-6)
    assert sum(meta["split_chars"].values()) == len(HAND_TEXT)
    assert corpus.meta["chars"] == len(tokens)


def test_a_word_vocabulary_always_has_unk_for_words_it_never_saw(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("the cat sat\n" * 20, encoding="utf-8")
    corpus = preprocess(path, tmp_path / "c", tokens=(WORD, VocabCap(max_vocab=100)))
    assert corpus.vocab.chars[-1] == UNK and corpus.meta["tokens"]["coverage"] == 1.0
    assert corpus.vocab.encode("the dog", unknown="auto") == [corpus.vocab.index["the"], corpus.vocab.index[" "], 5]


def test_min_count_caps_a_vocabulary_of_characters(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("aaabbbccd" * 2 + "xyz", encoding="utf-8")
    corpus = preprocess(path, tmp_path / "c", tokens=(Tokenizer(), VocabCap(min_count=3)))
    assert corpus.vocab.chars == ["a", "b", "c", UNK]  # sorted by code point, as without a cap
    assert corpus.vocab.decode(corpus.ids) == "aaabbbcc<unk>" * 2 + "<unk>" * 3
    assert corpus.meta["tokens"]["coverage"] == pytest.approx(16 / 21, abs=1e-6)
    assert Corpus.load(tmp_path / "c").vocab == corpus.vocab


def test_preprocess_reports_tokens_and_coverage(cli, tmp_path):
    (tmp_path / "t.txt").write_text(HAND_TEXT * 3, encoding="utf-8")
    r = cli("preprocess", "t.txt", "--tokens", "word", "--max-vocab", "8", "--out", "c")
    assert r.exit_code == 0, r.stderr
    assert "coverage" in r.stderr and "--max-vocab 8" in r.stderr and "tokens" in r.stderr
    meta = json.loads((tmp_path / "c" / "meta.json").read_text(encoding="utf-8"))
    assert meta["vocab_size"] == 8 and meta["tokens"]["max_vocab"] == 8


# a short text a tiny word model learns by heart, after two words it sees once
STORY = "one zebra .\n" + "the cat sat on the mat , and the dog ran to the log .\n" * 40


@pytest.fixture(scope="module")
def word_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("words")
    (root / "story.txt").write_text(STORY, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # the corpus cache (corpora/) goes there
        api.train(
            root / "story.txt",
            out=root / "run",
            tokens="word",
            min_count=2,  # "one" and "zebra" are read as <unk>
            hidden=32,
            layers=1,
            batch_size=4,
            seq_len=16,
            lr=0.02,
            warmup_steps=5,
            max_steps=120,
            eval_every=60,
            device="cpu",
            precision="fp32",
            seed=1,
        )
    return root / "run"


@pytest.mark.slow
def test_a_word_model_learns_a_text_and_samples_it_back(word_run, cli):
    r = cli("sample", word_run, "--prime", "the dog", "--temp", "0", "--length", "25")
    assert r.exit_code == 0, r.stderr
    after = STORY[STORY.index("the dog") + len("the dog") :]
    assert r.stdout == "the dog" + "".join(WORD.split(after)[:25]) + "\n"


@pytest.mark.slow
def test_unk_is_written_only_when_allowed(word_run):
    model = api.load(word_run)
    assert model.vocab.chars[model.vocab.unk] == UNK
    # at a high temperature every token is drawn often: <unk> too, unless it is never drawn
    without = model.generate("the", length=300, seed=3, temp=20.0)
    assert "<unk>" not in without and "zebra" not in without
    allowed = model.generate("the", length=300, seed=3, temp=20.0, allow_unk=True)
    assert "<unk>" in allowed


@pytest.mark.slow
def test_a_prime_word_outside_the_vocabulary_is_unk_with_a_warning_or_an_error(word_run, cli):
    r = cli("sample", word_run, "--prime", "the zebra", "--length", "3", "--seed", "1")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("the zebra ")  # the prime as written, though the model read <unk>
    assert "warning" in r.stderr and "'zebra'" in r.stderr
    one_line_error(cli("sample", word_run, "--prime", "the zebra", "--unknown", "error"), 7, "zebra", "token")
    r = cli("sample", word_run, "--prime", "the zebra", "--unknown", "skip", "--length", "2", "--temp", "0")
    assert r.exit_code == 0 and r.stdout.startswith("the ") and "warning" not in r.stderr


@pytest.mark.slow
def test_perplexity_is_exp_of_the_loss_per_token(word_run, cli):
    ev = api.evaluate(word_run)
    assert ev.units.word
    assert ev.perplexity == pytest.approx(math.exp(ev.loss))
    ckpt = checkpoint.load(word_run / "best.pt")
    split = ckpt["corpus"]["tokens"]["split_chars"]["val"]
    tokens = ckpt["corpus"]["split_sizes"]["val"]
    assert ev.bits == pytest.approx(ev.loss / math.log(2) * tokens / split)
    r = cli("eval", word_run)
    assert r.exit_code == 0, r.stderr
    assert "nats/token" in r.stdout and f"perplexity {math.exp(ev.loss):,.1f}" in r.stdout and "bits/char" in r.stdout
    metrics = [json.loads(line) for line in (word_run / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in metrics if "val_loss" in m]
    assert evals and all(m["val_ppl"] == pytest.approx(math.exp(m["val_loss"])) for m in evals)
    s = api.load(word_run).score("the cat sat on the mat .")  # 13 tokens: 12 predicted, 21 characters
    assert len(s.logprobs) == 12 and s.units.word
    assert s.bits == pytest.approx(s.nats * 12 / (len("the cat sat on the mat .") - 3) / math.log(2))
    assert s.perplexity == pytest.approx(math.exp(s.nats))
    info = cli("info", word_run)
    assert "perplexity" in info.stdout and "tokens (words)" in info.stdout


@pytest.mark.slow
def test_a_word_checkpoint_records_its_tokenizer_and_is_never_read_as_characters(word_run, cli, tmp_path):
    ckpt = checkpoint.load(word_run / "best.pt")
    assert ckpt["tokens"] == {"kind": "word", "lowercase": False}
    assert checkpoint.Checkpoint.from_payload(ckpt).vocab.tokenizer == WORD
    (tmp_path / "more.txt").write_text(STORY, encoding="utf-8")
    r = cli("train", "more.txt", "--init-from", word_run, "--tokens", "char", "--max-steps", "1", *TINY_FLAGS[-3:])
    one_line_error(r, 2, "--init-from", "tokens")
    # without --tokens, a run from a word model reads the new text as words
    r = cli("train", "more.txt", "--init-from", word_run, "--max-steps", "2", "--out", "ft", *TINY_FLAGS[-3:])
    assert r.exit_code == 0, r.stderr
    assert checkpoint.read(tmp_path / "ft" / "best.pt").vocab.tokenizer == WORD


@pytest.mark.slow
def test_a_capped_run_resumed_on_its_text_keeps_its_cap_and_kinds_never_mix(word_run, cli, tmp_path):
    (tmp_path / "story.txt").write_text(STORY, encoding="utf-8")
    r = cli("train", "story.txt", "--tokens", "word", "--min-count", "2", "--max-steps", "2", "--out", "w",
            *TINY_FLAGS)  # fmt: skip
    assert r.exit_code == 0, r.stderr
    r = cli("train", "story.txt", "--resume", "w", "--max-steps", "4", "--quiet")  # no --tokens, no --min-count
    assert r.exit_code == 0, r.stderr
    # a character model cannot read a corpus of words, though each of its characters is a symbol there
    r = cli("train", "story.txt", "--max-steps", "2", "--out", "c", *TINY_FLAGS)
    assert r.exit_code == 0, r.stderr
    words = checkpoint.load(tmp_path / "w" / "last.pt")["corpus"]["path"]
    ckpt = checkpoint.load(tmp_path / "c" / "best.pt")
    ckpt["corpus"]["path"] = words
    import torch

    torch.save(ckpt, tmp_path / "c" / "best.pt")
    one_line_error(cli("eval", "c"), 4, "words", "characters")


@pytest.mark.slow
def test_visualize_shows_a_word_model_token_by_token(word_run, tmp_path):
    from charrnn.pages.visualize import visualize_checkpoint

    page, shown = visualize_checkpoint(word_run, prime="the cat sat on the mat", out=tmp_path / "v.html")
    assert shown == 11  # tokens, spaces included
    html = page.read_text(encoding="utf-8")
    assert '"text":["the"," ","cat"' in html


def test_bad_token_options_are_one_line_errors(cli, tmp_path, mixed_corpus):
    (tmp_path / "t.txt").write_text("a b c\n" * 50, encoding="utf-8")
    one_line_error(cli("train", mixed_corpus.path, "--tokens", "word", "--max-steps", "1"), 2, "preprocessed")
    r = cli("preprocess", "t.txt", "--max-vocab", "2")
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    (tmp_path / "u.txt").write_text("a b \ufdd1 c\n" * 5, encoding="utf-8")
    one_line_error(cli("preprocess", "u.txt", "--min-count", "2"), 3, "U+FDD1")
    (tmp_path / "names").mkdir()
    (tmp_path / "names" / "A.txt").write_text("x\ny\n", encoding="utf-8")
    (tmp_path / "names" / "B.txt").write_text("z\nw\n", encoding="utf-8")
    r = cli("preprocess", "names", "--doc-sep", "\\n", "--labels", "from-file", "--tokens", "word")
    one_line_error(r, 2, "--labels")


# --------------------------------------------------------------------------- adaptive softmax

# 700 CJK characters, the likeliest far likelier than the rarest (a vocabulary of hundreds)
_RNG = np.random.default_rng(0)
BIG_VOCAB_TEXT = "".join(
    chr(0x4E00 + int(i)) + ("。\n" if k % 20 == 19 else "")
    for k, i in enumerate([*range(700), *(700 * _RNG.random(11_000) ** 3).astype(int)])
)


@pytest.mark.parametrize("softmax", ["full", "adaptive"])
def test_the_loss_at_each_position_is_the_cross_entropy_of_the_logits(softmax):
    import torch
    from torch.nn import functional as F

    from charrnn.config import ModelConfig
    from charrnn.model.rnn import CharRNN

    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=700, hidden=16, layers=1, softmax=softmax))
    if softmax == "adaptive":
        model.set_order(torch.randint(1000, (700,)))
    x, y = torch.randint(700, (3, 9)), torch.randint(700, (3, 9))
    y[1, 4] = -1
    logits, _ = model(x)
    losses, _ = model(x, targets=y)
    want = F.cross_entropy(logits.reshape(-1, 700), y.reshape(-1), ignore_index=-1, reduction="none").view(3, 9)
    assert torch.allclose(losses, want, atol=1e-5) and losses[1, 4] == 0
    assert torch.allclose(logits.logsumexp(-1), torch.zeros(3, 9), atol=1e-5) or softmax == "full"


def test_softmax_auto_is_adaptive_for_large_vocabularies_only():
    from charrnn.config import AUTO_ADAPTIVE_VOCAB
    from charrnn.training.presets import configs

    assert configs(65, "tiny", {})[0].softmax == "full"
    assert configs(AUTO_ADAPTIVE_VOCAB, None, {"softmax": "auto"})[0].softmax == "full"
    assert configs(AUTO_ADAPTIVE_VOCAB + 1, "small", {})[0].softmax == "adaptive"
    assert configs(8000, None, {"softmax": "full"})[0].softmax == "full"
    # a preset's tied embeddings give way to it; asked for, they are refused with it
    assert configs(AUTO_ADAPTIVE_VOCAB + 1, "tiny", {})[0].tie_embeddings is False
    assert configs(65, "tiny", {})[0].tie_embeddings is True
    with pytest.raises(ValueError, match="tie-embeddings"):
        configs(AUTO_ADAPTIVE_VOCAB + 1, "tiny", {"tie_embeddings": True})


@pytest.mark.slow
def test_an_adaptive_softmax_trains_samples_resumes_and_refuses_what_it_cannot(cli, tmp_path):
    (tmp_path / "big.txt").write_text(BIG_VOCAB_TEXT, encoding="utf-8")
    flags = [*TINY_FLAGS, "--softmax", "adaptive", "--eval-every", "10"]
    r = cli("train", "big.txt", *flags, "--max-steps", "10", "--out", "run")
    assert r.exit_code == 0, r.stderr
    model = api.load(tmp_path / "run")
    assert model.net.config.softmax == "adaptive"
    order = model.net.order
    corpus = Corpus.load(checkpoint.load(tmp_path / "run" / "best.pt")["corpus"]["path"])
    counts = np.bincount(np.asarray(corpus.split("train")), minlength=len(model.vocab))
    assert counts[int((order == 0).nonzero())] == counts.max()  # the likeliest symbol heads the ranking
    # the fast sampling step gives the text the model's own forward pass gives
    config = SampleConfig(prime="一", length=40, seed=5)
    fast, slow = ("".join(p[0] for p in generate(model.net, model.vocab, config, fast=f)) for f in (True, False))
    assert fast == slow and len(fast) == 41
    r = cli("train", "--resume", "run", "--max-steps", "20", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert checkpoint.load(tmp_path / "run" / "last.pt")["step"] == 20
    assert "adaptive softmax" in cli("info", "run").stdout
    r = cli("train", "--resume", "run", "--max-steps", "30", "--softmax", "full")
    one_line_error(r, 2, "--softmax")
    (tmp_path / "small.txt").write_text("abc " * 500, encoding="utf-8")
    one_line_error(cli("train", "small.txt", *flags, "--max-steps", "1"), 2, "adaptive", "512")
    (tmp_path / "new.txt").write_text(BIG_VOCAB_TEXT + "ABC", encoding="utf-8")
    one_line_error(cli("train", "new.txt", "--init-from", "run", "--max-steps", "1", "--quiet"), 2, "adaptive")
