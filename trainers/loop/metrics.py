"""Metrics (scikit-learn) of model outputs against targets, per task; fractions in [0, 1].

`evaluate_outputs` returns scalars (for metrics.json) and tables (per-class reports and
confusion matrices, written as CSV files beside it):

- single: top1, top5 (when more than 5 classes), macro/micro precision, recall, F1,
  weighted_f1, n_images, loss; tables `per_class`, `confusion_matrix`.
- hierarchical: the same per level under `super` and `sub` (with each level's own
  cross-entropy as `super.loss`, `sub.loss`); the top-level keys repeat the sub level's
  (so `top1` is sub-class accuracy) and `loss` is the weighted sum that trains; tables `per_class_super`,
  `confusion_matrix_super`, `per_class_sub`, `confusion_matrix_sub`.
- multilabel: exact_match (= top1), mean_label_accuracy, hamming_loss, micro/macro
  precision, recall, F1, weighted_f1; tables `per_label` (accuracy, P/R/F1, support per
  label) and `per_label_confusion` (tn, fp, fn, tp per label).

Macro scores average over the classes present in the split's targets, whatever the model
predicts: single-label (and each hierarchical level) over the classes with an image, multilabel
over the labels with at least one positive (every label when the split has no positive at all).
Micro and weighted scores, and the per-class/per-label tables, keep every class.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    hamming_loss,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from trainers.model.tasks import TaskSpec

Table = list[dict[str, Any]]


@dataclass
class Evaluation:
    """Scalars for metrics.json and tables for CSV files."""

    scalars: dict[str, Any]
    tables: dict[str, Table] = field(default_factory=dict)


def _prf(
    labels: np.ndarray, predictions: np.ndarray, average: str, classes: np.ndarray | None = None
) -> tuple[float, float, float]:
    """Averaged precision, recall, F1 over `classes` (None: scikit-learn's default set)."""
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions, labels=classes, average=average, zero_division=0
    )
    return float(precision), float(recall), float(f1)


def _averaged(labels: np.ndarray, predictions: np.ndarray, macro_classes: np.ndarray | None = None) -> dict[str, float]:
    """Macro (over `macro_classes`, None: scikit-learn's default set) and micro precision/recall/F1
    and weighted F1 (single-label or multi-hot inputs). Micro and weighted averages take every
    class: micro counts every prediction, and a class without support weighs 0 anyway."""
    macro = _prf(labels, predictions, "macro", macro_classes)
    micro, weighted = (_prf(labels, predictions, a) for a in ("micro", "weighted"))
    return {
        "macro_precision": macro[0],
        "macro_recall": macro[1],
        "macro_f1": macro[2],
        "micro_precision": micro[0],
        "micro_recall": micro[1],
        "micro_f1": micro[2],
        "weighted_f1": weighted[2],
    }


def ranking_scores(scores: np.ndarray) -> np.ndarray:
    """`scores` with NaN and infinities replaced by finite stand-ins in the same order: NaN and
    -inf rank lowest, +inf highest. A diverged model (fp16 overflow, a too-high LR) outputs them,
    and scikit-learn's top_k_accuracy_score raised "Input contains NaN" at validation: the run
    died instead of recording the epoch as not improving. numpy's argmax picked a NaN as the max."""
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.floating) or np.isfinite(scores).all():
        return scores
    info = np.finfo(scores.dtype)
    finite: np.ndarray = np.nan_to_num(scores, nan=info.min, posinf=info.max, neginf=info.min)
    return finite


def level_metrics(scores: np.ndarray, labels: np.ndarray, names: list[str]) -> Evaluation:
    """Single-label metrics of scores [n, classes] against class indices [n] (non-finite scores
    rank as `ranking_scores` says, for top-1 and top-5 alike)."""
    scores = ranking_scores(scores)
    predictions = scores.argmax(axis=1)
    # Macro averages run over the classes present in the split's labels, so a capped split that
    # lacks a class is not scored as a 0 for it, also where the model predicts that class
    # (scikit-learn's default set, labels or predictions, would add it). macro_recall is then
    # balanced accuracy (scikit-learn's balanced_accuracy_score), over the same classes.
    scalars: dict[str, Any] = {"top1": float(accuracy_score(labels, predictions))}
    all_classes = np.arange(len(names))
    if len(names) > 5:
        scalars["top5"] = float(top_k_accuracy_score(labels, scores, k=5, labels=all_classes))
    scalars |= {**_averaged(labels, predictions, np.unique(labels)), "n_images": len(labels)}
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=all_classes, zero_division=0
    )
    per_class = [
        {"class": name, "precision": p, "recall": r, "f1": f, "support": int(s)}
        for name, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)
    ]
    matrix = confusion_matrix(labels, predictions, labels=all_classes)
    rows = [
        {"true \\ predicted": name, **dict(zip(names, map(int, row), strict=True))}
        for name, row in zip(names, matrix, strict=True)
    ]
    return Evaluation(scalars, {"per_class": per_class, "confusion_matrix": rows})


