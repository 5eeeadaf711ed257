"""Collections of documents: several inputs, directories and patterns, --doc-sep, the
end-of-document symbol, splits between whole documents, and `sample --documents`."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import charrnn
from charrnn.corpus.documents import EOD, document_splits, split_pieces
from charrnn.corpus.preprocess import preprocess
from charrnn.corpus.source import Source
from charrnn.corpus.store import Corpus
from charrnn.training import checkpoint
from tests.conftest import TINY_FLAGS, one_line_error, subprocess_env

NAMES = {
    "French": "Beaumont Lefebvre Moreau Dubois Laurent Girard Bonnet Dupont Lambert Fontaine Rousseau Chevalier",
    "Russian": "Ivanov Smirnov Kuznetsov Popov Sokolov Lebedev Kozlov Novikov Morozov Petrov Volkov Solovyov",
}


@pytest.fixture
def names(tmp_path):
    """names/<Language>.txt, one name a line, as in the PyTorch names tutorial's data."""
    root = tmp_path / "names"
    root.mkdir()
    for lang, words in NAMES.items():
        (root / f"{lang}.txt").write_text("\n".join(words.split() * 8) + "\n", encoding="utf-8")
    return root


@given(st.text(max_size=200), st.sampled_from(["\n", "\n%\n", "ab", "%%"]), st.integers(1, 7))
def test_a_file_split_at_a_separator_joins_back_into_the_file(text, sep, chunk):
    chunks = [text[i : i + chunk] for i in range(0, len(text), chunk)]
    docs, current = [], ""
    for piece, end in split_pieces(iter(chunks), sep):
        current += piece
        if end:
            docs.append(current)
            current = ""
    assert sep.join(docs) == text and current == ""


def test_splits_fall_between_whole_documents():
    starts = [0, 40, 75, 90]  # four documents in 100 symbols
    splits = document_splits(100, starts, 0.1, 0.0)
    assert splits == {"train": [0, 90], "test": [90, 90], "val": [90, 100]}
    assert document_splits(100, starts, 0.3, 0.2) == {"train": [0, 40], "test": [40, 75], "val": [75, 100]}
    assert document_splits(100, [0], 0.1, 0.0)["train"] == [0, 100]  # one document: all of it trains
    # three equal documents and a tenth each: val still holds the last one, test is what is left
    assert document_splits(300, [0, 100, 200], 0.1, 0.1) == {"train": [0, 200], "test": [200, 200], "val": [200, 300]}


def test_a_directory_is_its_files_in_order_binary_and_hidden_ones_left_out(tmp_path, capsys):
    root = tmp_path / "docs"
    (root / "b" / "deep").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "a.txt").write_text("alpha", encoding="utf-8")
    (root / "b" / "deep" / "c.txt").write_text("gamma", encoding="utf-8")
    (root / "b" / "b.txt").write_text("beta", encoding="utf-8")
    (root / ".hidden.txt").write_text("hidden", encoding="utf-8")
    (root / ".git" / "HEAD").write_text("ref", encoding="utf-8")
    (root / "index.dat").write_bytes(bytes(range(256)) * 4)
    os.symlink(root / "a.txt", root / "z-link.txt")  # the same file twice counts once
    source = Source.of([root])
    assert [p.relative_to(root).as_posix() for p in source.files] == ["a.txt", "b/b.txt", "b/deep/c.txt"]
    assert [p.name for p in source.skipped] == ["index.dat"]
    corpus = preprocess(source, tmp_path / "corpus")
    assert corpus.vocab.decode(corpus.ids) == f"alpha{EOD}beta{EOD}gamma{EOD}"
    assert corpus.meta["documents"] == 3 and corpus.meta["skipped_count"] == 1


