"""How well a classifier labels texts: the confusion matrix, accuracy, per-label precision,
recall and F1, and macro-F1.

    sc = scores(["a", "b"], truth=[0, 1, 1], predicted=[0, 1, 0])
    sc.accuracy, sc.macro_f1
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Scores:
    labels: list[str]
    confusion: list[list[int]]  # [true][predicted] counts

    @property
    def total(self) -> int:
        return sum(map(sum, self.confusion))

    @property
    def accuracy(self) -> float:
        return sum(self.confusion[i][i] for i in range(len(self.labels))) / max(1, self.total)

    def per_label(self) -> list[dict]:
        rows = []
        for i, label in enumerate(self.labels):
            tp = self.confusion[i][i]
            predicted = sum(row[i] for row in self.confusion)
            support = sum(self.confusion[i])
            p = tp / predicted if predicted else 0.0
            r = tp / support if support else 0.0
            f1 = 2 * p * r / (p + r) if p + r else 0.0
            rows.append({"label": label, "precision": p, "recall": r, "f1": f1, "support": support})
        return rows

    @property
    def macro_f1(self) -> float:
        """The mean F1 over the labels that occur in the data or the predictions."""
        rows = [r for i, r in enumerate(self.per_label()) if r["support"] or any(row[i] for row in self.confusion)]
        return sum(r["f1"] for r in rows) / max(1, len(rows))


def scores(labels: list[str], truth: list[int], predicted: list[int]) -> Scores:
    confusion = [[0] * len(labels) for _ in labels]
    for t, p in zip(truth, predicted, strict=True):
        confusion[t][p] += 1
    return Scores(labels, confusion)
