"""Metrics of the categorical and multi-label heads (binary heads: training.classification_metrics),
each beside the same metric of always predicting the train split's majority."""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def rounded(value: float) -> float:
    return round(float(value), 6)


def categorical_metrics(labels: np.ndarray, probs: np.ndarray, majority: int) -> dict[str, Any]:
    """Accuracy and macro-F1 (over the classes present in the gold labels, for the model and the
    baseline alike: a class absent from a split would add an F1 of 0 to every macro average)."""
    labels = np.asarray(labels, dtype=int)
    preds = np.asarray(probs).argmax(axis=1)
    baseline = np.full_like(labels, majority)
    present = sorted(set(labels.tolist()))
    return {
        "accuracy": rounded(accuracy_score(labels, preds)),
        "f1_macro": rounded(f1_score(labels, preds, labels=present, average="macro", zero_division=0)),
        "majority_baseline_accuracy": rounded(accuracy_score(labels, baseline)),
        "majority_baseline_f1_macro": rounded(f1_score(labels, baseline, labels=present, average="macro",
                                                       zero_division=0)),
        "support": int(len(labels)),
    }


def multilabel_scores(labels: np.ndarray, preds: np.ndarray) -> tuple[float, float, float]:
    """(micro-F1, macro-F1 over the labels with a gold positive, share of exact matches)."""
    present = [int(i) for i in np.flatnonzero(labels.sum(axis=0))]
    micro = f1_score(labels, preds, average="micro", zero_division=0)
    macro = f1_score(labels, preds, labels=present, average="macro", zero_division=0) if present else 0.0
    exact = float(np.mean(np.all(labels == preds, axis=1)))
    return rounded(micro), rounded(macro), rounded(exact)


def multilabel_metrics(labels: np.ndarray, probs: np.ndarray, majority: np.ndarray) -> dict[str, Any]:
    """Micro-F1, macro-F1, exact-match share (probabilities thresholded at 0.5) and the same of
    predicting the train-majority label set for every example."""
    labels = np.asarray(labels, dtype=int)
    preds = (np.asarray(probs) > 0.5).astype(int)
    micro, macro, exact = multilabel_scores(labels, preds)
    base_micro, base_macro, base_exact = multilabel_scores(labels, np.tile(np.asarray(majority, dtype=int),
                                                                           (len(labels), 1)))
    return {
        "f1_micro": micro, "f1_macro": macro, "exact_match": exact,
        "majority_baseline_f1_micro": base_micro, "majority_baseline_f1_macro": base_macro,
        "majority_baseline_exact_match": base_exact,
        "support": int(len(labels)), "positives": int(labels.sum()),
    }
