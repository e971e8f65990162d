"""Seeded stratified splits and balanced caps on plain index arrays (no torch, no images).

Used when a dataset ships no split of its own, so that every run of a sweep (and
`orchestrate datasets describe`) sees the same test set for the same split seed.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np


def strata_of(targets: np.ndarray) -> np.ndarray:
    """One int per sample to stratify on: the class (single), the sub-class
    (hierarchical [n, 2]), or the first positive label, -1 for none (multi-hot [n, L])."""
    targets = np.asarray(targets)
    if targets.ndim == 1:
        return targets.astype(np.int64)
    if targets.dtype.kind == "f":
        positive = targets > 0.5
        return np.where(positive.any(axis=1), positive.argmax(axis=1), -1).astype(np.int64)
    return targets[:, -1].astype(np.int64)


def stratified_split(labels: Sequence[int] | np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Split indices 0..n-1 into len(fractions)+1 parts: one per fraction, then the rest.

    Each part is stratified by label (sklearn) when every class is large enough; otherwise
    each class is split by hand (seeded, its share rounded, a class's only image kept in the
    rest), with a warning, instead of failing.
    """
    labels = np.asarray(labels)
    remaining = np.arange(len(labels))
    remaining_fraction = 1.0
    parts: list[np.ndarray] = []
    for fraction in fractions:
        # Fractions are of the whole dataset; rescale to what is left after earlier parts.
        share = fraction / remaining_fraction if remaining_fraction > 0 else 0.0
        part, remaining = _split_off(remaining, labels, share, seed)
        parts.append(part)
        remaining_fraction -= fraction
    return [*parts, remaining]


def _split_off(indices: np.ndarray, labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split  # heavy; only when a split is carved

    n_take = round(share * len(indices))
    if n_take <= 0:
        return indices[:0], indices
    if n_take >= len(indices):
        return indices, indices[:0]
    try:
        rest, taken = train_test_split(indices, test_size=n_take, random_state=seed, stratify=labels[indices])
    except ValueError:
        # One rare class made sklearn refuse; a plain shuffle then unbalanced every class.
        taken, rest = _per_class_split(indices, labels, share, seed)
    return np.sort(taken), np.sort(rest)


def _per_class_split(indices: np.ndarray, labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split each class by hand: its share of `indices`, apportioned so the total is what
    sklearn would have taken, from a seeded shuffle of the class; a class's only image stays in
    the rest (train). Warns, naming any class the carve leaves with no image in the rest."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels[indices], return_counts=True)
    takes = _apportion(counts, share, round(share * len(indices)))
    taken: list[np.ndarray] = []
    rest: list[np.ndarray] = []
    for label, n_take in zip(classes, takes, strict=True):
        members = rng.permutation(indices[labels[indices] == label])
        taken.append(members[:n_take])
        rest.append(members[n_take:])
    emptied = [int(c) for c, n, t in zip(classes, counts, takes, strict=True) if t == n]
    warnings.warn(
        "stratified split impossible (a class has too few images); splitting each class by hand"
        + (f"; classes {emptied} are left with no training image" if emptied else ""),
        stacklevel=4,
    )
    return np.concatenate(taken), np.concatenate(rest)


def _apportion(counts: np.ndarray, share: float, total: int) -> np.ndarray:
    """Images to take per class: `share` of each class of two or more, rounded by largest
    remainder so the takes add up to `total` (rounding each alone took nothing from ten
    classes of three at share 0.1); never more than a class holds."""
    quota = share * counts * (counts >= 2)
    takes = np.floor(quota).astype(np.int64)
    room = (counts >= 2) & (takes < counts)
    order = [i for i in np.argsort(-(quota - takes), kind="stable") if room[i]]
    takes[order[: max(total - int(takes.sum()), 0)]] += 1
    return takes


def cap_indices(strata: np.ndarray, max_samples: int) -> list[int]:
    """At most `max_samples` indices, taken round-robin over strata (sorted), so a capped
    split keeps its classes balanced; returned in ascending order."""
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(np.asarray(strata).tolist()):
        by_class.setdefault(label, []).append(index)
    queues = [by_class[label] for label in sorted(by_class)]
    chosen: list[int] = []
    for rank in range(max((len(q) for q in queues), default=0)):
        chosen.extend(q[rank] for q in queues if rank < len(q))
    return sorted(chosen[:max_samples])


def novel_mapping(class_names: Sequence[str], novel: Sequence[str], dataset: str) -> tuple[list[str], np.ndarray]:
    """Sub-classes without the `novel` ones, and old index -> new index, where every novel
    sub-class maps to the novel slot len(new names)."""
    unknown = [n for n in novel if n not in class_names]
    if unknown:
        raise ValueError(
            f"dataset {dataset!r}: novel_subclasses {unknown} are not sub-classes; known: {', '.join(class_names)}"
        )
    kept = [n for n in class_names if n not in set(novel)]
    new_index = {n: i for i, n in enumerate(kept)}
    mapping = np.array([new_index.get(n, len(kept)) for n in class_names], dtype=np.int64)
    return kept, mapping


def apply_novel(
    targets: np.ndarray, mapping: np.ndarray, novel_index: int, evaluation: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Remap hierarchical targets [n, 2] with `novel_mapping`'s mapping. Returns (rows kept,
    new targets): a training split drops images of novel sub-classes, an evaluation split
    keeps them, labelled with the novel slot `novel_index`."""
    targets = np.asarray(targets, dtype=np.int64).reshape(-1, 2)
    out = np.stack([targets[:, 0], mapping[targets[:, 1]]], axis=1)
    keep = np.ones(len(out), dtype=bool) if evaluation else out[:, 1] != novel_index
    return np.flatnonzero(keep), out[keep]
