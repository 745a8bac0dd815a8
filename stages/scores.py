"""The scoring rules every report shares (the experts, fusion, the real-data benchmark), in one light
module: numpy and scikit-learn only, so a stage that scores predictions need not load torch."""
from __future__ import annotations

import hashlib

import numpy as np
from sklearn.metrics import f1_score

# Each dataset's main metric: the one its published results use (AUROC on Hateful Memes), else macro-F1.
MAIN_METRIC = {("hateful_memes", "abuse_hate"): "auroc"}


# Val is cut in two by example id: the experts pick their best epoch on `select`, fusion fits on `fit`,
# so the fusion never trusts scores that epoch selection inflated. A fixed half, not a tunable: both
# stages must agree on it and no stage reads another's params group.
VAL_PARTS = ("select", "fit")


def val_part(example_id: str) -> str:
    """`select` or `fit`: the first byte of the id's SHA-256, even or odd (stable across runs and machines)."""
    return VAL_PARTS[hashlib.sha256(str(example_id).encode("utf-8")).digest()[0] & 1]


def main_metric(dataset: str, field: str) -> str:
    return MAIN_METRIC.get((dataset, field), "f1_macro")


def predicted_class(probs: np.ndarray) -> np.ndarray:
    """A binary expert's decision from P(class 1): the argmax of its two logits (ties go to class 0)."""
    return (np.asarray(probs, dtype=float) > 0.5).astype(int)


def binary_f1_macro(labels: np.ndarray, probs: np.ndarray) -> float:
    """Macro-F1 over both classes of the decisions `predicted_class(probs)`."""
    return float(f1_score(labels, predicted_class(probs), labels=[0, 1], average="macro", zero_division=0))
