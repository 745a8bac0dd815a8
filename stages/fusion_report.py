"""The fuse stage's scores and reports: per field, split and dataset, text alone, vision alone and
fused side by side on the examples both experts scored; the full report and its headline (the DVC
metric). Pure functions of the fused rows (stages/fuse.py makes them)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from stages.predictions import EVALUATED_SPLITS, EXPERTS, PredictionRow, contributors, in_split
from stages.scores import binary_f1_macro, main_metric, val_part

if TYPE_CHECKING:
    from stages.fuse import FusionModel


def modality_counts(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per dataset: examples fused, and examples one expert scored alone, by reason."""
    reasons = {("text", "vision"): "fused", ("text",): "text_alone_no_image", ("vision",): "vision_alone_no_text"}
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        mine = counts.setdefault(row["dataset"], dict.fromkeys(reasons.values(), 0))
        mine[reasons[tuple(row["experts"])]] += 1
    return dict(sorted(counts.items()))


def binary_scores(labels: list[int], probs: list[float]) -> dict[str, Any]:
    """Macro-F1 of the experts' decisions and AUROC (null with one class present)."""
    from sklearn.metrics import roc_auc_score

    return {"f1_macro": round(binary_f1_macro(np.asarray(labels), np.asarray(probs)), 6),
            "auroc": round(float(roc_auc_score(labels, probs)), 6) if len(set(labels)) == 2 else None,
            "support": len(labels)}


def score_rows(fused: list[dict[str, Any]], text_rows: dict[str, PredictionRow],
               vision_rows: dict[str, PredictionRow], name: str, split: str,
               dataset: str | None = None) -> dict[str, Any]:
    """On the labeled examples of a split (and dataset) that both experts scored: text alone,
    vision alone and fused, side by side; then fused over every labeled example (`fused_all`)."""
    mine = [row for row in fused if in_split(row["split"], row["id"], split)
            and (dataset is None or row["dataset"] == dataset)
            and row["labels"].get(name) is not None and name in row["probs"]]
    both = [row for row in mine if len(contributors(text_rows.get(row["id"]), vision_rows.get(row["id"]), name)) == 2]
    out: dict[str, Any] = {}
    if both:
        labels = [int(row["labels"][name]) for row in both]
        out["text"] = binary_scores(labels, [text_rows[row["id"]].probs[name] for row in both])
        out["vision"] = binary_scores(labels, [vision_rows[row["id"]].probs[name] for row in both])
        out["fused"] = binary_scores(labels, [row["probs"][name] for row in both])
    if mine:
        out["fused_all"] = binary_scores([int(row["labels"][name]) for row in mine],
                                         [row["probs"][name] for row in mine])
    return out


def full_report(model: FusionModel, fused: list[dict[str, Any]], text_rows: dict[str, PredictionRow],
                vision_rows: dict[str, PredictionRow]) -> dict[str, Any]:
    """Weights, counts, and per field, split and dataset every score of `score_rows`."""
    datasets = sorted({row["dataset"] for row in fused})
    scores = {name: {split: {"all": score_rows(fused, text_rows, vision_rows, name, split),
                             "by_dataset": {dataset: section for dataset in datasets
                                            if (section := score_rows(fused, text_rows, vision_rows, name, split,
                                                                      dataset))}}
                     for split in EVALUATED_SPLITS}
              for name in model.fields}
    return {"model": model.to_dict(), "examples": modality_counts(fused), "val_parts": val_part_counts(fused),
            "scores": scores,
            "note": "val_fit: val's fit part, the only val examples fusion fits on (the experts picked their epoch "
                    "on the select part, left out); its `fused` scores are out-of-fold (cross-fitted); test "
                    "scores use the weights fitted on all of the fit part"}


def val_part_counts(fused: list[dict[str, Any]]) -> dict[str, int]:
    """Val examples fusion fit on (`fit`) and left out because the experts picked their epoch on them."""
    parts = [val_part(row["id"]) for row in fused if row["split"] == "val"]
    return {"fit_on": parts.count("fit"), "left_out_selected_on": parts.count("select")}


def headline_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The DVC metric (small): per field the weights and val/test macro-F1 and AUROC of text, vision and
    fused on the examples both scored; per dataset of the first field the test main metric of each;
    examples fused and scored by one expert alone."""
    counts = report["examples"].values()
    out: dict[str, Any] = {"examples": {reason: sum(c[reason] for c in counts) for reason in next(iter(counts))},
                           "val_parts": report["val_parts"]}
    for index, (name, weights) in enumerate(report["model"]["fields"].items()):
        section: dict[str, Any] = {"weights": {expert: weights[expert] for expert in EXPERTS}}
        for split, scores in report["scores"][name].items():
            section[split] = {expert: {m: values[m] for m in ("f1_macro", "auroc")}
                              for expert, values in scores["all"].items() if expert in ("text", "vision", "fused")}
        if index == 0:
            section["test_by_dataset"] = dataset_main_metrics(report["scores"][name]["test"]["by_dataset"], name)
        out[name] = section
    return out


def dataset_main_metrics(by_dataset: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    """Per dataset with examples both experts scored: its main metric of text, vision and fused."""
    out = {}
    for dataset, scores in by_dataset.items():
        if "fused" in scores:
            metric = main_metric(dataset, name)
            out[dataset] = {metric: {expert: scores[expert][metric] for expert in ("text", "vision", "fused")}}
    return out