def multilabel_metrics(logits: np.ndarray, targets: np.ndarray, names: list[str], threshold: float) -> Evaluation:
    """Multilabel metrics: a label is predicted when sigmoid(logit) >= threshold."""
    truth = (targets > 0.5).astype(np.int64)
    predictions = (1.0 / (1.0 + np.exp(-logits)) >= threshold).astype(np.int64)
    # Macro averages run over the labels with a positive in the split, as single-label's run over
    # the classes present: a label the split lacks scored 0 (recall and F1 of 0/0) and dragged the
    # macro down, also where the model never predicts it. A split without any positive keeps every
    # label (an empty set has no average; scikit-learn would give NaN).
    present = np.flatnonzero(truth.sum(axis=0) > 0)
    label_accuracy = (truth == predictions).mean(axis=0)
    scalars: dict[str, Any] = {
        "exact_match": float(accuracy_score(truth, predictions)),
        "mean_label_accuracy": float(label_accuracy.mean()),
        "hamming_loss": float(hamming_loss(truth, predictions)),
        **_averaged(truth, predictions, present if len(present) else None),
        "threshold": threshold,
        "n_images": len(truth),
    }
    scalars["top1"] = scalars["exact_match"]
    precision, recall, f1, support = precision_recall_fscore_support(truth, predictions, average=None, zero_division=0)
    per_label = [
        {"label": name, "accuracy": float(a), "precision": p, "recall": r, "f1": f, "support": int(s)}
        for name, a, p, r, f, s in zip(names, label_accuracy, precision, recall, f1, support, strict=True)
    ]
    matrices = multilabel_confusion_matrix(truth, predictions)
    confusion = [
        {"label": name, "tn": int(m[0, 0]), "fp": int(m[0, 1]), "fn": int(m[1, 0]), "tp": int(m[1, 1])}
        for name, m in zip(names, matrices, strict=True)
    ]
    return Evaluation(scalars, {"per_label": per_label, "per_label_confusion": confusion})


def evaluate_outputs(
    task: TaskSpec,
    outputs: np.ndarray,
    targets: np.ndarray,
    loss: float | None = None,
    threshold: float = 0.5,
    level_losses: dict[str, float] | None = None,
) -> Evaluation:
    """Metrics of model outputs [n, task.num_outputs] (logits) against the split's targets;
    hierarchical `level_losses` ({"super": ..., "sub": ...}) go in as `super.loss`, `sub.loss`."""
    if len(targets) == 0:
        return Evaluation({"n_images": 0})
    if task.kind == "multilabel":
        result = multilabel_metrics(outputs, targets, list(task.class_names), threshold)
    elif task.kind == "hierarchical":
        widths = [width for _, width in task.heads]
        super_scores, sub_scores = np.split(outputs, [widths[0]], axis=1)
        levels = {
            "super": level_metrics(super_scores, targets[:, 0], task.level_names("super")),
            "sub": level_metrics(sub_scores, targets[:, 1], task.level_names("sub")),
        }
        scalars = {**levels["sub"].scalars, "super": levels["super"].scalars, "sub": levels["sub"].scalars}
        for level, value in (level_losses or {}).items():
            scalars[level]["loss"] = float(value)
        tables = {f"{name}_{level}": table for level, ev in levels.items() for name, table in ev.tables.items()}
        result = Evaluation(scalars, tables)
    else:
        result = level_metrics(outputs, targets, list(task.class_names))
    if loss is not None:
        result.scalars["loss"] = float(loss)
    return result


def lookup(scalars: dict[str, Any], dotted: str) -> float | None:
    """The value at a dotted key ('super.top1') of nested scalars, or None."""
    value: Any = scalars
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def scalar_names(scalars: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of every numeric leaf of nested scalars."""
    names: list[str] = []
    for key, value in scalars.items():
        if isinstance(value, dict):
            names += scalar_names(value, f"{prefix}{key}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            names.append(f"{prefix}{key}")
    return names


def table_csv(rows: Table) -> str:
    """A table as CSV text (header from the first row's keys)."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def metric_names(task: TaskSpec) -> list[str]:
    """Dotted names of the scalars `evaluate_outputs` reports for `task` (incl. loss)."""
    n = max(2, max(width for _, width in task.heads))
    rows = np.arange(n)
    if task.kind == "multilabel":
        targets: np.ndarray = (rows[:, None] == np.arange(len(task.class_names))[None, :]).astype(np.float32)
    elif task.kind == "hierarchical":
        widths = [width for _, width in task.heads]
        targets = np.stack([rows % widths[0], rows % widths[1]], axis=1)
    else:
        targets = rows % task.num_outputs
    outputs = np.zeros((n, task.num_outputs), dtype=np.float32)
    levels = {"super": 0.0, "sub": 0.0} if task.kind == "hierarchical" else None
    return scalar_names(evaluate_outputs(task, outputs, targets, loss=0.0, level_losses=levels).scalars)
