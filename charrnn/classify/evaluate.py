"""A classifier measured on labelled texts: accuracy, macro-F1, per-label precision and
recall, the confusion matrix and the pairs it confuses most, with examples.

    report = evaluate_classifier(Path("checkpoints/names"), Path("data/names-test"))
    report.scores.accuracy
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from charrnn.classify.data import load_examples
from charrnn.classify.predict import load_classifier
from charrnn.classify.scores import Scores, scores
from charrnn.config import CorpusOptions
from charrnn.errors import InputError


@dataclass
class Evaluation:
    path: Path
    data: str
    scores: Scores
    confused: list[tuple[str, str, int, list[str]]]  # (true, predicted, count, examples), commonest first
    skipped_chars: int
    truncated: int

    def to_json(self) -> dict:
        return {
            "checkpoint": str(self.path),
            "data": self.data,
            "examples": self.scores.total,
            "accuracy": self.scores.accuracy,
            "macro_f1": self.scores.macro_f1,
            "per_label": self.scores.per_label(),
            "confusion": {"labels": self.scores.labels, "counts": self.scores.confusion},
            "most_confused": [{"true": t, "predicted": p, "count": n, "examples": ex} for t, p, n, ex in self.confused],
        }


def evaluate_classifier(
    path: Path,
    data: Path,
    *,
    text_col: str = "text",
    label_col: str = "label",
    opts: CorpusOptions = CorpusOptions(),
    unknown: str = "skip",
    device: str = "cpu",
) -> Evaluation:
    """Accuracy, macro-F1, per-label precision and recall, and the confusion matrix of a
    classifier on labelled examples; labels the classifier does not know are an error."""
    clf = load_classifier(path, device)
    examples = load_examples(
        data, text_col=text_col, label_col=label_col, opts=opts, max_length=clf.ckpt.max_length, min_labels=1
    )
    unknown_labels = sorted(set(examples.labels) - set(clf.labels))
    if unknown_labels:
        shown = ", ".join(map(repr, unknown_labels[:5]))
        raise InputError(f"{data}: holds labels the classifier was not trained on: {shown}")
    skipped = sum(1 for t in examples.texts for c in t if c not in clf.vocab)
    probs = clf.probabilities(examples.texts, unknown=unknown)
    predicted = probs.argmax(dim=-1).tolist()
    index = {label: i for i, label in enumerate(clf.labels)}
    truth = [index[label] for label in examples.labels]
    sc = scores(clf.labels, truth, predicted)
    pairs: dict[tuple[int, int], list[str]] = {}
    for text, t, p in zip(examples.texts, truth, predicted, strict=True):
        if t != p:
            pairs.setdefault((t, p), []).append(text)
    confused = sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:12]
    return Evaluation(
        clf.path,
        str(data),
        sc,
        [(clf.labels[t], clf.labels[p], len(ex), ex[:6]) for (t, p), ex in confused],
        skipped,
        examples.truncated,
    )
