import json

import numpy as np
import pytest

from charrnn.corpus.preprocess import preprocess
from charrnn.corpus.store import Corpus, split_bounds
from charrnn.corpus.vocab import Vocab
from charrnn.errors import UnknownCharacterError
from charrnn.training.batches import StreamBatcher, eval_batches
from tests.conftest import MIXED_TEXT


def test_vocab_round_trip_non_ascii():
    text = "床前明月光 🐍🎉 e\u0301 שלום \r\n\t"
    v = Vocab.from_text(text)
    assert v.chars == sorted(set(text))
    assert v.decode(v.encode(text)) == text


def test_vocab_unknown_names_the_characters():
    v = Vocab.from_text("abc")
    with pytest.raises(UnknownCharacterError) as e:
        v.encode("abxyx")
    assert e.value.chars == ["x", "y"]
    assert "'x', 'y'" in str(e.value)
    assert v.encode("abxyx", unknown="skip") == v.encode("ab")


def test_vocab_dtype_is_smallest_that_fits():
    assert Vocab([chr(i) for i in range(256)]).dtype == np.uint8
    assert Vocab([chr(i) for i in range(257)]).dtype == np.uint16


def test_preprocess_outputs(tmp_path, mixed_file):
    corpus = preprocess(mixed_file, tmp_path / "out", val_frac=0.1, test_frac=0.05)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    n = len(MIXED_TEXT)
    assert meta["chars"] == n
    assert meta["vocab_size"] == len(set(MIXED_TEXT))
    assert meta["dtype"] == "uint8"
    assert meta["split_sizes"] == {
        "train": int(n * 0.85),
        "test": int(n * 0.9) - int(n * 0.85),
        "val": n - int(n * 0.9),
    }
    import hashlib

    assert meta["source_sha256"] == hashlib.sha256(mixed_file.read_bytes()).hexdigest()
    assert isinstance(corpus.ids, np.memmap)
    # the ids decode back to the text, CRLF kept
    assert corpus.vocab.decode(corpus.ids) == MIXED_TEXT
    assert corpus.vocab.decode(corpus.split("val")) == MIXED_TEXT[int(n * 0.9) :]
    assert Corpus.load(tmp_path / "out").vocab == corpus.vocab


def test_preprocess_chunked_equals_whole(tmp_path, mixed_file):
    # chunks of 7 bytes split multi-byte characters and CRLF pairs across reads
    a = preprocess(mixed_file, tmp_path / "a", chunk_bytes=7)
    b = preprocess(mixed_file, tmp_path / "b")
    assert np.array_equal(np.asarray(a.ids), np.asarray(b.ids))
    c = preprocess(mixed_file, tmp_path / "c", chunk_bytes=7, newline="lf")
    assert "\r" not in c.vocab.decode(c.ids)
    assert c.vocab.decode(c.ids) == MIXED_TEXT.replace("\r\n", "\n")


def test_split_matches_nanogpt():
    n = 1115394
    s = split_bounds(n, 0.1, 0.0)
    assert s["train"] == [0, int(n * 0.9)] and s["val"] == [int(n * 0.9), n]


def test_stream_batches_are_contiguous():
    ids = np.arange(1000) % 251
    b = StreamBatcher(ids.astype(np.uint8), batch_size=4, seq_len=10)
    x0, y0 = b.batch(0)
    x1, _ = b.batch(1)
    assert x0.shape == (4, 10)
    assert np.array_equal(y0[:, :-1], x0[:, 1:])
    # batch 1 continues each stream exactly where batch 0 stopped
    assert np.array_equal(x1[:, 0], y0[:, -1])
    assert np.array_equal(x0[:, 0], ids[b.starts] % 251)


def test_eval_batches_cover_every_prediction_once():
    ids = np.arange(2051, dtype=np.int64)
    seen = []
    for x, y in eval_batches(ids, batch_size=3, seq_len=7):
        assert x.shape[0] == 3
        for xr, yr in zip(x.ravel(), y.ravel(), strict=True):
            if yr >= 0:
                seen.append((int(xr), int(yr)))
    assert sorted(seen) == [(i, i + 1) for i in range(2050)]