def test_doc_sep_makes_a_document_of_each_stretch_and_the_val_split_starts_at_one(names, tmp_path):
    corpus = preprocess([names], tmp_path / "corpus", doc_sep="\n", val_frac=0.2)
    text = corpus.vocab.decode(corpus.ids)
    words = [w for lang in sorted(NAMES) for w in NAMES[lang].split() * 8]
    assert text == "".join(w + EOD for w in words)  # the trailing newline makes no empty document
    assert corpus.meta["documents"] == len(words) and "\n" not in corpus.vocab
    val = corpus.vocab.decode(corpus.split("val"))
    assert corpus.ids[corpus.meta["splits"]["val"][0] - 1] == corpus.vocab.index[EOD] and val.endswith(EOD)
    assert abs(len(val) / len(text) - 0.2) < 0.05
    again = preprocess([names], tmp_path / "again", doc_sep="\n", val_frac=0.2)
    assert again.meta["splits"] == corpus.meta["splits"]  # deterministic


def test_bad_collections_are_one_line_errors(cli, names, tmp_path):
    # an empty directory: tests/test_reliability.py's test_directory_and_unreadable_input
    one_line_error(cli("preprocess", names, "--doc-sep", "%%"), 3, "never occurs")
    one_line_error(cli("preprocess", names, "--doc-sep", ""), 2, "--doc-sep")
    one_line_error(cli("preprocess", str(tmp_path / "nothing-*.txt")), 3, "no file matches")
    assert cli("preprocess", names, "--doc-sep", "\\n", "--out", "done").exit_code == 0
    one_line_error(cli("preprocess", tmp_path / "done"), 3, "preprocessed corpus already")
    (names / "Odd.txt").write_text(f"Ab{EOD}cd\n", encoding="utf-8")
    one_line_error(cli("preprocess", names), 3, "U+FDD0")
    binary = tmp_path / "bin"
    binary.mkdir()
    (binary / "x.dat").write_bytes(bytes(range(256)) * 4)
    one_line_error(cli("preprocess", binary), 3, "no text files", "1 look binary")
    latin1 = tmp_path / "latin1"
    latin1.mkdir()
    (latin1 / "a.txt").write_bytes("first line\nna\xefve\n".encode("latin-1"))
    one_line_error(cli("preprocess", latin1), 3, "a.txt: invalid UTF-8 at byte 13 (line 2)")  # names the file
    assert not (tmp_path / "corpora").exists() or not any((tmp_path / "corpora").iterdir())


def test_a_mixed_directory_trains_with_a_one_line_summary_of_what_it_skipped(cli, names, tmp_path):
    (names / "Russian.dat").write_bytes(bytes(range(256)) * 4)
    r = cli("preprocess", names, "--doc-sep", "\\n", "--out", "c")
    assert r.exit_code == 0, r.stderr
    assert "charrnn: warning: skipped 1 file(s) that look binary:" in r.stderr and "Russian.dat" in r.stderr
    assert Corpus.load(tmp_path / "c").meta["files"] == 2


