"""Labelled documents: --labels from-dir, from-file and a .tsv file, the label embedding, and
sampling with --label, from the shell, from Python and over HTTP."""

from __future__ import annotations

import json
import random
import shutil
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch

import charrnn
from charrnn.config import ModelConfig, SampleConfig
from charrnn.corpus.documents import EOD
from charrnn.corpus.preprocess import preprocess
from charrnn.corpus.store import Corpus
from charrnn.generation.sample import generate
from charrnn.model.rnn import CharRNN
from charrnn.model.stepper import FastStepper
from charrnn.training.scoring import mean_loss
from tests.conftest import TINY_FLAGS, one_line_error
from tests.test_serve import running

# Two kinds of word that share no letter: a model that reads its label writes only the letters
# of the label asked for, from a document's first character on.
ALPHABETS = {"Soft": "aeilmnou", "Hard": "bdgkprtz"}


def _words(letters: str, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 7))) for _ in range(n)]


@pytest.fixture
def words(tmp_path):
    """words/<Label>.txt, a word a line: 3 times as many Soft words as Hard ones."""
    root = tmp_path / "words"
    root.mkdir()
    for (label, letters), n in zip(ALPHABETS.items(), (90, 30), strict=True):
        (root / f"{label}.txt").write_text("\n".join(_words(letters, n, len(label))) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    folder = root / "words"
    folder.mkdir()
    for (label, letters), n in zip(ALPHABETS.items(), (300, 100), strict=True):
        (folder / f"{label}.txt").write_text("\n".join(_words(letters, n, len(label))) + "\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # the corpus cache (corpora/) goes there
        result = charrnn.train(
            folder, doc_sep="\n", labels="from-file", out=root / "run", hidden=32, layers=1, batch_size=8,
            seq_len=16, lr=0.02, warmup_steps=5, max_steps=250, eval_every=0, device="cpu", precision="fp32", seed=1,
        )  # fmt: skip
    return result.run_dir


def _label_of_each_symbol(corpus: Corpus, split: str) -> list[tuple[str, str]]:
    """(word, label) of every whole document of a split, from ids.bin and labels.bin."""
    ids, labels = corpus.split(split), corpus.label_reader(split)
    text, lab = corpus.vocab.decode(ids), labels[0 : len(labels)]
    out, start = [], 0
    for i, ch in enumerate(text):
        if ch == EOD:
            assert len(set(lab[start : i + 1].tolist())) == 1  # every symbol of a document, its end too
            out.append((text[start:i], corpus.labels[int(lab[i])]))
            start = i + 1
    return out


def test_from_file_gives_each_document_its_files_label_and_every_label_a_val_share(words, tmp_path):
    corpus = preprocess([words], tmp_path / "corpus", doc_sep="\n", labels="from-file", val_frac=0.2)
    m = corpus.meta
    assert corpus.labels == ["Hard", "Soft"] and corpus.label_counts == [30, 90]
    assert m["labels"]["source"] == "from-file" and m["documents"] == 120
    for split in ("train", "val"):
        for word, label in _label_of_each_symbol(corpus, split):
            assert set(word) <= set(ALPHABETS[label]), (word, label)
    # val takes the last fifth of each label's words, whatever the order of the files
    val = _label_of_each_symbol(corpus, "val")
    for label in ALPHABETS:
        own = (words / f"{label}.txt").read_text(encoding="utf-8").split()
        got = [w for w, lab in val if lab == label]
        assert sorted(got) == sorted(own[len(own) - len(got) :]) and 0.15 < len(got) / len(own) < 0.25
    # within a split the labels are mixed, not one file after the other
    train = [lab for _, lab in _label_of_each_symbol(corpus, "train")]
    assert sum(a != b for a, b in zip(train, train[1:], strict=False)) > 10
    again = preprocess([words], tmp_path / "again", doc_sep="\n", labels="from-file", val_frac=0.2)
    assert (again.path / "ids.bin").read_bytes() == (corpus.path / "ids.bin").read_bytes()  # deterministic
    assert (again.path / "labels.bin").read_bytes() == (corpus.path / "labels.bin").read_bytes()
    # read and copied in chunks of a few symbols, long documents and all: the same corpus
    small = preprocess([words], tmp_path / "small", doc_sep="\n", labels="from-file", val_frac=0.2, chunk_bytes=5)
    assert (small.path / "ids.bin").read_bytes() == (corpus.path / "ids.bin").read_bytes()
    assert (small.path / "labels.bin").read_bytes() == (corpus.path / "labels.bin").read_bytes()


def test_from_dir_and_a_tsv_file_label_documents_too(cli, tmp_path):
    for label, letters in ALPHABETS.items():
        (tmp_path / "tree" / label / "deep").mkdir(parents=True)
        for i, word in enumerate(_words(letters, 6, 1)):
            (tmp_path / "tree" / label / ("deep" if i % 2 else ".") / f"{i}.txt").write_text(word, encoding="utf-8")
    corpus = preprocess([tmp_path / "tree"], tmp_path / "c1", labels="from-dir", val_frac=0.3)
    assert corpus.labels == ["Hard", "Soft"] and corpus.label_counts == [6, 6]  # the folder below the root
    for word, label in _label_of_each_symbol(corpus, "train") + _label_of_each_symbol(corpus, "val"):
        assert set(word) <= set(ALPHABETS[label])
    (tmp_path / "tree" / "stray.txt").write_text("stray", encoding="utf-8")
    one_line_error(cli("preprocess", tmp_path / "tree", "--labels", "from-dir"), 3, "stray.txt: is directly in")
    tsv = tmp_path / "poems.tsv"
    tsv.write_text("roses are red\\nviolets blue\tlove\n\nthe sea\\tthe sky\twide\r\nx\ty\tlove\n", encoding="utf-8")
    r = cli("preprocess", "--labels", tsv, "--out", "c2")
    assert r.exit_code == 0, r.stderr
    assert "labels" in r.stderr and "love 2" in r.stderr
    corpus = Corpus.load(tmp_path / "c2")
    docs = corpus.vocab.decode(corpus.ids).split(EOD)[:-1]
    assert sorted(docs) == sorted(["roses are red\nviolets blue", "the sea\tthe sky", "x\ty"])
    assert corpus.labels == ["love", "wide"] and corpus.meta["doc_sep"] == "\n"
    assert cli("preprocess", tsv, "--labels", tsv, "--out", "c3").exit_code == 0  # naming it twice is fine


def test_bad_labels_are_one_line_errors(cli, words, tmp_path):
    one_line_error(cli("preprocess", words, "--labels", "from-nowhere"), 2, "--labels")
    (tmp_path / "Empty.txt").write_text("\n\n", encoding="utf-8")
    shutil.copy(tmp_path / "Empty.txt", words / "Empty.txt")
    one_line_error(cli("preprocess", words, "--doc-sep", "\\n", "--labels", "from-file"), 3, "'Empty' has no documents")
    (words / "Empty.txt").unlink()
    one_line_error(cli("preprocess", words, "--labels", "from-dir"), 3, "Hard.txt: is directly in")
    (tmp_path / "one" / "Only").mkdir(parents=True)
    for name in "ab":
        (tmp_path / "one" / "Only" / f"{name}.txt").write_text(name, encoding="utf-8")
    one_line_error(
        cli("preprocess", tmp_path / "one", "--labels", "from-dir"), 3, "every document has the label 'Only'"
    )
    bad = tmp_path / "bad.tsv"
    bad.write_text("fine\tok\nno tab here\n", encoding="utf-8")
    one_line_error(cli("preprocess", "--labels", bad), 3, "line 2 has no tab")
    bad.write_text("fine\tok\nempty label\t \n", encoding="utf-8")
    one_line_error(cli("preprocess", "--labels", bad), 3, "line 2 has an empty label")
    one_line_error(cli("preprocess", words, "--labels", bad), 2, "name no other input")
    one_line_error(cli("preprocess", "--labels", bad, "--doc-sep", "x"), 2, "--doc-sep")
    one_line_error(cli("preprocess", "--labels", tmp_path / "missing.tsv"), 3, "no such file")
    assert cli("preprocess", words, "--doc-sep", "\\n", "--labels", "from-file", "--out", "done").exit_code == 0
    one_line_error(cli("train", tmp_path / "done", "--labels", "from-file", *TINY_FLAGS), 2, "preprocessed corpus")


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_the_fast_step_reads_the_label_as_the_model_does(kind):
    torch.manual_seed(0)
    model = CharRNN(
        ModelConfig(vocab_size=7, model=kind, hidden=16, layers=2, labels=("a", "b", "c"), label_counts=(1, 2, 3))
    )
    model.eval()
    ids = torch.randint(7, (3, 9))
    labels = torch.randint(3, (3, 9))
    want, _ = model(ids, None, labels)
    stepper = FastStepper(model)
    state = stepper.convert(model.init_state(3))
    for t in range(9):
        logits, state = stepper.step(ids[:, t], state, labels[:, t])
        assert torch.allclose(logits, want[:, t], atol=1e-5)
    # the label is not decoration: another label, other logits
    other, _ = model(ids, None, (labels + 1) % 3)
    assert not torch.allclose(other, want, atol=1e-3)


@pytest.mark.slow
def test_sample_with_a_label_writes_that_labels_text(cli, labelled_run):
    for label, letters in ALPHABETS.items():
        r = cli("sample", labelled_run, "--label", label, "--documents", 12, "--separator", "|", "--seed", 5)
        assert r.exit_code == 0, r.stderr
        docs = r.stdout.rstrip("\n").split("|")
        assert len(docs) == 12
        inside = sum(set(d) <= set(letters) for d in docs)
        assert inside >= 11, (label, docs)
    # without --label, each document's label is drawn by the label counts (300 Soft, 100 Hard)
    r = cli("sample", labelled_run, "--documents", 60, "--separator", "|", "--seed", 6)
    docs = r.stdout.rstrip("\n").split("|")
    soft = sum(set(d) <= set(ALPHABETS["Soft"]) for d in docs)
    hard = sum(set(d) <= set(ALPHABETS["Hard"]) for d in docs)
    assert soft + hard >= 55 and 30 <= soft <= 57 and hard >= 3, docs
    # the Python API: the same text for the same options, and the fast step agrees with nn.LSTM's
    model = charrnn.load(labelled_run)
    assert model.labels == ("Hard", "Soft")
    text = model.generate(label="Hard", documents=12, doc_separator="|", seed=5)
    out = cli("sample", labelled_run, "--label", "Hard", "--documents", 12, "--separator", "|", "--seed", 5).stdout
    assert text + "\n" == out
    config = SampleConfig(documents=20, doc_separator="|", seed=8, length=0)
    fast = "".join(p[0] for p in generate(model.net, model.vocab, config, eod_text="\n"))
    slow = "".join(p[0] for p in generate(model.net, model.vocab, config, eod_text="\n", fast=False))
    assert fast == slow


@pytest.mark.slow
def test_labels_in_info_eval_and_their_errors(cli, labelled_run, tiny_run, tmp_path):
    info = cli("info", labelled_run)
    assert "labels" in info.stdout and "Hard 100" in info.stdout and "Soft 300" in info.stdout
    one_line_error(cli("sample", labelled_run, "--label", "Klingon"), 2, "'Klingon' is not one of", "Hard, Soft")
    one_line_error(cli("sample", tiny_run, "--label", "Hard"), 2, "--label needs a model trained with labels")
    word = tmp_path / "word.txt"
    word.write_text("kabdagtpr", encoding="utf-8")
    one_line_error(cli("eval", labelled_run, "--file", word), 2, "name one with --label")
    hard = cli("eval", labelled_run, "--file", word, "--label", "Hard")
    soft = cli("eval", labelled_run, "--file", word, "--label", "Soft")
    assert hard.exit_code == soft.exit_code == 0, hard.stderr
    nats = [float(r.stdout.split(": ")[1].split()[0]) for r in (hard, soft)]
    assert nats[0] < nats[1]  # a Hard word is likelier as a Hard one
    assert cli("eval", labelled_run).exit_code == 0  # its val split, with the split's own labels
    page = cli("visualize", labelled_run, "--prime", "kabda", "--label", "Hard", "--out", tmp_path / "v.html")
    assert page.exit_code == 0, page.stderr


@pytest.mark.slow
def test_resume_and_fine_tuning_keep_the_labels(cli, words, tmp_path, labelled_run):
    flags = [*TINY_FLAGS, "--doc-sep", "\\n", "--labels", "from-file"]
    r = cli("train", words, *flags, "--max-steps", 20, "--out", "run")
    assert r.exit_code == 0, r.stderr
    assert cli("train", "--resume", "run", "--max-steps", 30, "--quiet").exit_code == 0
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 30
    (words / "Other.txt").write_text("mole\nnoel\n", encoding="utf-8")  # no new character: new labels only
    one_line_error(cli("train", words, *flags, "--resume", "run", "--max-steps", 40), 4, "3 labels (Hard, Other, Soft)")
    one_line_error(
        cli("train", words, "--doc-sep", "\\n", "--init-from", labelled_run, "--max-steps", 5, "--quiet"),
        2,
        "fine-tuning keeps the model's labels",
    )


@pytest.mark.slow
def test_a_labelled_model_over_http(labelled_run, tmp_path, cli):
    with running(labelled_run, cwd=tmp_path) as (url, _, _):
        body = {"label": "Soft", "documents": 8, "seed": 9}
        r = httpx.post(f"{url}/v1/generate", json=body, timeout=60)
        assert r.status_code == 200, r.text
        out = cli("sample", labelled_run, "--label", "Soft", "--documents", 8, "--seed", 9)
        assert r.json() == {"text": out.stdout[:-1], "stopped": "documents"}
        # runs of different labels share the batched step, and each writes its own text
        bodies = [{"label": label, "documents": 5, "seed": s} for s in range(4) for label in ALPHABETS]
        with httpx.Client(timeout=60) as client, ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda b: client.post(f"{url}/v1/generate", json=b), bodies))
        for b, a in zip(bodies, answers, strict=True):
            alone = charrnn.load(labelled_run).generate(label=b["label"], documents=5, seed=b["seed"])
            assert a.json()["text"] == alone
        r = httpx.post(f"{url}/v1/generate", json={"label": "Klingon", "documents": 2})
        assert r.status_code == 400 and "Klingon" in r.json()["error"]
        scored = httpx.post(f"{url}/v1/score", json={"text": "kabdag", "label": "Hard"}).json()
        assert scored["nats"] == pytest.approx(charrnn.load(labelled_run).score("kabdag", label="Hard").nats, abs=1e-5)
        assert httpx.post(f"{url}/v1/score", json={"text": "kabdag"}).status_code == 400
        info = httpx.get(f"{url}/v1/info").json()
        assert info["labels"]["Hard"] == 100


@pytest.mark.slow
def test_the_val_loss_reads_the_labels(labelled_run):
    ckpt = torch.load(labelled_run / "best.pt", weights_only=True)
    corpus = Corpus.load(ckpt["corpus"]["path"])
    model = charrnn.load(labelled_run).net
    val = corpus.split_reader("val")
    right = mean_loss(model, val, batch_size=4, seq_len=16, labels=corpus.label_reader("val"))
    flipped_ids = 1 - np.asarray(corpus.label_reader("val")[0 : len(val)], dtype=np.int64)
    wrong = mean_loss(model, val, batch_size=4, seq_len=16, labels=flipped_ids)
    assert right < wrong - 0.2
    assert json.loads((corpus.path / "meta.json").read_text())["labels"]["names"] == ["Hard", "Soft"]
