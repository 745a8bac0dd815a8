"""Metrics: binary (a single task, or a binary head), categorical and multi-label heads, each beside
the same metric of always predicting the train split's majority; per epoch and per split/dataset."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from stages import heads
from stages.scores import binary_f1_macro, predicted_class
from stages.training.data import SplitInfo, majority_class

ECE_BINS = 15


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


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE of P(class 1): over `n_bins` equal-width bins of the predicted probability,
    sum_b (n_b / N) * |observed positive rate_b - mean predicted probability_b| -- the reliability
    diagram of DVCLive's calibration plot, summarised. Bins as sklearn's calibration_curve
    (strategy="uniform"), which gives the per-bin rates for the non-empty bins."""
    prob_true, prob_pred = calibration_curve(labels, probs, n_bins=n_bins, strategy="uniform")
    bin_ids = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], probs)
    sizes = np.bincount(bin_ids, minlength=n_bins)
    sizes = sizes[sizes > 0]
    return float(np.sum(sizes / len(probs) * np.abs(prob_true - prob_pred)))


def classification_metrics(labels: np.ndarray, probs: np.ndarray, majority: int) -> dict[str, Any]:
    """Accuracy, macro-F1 (over both classes, for the model and the baseline alike), AUROC (null
    with one class), ECE, and the macro-F1 of always predicting the train split's majority class."""
    labels = np.asarray(labels, dtype=int)
    probs = np.asarray(probs, dtype=float)
    preds = predicted_class(probs)
    both = len(np.unique(labels)) == 2
    return {
        "accuracy": rounded(accuracy_score(labels, preds)),
        "f1_macro": rounded(binary_f1_macro(labels, probs)),
        "auroc": rounded(roc_auc_score(labels, probs)) if both else None,
        "ece": rounded(expected_calibration_error(labels, probs)),
        "majority_baseline_f1_macro": rounded(
            f1_score(labels, np.full_like(labels, majority), labels=[0, 1], average="macro", zero_division=0)),
        "support": int(len(labels)),
        "positives": int(labels.sum()),
    }


def epoch_metrics(eval_pred) -> dict[str, float]:
    """Trainer's per-epoch validation metrics (logged by DVCLive; f1_macro picks the best epoch)."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1)[:, 1].numpy()
    metrics = classification_metrics(labels, probs, majority=0)
    keep = ("accuracy", "f1_macro", "ece") + (("auroc",) if metrics["auroc"] is not None else ())
    return {name: metrics[name] for name in keep}


class HeadEpochMetrics:
    """Multi-head validation metrics per epoch: `f1_macro` is the primary head's (it picks the
    best epoch), `<field>_f1_macro` every head's."""

    def __init__(self, layout: heads.HeadLayout, primary: str):
        self.layout, self.primary = layout, primary

    def __call__(self, eval_pred) -> dict[str, float]:
        probs = self.layout.probabilities(torch.as_tensor(eval_pred.predictions, dtype=torch.float32)).numpy()
        labels = np.asarray(eval_pred.label_ids)
        out = {}
        for name in self.layout.names:
            values = head_metrics(self.layout, name, labels, probs, majority=None)
            if values is not None:
                out[f"{name}_f1_macro"] = values["f1_macro"]
        out["f1_macro"] = out.get(f"{self.primary}_f1_macro", 0.0)
        return out


def head_rows(layout: heads.HeadLayout, name: str, labels: np.ndarray, probs: np.ndarray):
    """(row mask, gold of the head, its probabilities) over the rows where the field is labeled;
    a binary head's probabilities are P(class 1), as the single-task path's."""
    head = layout.head(name)
    gold = labels[:, layout.slot_slices()[name]]
    rows = gold[:, 0] != heads.MISSING
    head_probs = probs[rows][:, layout.logit_slices()[name]]
    if head.kind == "binary":
        return rows, gold[rows, 0].astype(int), head_probs[:, 1]
    return rows, gold[rows].astype(int) if head.kind == "multilabel" else gold[rows, 0].astype(int), head_probs


def head_metrics(layout: heads.HeadLayout, name: str, labels: np.ndarray, probs: np.ndarray,
                 majority) -> dict[str, Any] | None:
    """One head's metrics over its labeled rows (None when there is none); majority None: no baseline
    needed (epoch metrics), class 0 / the empty set is used."""
    head = layout.head(name)
    rows, gold, head_probs = head_rows(layout, name, labels, probs)
    if not rows.any():
        return None
    if head.kind == "binary":
        return classification_metrics(gold, head_probs, majority or 0)
    if head.kind == "categorical":
        return categorical_metrics(gold, head_probs, majority or 0)
    return multilabel_metrics(gold, head_probs, np.zeros(head.width, dtype=int) if majority is None else majority)


@dataclass
class Predictions:
    split: str
    ids: list[str]
    datasets: list[str]
    labels: np.ndarray
    probs: np.ndarray       # P(class 1); multi-head: per example every head's probabilities (HeadLayout.probabilities)



Score = Callable[[np.ndarray, np.ndarray, "str | None"], "dict[str, Any] | None"]


def with_by_dataset(pred: Predictions, score: Score) -> dict[str, Any] | None:
    """`score(labels, probs, dataset)` of the whole split (dataset None), then `by_dataset`: the same
    over each source dataset's rows (datasets scored None are left out; None overall: None)."""
    section = score(pred.labels, pred.probs, None)
    if section is None:
        return None
    datasets, by_dataset = np.asarray(pred.datasets), {}
    for name in sorted(set(pred.datasets)):
        mine = datasets == name
        values = score(pred.labels[mine], pred.probs[mine], name)
        if values is not None:
            by_dataset[name] = values
    section["by_dataset"] = by_dataset
    return section


def split_metrics(pred: Predictions, train: SplitInfo, layout: heads.HeadLayout | None = None) -> dict[str, Any]:
    """Metrics of one split, overall and per source dataset; multi-head: per head over the split's
    labeled rows of its field. A dataset's majority baseline is that dataset's train majority when
    it has labeled train examples (of the field), else the overall one."""
    if layout is None:
        return with_by_dataset(pred, lambda labels, probs, dataset: classification_metrics(
            labels, probs, majority_class(train.by_dataset.get(dataset, train.class_counts))))
    sections = {head.name: with_by_dataset(pred, head_scorer(layout, head, train.head_counts))
                for head in layout.heads}
    return {name: section for name, section in sections.items() if section is not None}


def head_scorer(layout: heads.HeadLayout, head: heads.Head, counts: heads.HeadCounts) -> Score:
    def score(labels: np.ndarray, probs: np.ndarray, dataset: str | None) -> dict[str, Any] | None:
        majority = heads.majority_target(head, counts.of(dataset, head.name))
        return head_metrics(layout, head.name, labels, probs, majority)
    return score