@pytest.fixture(scope="module")
def names_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("names")
    folder = root / "names"
    folder.mkdir()
    for lang, words in NAMES.items():
        (folder / f"{lang}.txt").write_text("\n".join(words.split() * 8) + "\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # the corpus cache (corpora/) goes there
        result = charrnn.train(
            folder, doc_sep="\n", out=root / "run", hidden=32, layers=1, batch_size=8, seq_len=16, lr=0.02,
            warmup_steps=5, max_steps=150, eval_every=0, device="cpu", precision="fp32", seed=1,
        )  # fmt: skip
    return result.run_dir


@pytest.mark.slow
def test_sample_documents_writes_whole_ones_from_their_start(cli, names_run):
    r = cli("sample", names_run, "--documents", 6, "--separator", "|", "--seed", 3, "--max-length", 20)
    assert r.exit_code == 0, r.stderr
    docs = r.stdout.rstrip("\n").split("|")
    assert len(docs) == 6 and all(0 < len(d) <= 20 for d in docs), docs
    assert all(d[0].isupper() for d in docs), docs  # documents start as names start
    r = cli("sample", names_run, "--documents", 4, "--prime", "Mo", "--min-length", 6, "--max-length", 9, "--seed", 4)
    docs = r.stdout.rstrip("\n").split("\n")  # the corpus's own separator
    assert r.exit_code == 0 and len(docs) == 4, r.stdout
    assert all(d.startswith("Mo") and 6 <= len(d) <= 9 for d in docs), docs
    # the Python API takes the same options, and a seed gives the same documents
    model = charrnn.load(names_run)
    text = model.generate("Mo", documents=4, min_length=6, max_length=9, seed=4)
    assert text + "\n" == r.stdout


@pytest.mark.slow
def test_sampling_without_documents_writes_the_separator_at_document_ends(cli, names_run):
    r = cli("sample", names_run, "--length", 300, "--seed", 5)
    assert r.exit_code == 0 and EOD not in r.stdout and r.stdout.count("\n") > 10
    one_line_error(cli("sample", names_run, "--min-length", 3), 2, "--documents")
    one_line_error(cli("sample", names_run, "--documents", 2, "--prime", "Mor", "--max-length", 3), 2, "no room")
    info = cli("info", names_run)
    assert "documents split at '\\n'" in info.stdout


def test_documents_need_a_model_of_documents(cli, tiny_run):
    one_line_error(cli("sample", tiny_run, "--documents", 2), 2, "trained on documents")


def test_train_takes_several_inputs_and_patterns(cli, names, tmp_path):
    extra = tmp_path / "extra.txt"
    extra.write_text("Schmidt\nMüller\n", encoding="utf-8")
    r = cli("train", str(names / "*.txt"), extra, "--doc-sep", "\\n", "--max-steps", 3, "--out", "run", *TINY_FLAGS)
    assert r.exit_code == 0, r.stderr
    corpus = checkpoint.load(tmp_path / "run" / "last.pt")["corpus"]
    assert corpus["documents"] == 2 * 12 * 8 + 2 and corpus["doc_sep"] == "\n"


@pytest.mark.slow
def test_preprocessing_thousands_of_files_stays_within_bounded_memory(tmp_path):
    # peak memory of `charrnn preprocess` on the same 600,000 characters as 300 files and as
    # 3,000: a collection read as a stream costs a few bytes a file, not a copy of every file.
    # (The text itself is read a 16 MiB chunk at a time, so more text would cost more below that.)
    rng = random.Random(0)

    def tree(n: int):
        root = tmp_path / f"tree{n}"
        for i in range(n):
            d = root / f"d{i % 17}" / f"e{i % 5}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{i}.txt").write_text("".join(rng.choices("abcdefgh \n", k=600_000 // n)), encoding="utf-8")
        return root

    def peak_kib(root) -> int:
        code = (
            "import resource, sys; from charrnn.cli.app import main; sys.argv = ['charrnn', 'preprocess', sys.argv[1], "
            "'--out', sys.argv[2]]\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(root), str(root) + ".corpus"],
            capture_output=True, text=True, env=subprocess_env(), check=True,
        )  # fmt: skip
        assert Corpus.load(str(root) + ".corpus").meta["files"] in (300, 3000)
        return int(out.stdout.split()[-1])

    small, large = peak_kib(tree(300)), peak_kib(tree(3000))
    assert large - small < 8 * 1024, (small, large)  # 2,700 more files: well under 8 MiB more


@pytest.mark.slow
def test_visualize_shows_where_documents_end(cli, names_run, tmp_path):
    r = cli("visualize", names_run, "--out", tmp_path / "page.html")
    assert r.exit_code == 0, r.stderr
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "\\ufdd0" in page and '"\\ufdd0": "⏎\\n"' in page  # the val split's document ends, drawn as ⏎


def test_one_file_is_a_plain_text_whatever_its_name(tmp_path):
    odd = tmp_path / "notes[1]*.txt"
    odd.write_text("plain text, no documents\n", encoding="utf-8")
    source = Source.of(odd)
    assert not source.documents and source.name == "notes[1]*"
    assert Source.of("tinyshakespeare").files[0].name == "tinyshakespeare.txt"
