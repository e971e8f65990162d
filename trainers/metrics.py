"""Classification metrics (scikit-learn); accuracies are fractions in [0, 1]."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, top_k_accuracy_score


def classification_metrics(
    scores: np.ndarray, labels: np.ndarray, num_classes: int, loss: float | None = None
) -> dict[str, Any]:
    """Top-1 (and top-5 when there are more than 5 classes), macro P/R/F1, image count.

    `scores` is [n, num_classes] (logits or probabilities), `labels` is [n].
    """
    n_images = len(labels)
    if n_images == 0:
        return {"n_images": 0}
    predictions = scores.argmax(axis=1)
    # Macro averages over the classes present in labels or predictions (scikit-learn's
    # default), so a capped split that lacks a class is not scored as a 0 for it.
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predictions, average="macro", zero_division=0)
    result: dict[str, Any] = {"top1": float(accuracy_score(labels, predictions))}
    if num_classes > 5:
        all_classes = np.arange(num_classes)
        result["top5"] = float(top_k_accuracy_score(labels, scores, k=5, labels=all_classes))
    result |= {
        "macro_precision": float(precision),
        "macro_recall": float(recall),
        "macro_f1": float(f1),
        "n_images": n_images,
    }
    if loss is not None:
        result["loss"] = float(loss)
    return result
